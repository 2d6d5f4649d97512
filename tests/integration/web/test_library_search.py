"""Searching the library through 听评课 comments, on SQLite and PostgreSQL: a hit is the
comment's moment with an excerpt; only those who may read a lesson's 评课 find its comments."""

from __future__ import annotations

import re
from pathlib import Path

from fastapi.testclient import TestClient
from sqlalchemy import select, text

from common.alliance.models import ClassroomTerminal
from common.db import make_engine
from common.migrate import upgrade_engine
from recordings.search import index_terms
from research.review_models import ReviewCommentSearchTerm
from tests.conftest import DEMO_PASSWORD, DemoDatabase, bearer
from tests.fixtures.recordings import WCK_EN_3, WCK_EN_4, make_recording
from web.library_search import excerpt, query_words


def _recording(db: DemoDatabase, sync_group_id: int, topic: str) -> int:
    return make_recording(db, sync_group_id, topic=topic, duration_s=2400.0)


def _comment(
    client: TestClient, headers: dict[str, str], recording: int, body: str, at: float
) -> int:
    response = client.post(
        f"/api/recordings/{recording}/comments",
        json={"body": body, "at_seconds": at},
        headers=headers,
    )
    assert response.status_code == 201, response.text
    return int(response.json()["id"])


def _terminal(client: TestClient, db: DemoDatabase, admin: dict[str, str]) -> dict[str, str]:
    """A classroom screen of the alliance, paired the way a school pairs it."""
    with db.sessions() as session:
        terminal_id = next(
            t.id
            for t in session.scalars(select(ClassroomTerminal).order_by(ClassroomTerminal.id))
            if t.room.campus.school.alliance.name == "王村口老区教育联盟"
        )
    code = client.post(f"/api/terminals/{terminal_id}/pairing-code", headers=admin).json()["code"]
    token = client.post("/api/devices/pair", json={"code": code}).json()["access_token"]
    return {"Authorization": f"Bearer {token}"}


def test_words_and_excerpts() -> None:
    assert query_words(" 板书  Ｕｎｉｔ 板书 ") == ["板书", "unit"]
    body = "开头用歌曲导入，孩子们很投入；" * 3 + "板书设计清楚，重点突出。" + "后面" * 30
    cut = excerpt(body, "板书")
    assert cut.startswith("…") and cut.endswith("…") and "板书设计清楚" in cut
    assert len(cut) <= 2 * 24 + len("板书") + 2
    assert excerpt("板书好", "板书") == "板书好"


def test_comments_are_found_at_their_moment_by_those_who_may_read_them(
    client: TestClient, db: DemoDatabase
) -> None:
    shown = _recording(db, WCK_EN_4, "Unit 3 My friends")
    other = _recording(db, WCK_EN_3, "Unit 2 Colours")
    wang = bearer(client, "teacher-wang")
    board = _comment(client, wang, shown, "远端学生跟读清楚，板书设计合理，重点突出。", 95.0)
    _comment(client, wang, shown, "导入用歌曲，蔡源的孩子很投入", 5.0)
    late = _comment(client, wang, other, "这节课的板书可以更简洁", 1830.5)

    def hits(q: str, headers: dict[str, str] = wang) -> list[dict[str, object]]:
        response = client.get("/api/recordings/comment-hits", params={"q": q}, headers=headers)
        assert response.status_code == 200, response.text
        return list(response.json())

    found = hits("板书")
    assert {h["comment_id"] for h in found} == {board, late}
    first = next(h for h in found if h["comment_id"] == board)
    assert first["recording_id"] == shown and first["at_seconds"] == 95.0
    assert first["at"] == "01:35" and first["author_name"] == "王丽娟"
    assert "板书设计合理" in str(first["excerpt"])
    assert [h["comment_id"] for h in hits("板书 合理")] == [board]  # every word
    assert hits("板书 颜色") == []
    assert [h["at"] for h in hits("简洁")] == ["30:30"]
    # titles and topics are not comments: the recordings' own search finds those
    assert hits("Colours") == []
    # a pattern character is a character
    assert hits("%") == []

    # admins and the bureau read 评课 too
    for username in ("admin-wck", "principal-cy", "bureau"):
        assert board in {h["comment_id"] for h in hits("板书", bearer(client, username))}

    # pupils and classroom screens never read comments, so they cannot search them
    pupil = bearer(client, "student-cy-4-1")
    refused = client.get("/api/recordings/comment-hits", params={"q": "板书"}, headers=pupil)
    assert refused.status_code == 403
    assert "评语" in refused.json()["error"]["message"]
    screen = _terminal(client, db, bearer(client, "admin-wck"))
    assert (
        client.get("/api/recordings/comment-hits", params={"q": "板书"}, headers=screen).status_code
        == 403
    )
    assert client.get("/api/recordings/comment-hits", params={"q": "板书"}).status_code == 401
    assert (
        client.get("/api/recordings/comment-hits", params={"q": ""}, headers=wang).status_code
        == 422
    )


def test_the_library_page_shows_comment_hits_and_links_to_the_moment(
    client: TestClient, db: DemoDatabase
) -> None:
    shown = _recording(db, WCK_EN_4, "Unit 3 My friends")
    wang = bearer(client, "teacher-wang")
    _comment(client, wang, shown, "远端学生跟读清楚，板书设计合理。", 95.0)

    client.post("/login", data={"username": "teacher-wang", "password": DEMO_PASSWORD})
    teacher = client.get("/replays", params={"q": "板书设计"})
    assert teacher.status_code == 200
    assert 'data-testid="comment-hit"' in teacher.text
    assert f'href="/replays/{shown}?t=95.0"' in teacher.text
    assert "01:35" in teacher.text and "板书设计合理" in teacher.text

    player = client.get(f"/replays/{shown}", params={"t": 95})
    assert player.status_code == 200
    assert re.search(r'data-start="95(\.0)?"', player.text)
    assert client.get(f"/replays/{shown}", params={"t": -1}).status_code == 422

    # the pupil may watch this lesson but finds nothing through its comments
    client.cookies.clear()
    client.post("/login", data={"username": "student-cy-4-1", "password": DEMO_PASSWORD})
    pupil = client.get("/replays", params={"q": "板书设计"})
    assert pupil.status_code == 200 and "退出" in pupil.text
    assert "comment-hit" not in pupil.text and "板书设计合理" not in pupil.text


def test_comment_search_runs_on_the_term_index_and_follows_edits_and_deletions(
    client: TestClient, db: DemoDatabase
) -> None:
    shown = _recording(db, WCK_EN_4, "二次函数的图像")
    other = _recording(db, WCK_EN_3, "一次函数复习")
    wang = bearer(client, "teacher-wang")
    admin = bearer(client, "admin-wck")
    board = _comment(client, wang, shown, "板书设计清楚，二次函数的图像画得准。", 60.0)
    width = _comment(client, wang, shown, "ＰＰＴ第３页的例题很好", 120.0)
    review = _comment(client, wang, other, "一次函数的复习节奏偏快", 30.0)
    reply = client.post(
        f"/api/review-comments/{board}/replies", json={"body": "同意，板书很清楚"}, headers=wang
    )
    assert reply.status_code == 201, reply.text
    answer = int(reply.json()["id"])

    def hits(q: str, headers: dict[str, str] = admin) -> set[int]:
        response = client.get("/api/recordings/comment-hits", params={"q": q}, headers=headers)
        assert response.status_code == 200, response.text
        return {int(h["comment_id"]) for h in response.json()}

    with db.sessions() as session:
        indexed = set(
            session.scalars(
                select(ReviewCommentSearchTerm.term).where(
                    ReviewCommentSearchTerm.comment_id == width
                )
            )
        )
    assert indexed == index_terms("ＰＰＴ第３页的例题很好")
    assert {"ppt", "3", "例题", "例"} <= indexed

    assert hits("函") == {board, review}  # one character
    assert hits("函数") == {board, review}  # two
    assert hits("二次函") == {board}  # three: not 一次函数
    assert hits("二次函数") == {board}  # four
    assert hits("三次函数") == set()
    assert hits("板书") == {board, answer}  # replies are comments too
    assert hits("清楚 图像") == {board}  # every word
    assert hits("ppt 例题") == {width}  # full-width text, half-width query
    assert hits("ＰＰＴ") == {width}  # and the other way round
    assert hits("３页") == {width}  # a digit and a character: two terms
    assert hits("４页") == set()
    # a teacher only finds comments of lessons they may watch: not another alliance's
    assert hits("函数", wang) == {board, review}
    assert hits("函数", bearer(client, "teacher-ye")) == set()

    # an edit re-indexes the comment: the old words are gone, the new ones found
    edited = client.patch(
        f"/api/review-comments/{review}", json={"body": "练习的梯度设计得好"}, headers=wang
    )
    assert edited.status_code == 200, edited.text
    assert hits("复习") == set()
    assert hits("梯度") == {review}
    # deleting a thread's first comment takes its replies and their terms
    assert client.delete(f"/api/review-comments/{board}", headers=wang).status_code == 204
    assert hits("板书") == set()
    # deleting the recording takes its comments' terms
    assert client.delete(f"/api/recordings/{shown}", headers=admin).status_code == 204
    assert hits("例题") == set()
    with db.sessions() as session:
        left = set(
            session.scalars(
                select(ReviewCommentSearchTerm.comment_id).where(
                    ReviewCommentSearchTerm.comment_id.in_([board, answer, width])
                )
            )
        )
    assert left == set()


def test_the_migration_indexes_comments_written_before_it(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'old.db'}")
    upgrade_engine(engine, "0009")
    now = "2026-11-01 08:00:00"
    rows = [
        "INSERT INTO alliances (id, name, kind, county, created_at, updated_at) "
        "VALUES (1, '联盟', 'group', '遂昌', :now, :now)",
        "INSERT INTO schools (id, alliance_id, name, stage, address, created_at, updated_at) "
        "VALUES (1, 1, '实验小学', 'primary', '', :now, :now)",
        "INSERT INTO recordings (id, alliance_id, school_id, date, topic, title, status, "
        "status_message, raw_path, outputs, keep, created_at, updated_at) VALUES (7, 1, 1, "
        "'2026-11-01', '分数的意义', '五年级数学', 'ready', '', '', '{}', false, :now, :now)",
        "INSERT INTO review_comments (id, recording_id, at_seconds, body, author_name, "
        "created_at, updated_at) VALUES (3, 7, 12.5, '板书设计清楚，Ｕｎｉｔ ２', '王丽娟', "
        ":now, :now)",
    ]
    with engine.begin() as connection:
        for row in rows:
            connection.execute(text(row), {"now": now})
    upgrade_engine(engine)
    with engine.connect() as connection:
        terms = set(
            connection.scalars(
                text("SELECT term FROM review_comment_search_terms WHERE comment_id = 3")
            )
        )
    engine.dispose()
    assert terms == index_terms("板书设计清楚，Ｕｎｉｔ ２")
    assert {"板书", "设计", "unit", "2"} <= terms
