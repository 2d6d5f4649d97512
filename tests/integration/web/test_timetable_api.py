"""Timetable exports and phone calendar feeds through the API."""

from __future__ import annotations

import io

from fastapi.testclient import TestClient
from icalendar import Calendar
from openpyxl import load_workbook

from tests.conftest import bearer


def _me(client: TestClient, headers: dict[str, str]) -> dict[str, object]:
    account: dict[str, object] = client.get("/api/auth/me", headers=headers).json()["account"]
    return account


def _class_code(client: TestClient, headers: dict[str, str], class_id: object) -> str:
    code: str = client.get(f"/api/classes/{class_id}", headers=headers).json()["code"]
    return code


def test_a_student_exports_their_class_and_nobody_elses(client: TestClient) -> None:
    student = bearer(client, "student-cy-4-1")
    own = _class_code(client, student, _me(client, student)["class_id"])
    response = client.get(
        f"/api/timetable/export?kind=class&key={own}&format=xlsx", headers=student
    )
    assert response.status_code == 200, response.text
    sheet = load_workbook(io.BytesIO(response.content)).active
    assert sheet is not None and "课表" in str(sheet["A1"].value)
    other = client.get("/api/timetable/export?kind=class&key=ly-4-1&format=xlsx", headers=student)
    assert other.status_code == 403
    missing = client.get("/api/timetable/export?kind=class&key=nope-9-9", headers=student)
    assert missing.status_code == 404


def test_a_campus_prints_as_html(client: TestClient) -> None:
    admin = bearer(client, "admin-wck")
    page = client.get("/api/timetable/export?kind=campus&key=wck&format=html", headers=admin)
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "王村口" in page.text and "同步课堂" in page.text
    assert (
        client.get(
            "/api/timetable/export?kind=campus&key=wck&format=pdf", headers=admin
        ).status_code
        == 422
    )


def test_a_teacher_subscribes_on_a_phone(client: TestClient) -> None:
    teacher = bearer(client, "teacher-wang")
    created = client.post("/api/calendar/feed", headers=teacher)
    assert created.status_code == 200, created.text
    url = created.json()["url"]
    assert url.endswith(".ics")
    feed = client.get(url.replace("http://testserver", ""))
    assert feed.status_code == 200 and feed.headers["content-type"].startswith("text/calendar")
    events = [c for c in Calendar.from_ical(feed.content).walk() if c.name == "VEVENT"]
    assert len(events) > 50  # a term of weekly lessons
    assert any("远端" in str(e.get("description", "")) for e in events)
    # The feed secret opens the calendar and nothing else.
    secret = url.rsplit("/", 1)[1].removesuffix(".ics")
    assert (
        client.get("/api/schools", headers={"Authorization": f"Bearer {secret}"}).status_code == 401
    )
    # Asking again replaces the link: the old one stops working.
    client.post("/api/calendar/feed", headers=teacher)
    assert client.get(url.replace("http://testserver", "")).status_code == 401


def test_admins_have_no_personal_feed(client: TestClient) -> None:
    admin = bearer(client, "admin-wck")
    assert client.post("/api/calendar/feed", headers=admin).status_code == 422


def test_sync_lessons_name_every_classroom_with_its_school(client: TestClient) -> None:
    student = bearer(client, "student-cy-4-1")
    class_id = _me(client, student)["class_id"]
    week = client.get(f"/api/timetable/week?class_id={class_id}", headers=student).json()
    synced = [e for e in week["entries"] if e["sync"]]
    assert synced
    classrooms = synced[0]["sync"]["classrooms"]
    assert classrooms[0]["role"] == "lead" and classrooms[0]["campus"] == "王村口小学"
    assert {c["campus"] for c in classrooms[1:]} >= {"蔡源小学"}
