"""The 教研 page: a teacher's groups, the sessions with their four fixed points, minutes."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from common.accounts.models import Account
from research.models import ResearchGroup, ResearchSession
from streaming.lifecycle import LOCAL_TIMEZONE
from tests.conftest import DEMO_PASSWORD, DemoDatabase, make_test_app
from tests.integration.web.test_current_lesson import FixedClock

ON = FixedClock(datetime(2026, 10, 20, 8, 0, tzinfo=LOCAL_TIMEZONE))


@pytest.fixture
def app_client(sqlite_db: DemoDatabase, tmp_path: Path) -> Iterator[TestClient]:
    with TestClient(make_test_app(sqlite_db, tmp_path)) as client:
        client.app.state.lesson_clock = ON  # type: ignore[attr-defined]
        yield client


def login(client: TestClient, username: str) -> None:
    client.cookies.clear()
    response = client.post(
        "/login", data={"username": username, "password": DEMO_PASSWORD}, follow_redirects=False
    )
    assert response.status_code == 303


def a_host(db: DemoDatabase) -> tuple[str, ResearchSession, str]:
    """(username, a session before ON that they host, their group's name)."""
    with db.sessions() as session:
        accounts = {
            a.teacher_id: a.username for a in session.scalars(select(Account)) if a.teacher_id
        }
        for row in session.scalars(select(ResearchSession).order_by(ResearchSession.day)):
            if row.host_id in accounts and row.day < ON.now().date():
                group = session.get_one(ResearchGroup, row.group_id)
                return accounts[row.host_id], row, group.name
    pytest.skip("the demo has no past session hosted by a teacher with a login")


def test_a_host_sees_the_term_and_the_minutes_form_of_a_past_session(
    app_client: TestClient, sqlite_db: DemoDatabase
) -> None:
    username, row, group_name = a_host(sqlite_db)
    login(app_client, username)
    page = app_client.get("/research")
    assert page.status_code == 200
    assert group_name in page.text
    assert "即将进行的教研" in page.text and "加入日历" in page.text
    assert f'data-session="{row.id}"' in page.text  # the host may write the minutes
    assert f'<label for="minutes-{row.id}">纪要</label>' in page.text
    saved = app_client.post(
        f"/api/research-sessions/{row.id}/minutes",
        json={"minutes_text": "研讨了单元整体设计。", "status": "held"},
        headers={
            "X-CSRF-Token": page.text.split('name="csrf-token" content="', 1)[1].split('"')[0]
        },
    )
    assert saved.status_code == 200, saved.text
    assert "研讨了单元整体设计。" in app_client.get("/research").text


def test_students_are_turned_away_and_a_teacher_without_a_group_is_told_so(
    app_client: TestClient, sqlite_db: DemoDatabase
) -> None:
    login(app_client, "student-cy-4-1")
    assert "教研活动面向教师和管理人员" in app_client.get("/research").text
    with sqlite_db.sessions() as session:
        members = {m.id for g in session.scalars(select(ResearchGroup)) for m in g.members} | {
            g.leader_id for g in session.scalars(select(ResearchGroup))
        }
        loner = next(
            a.username
            for a in session.scalars(select(Account).order_by(Account.id))
            if a.teacher_id and a.teacher_id not in members
        )
    login(app_client, loner)
    assert "您还没有加入教研组" in app_client.get("/research").text


def test_an_alliance_admin_sees_every_group_of_the_alliance(
    app_client: TestClient, sqlite_db: DemoDatabase
) -> None:
    login(app_client, "admin-wck")
    page = app_client.get("/research").text
    assert "王村口联盟英语教研组" in page and "王村口联盟音乐教研组" in page
    assert "实验集团数学教研组" not in page  # another alliance's group


def test_a_recorded_session_links_its_recording(
    app_client: TestClient, sqlite_db: DemoDatabase
) -> None:
    from recordings.meetings import new_recording_for_research_session

    username, row, _ = a_host(sqlite_db)
    with sqlite_db.sessions() as session, session.begin():
        recording = new_recording_for_research_session(session, research_session_id=row.id)
        recording_id = recording.id
    login(app_client, username)
    page = app_client.get("/research")
    assert f'<a href="/replays/{recording_id}">录像</a>' in page.text
