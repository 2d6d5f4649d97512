"""单元合集 on SQLite and PostgreSQL: a teacher gathers a unit's recordings in order; every
reader sees only the items they may watch, and no collection that is empty for them."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import func, select

from common.alliance.models import Alliance, ClassroomTerminal, Subject, SyncGroup
from recordings.models import RecordingCollection, RecordingCollectionItem
from tests.conftest import DEMO_PASSWORD, DemoDatabase, bearer
from tests.fixtures.recordings import WCK_EN_3, WCK_EN_4, make_recording

URL = "/api/collections"


def _recording(db: DemoDatabase, sync_group_id: int, topic: str) -> int:
    return make_recording(db, sync_group_id, topic=topic)


def _english(db: DemoDatabase) -> int:
    with db.sessions() as session:
        return session.scalars(
            select(Subject.id)
            .join(Alliance, Subject.alliance_id == Alliance.id)
            .where(Subject.name == "英语", Alliance.name == "王村口老区教育联盟")
        ).one()


def _unit(client: TestClient, headers: dict[str, str], **changes: Any) -> Any:
    body = {"title": "Unit 3 同课异构", "grade_level": 4, "unit_name": "Unit 3 My friends"}
    response = client.post(URL, json={**body, **changes}, headers=headers)
    assert response.status_code == 201, response.text
    return response.json()


def _items(client: TestClient, headers: dict[str, str], collection: int, ids: list[int]) -> Any:
    return client.put(f"{URL}/{collection}/items", json={"recording_ids": ids}, headers=headers)


def test_a_teacher_gathers_a_unit_and_each_reader_sees_their_share(
    client: TestClient, db: DemoDatabase
) -> None:
    shown = _recording(db, WCK_EN_4, "Unit 3 第一课时")
    other = _recording(db, WCK_EN_3, "Unit 3 第二课时")
    wang = bearer(client, "teacher-wang")
    made = _unit(client, wang, subject_id=_english(db))
    assert made["items"] == [] and made["can_edit"] and made["owner_name"] == "王丽娟"
    unit = made["id"]

    changed = _items(client, wang, unit, [other, shown])
    assert changed.status_code == 200, changed.text
    assert [i["recording_id"] for i in changed.json()["items"]] == [other, shown]

    # reorder, remove, add back: one PUT each
    def order(ids: list[int]) -> list[int]:
        return [i["recording_id"] for i in _items(client, wang, unit, ids).json()["items"]]

    assert order([shown, other]) == [shown, other]
    assert order([shown]) == [shown]
    _items(client, wang, unit, [shown, other])

    # only the other class's lesson: empty for the pupil
    hidden = _unit(client, wang, title="只有龙洋的课")["id"]
    _items(client, wang, hidden, [other])

    # the pupil sees the unit with their class's lesson only, and not the other collection
    pupil = bearer(client, "student-cy-4-1")
    listed = client.get(URL, headers=pupil).json()
    assert [c["id"] for c in listed] == [unit]
    assert [i["recording_id"] for i in listed[0]["items"]] == [shown]
    assert listed[0]["can_edit"] is False
    assert client.get(f"{URL}/{hidden}", headers=pupil).status_code == 404

    # other staff of the alliance read it whole, and cannot change it
    for username in ("teacher-lan", "admin-wck", "principal-cy", "bureau"):
        headers = bearer(client, username)
        seen = {c["id"]: c for c in client.get(URL, headers=headers).json()}
        assert [i["recording_id"] for i in seen[unit]["items"]] == [shown, other], username
        assert _items(client, headers, unit, []).status_code in (403, 404), username
        assert client.delete(f"{URL}/{unit}", headers=headers).status_code in (403, 404)

    # the library page shows the same share
    client.post("/login", data={"username": "student-cy-4-1", "password": DEMO_PASSWORD})
    page = client.get("/replays").text
    assert page.count('data-testid="collection"') == 1 and "Unit 3 同课异构" in page
    assert "只有龙洋的课" not in page
    assert f'href="/replays/{shown}"' in page

    assert client.delete(f"{URL}/{hidden}", headers=wang).status_code == 204
    with db.sessions() as session:
        assert session.get(RecordingCollection, hidden) is None


def test_who_may_make_and_change_collections(client: TestClient, db: DemoDatabase) -> None:
    body = {"title": "合集", "unit_name": "第一单元"}
    for username in ("student-cy-4-1", "admin-wck", "principal-cy", "bureau"):
        refused = client.post(URL, json=body, headers=bearer(client, username))
        assert refused.status_code == 403, username
    admin = bearer(client, "admin-wck")
    with db.sessions() as session:
        terminal_id = next(
            t.id
            for t in session.scalars(select(ClassroomTerminal).order_by(ClassroomTerminal.id))
            if t.room.campus.school.alliance.name == "王村口老区教育联盟"
        )
    code = client.post(f"/api/terminals/{terminal_id}/pairing-code", headers=admin).json()["code"]
    token = client.post("/api/devices/pair", json={"code": code}).json()["access_token"]
    screen = {"Authorization": f"Bearer {token}"}
    assert client.get(URL, headers=screen).status_code == 403
    assert client.post(URL, json=body, headers=screen).status_code == 403
    assert client.get(URL).status_code == 401

    wang, lan = bearer(client, "teacher-wang"), bearer(client, "teacher-lan")
    unit = _unit(client, wang)["id"]
    renamed = client.put(f"{URL}/{unit}", json={**body, "grade_level": 5}, headers=wang)
    assert renamed.status_code == 200 and renamed.json()["title"] == "合集"
    assert client.put(f"{URL}/{unit}", json=body, headers=lan).status_code == 403
    assert client.get(f"{URL}/999999", headers=wang).status_code == 404


def test_bad_input_is_refused_and_nothing_half_saved(client: TestClient, db: DemoDatabase) -> None:
    shown = _recording(db, WCK_EN_4, "Unit 3 第一课时")
    wang = bearer(client, "teacher-wang")
    unit = _unit(client, wang)["id"]
    _items(client, wang, unit, [shown])

    def count_items() -> int:
        with db.sessions() as session:
            return int(
                session.scalar(select(func.count()).select_from(RecordingCollectionItem)) or 0
            )

    duplicate = _items(client, wang, unit, [shown, shown])
    assert duplicate.status_code == 422 and duplicate.json()["error"]["field"] == "recording_ids"
    unknown = _items(client, wang, unit, [shown, 999999])
    assert unknown.status_code == 422 and "999999" in unknown.json()["error"]["message"]
    assert count_items() == 1
    blank = client.post(URL, json={"title": "  ", "unit_name": "x"}, headers=wang)
    assert blank.status_code == 422 and blank.json()["error"]["message"] == "合集名称不能为空"
    bad_subject = client.post(
        URL, json={"title": "合集", "unit_name": "x", "subject_id": 999999}, headers=wang
    )
    assert bad_subject.status_code == 422 and "学科" in bad_subject.json()["error"]["message"]
    with db.sessions() as session:
        assert session.scalar(select(func.count()).select_from(RecordingCollection)) == 1


def test_the_form_saves_a_collection_with_its_recordings_at_once_or_not_at_all(
    client: TestClient, db: DemoDatabase
) -> None:
    first = _recording(db, WCK_EN_4, "Unit 3 第一课时")
    second = _recording(db, WCK_EN_4, "Unit 3 第二课时")
    wang = bearer(client, "teacher-wang")
    made = _unit(client, wang, recording_ids=[second, first])
    assert [i["recording_id"] for i in made["items"]] == [second, first]

    def collections() -> list[tuple[str, list[int]]]:
        listed = client.get(URL, headers=wang).json()
        return [(c["title"], [i["recording_id"] for i in c["items"]]) for c in listed]

    # another alliance's lesson: refused, and neither the new collection nor the edit is kept
    with db.sessions() as session:
        maths = session.scalars(select(SyncGroup.id).where(SyncGroup.code == "dj-ma-4")).one()
    foreign = _recording(db, maths, "二次函数的图像")
    body = {"title": "新合集", "unit_name": "Unit 3", "recording_ids": [first, foreign]}
    refused = client.post(URL, json=body, headers=wang)
    assert refused.status_code == 422, refused.text
    assert refused.json()["error"]["message"] == f"录像 {foreign} 不存在或您无权查看"
    edit = client.put(f"{URL}/{made['id']}", json={**body, "title": "改名"}, headers=wang)
    assert edit.status_code == 422
    assert collections() == [("Unit 3 同课异构", [second, first])]

    # an edit with the recordings: renamed, reordered and one removed in one request
    body = {"title": "Unit 3 对话", "unit_name": "Unit 3", "recording_ids": [first]}
    saved = client.put(f"{URL}/{made['id']}", json=body, headers=wang)
    assert saved.status_code == 200, saved.text
    assert collections() == [("Unit 3 对话", [first])]
    # without recording_ids an edit leaves the recordings as they are
    body = {"title": "Unit 3 对话课", "unit_name": "Unit 3"}
    assert client.put(f"{URL}/{made['id']}", json=body, headers=wang).status_code == 200
    assert collections() == [("Unit 3 对话课", [first])]
    # the pupil may not make one, with or without recordings
    pupil = bearer(client, "student-cy-4-1")
    assert client.post(URL, json=body, headers=pupil).status_code == 403
