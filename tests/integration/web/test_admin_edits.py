"""Editing schools, campuses, rooms and 教学任务 through the admin API: the refusals the UI shows.

Each refusal must leave the data exactly as it was, and explain itself in Chinese.
"""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from common.alliance.models import SyncGroup, TimetableEntry
from tests.conftest import DemoDatabase, bearer


def _get(client: TestClient, path: str, headers: dict[str, str]) -> Any:
    response = client.get(path, headers=headers)
    assert response.status_code == 200, response.text
    return response.json()


def _error(response: Any, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    error: dict[str, Any] = response.json()["error"]
    return error


def _synchronized(db: DemoDatabase, admin_alliance_lessons: set[int]) -> tuple[int, int, str]:
    """(lead lesson id, a room its timetable uses, group code) of a sync group of the alliance."""
    with db.sessions() as session:
        for group in session.scalars(select(SyncGroup).order_by(SyncGroup.id)):
            if group.lead_lesson_id not in admin_alliance_lessons:
                continue
            room_id = session.scalar(
                select(TimetableEntry.room_id).where(
                    TimetableEntry.lesson_id == group.lead_lesson_id,
                    TimetableEntry.room_id.is_not(None),
                )
            )
            if room_id is not None:
                return group.lead_lesson_id, room_id, group.code
    pytest.fail("the demo has no timetabled sync group")


def test_a_room_or_lesson_of_a_sync_group_is_not_deleted(
    client: TestClient, db: DemoDatabase
) -> None:
    admin = bearer(client, "admin-wck")
    lessons = {row["id"] for row in _get(client, "/api/lessons?limit=1000", admin)}
    lesson_id, room_id, code = _synchronized(db, lessons)

    error = _error(client.delete(f"/api/lessons/{lesson_id}", headers=admin), 409)
    assert "同步课堂" in error["message"] and code in error["message"]
    assert _get(client, f"/api/lessons/{lesson_id}", admin)["id"] == lesson_id

    error = _error(client.delete(f"/api/rooms/{room_id}", headers=admin), 409)
    assert "同步课堂" in error["message"] and code in error["message"]
    assert _get(client, f"/api/rooms/{room_id}", admin)["id"] == room_id

    # Its weekly count must stay equal to its partners'.
    error = _error(
        client.patch(f"/api/lessons/{lesson_id}", json={"per_week": 9}, headers=admin), 422
    )
    assert error["field"] == "per_week" and "同步课堂" in error["message"]
    assert _get(client, f"/api/lessons/{lesson_id}", admin)["per_week"] != 9


def test_a_free_room_and_lesson_are_edited_and_deleted(client: TestClient) -> None:
    admin = bearer(client, "admin-wck")
    campus = _get(client, "/api/campuses", admin)[0]
    room = client.post(
        "/api/rooms",
        json={"campus_id": campus["id"], "code": "e2e-r1", "name": "新录播教室", "capacity": 30},
        headers=admin,
    ).json()
    changed = client.patch(
        f"/api/rooms/{room['id']}",
        json={"name": "一楼录播教室", "capacity": 48, "features": ["sync"]},
        headers=admin,
    ).json()
    assert (changed["name"], changed["capacity"], changed["features"]) == (
        "一楼录播教室",
        48,
        ["sync"],
    )
    assert client.delete(f"/api/rooms/{room['id']}", headers=admin).status_code == 204
    assert client.get(f"/api/rooms/{room['id']}", headers=admin).status_code == 404

    school_class = _get(client, f"/api/classes?campus_id={campus['id']}", admin)[0]
    subject = _get(client, "/api/subjects", admin)[0]
    teacher = _get(client, f"/api/teachers?school_id={campus['school_id']}", admin)[0]
    term = next(t for t in _get(client, "/api/terms", admin) if t["is_current"])
    body = {
        "term_id": term["id"],
        "class_id": school_class["id"],
        "subject_id": subject["id"],
        "teacher_id": teacher["id"],
        "per_week": 2,
    }
    created = client.post("/api/lessons", json=body, headers=admin)
    assert created.status_code == 201, created.text
    lesson = created.json()
    changed = client.patch(f"/api/lessons/{lesson['id']}", json={"per_week": 3}, headers=admin)
    assert changed.json()["per_week"] == 3
    assert client.delete(f"/api/lessons/{lesson['id']}", headers=admin).status_code == 204


def test_duplicate_names_are_refused_by_name(client: TestClient) -> None:
    admin = bearer(client, "admin-wck")
    schools = _get(client, "/api/schools", admin)
    error = _error(
        client.patch(
            f"/api/schools/{schools[1]['id']}", json={"name": schools[0]["name"]}, headers=admin
        ),
        409,
    )
    assert error["field"] == "name" and schools[0]["name"] in error["message"]

    rooms = _get(client, "/api/rooms", admin)
    first = rooms[0]
    sibling = next(r for r in rooms[1:] if r["campus_id"] == first["campus_id"])
    error = _error(
        client.patch(f"/api/rooms/{sibling['id']}", json={"name": first["name"]}, headers=admin),
        409,
    )
    assert error["field"] == "name" and "本校区已有" in error["message"]
    assert _get(client, f"/api/rooms/{sibling['id']}", admin)["name"] == sibling["name"]

    campus = _get(client, "/api/campuses", admin)[0]
    error = _error(
        client.post(
            "/api/campuses",
            json={"school_id": campus["school_id"], "code": "new-cp", "name": campus["name"]},
            headers=admin,
        ),
        409,
    )
    assert error["field"] == "name" and "本校已有" in error["message"]
    assert all(c["code"] != "new-cp" for c in _get(client, "/api/campuses", admin))


def test_a_campus_or_school_still_in_use_is_not_deleted(client: TestClient) -> None:
    admin = bearer(client, "admin-wck")
    campus = _get(client, "/api/campuses", admin)[0]
    error = _error(client.delete(f"/api/campuses/{campus['id']}", headers=admin), 409)
    assert "班级" in error["message"] and "教室" in error["message"]
    school_id = campus["school_id"]
    error = _error(client.delete(f"/api/schools/{school_id}", headers=admin), 409)
    assert "校区" in error["message"]
    assert _get(client, f"/api/campuses/{campus['id']}", admin)["name"] == campus["name"]


def test_a_teacher_of_another_alliance_cannot_take_a_lesson(client: TestClient) -> None:
    admin = bearer(client, "admin-wck")
    lesson = _get(client, "/api/lessons", admin)[0]
    outsider = _get(client, "/api/teachers", bearer(client, "admin-sy"))[0]
    error = _error(
        client.patch(
            f"/api/lessons/{lesson['id']}", json={"teacher_id": outsider["id"]}, headers=admin
        ),
        422,
    )
    assert error["field"] == "teacher_id" and "不属于本教联体" in error["message"]
    assert _get(client, f"/api/lessons/{lesson['id']}", admin)["teacher_id"] == lesson["teacher_id"]


@pytest.mark.parametrize(
    "username", ["teacher-wang", "principal-cy", "student-cy-4-1", "bureau", "admin-sy"]
)
def test_other_roles_cannot_change_the_rural_alliances_structure(
    client: TestClient, username: str
) -> None:
    """Only 王村口's own admins change its rooms, campuses and lessons (and only its schools)."""
    admin = bearer(client, "admin-wck")
    wck = next(s for s in _get(client, "/api/schools", admin) if "王村口" in s["name"])
    campus = _get(client, f"/api/campuses?school_id={wck['id']}", admin)[0]
    room = _get(client, f"/api/rooms?campus_id={campus['id']}", admin)[0]
    school_class = _get(client, f"/api/classes?campus_id={campus['id']}", admin)[0]
    lesson = _get(client, f"/api/lessons?class_id={school_class['id']}", admin)[0]
    new_lesson = {k: v for k, v in lesson.items() if k != "id"} | {"per_week": 1}
    other = bearer(client, username)
    attempts = [
        ("PATCH", f"/api/rooms/{room['id']}", {"name": "改名"}),
        ("DELETE", f"/api/rooms/{room['id']}", None),
        ("POST", "/api/rooms", {"campus_id": campus["id"], "code": "x-1", "name": "新教室"}),
        ("PATCH", f"/api/campuses/{campus['id']}", {"name": "改名"}),
        ("DELETE", f"/api/campuses/{campus['id']}", None),
        ("PATCH", f"/api/lessons/{lesson['id']}", {"per_week": 1}),
        ("DELETE", f"/api/lessons/{lesson['id']}", None),
        ("POST", "/api/lessons", new_lesson),
    ]
    if username != "bureau":  # the bureau founds and renames schools (its one structural right)
        attempts.append(("PATCH", f"/api/schools/{wck['id']}", {"name": "改名"}))
    for method, path, body in attempts:
        response = client.request(method, path, json=body, headers=other)
        assert response.status_code == 403, (username, method, path, response.text)
    assert _get(client, f"/api/rooms/{room['id']}", admin)["name"] == room["name"]
    assert _get(client, f"/api/lessons/{lesson['id']}", admin) == lesson
