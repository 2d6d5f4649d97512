"""The SFU's event loop never waits for the database when a recording starts or stops.

Every classroom of a worker is forwarded on one event loop; a recording's rows are written at
the lesson's boundaries. While another connection holds SQLite's write lock (a web request's
transaction, a processing job), those writes wait for it, up to the busy timeout (15 s): done
on the loop, every live lesson of the worker froze meanwhile. Here another connection holds
the lock for ``LOCK_S`` while a recording starts (the timetable's scheduler, and the start
after a dead worker, and by hand through a web process that hosts its lessons itself),
stops and is closed as interrupted; a timer on the loop
(``streaming.runtime.LoopLag``, every 20 ms) must never be late by more than ``LATE_LIMIT_S``,
and the rows must be right once the lock is gone (written after it, not around it). A start
is also tested on PostgreSQL, its ``recordings`` table locked by another transaction (the
other cases need rows that transaction could see, and the fixture's rows are never committed).
"""

from __future__ import annotations

import asyncio
import gc
import sqlite3
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from httpx import Response
from sqlalchemy import create_engine, select
from sqlalchemy.pool import NullPool

from common.errors import ConflictError
from common.jobs import InProcessJobQueue, JobContext
from common.settings import Settings
from recordings import service
from recordings.meetings import COMPOSE_JOB
from recordings.models import Recording
from recordings.processing import PROCESS_JOB, process_recording
from research.models import ResearchSession
from streaming.lifecycle import LOCAL_TIMEZONE, LessonClock, LessonScheduler, RecordingTarget
from streaming.runtime import LoopLag
from streaming.sfu import InProcessRoomRegistry
from tests.conftest import DemoDatabase, bearer, make_test_app
from tests.fixtures.classrooms import Classrooms
from tests.fixtures.recordings import WCK_EN_4, make_recording, meeting_left_behind, place_raw
from tests.integration.streaming.test_lifecycle import MONDAY, FixedClock, group_id
from web.jobs import register_all

pytestmark = pytest.mark.timeout(120)

LOCK_S = 3.0
TICK_S = 0.02
# With the writes on the loop, each test's timer was late by the whole lock (3.03-3.14 s in 3
# runs); with them in threads, by 0.001-0.018 s (5 to 10 runs of each, loaded 2-core machine).
LATE_LIMIT_S = 1.0


class WriteLock:
    """Another connection's write transaction, held for ``seconds``: on SQLite the file's
    write lock (``BEGIN IMMEDIATE``), on PostgreSQL the ``recordings`` table locked against
    writes (reads go on, as there)."""

    def __init__(self, db: DemoDatabase, seconds: float) -> None:
        self.url = db.url
        self.seconds = seconds
        self.held = threading.Event()
        self.released_at = 0.0  # time.monotonic() of the COMMIT
        self._thread = threading.Thread(target=self._hold, name="database-write-lock")

    def _hold(self) -> None:
        if not self.url.startswith("sqlite"):
            self._hold_postgres()
            return
        path = self.url.split(":///", 1)[1]
        holder = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        try:
            holder.execute("BEGIN IMMEDIATE")
            self.held.set()
            time.sleep(self.seconds)
            holder.execute("COMMIT")
            self.released_at = time.monotonic()
        finally:
            holder.close()

    def _hold_postgres(self) -> None:
        engine = create_engine(self.url, poolclass=NullPool)
        try:
            with engine.begin() as holder:
                holder.exec_driver_sql("SET LOCAL lock_timeout = '10s'")  # never hang a test
                holder.exec_driver_sql("LOCK TABLE recordings IN EXCLUSIVE MODE")
                self.held.set()
                time.sleep(self.seconds)
            self.released_at = time.monotonic()
        finally:
            engine.dispose()

    def start(self) -> None:
        self._thread.start()

    def join(self) -> None:
        self._thread.join()


@asynccontextmanager
async def database_locked(db: DemoDatabase, seconds: float = LOCK_S) -> AsyncIterator[WriteLock]:
    lock = WriteLock(db, seconds)
    lock.start()
    assert await asyncio.to_thread(lock.held.wait, 30), "the lock was not taken"
    try:
        yield lock
    finally:
        await asyncio.to_thread(lock.join)


@asynccontextmanager
async def loop_timer() -> AsyncIterator[LoopLag]:
    """A 20 ms timer on this loop recording how late it fires (``longest_s``)."""
    # the earlier tests' garbage (their aiortc peers) first: its full collection paused the
    # loop for 0.1-0.3 s in the window otherwise (an SFU worker freezes what it starts with)
    gc.collect()
    lag = LoopLag(None, interval=TICK_S)
    lag.start()
    try:
        yield lag
    finally:
        await asyncio.sleep(5 * TICK_S)  # a tick overdue at the end is counted too
        await lag.stop()


class Recordings:
    """What an SFU worker records with: its recorders, a job queue noting processing."""

    def __init__(self, db: DemoDatabase, media_root: Path) -> None:
        self.db = db
        self.media_root = media_root
        self.active = service.ActiveRecordings()
        self.jobs = InProcessJobQueue()
        self.processed: list[int] = []

        async def process(context: JobContext, *, recording_id: int) -> None:
            self.processed.append(recording_id)

        self.jobs.register(PROCESS_JOB, process)

    @property
    def where(self) -> dict[str, Any]:
        """The keywords every start takes besides the room and the group."""
        return {
            "sessions": self.db.sessions,
            "media_root": self.media_root,
            "jobs": self.jobs,
            "active": self.active,
        }

    def scheduler(self, rooms: InProcessRoomRegistry, clock: LessonClock) -> LessonScheduler:
        """A lesson scheduler opening its rooms in ``rooms`` and recording them here."""
        return LessonScheduler(
            sessions=self.db.sessions,
            rooms=lambda: rooms,
            clock=clock,
            recording=RecordingTarget(
                media_root=self.media_root, jobs=self.jobs, active=self.active
            ),
        )

    def row(self, recording_id: int) -> Recording:
        with self.db.sessions() as session:
            return session.get_one(Recording, recording_id)

    def rows(self) -> list[Recording]:
        with self.db.sessions() as session:
            return list(session.scalars(select(Recording).order_by(Recording.id)))

    async def stop_all(self) -> None:
        for recorder in list(self.active.by_id.values()):
            await recorder.stop()
        await self.jobs.close()


@pytest.fixture
async def recordings(sqlite_db: DemoDatabase, tmp_path: Path) -> AsyncIterator[Recordings]:
    made = Recordings(sqlite_db, tmp_path / "media")
    yield made
    await made.stop_all()


@pytest.fixture
async def recordings_in_db(db: DemoDatabase, tmp_path: Path) -> AsyncIterator[Recordings]:
    """``recordings`` on SQLite and on PostgreSQL (a rolled-back transaction there)."""
    made = Recordings(db, tmp_path / "media")
    yield made
    await made.stop_all()


def recordings_row(db: DemoDatabase, recording_id: int) -> Recording:
    with db.sessions() as session:
        return session.get_one(Recording, recording_id)


def report(name: str, lag: LoopLag) -> None:
    # the figures the thresholds above come from (pytest -s shows them)
    print(f"{name}: loop timer late by at most {lag.longest_s:.3f} s ({lag.samples} ticks)")


async def test_a_timetabled_lesson_starts_recording_while_the_database_is_locked(
    sqlite_db: DemoDatabase, recordings: Recordings
) -> None:
    rooms = InProcessRoomRegistry()
    english = group_id(sqlite_db, "wck-en-3")
    clock = FixedClock(datetime.now(LOCAL_TIMEZONE))
    clock.set(MONDAY, 9, 5)  # wck-en-3's room opens: five minutes before its bell
    scheduler = recordings.scheduler(rooms, clock)
    try:
        async with loop_timer() as lag, database_locked(sqlite_db) as lock:
            await scheduler.tick()
            opened_at = time.monotonic()
        report("timetabled start", lag)
        assert lag.longest_s < LATE_LIMIT_S
        assert opened_at > lock.released_at  # its row waited for the lock
        (recording,) = recordings.rows()
        assert recording.sync_group_id == english and recording.status == "recording"
        assert recordings.active.recording_of(english) == recording.id
        assert recordings.active.by_id[recording.id].running
        assert [row["state"] for row in scheduler.scheduled() if row["code"] == "wck-en-3"] == [
            "open"
        ]
    finally:
        await scheduler.stop()
        await rooms.close_all()


async def test_a_recording_starts_while_another_transaction_holds_the_database(
    recordings_in_db: Recordings, rooms: InProcessRoomRegistry
) -> None:
    room = await rooms.open(f"sync-{WCK_EN_4}", kind="lesson")
    async with loop_timer() as lag, database_locked(recordings_in_db.db) as lock:
        recording_id, recorder = await service.attach_recorder(
            room, sync_group_id=WCK_EN_4, **recordings_in_db.where
        )
        started_at = time.monotonic()
    report(f"start ({recordings_in_db.db.url.split(':')[0]})", lag)
    assert lag.longest_s < LATE_LIMIT_S
    assert started_at > lock.released_at
    assert recorder.running and recordings_in_db.row(recording_id).status == "recording"


async def test_a_second_start_is_refused_while_the_first_waits_for_the_database(
    recordings: Recordings, rooms: InProcessRoomRegistry
) -> None:
    room = await rooms.open(f"sync-{WCK_EN_4}", kind="lesson")

    def start() -> asyncio.Future[tuple[int, object]]:
        return asyncio.ensure_future(
            service.attach_recorder(room, sync_group_id=WCK_EN_4, **recordings.where)
        )

    async with database_locked(recordings.db):
        first = start()
        await asyncio.sleep(0.2)  # the first is writing its row, off the loop
        with pytest.raises(ConflictError):
            await start()
        assert not first.done()
    recording_id, _ = await first
    assert [row.id for row in recordings.rows()] == [recording_id]
    assert recordings.active.recording_of(WCK_EN_4) == recording_id


async def test_a_lesson_that_ends_while_its_row_is_written_leaves_no_recorder_running(
    recordings: Recordings, rooms: InProcessRoomRegistry
) -> None:
    room = await rooms.open(f"sync-{WCK_EN_4}", kind="lesson")
    async with database_locked(recordings.db):
        starting = asyncio.ensure_future(
            service.attach_recorder(room, sync_group_id=WCK_EN_4, **recordings.where)
        )
        await asyncio.sleep(0.2)
        await rooms.close(room.room_id)
    recording_id, recorder = await starting
    assert not recorder.running  # stopping already: the room's end went before it listened
    await recorder.stop()  # (the stop it is on)
    row = recordings.row(recording_id)
    assert row.status == "failed" and "没有收到" in row.status_message
    assert recordings.active.by_id == {} and not recordings.active.busy(WCK_EN_4)


async def test_a_recording_stops_and_queues_processing_while_the_database_is_locked(
    recordings: Recordings,
    rooms: InProcessRoomRegistry,
    classrooms: Classrooms,
    eventually: Callable[..., Awaitable[float]],
) -> None:
    room = await rooms.open("sync-1", kind="lesson")  # the classrooms' room
    recording_id, recorder = await service.attach_recorder(
        room, sync_group_id=WCK_EN_4, **recordings.where
    )
    classrooms.start("lead", "lead", width=320, height=180, fps=15)
    await eventually(lambda: recorder.tap_packets > 50, timeout=20)
    async with loop_timer() as lag, database_locked(recordings.db) as lock:
        summary = await recorder.stop()  # returns once processing is queued
        stopped_at = time.monotonic()
    report("stop", lag)
    assert lag.longest_s < LATE_LIMIT_S
    assert stopped_at > lock.released_at
    assert summary.bytes > 0
    row = recordings.row(recording_id)
    assert row.status == "processing" and row.job_id is not None
    assert row.outputs is not None and row.outputs["raw_duration_s"] == summary.duration_s
    assert recordings.active.recording_of(WCK_EN_4) is None
    await recordings.jobs.wait(row.job_id, timeout=10)
    assert recordings.processed == [recording_id]


async def test_an_interrupted_recording_is_closed_and_continued_while_the_database_is_locked(
    sqlite_db: DemoDatabase,
    recordings: Recordings,
    rooms: InProcessRoomRegistry,
    sample_webm: Path,
) -> None:
    """A worker died mid-lesson; the one taking the room over finds its recording on the
    first join: what it captured goes to processing, and recording carries on."""
    left = await asyncio.to_thread(make_recording, sqlite_db, WCK_EN_4, status="recording")
    place_raw(sqlite_db, left, recordings.media_root, sample_webm)
    room = await rooms.open(f"sync-{WCK_EN_4}", kind="lesson")
    async with loop_timer() as lag, database_locked(sqlite_db) as lock:
        continuation = await service.resume_interrupted_recordings(
            room, sync_group_id=WCK_EN_4, **recordings.where
        )
        resumed_at = time.monotonic()
    report("interrupted: closed and continued", lag)
    assert lag.longest_s < LATE_LIMIT_S
    assert resumed_at > lock.released_at
    assert continuation is not None and continuation != left
    closed = recordings.row(left)
    assert closed.status == "processing" and closed.job_id is not None
    assert closed.status_message.startswith("媒体服务器中断，录像止于")
    carried_on = recordings.row(continuation)
    assert carried_on.status == "recording"
    assert carried_on.outputs is not None
    assert carried_on.outputs["continues_recording_id"] == left
    assert recordings.active.recording_of(WCK_EN_4) == continuation
    await recordings.jobs.wait(closed.job_id, timeout=10)
    assert recordings.processed == [left]


def post_while_locked(
    client: TestClient,
    db: DemoDatabase,
    url: str,
    *,
    headers: dict[str, str],
    body: dict[str, int] | None = None,
) -> tuple[Response, float]:
    """POST ``url`` while another connection holds the write lock; the answer, and how late
    a 20 ms timer on the app's loop was at most meanwhile. The answer must have waited for
    the lock (the route wrote something)."""
    portal = client.portal
    assert portal is not None
    lock = WriteLock(db, LOCK_S)
    lag = LoopLag(None, interval=TICK_S)
    gc.collect()
    portal.call(lag.start)  # on the app's loop
    lock.start()
    lock.held.wait()
    try:
        response = client.post(url, json=body, headers=headers)
        answered_at = time.monotonic()
    finally:
        lock.join()
        portal.call(asyncio.sleep, 5 * TICK_S)
        portal.call(lag.stop)
    assert answered_at > lock.released_at
    return response, lag.longest_s


def test_the_start_and_stop_routes_leave_the_web_processs_loop_free(
    sqlite_db: DemoDatabase, tmp_path: Path
) -> None:
    """Without SFU workers the lessons are forwarded on the web process's loop: recording by
    hand there must not hold it either."""
    app = make_test_app(sqlite_db, tmp_path)
    with TestClient(app) as client:
        lead_teacher = bearer(client, "teacher-wang")
        portal = client.portal
        assert portal is not None

        async def open_room() -> None:  # aiortc loads with the first room
            await app.state.rooms.registry().open(f"sync-{WCK_EN_4}", kind="lesson")

        portal.call(open_room)
        # FastAPI builds a route's handling when it first matches it (0.1-0.15 s on the loop)
        missing = client.post(
            "/api/recordings/start", json={"sync_group_id": 999}, headers=lead_teacher
        )
        assert missing.status_code == 404

        def locked_post(url: str, body: dict[str, int] | None = None) -> tuple[Response, float]:
            return post_while_locked(client, sqlite_db, url, body=body, headers=lead_teacher)

        started, late_at_start = locked_post("/api/recordings/start", {"sync_group_id": WCK_EN_4})
        print(f"start route: loop timer late by at most {late_at_start:.3f} s")
        assert started.status_code == 201, started.text
        assert late_at_start < LATE_LIMIT_S
        recording_id = started.json()["id"]
        stopped, late_at_stop = locked_post(f"/api/recordings/{recording_id}/stop")
        print(f"stop route: loop timer late by at most {late_at_stop:.3f} s")
        assert stopped.status_code == 200, stopped.text
        assert late_at_stop < LATE_LIMIT_S
        assert stopped.json()["status"] == "failed"  # nobody published, said plainly


async def test_processing_writes_its_rows_while_the_database_is_locked(
    sqlite_db: DemoDatabase, tmp_path: Path, sample_webm: Path
) -> None:
    """Without Redis, processing runs on the web process's loop: another connection holds the
    write lock as it starts, and again just before its last write."""
    media_root = tmp_path / "media"
    recording_id = await asyncio.to_thread(make_recording, sqlite_db, WCK_EN_4, status="processing")
    place_raw(sqlite_db, recording_id, media_root, sample_webm)
    locks: list[WriteLock] = []

    async def lock_before_the_last_write(progress: float, message: str) -> None:
        if progress >= 0.92 and len(locks) == 1:  # the MP4 is made: the last write follows
            lock = WriteLock(sqlite_db, LOCK_S)
            locks.append(lock)
            lock.start()
            assert await asyncio.to_thread(lock.held.wait, 30), "the lock was not taken"

    async with loop_timer() as lag:
        async with database_locked(sqlite_db) as first:
            locks.append(first)
            processing = asyncio.ensure_future(
                process_recording(
                    sqlite_db.sessions,
                    media_root=media_root,
                    recording_id=recording_id,
                    report=lock_before_the_last_write,
                )
            )
            await asyncio.sleep(0.5)
            assert not processing.done()
        await processing
        finished_at = time.monotonic()
        await asyncio.to_thread(locks[-1].join)
    report("processing", lag)
    assert lag.longest_s < LATE_LIMIT_S
    assert len(locks) == 2 and finished_at > locks[1].released_at  # its last write waited
    row = recordings_row(sqlite_db, recording_id)
    assert row.status == "ready" and row.outputs["renditions"] == "ready"


def test_the_reprocess_route_leaves_the_web_processs_loop_free(
    sqlite_db: DemoDatabase, tmp_path: Path
) -> None:
    """重新处理 reads and writes the row in threads (its job too, with nothing to process here)."""
    recording_id = make_recording(sqlite_db, WCK_EN_4)
    app = make_test_app(sqlite_db, tmp_path)
    with TestClient(app) as client:
        lead_teacher = bearer(client, "teacher-wang")
        # FastAPI builds a route's handling when it first matches it (0.1-0.15 s on the loop)
        assert client.post("/api/recordings/999999/process", headers=lead_teacher).is_client_error
        response, late = post_while_locked(
            client, sqlite_db, f"/api/recordings/{recording_id}/process", headers=lead_teacher
        )
        print(f"reprocess route: loop timer late by at most {late:.3f} s")
        assert response.status_code == 200, response.text
        assert late < LATE_LIMIT_S
        assert response.json()["job_id"] == recordings_row(sqlite_db, recording_id).job_id


async def test_a_meeting_composition_writes_its_rows_while_the_database_is_locked(
    sqlite_db: DemoDatabase, tmp_path: Path
) -> None:
    """The composition job (then processing, in the same job) starts while another connection
    holds the write lock: its first write waits in a thread, the loop goes on."""
    media_root = tmp_path / "media"
    with sqlite_db.sessions() as session:
        first = session.scalars(select(ResearchSession.id).order_by(ResearchSession.id)).first()
    assert first is not None
    recording_id = await asyncio.to_thread(
        meeting_left_behind, sqlite_db, media_root, research_session_id=first
    )
    with sqlite_db.sessions() as session, session.begin():
        session.get_one(Recording, recording_id).status = "processing"
    jobs = InProcessJobQueue()
    register_all(
        jobs, Settings(environment="test", database_url=sqlite_db.url, media_root=media_root)
    )
    try:
        async with loop_timer() as lag:
            async with database_locked(sqlite_db):
                job_id = await jobs.enqueue(COMPOSE_JOB, recording_id=recording_id)
                await asyncio.sleep(0.5)
                assert (await jobs.status(job_id)).progress == 0.0  # its first write waits
            status = await jobs.wait(job_id, timeout=200)
    finally:
        await jobs.close()
    report("composition", lag)
    assert status.state == "complete", status.error
    assert lag.longest_s < LATE_LIMIT_S
    row = recordings_row(sqlite_db, recording_id)
    assert row.status == "ready" and row.outputs["meeting_version"] == "composed"
