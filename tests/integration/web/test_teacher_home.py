"""A teacher's home: 我的评课 (own comments, linked to their moment) and 教研 due within a day."""

from __future__ import annotations

from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from common.accounts.models import Account
from research.models import ResearchGroup, ResearchSession
from research.service import starts_at
from tests.conftest import DemoDatabase, bearer
from tests.fixtures.recordings import make_recording
from tests.integration.web.test_current_lesson import FixedClock
from tests.integration.web.test_research_page import login


def a_member_session(db: DemoDatabase) -> tuple[str, int, str]:
    """(username of a teacher with a login, a planned session of their group, its topic)."""
    with db.sessions() as session:
        accounts = {
            a.teacher_id: a.username for a in session.scalars(select(Account)) if a.teacher_id
        }
        for row in session.scalars(
            select(ResearchSession)
            .where(ResearchSession.status == "planned", ResearchSession.topic != "")
            .order_by(ResearchSession.day)
        ):
            group = session.get_one(ResearchGroup, row.group_id)
            for teacher in group.members:
                if teacher.id in accounts and teacher.id != row.host_id:
                    return accounts[teacher.id], row.id, row.topic
    pytest.skip("the demo has no planned session of a teacher with a login")


def test_a_teacher_is_reminded_of_research_in_the_next_24_hours(
    sqlite_client: TestClient, sqlite_db: DemoDatabase
) -> None:
    username, session_id, topic = a_member_session(sqlite_db)
    with sqlite_db.sessions() as session:
        row = session.get_one(ResearchSession, session_id)
        start = starts_at(row)
        host = row.host.name if row.host else "未定"
    login(sqlite_client, username)
    meeting = f"/research/sessions/{session_id}/meeting"

    sqlite_client.app.state.lesson_clock = FixedClock(start - timedelta(hours=25))  # type: ignore[attr-defined]
    assert topic not in sqlite_client.get("/").text

    sqlite_client.app.state.lesson_clock = FixedClock(start - timedelta(hours=2))  # type: ignore[attr-defined]
    page = sqlite_client.get("/").text
    assert "即将开始的教研" in page and topic in page and f"主持：{host}" in page
    assert start.strftime("%H:%M") in page
    assert meeting not in page  # not open yet

    sqlite_client.app.state.lesson_clock = FixedClock(start - timedelta(minutes=1))  # type: ignore[attr-defined]
    page = sqlite_client.get("/").text
    assert f'href="{meeting}">进入线上教研' in page

    with sqlite_db.sessions() as session:
        session.get_one(ResearchSession, session_id).status = "cancelled"
        session.commit()
    assert topic not in sqlite_client.get("/").text


def test_my_comments_link_to_their_moment_in_the_replay(
    sqlite_client: TestClient, sqlite_db: DemoDatabase
) -> None:
    recording = make_recording(sqlite_db)
    wang = bearer(sqlite_client, "teacher-wang")
    response = sqlite_client.post(
        f"/api/recordings/{recording}/comments",
        json={"body": "远端学生跟读声音清楚", "at_seconds": 95},
        headers=wang,
    )
    assert response.status_code == 201, response.text

    login(sqlite_client, "teacher-wang")
    page = sqlite_client.get("/").text
    assert "我的评课" in page
    assert f'href="/replays/{recording}?t=95">' in page and "01:35" in page
    assert "远端学生跟读声音清楚" in page
    replay = sqlite_client.get(f"/replays/{recording}?t=95").text
    assert 'data-start="95.0"' in replay

    login(sqlite_client, "teacher-lan")
    page = sqlite_client.get("/").text
    assert "我的评课" in page and "远端学生跟读声音清楚" not in page
    assert "还没有写过评语" in page

    login(sqlite_client, "principal-cy")
    assert "我的评课" not in sqlite_client.get("/").text
