"""SQLite: a request never waits for the write lock on the event loop.

A request's transaction is committed after its route returns, by a thread the event loop
dispatches, so a writer waiting on the loop for that lock waits for itself: both stall until
the busy timeout (15 s), and the SFU sharing the loop stalls with them (the classrooms'
WebRTC connections drop). The token touch (at most once a minute) was such a write: left
pending by the auth dependency, an async route's first query flushed it on the loop.
"""

from __future__ import annotations

import asyncio
import sqlite3
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import Engine, event

from tests.conftest import DemoDatabase, bearer
from tests.integration.web.test_lesson_socket import _led_by


def test_the_token_touch_waits_for_another_writer_off_the_event_loop(
    sqlite_client: TestClient, sqlite_db: DemoDatabase
) -> None:
    group = _led_by(sqlite_db, "teacher-wang")
    headers = bearer(sqlite_client, "principal-cy")  # a token not used yet: this request touches it
    portal = sqlite_client.portal
    assert portal is not None
    app: Any = sqlite_client.app

    async def open_room() -> None:
        await app.state.rooms.registry().open(f"sync-{group}", kind="lesson")

    portal.call(open_room)
    loop = portal.call(asyncio.get_running_loop)
    engine: Engine = sqlite_db.sessions.kw["bind"]
    # Another request's transaction, holding the write lock until the loop commits it.
    holder = sqlite3.connect(
        str(engine.url.database), isolation_level=None, check_same_thread=False
    )
    holder.execute("BEGIN IMMEDIATE")
    touching = asyncio.Event()

    async def commit_once_the_touch_waits() -> None:
        await touching.wait()
        holder.execute("COMMIT")

    def signal_touch(_conn: object, _cursor: object, statement: str, *_args: object) -> None:
        if statement.startswith("UPDATE auth_tokens"):
            loop.call_soon_threadsafe(touching.set)

    event.listen(engine, "before_cursor_execute", signal_touch)
    try:
        committed = portal.start_task_soon(commit_once_the_touch_waits)
        response = sqlite_client.get("/api/live-lessons", headers=headers)
        committed.result(timeout=30)
    finally:
        event.remove(engine, "before_cursor_execute", signal_touch)
        holder.close()
    assert response.status_code == 200, response.text
    assert [row["sync_group_id"] for row in response.json()] == [group]
