"""Chinese full-text search on titles and topics: one, two and three-or-more character queries,
mixed with Latin words, on SQLite and PostgreSQL; the index follows edits and deletions."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from recordings import service
from recordings.models import Recording, RecordingSearchTerm
from recordings.search import index_terms, query_terms
from tests.conftest import DemoDatabase, bearer

WCK_EN_4 = 4  # shown to student-cy-4-1
WCK_EN_3 = 2  # not shown to student-cy-4-1


def test_terms_are_cjk_unigrams_bigrams_and_folded_words() -> None:
    assert index_terms("二次函数", "Ｕｎｉｔ ３") == {
        "二", "次", "函", "数", "二次", "次函", "函数", "unit", "3",
    }  # fmt: skip
    assert query_terms("函") == {"函"}
    assert query_terms("函数") == {"函数"}
    assert query_terms("二次函数") == {"二次", "次函", "函数"}
    assert query_terms("图像 性质，Unit") == {"图像", "性质", "unit"}
    assert query_terms("  ，。 ") == set()


@pytest.fixture
def library(db: DemoDatabase) -> dict[str, int]:
    topics = {
        "quadratic": (WCK_EN_4, "二次函数的图像与性质"),
        "linear": (WCK_EN_3, "一次函数复习"),
        "friends": (WCK_EN_4, "Ｕｎｉｔ ３ My Friends 我的朋友"),
    }
    ids = {}
    with db.sessions() as session:
        for name, (group, topic) in topics.items():
            recording = service.new_recording_for_sync_group(
                session, sync_group_id=group, topic=topic
            )
            ids[name] = recording.id
        session.commit()
    return ids


def test_chinese_queries_of_one_two_and_more_characters(
    client: TestClient, db: DemoDatabase, library: dict[str, int]
) -> None:
    admin = bearer(client, "admin-wck")

    def found(q: str, headers: dict[str, str] = admin) -> set[str]:
        response = client.get("/api/recordings", params={"q": q}, headers=headers)
        assert response.status_code == 200, response.text
        by_id = {v: k for k, v in library.items()}
        return {by_id[r["id"]] for r in response.json() if r["id"] in by_id}

    assert found("函") == {"quadratic", "linear"}  # one character
    assert found("友") == {"friends"}
    assert found("函数") == {"quadratic", "linear"}  # two
    assert found("二次") == {"quadratic"}  # not 一次
    assert found("二次函数") == {"quadratic"}  # four
    assert found("次函数复") == {"linear"}
    assert found("三次函数") == set()
    assert found("图像 性质") == {"quadratic"}  # every word of the query
    assert found("图像 复习") == set()
    assert found("unit 3") == {"friends"}  # full-width folded, case-insensitive
    assert found("FRIENDS 朋友") == {"friends"}
    assert found("英语") == set(library)  # the title carries the subject
    assert found("四年级 函数") == {"quadratic"}  # title and topic together
    # the same visibility as every list: a pupil never finds another class's lesson
    assert found("函数", bearer(client, "student-cy-4-1")) == {"quadratic"}

    # the index follows edits and deletions
    with db.sessions() as session:
        linear = session.get_one(Recording, library["linear"])
        linear.topic = "三角形的内角和"
        session.commit()
    assert found("一次") == set()
    assert found("内角") == {"linear"}
    assert found("函数") == {"quadratic"}
    with db.sessions() as session:
        session.delete(session.get_one(Recording, library["linear"]))
        session.commit()
        left = session.scalar(
            select(func.count())
            .select_from(RecordingSearchTerm)
            .where(RecordingSearchTerm.recording_id == library["linear"])
        )
    assert left == 0
    assert found("内角") == set()


def test_the_migration_indexes_recordings_made_before_it(tmp_path) -> None:
    from sqlalchemy import text

    from common.db import make_engine
    from common.migrate import upgrade_engine

    engine = make_engine(f"sqlite:///{tmp_path / 'old.db'}")
    upgrade_engine(engine, "0005")
    now = "2026-11-01 08:00:00"
    with engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO alliances (id, name, kind, county, created_at, updated_at) "
                "VALUES (1, '联盟', 'group', '遂昌', :now, :now)"
            ),
            {"now": now},
        )
        connection.execute(
            text(
                "INSERT INTO schools (id, alliance_id, name, stage, address, created_at, "
                "updated_at) VALUES (1, 1, '实验小学', 'primary', '', :now, :now)"
            ),
            {"now": now},
        )
        connection.execute(
            text(
                "INSERT INTO recordings (id, alliance_id, school_id, date, topic, title, status, "
                "status_message, raw_path, outputs, created_at, updated_at) VALUES (7, 1, 1, "
                "'2026-11-01', '分数的意义', '五年级数学', 'ready', '', '', '{}', :now, :now)"
            ),
            {"now": now},
        )
    upgrade_engine(engine)
    with engine.connect() as connection:
        terms = set(
            connection.scalars(
                text("SELECT term FROM recording_search_terms WHERE recording_id = 7")
            )
        )
        keep = connection.scalar(text("SELECT keep FROM recordings WHERE id = 7"))
    engine.dispose()
    assert terms == index_terms("五年级数学", "分数的意义")
    assert {"分数", "意义", "数学"} <= terms
    assert not keep
