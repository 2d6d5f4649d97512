"""Joining a live synchronized lesson over the signaling WebSocket: who gets in, in which role."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from starlette.websockets import WebSocketDisconnect

from common.accounts.models import Account
from common.alliance.models import Lesson, SyncGroup
from tests.conftest import DEMO_PASSWORD, DemoDatabase, bearer


def _token(client: TestClient, username: str) -> str:
    return bearer(client, username)["Authorization"].removeprefix("Bearer ")


def _led_by(db: DemoDatabase, username: str) -> int:
    with db.sessions() as session:
        teacher_id = session.scalars(
            select(Account.teacher_id).where(Account.username == username)
        ).one()
        return (
            session.scalars(
                select(SyncGroup.id)
                .join(Lesson, SyncGroup.lead_lesson_id == Lesson.id)
                .where(Lesson.teacher_id == teacher_id)
            ).first()
            or 0
        )


def _refusal(client: TestClient, url: str, **kwargs: Any) -> tuple[dict[str, Any], int]:
    with client.websocket_connect(url, **kwargs) as socket:
        message = socket.receive_json()
        with pytest.raises(WebSocketDisconnect) as closed:
            socket.receive_json()
    return message, closed.value.code


def test_strangers_are_refused_with_a_reason(client: TestClient, db: DemoDatabase) -> None:
    group = _led_by(db, "teacher-wang")
    message, code = _refusal(client, f"/ws/lessons/{group}")
    assert (message["type"], code) == ("error", 4401)
    for username in ("student-cy-4-1", "admin-sy", "teacher-ye"):
        message, code = _refusal(client, f"/ws/lessons/{group}?token={_token(client, username)}")
        assert code == 4403, username
        assert message["message"], username
    message, code = _refusal(client, f"/ws/lessons/999999?token={_token(client, 'bureau')}")
    assert code == 4404


def test_a_cookie_from_another_site_is_refused(client: TestClient, db: DemoDatabase) -> None:
    client.post("/api/auth/login", json={"username": "teacher-wang", "password": DEMO_PASSWORD})
    group = _led_by(db, "teacher-wang")
    _, code = _refusal(client, f"/ws/lessons/{group}", headers={"origin": "http://evil.example"})
    assert code == 4403


def _leave(socket: Any) -> None:
    """Leave cleanly and wait for the SFU to confirm, so the server side has finished."""
    socket.send_json({"v": 1, "type": "leave"})
    while socket.receive_json()["type"] != "left":
        pass


def test_the_lead_teacher_joins_as_lead_and_inspectors_see_the_lesson_live(
    client: TestClient, db: DemoDatabase
) -> None:
    group = _led_by(db, "teacher-wang")
    with client.websocket_connect(
        f"/ws/lessons/{group}?token={_token(client, 'teacher-wang')}"
    ) as lead:
        lead.send_json({"v": 1, "type": "join", "room": f"sync-{group}"})
        joined = lead.receive_json()
        assert joined["type"] == "joined" and joined["role"] == "lead"
        live = client.get("/api/live-lessons", headers=bearer(client, "principal-cy")).json()
        assert [row["sync_group_id"] for row in live] == [group]
        assert live[0]["my_role"] == "inspector"
        assert client.get("/api/live-lessons", headers=bearer(client, "admin-sy")).json() == []
        with client.websocket_connect(
            f"/ws/lessons/{group}?token={_token(client, 'principal-cy')}"
        ) as inspector:
            inspector.send_json({"v": 1, "type": "join", "room": f"sync-{group}"})
            seen = inspector.receive_json()
            assert seen["role"] == "inspector"
            # The class never sees the inspector.
            assert all(p["role"] != "inspector" for p in seen["participants"])
            _leave(inspector)
        _leave(lead)
    assert client.get("/api/live-lessons", headers=bearer(client, "principal-cy")).json() == []
