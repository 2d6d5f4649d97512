"""Who may join an online 教研 meeting, in which role, and when (``meeting_identity``), and the
meeting's WebSocket refusing the others with a reason."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from starlette.websockets import WebSocketDisconnect

from common.accounts.models import Account
from common.errors import AppError, ConflictError, NotFoundError, PermissionDeniedError
from research.models import ResearchGroup, ResearchSession
from research.service import starts_at
from streaming.access import meeting_identity
from tests.conftest import DEMO_PASSWORD, DemoDatabase, bearer, make_test_app
from tests.integration.web.test_current_lesson import FixedClock
from web.deps import principal_of

# The demo's English research group of 王村口: 王丽娟 (teacher-wang) leads it; 兰 (teacher-lan)
# hosts its last session of the term; the host of the session before has no login.
GROUP = "王村口联盟英语教研组"


def _sessions(db: DemoDatabase) -> tuple[ResearchSession, ResearchSession]:
    """(a session teacher-lan hosts, one that another member hosts)."""
    with db.sessions() as session:
        lan = session.scalars(select(Account).where(Account.username == "teacher-lan")).one()
        group = session.scalars(select(ResearchGroup).where(ResearchGroup.name == GROUP)).one()
        rows = session.scalars(
            select(ResearchSession)
            .where(ResearchSession.group_id == group.id, ResearchSession.status == "planned")
            .order_by(ResearchSession.day.desc())
        ).all()
        hosted = next(r for r in rows if r.host_id == lan.teacher_id)
        other = next(r for r in rows if r.host_id not in (lan.teacher_id, group.leader_id))
        session.expunge_all()
        return hosted, other


def identity_for(db: DemoDatabase, username: str, row: ResearchSession, minutes: float = 0) -> Any:
    with db.sessions() as session:
        account = session.scalars(select(Account).where(Account.username == username)).one()
        return meeting_identity(
            session,
            principal_of(account),
            row.id,
            display_name=account.display_name,
            now=starts_at(row) + timedelta(minutes=minutes),
        )


def refused(db: DemoDatabase, username: str, row: ResearchSession, minutes: float = 0) -> AppError:
    with pytest.raises(AppError) as caught:
        identity_for(db, username, row, minutes)
    return caught.value


def test_members_take_part_hosts_get_the_controls_principals_look_in(
    sqlite_db: DemoDatabase,
) -> None:
    hosted, other = _sessions(sqlite_db)
    host = identity_for(sqlite_db, "teacher-lan", hosted)
    assert (host.role, host.host, host.room_id, host.room_kind) == (
        "meeting",
        True,
        f"research-{hosted.id}",
        "meeting",
    )
    assert host.participant_id.startswith("teacher-")  # attendance maps it to the teacher
    member = identity_for(sqlite_db, "teacher-lan", other)
    assert (member.role, member.host) == ("meeting", False)
    leader = identity_for(sqlite_db, "teacher-wang", other)
    assert (leader.role, leader.host) == ("meeting", True)
    admin = identity_for(sqlite_db, "admin-wck", other)
    assert (admin.role, admin.host) == ("meeting", True)
    for username in ("principal-cy", "bureau"):
        watcher = identity_for(sqlite_db, username, other)
        assert (watcher.role, watcher.host) == ("inspector", False), username


def test_students_terminals_outsiders_and_other_alliances_are_refused(
    sqlite_db: DemoDatabase,
) -> None:
    _, other = _sessions(sqlite_db)
    for username in ("student-cy-4-1", "terminal-cy-sync", "admin-sy", "teacher-ye"):
        error = refused(sqlite_db, username, other)
        assert isinstance(error, PermissionDeniedError), username
        assert error.message
    missing = ResearchSession(id=999999, day=other.day, start_time=other.start_time)
    assert isinstance(refused(sqlite_db, "teacher-lan", missing), NotFoundError)


def test_the_meeting_opens_shortly_before_the_start_hosts_earlier_and_not_when_cancelled(
    sqlite_db: DemoDatabase,
) -> None:
    hosted, other = _sessions(sqlite_db)
    assert identity_for(sqlite_db, "teacher-lan", other, minutes=-15)
    early = refused(sqlite_db, "teacher-lan", other, minutes=-16)
    assert isinstance(early, ConflictError) and "开始前 15 分钟起可以进入" in early.message
    assert identity_for(sqlite_db, "teacher-lan", hosted, minutes=-45).host  # the host sets up
    assert "开始前 60 分钟" in refused(sqlite_db, "teacher-lan", hosted, minutes=-61).message
    late = other.minutes + 31
    assert "结束" in refused(sqlite_db, "teacher-lan", other, minutes=late).message
    with sqlite_db.sessions() as session, session.begin():
        session.get_one(ResearchSession, other.id).status = "cancelled"
    assert refused(sqlite_db, "teacher-lan", other).message == "本次教研已取消"


# -- the WebSocket ----------------------------------------------------------------------------


@pytest.fixture
def meeting_client(sqlite_db: DemoDatabase, tmp_path: Path) -> Iterator[TestClient]:
    hosted, _ = _sessions(sqlite_db)
    with TestClient(make_test_app(sqlite_db, tmp_path)) as client:
        client.app.state.lesson_clock = FixedClock(starts_at(hosted))  # type: ignore[attr-defined]
        yield client


def _refusal(client: TestClient, url: str, **kwargs: Any) -> tuple[dict[str, Any], int]:
    with client.websocket_connect(url, **kwargs) as socket:
        message = socket.receive_json()
        with pytest.raises(WebSocketDisconnect) as closed:
            socket.receive_json()
    return message, closed.value.code


def _token(client: TestClient, username: str) -> str:
    return bearer(client, username)["Authorization"].removeprefix("Bearer ")


def test_the_socket_refuses_with_a_reason_and_lets_the_host_in(
    meeting_client: TestClient, sqlite_db: DemoDatabase
) -> None:
    client = meeting_client
    hosted, other = _sessions(sqlite_db)
    url = f"/ws/research/{hosted.id}"
    message, code = _refusal(client, url)
    assert (message["type"], code) == ("error", 4401)
    message, code = _refusal(client, f"{url}?token={_token(client, 'student-cy-4-1')}")
    assert code == 4403 and message["message"]
    message, code = _refusal(client, f"/ws/research/{other.id}?token={_token(client, 'bureau')}")
    assert code == 4409 and "结束" in message["message"]  # a week ago
    client.post("/api/auth/login", json={"username": "teacher-lan", "password": DEMO_PASSWORD})
    _, code = _refusal(client, url, headers={"origin": "http://evil.example"})
    assert code == 4403

    with client.websocket_connect(f"{url}?token={_token(client, 'teacher-lan')}") as socket:
        socket.send_json({"v": 1, "type": "join", "room": f"research-{hosted.id}"})
        joined = socket.receive_json()
        assert (joined["type"], joined["role"], joined["host"]) == ("joined", "meeting", True)
        assert joined["meeting"] == {
            "v": 1,
            "type": "meeting",
            "spotlight": None,
            "screen": None,
            "audio_locked": False,
            "recording": False,
        }
        assert [line["name"] for line in joined["media"]][:2] == ["mic", "camera"]
        socket.send_json({"v": 1, "type": "leave"})
        while socket.receive_json()["type"] != "left":
            pass


def test_the_research_page_links_the_meeting_that_is_about_to_start(
    meeting_client: TestClient, sqlite_db: DemoDatabase
) -> None:
    client = meeting_client
    hosted, other = _sessions(sqlite_db)
    response = client.post(
        "/login",
        data={"username": "teacher-lan", "password": DEMO_PASSWORD},
        follow_redirects=False,
    )
    assert response.status_code == 303
    page = client.get("/research").text
    assert f'href="/research/sessions/{hosted.id}/meeting"' in page
    assert f'href="/research/sessions/{other.id}/meeting"' not in page  # a week ago
    meeting = client.get(f"/research/sessions/{hosted.id}/meeting")
    assert meeting.status_code == 200
    assert f"线上教研 · {GROUP}" in meeting.text and 'data-host="true"' in meeting.text
    assert "/static/js/meeting.js" in meeting.text
    ended = client.get(f"/research/sessions/{other.id}/meeting")
    assert "本次教研已于" in ended.text and "meeting.js" not in ended.text


def test_a_live_meeting_is_listed_for_patrol_to_those_who_may_look_in(
    meeting_client: TestClient, sqlite_db: DemoDatabase
) -> None:
    client = meeting_client
    hosted, _ = _sessions(sqlite_db)

    def listed(username: str) -> list[dict[str, Any]]:
        response = client.get("/api/live-lessons", headers=bearer(client, username))
        assert response.status_code == 200, response.text
        return [row for row in response.json() if row["kind"] == "meeting"]

    with client.websocket_connect(
        f"/ws/research/{hosted.id}?token={_token(client, 'teacher-lan')}"
    ) as socket:
        socket.send_json({"v": 1, "type": "join", "room": f"research-{hosted.id}"})
        assert socket.receive_json()["type"] == "joined"
        (meeting,) = listed("bureau")
        assert meeting["research_session_id"] == hosted.id
        assert (meeting["group"], meeting["subject"], meeting["host"]) == (GROUP, "英语", "蓝美玲")
        assert meeting["my_role"] == "inspector"
        assert meeting["websocket"] == f"/ws/research/{hosted.id}"
        assert [p["host"] for p in meeting["participants"]] == [True]
        assert listed("principal-cy")[0]["my_role"] == "inspector"
        assert listed("teacher-wang")[0]["my_role"] == "meeting"  # the group's leader
        # who may not join may not see that it is on
        for username in ("student-cy-4-1", "admin-sy", "teacher-ye"):
            assert listed(username) == [], username
        socket.send_json({"v": 1, "type": "leave"})
        while socket.receive_json()["type"] != "left":
            pass
    assert listed("bureau") == []
