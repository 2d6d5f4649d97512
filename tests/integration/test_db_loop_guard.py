"""Nothing the product does while classrooms are live touches the database on an event loop.

The SFU forwards every classroom of a process on one event loop: the web process's when it
hosts the lessons itself, an SFU worker's otherwise. The database guard
(``common.loop_guard``, collecting here) notes every statement run on a thread that runs an
event loop; these flows must leave it nothing from product code: joining a lesson and looking
in on it (巡课), the 巡课 list, recording by hand, joining a 教研 meeting, the timetable's solve
routes, the lesson scheduler's ticks (a room opened, recorded and closed) and an SFU worker's
sweep. Statements from the tests' own code (sync reads in async tests) are not counted.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from common.loop_guard import DbLoopGuard, LoopOffence, db_loop_guard
from recordings.models import Recording
from recordings.service import new_recording_row
from research.models import ResearchSession
from research.service import starts_at
from streaming.lifecycle import LOCAL_TIMEZONE
from streaming.sfu import InProcessRoomRegistry
from streaming.sfu.identity import ParticipantIdentity
from streaming.tickets import Purpose, sign_ticket
from streaming.worker import SfuWorker, create_worker_app
from tests.conftest import DemoDatabase, bearer, make_test_app
from tests.fixtures.recordings import WCK_EN_4, meeting_left_behind
from tests.integration.recordings.test_recording_event_loop import (
    Recordings,
    recordings,  # noqa: F401 - fixture
)
from tests.integration.streaming.test_lifecycle import MONDAY, FixedClock, group_id
from tests.integration.streaming.test_sfu_workers import (
    SECRET,
    _recordings_left_behind,
    sweeper_settings,
)
from tests.integration.web.test_meeting_access import _sessions
from tests.integration.web.test_solve_jobs import _wait, _wck_term
from web.jobs import register_all

pytestmark = pytest.mark.timeout(180)


@pytest.fixture
def guard() -> Iterator[DbLoopGuard]:
    with db_loop_guard("log") as collecting:
        yield collecting


def product_offences(guard: DbLoopGuard) -> list[LoopOffence]:
    """What the guard found in product code (the tests' own statements left out)."""
    return [offence for offence in guard.found if not offence.in_tests]


def token(client: TestClient, username: str) -> str:
    return bearer(client, username)["Authorization"].removeprefix("Bearer ")


def leave(socket: Any) -> None:
    socket.send_json({"v": 1, "type": "leave"})
    while socket.receive_json()["type"] != "left":
        pass
    # the server closes the socket once the session's teardown is over: wait for it, since the
    # test client's exit cancels the app's task, which once landed inside that teardown and
    # failed the test with the harness's CancelledError
    while socket.receive()["type"] != "websocket.close":
        pass


def test_joining_and_looking_in_on_a_lesson_and_the_patrol_list(
    sqlite_client: TestClient, guard: DbLoopGuard
) -> None:
    room = f"sync-{WCK_EN_4}"
    with sqlite_client.websocket_connect(
        f"/ws/lessons/{WCK_EN_4}?token={token(sqlite_client, 'teacher-wang')}"
    ) as lead:
        lead.send_json({"v": 1, "type": "join", "room": room})
        assert lead.receive_json()["role"] == "lead"
        live = sqlite_client.get("/api/live-lessons", headers=bearer(sqlite_client, "principal-cy"))
        assert [row["sync_group_id"] for row in live.json()] == [WCK_EN_4]
        assert (
            sqlite_client.get("/api/live-lessons", headers=bearer(sqlite_client, "admin-sy")).json()
            == []
        )
        with sqlite_client.websocket_connect(
            f"/ws/lessons/{WCK_EN_4}?token={token(sqlite_client, 'principal-cy')}"
        ) as inspector:  # 巡课
            inspector.send_json({"v": 1, "type": "join", "room": room})
            assert inspector.receive_json()["role"] == "inspector"
            leave(inspector)
        leave(lead)
    assert product_offences(guard) == []


def test_recording_by_hand_with_the_guard_raising(sqlite_db: DemoDatabase, tmp_path: Path) -> None:
    """As set in production (``TONGKE_DB_LOOP_GUARD=raise``): installed with the app."""
    app = make_test_app(sqlite_db, tmp_path, db_loop_guard="raise")
    with TestClient(app) as client:
        guard = app.state.db_loop_guard
        assert isinstance(guard, DbLoopGuard) and guard.mode == "raise"
        lead_teacher = bearer(client, "teacher-wang")
        started = client.post(
            "/api/recordings/start", json={"sync_group_id": WCK_EN_4}, headers=lead_teacher
        )
        assert started.status_code == 201, started.text
        recording = started.json()["id"]
        refused = client.post(f"/api/recordings/{recording}/stop", headers=bearer(client, "bureau"))
        assert refused.status_code == 403
        stopped = client.post(f"/api/recordings/{recording}/stop", headers=lead_teacher)
        assert stopped.status_code == 200, stopped.text
        assert stopped.json()["status"] == "failed"  # nobody published
    assert guard.found == []


def test_joining_a_research_meeting(
    sqlite_db: DemoDatabase, tmp_path: Path, guard: DbLoopGuard
) -> None:
    hosted, _ = _sessions(sqlite_db)
    with TestClient(make_test_app(sqlite_db, tmp_path)) as client:
        client.app.state.lesson_clock = FixedClock(starts_at(hosted))  # type: ignore[attr-defined]
        with client.websocket_connect(
            f"/ws/research/{hosted.id}?token={token(client, 'teacher-lan')}"
        ) as host:
            host.send_json({"v": 1, "type": "join", "room": f"research-{hosted.id}"})
            assert host.receive_json()["host"] is True
            (meeting,) = client.get("/api/live-lessons", headers=bearer(client, "bureau")).json()
            assert meeting["research_session_id"] == hosted.id
            leave(host)
    assert product_offences(guard) == []


def test_the_timetable_solve_routes_and_the_solve_job(
    sqlite_db: DemoDatabase, sqlite_client: TestClient, guard: DbLoopGuard
) -> None:
    """Embedded, the solve job itself runs on the web process's loop: its problem is loaded
    and its week stored there."""
    term_id = _wck_term(sqlite_db)
    admin, other = bearer(sqlite_client, "admin-wck"), bearer(sqlite_client, "admin-sy")
    started = sqlite_client.post(
        f"/api/terms/{term_id}/timetable/solve", json={"time_limit": 2}, headers=admin
    )
    assert started.status_code == 202, started.text
    job = started.json()
    assert sqlite_client.get(job["status_url"], headers=other).status_code == 403
    assert sqlite_client.post(f"/api/jobs/{job['job_id']}/cancel", headers=other).status_code == 403
    status = _wait(sqlite_client, job["status_url"], admin, done={"complete", "failed"})
    assert status["state"] == "complete", status
    cancelled = sqlite_client.post(f"/api/jobs/{job['job_id']}/cancel", headers=admin)
    assert cancelled.json() == {"cancelled": False}  # done already
    refused = sqlite_client.post(
        f"/api/terms/{term_id}/timetable/solve", json={"time_limit": 2}, headers=other
    )
    assert refused.status_code == 403
    assert product_offences(guard) == []


async def test_the_lesson_schedulers_ticks_open_record_and_close_a_room(
    sqlite_db: DemoDatabase,
    recordings: Recordings,  # noqa: F811
    guard: DbLoopGuard,
) -> None:
    rooms = InProcessRoomRegistry()
    english = await asyncio.to_thread(group_id, sqlite_db, "wck-en-3")
    clock = FixedClock(datetime.now(LOCAL_TIMEZONE))
    clock.set(MONDAY, 9, 5)  # wck-en-3's room opens
    scheduler = recordings.scheduler(rooms, clock)
    try:
        await scheduler.tick()
        recording_id = recordings.active.recording_of(english)
        assert recording_id is not None
        await scheduler.tick()  # nothing to change
        clock.set(MONDAY, 23, 0)  # long closed
        await scheduler.tick()
        assert recordings.active.recording_of(english) is None
    finally:
        await scheduler.stop()
        await rooms.close_all()
    row = await asyncio.to_thread(recordings.row, recording_id)
    assert row.status == "failed"  # nobody published
    assert product_offences(guard) == []


@pytest.mark.redis
async def test_an_sfu_workers_sweep(
    redis_server: str, sqlite_db: DemoDatabase, tmp_path: Path, guard: DbLoopGuard
) -> None:
    settings, _groups, rows = await asyncio.to_thread(
        _recordings_left_behind, redis_server, sqlite_db, tmp_path / "media", age_s=600
    )

    def first_meeting() -> int:
        with sqlite_db.sessions() as session:
            found = session.scalar(select(ResearchSession.id).order_by(ResearchSession.id))
            assert found is not None
            return found

    meeting = await asyncio.to_thread(
        meeting_left_behind,
        sqlite_db,
        settings.media_root,
        research_session_id=await asyncio.to_thread(first_meeting),
    )
    settings = settings.model_copy(update={"recording_abandon_seconds": 0.5})
    await asyncio.sleep(0.6)  # the meeting's files stand still longer than that
    worker = SfuWorker(
        settings, worker_id="sweeper", url="http://127.0.0.1:9", register_jobs=register_all
    )
    await worker.start()  # sweeps at once
    try:
        await asyncio.gather(*worker.meeting_trackers().recordings.finishing.values())
    finally:
        await worker.stop()

    def statuses() -> dict[int, str]:
        with sqlite_db.sessions() as session:
            return {i: session.get_one(Recording, i).status for i in [*rows, meeting]}

    swept = await asyncio.to_thread(statuses)
    assert all(status != "recording" for status in swept.values()), swept
    assert product_offences(guard) == []


@pytest.mark.redis
def test_joins_and_recording_in_an_sfu_worker(
    redis_server: str, sqlite_db: DemoDatabase, tmp_path: Path
) -> None:
    """A lesson joined (the first join looks for a recording a dead worker left), recorded by
    hand through the worker's route and stopped; a 教研 meeting joined."""
    settings = sweeper_settings(redis_server, sqlite_db, tmp_path / "media", db_loop_guard="log")
    hosted, _ = _sessions(sqlite_db)
    app = create_worker_app(settings, worker_id="w-guard", url="http://testserver")

    def ticket(purpose: Purpose, **claims: Any) -> dict[str, str]:
        signed = sign_ticket(secret=SECRET, worker_id="w-guard", purpose=purpose, **claims)
        return {"Authorization": f"Bearer {signed}"}

    def join(client: TestClient, identity: ParticipantIdentity) -> None:
        with client.websocket_connect(
            "/sfu/ws", headers=ticket("join", identity=identity)
        ) as socket:
            assert socket.receive_json()["type"] == "route"
            socket.send_json({"v": 1, "type": "join", "room": identity.room_id})
            assert socket.receive_json()["type"] == "joined"
            leave(socket)

    row = new_recording_row(sqlite_db.sessions, sync_group_id=WCK_EN_4)  # the web process's
    lead = ParticipantIdentity("teacher-lead", "王丽娟", "lead", f"sync-{WCK_EN_4}")
    with TestClient(app) as client:
        guard = app.state.db_loop_guard
        with client.websocket_connect("/sfu/ws", headers=ticket("join", identity=lead)) as socket:
            assert socket.receive_json()["type"] == "route"
            socket.send_json({"v": 1, "type": "join", "room": lead.room_id})
            assert socket.receive_json()["type"] == "joined"
            command = {
                "action": "start",
                "recording_id": row.recording_id,
                "sync_group_id": WCK_EN_4,
            }
            started = client.post("/sfu/recordings", headers=ticket("record", command=command))
            assert started.status_code == 200, started.text
            stop = {"action": "stop", "recording_id": row.recording_id}
            stopped = client.post("/sfu/recordings", headers=ticket("record", command=stop))
            assert stopped.status_code == 200, stopped.text
            leave(socket)
        join(
            client,
            ParticipantIdentity(
                "teacher-host", "蓝美玲", "meeting", f"research-{hosted.id}", "meeting", host=True
            ),
        )
    assert isinstance(guard, DbLoopGuard)
    assert product_offences(guard) == []
    with sqlite_db.sessions() as session:
        assert session.get_one(Recording, row.recording_id).status == "failed"  # nobody published
