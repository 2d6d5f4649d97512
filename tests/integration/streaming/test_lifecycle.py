"""Rooms follow the timetable: the scheduler over the seeded demo alliance, with a fixed clock.

The demo term runs 2026-09-01 … 2027-01-22. On Mondays wck-en-3 (王村口 → 蔡源, 龙洋 English)
is period 2 at 王村口, 09:10–09:50; 2026-10-01 is a holiday and Saturday 2026-10-10 a make-up
day that runs Thursday's timetable.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from common.alliance.models import Lesson, SyncGroup
from common.jobs import InProcessJobQueue, JobContext
from recordings.models import Recording
from recordings.processing import PROCESS_JOB
from recordings.service import ActiveRecordings
from scheduler.absence import plan_absence
from scheduler.adjustments import MoveIn, apply_plan
from streaming.bots import ClassroomBot, start_local
from streaming.lifecycle import (
    LOCAL_TIMEZONE,
    LessonClock,
    LessonOccurrence,
    LessonScheduler,
    RecordingTarget,
    lesson_occurrences,
)
from streaming.sfu import InProcessRoomRegistry, ParticipantIdentity
from streaming.sfu.room import Room
from tests.conftest import DemoDatabase, bearer, make_test_app
from tests.fixtures.loop_guard import in_process_loop_guard  # noqa: F401 - fixture

# product code (the scheduler, the run tracker) runs on the test's loop
pytestmark = pytest.mark.usefixtures("in_process_loop_guard")

MONDAY = date(2026, 9, 21)
HOLIDAY = date(2026, 10, 1)  # 国庆节, a Thursday
MAKEUP_SATURDAY = date(2026, 10, 10)  # runs Thursday's timetable
THURSDAY = date(2026, 9, 24)
PLAIN_SATURDAY = date(2026, 9, 26)


class FixedClock(LessonClock):
    def __init__(self, moment: datetime) -> None:
        self.moment = moment

    def now(self) -> datetime:
        return self.moment

    def set(self, day: date, hour: int, minute: int, second: int = 0) -> None:
        self.moment = datetime(
            day.year, day.month, day.day, hour, minute, second, tzinfo=LOCAL_TIMEZONE
        )


@dataclass
class Harness:
    scheduler: LessonScheduler
    clock: FixedClock
    rooms: InProcessRoomRegistry
    db: DemoDatabase
    active: ActiveRecordings
    processed: list[int]

    def recordings(self) -> list[Recording]:
        with self.db.sessions() as session:
            return list(session.scalars(select(Recording).order_by(Recording.id)))

    async def open_rooms(self) -> list[str]:
        return sorted(await self.rooms.room_ids())


def group_id(db: DemoDatabase, code: str) -> int:
    with db.sessions() as session:
        found = session.scalar(select(SyncGroup.id).where(SyncGroup.code == code))
        assert found is not None
        return found


@pytest.fixture
async def harness(sqlite_db: DemoDatabase, tmp_path: Path) -> AsyncIterator[Harness]:
    rooms = InProcessRoomRegistry()
    jobs = InProcessJobQueue()
    processed: list[int] = []

    async def process(context: JobContext, *, recording_id: int) -> None:
        processed.append(recording_id)

    jobs.register(PROCESS_JOB, process)
    active = ActiveRecordings()
    clock = FixedClock(datetime(2026, 9, 21, 7, 0, tzinfo=LOCAL_TIMEZONE))
    scheduler = LessonScheduler(
        sessions=sqlite_db.sessions,
        rooms=lambda: rooms,
        clock=clock,
        recording=RecordingTarget(media_root=tmp_path / "media", jobs=jobs, active=active),
    )
    yield Harness(scheduler, clock, rooms, sqlite_db, active, processed)
    await scheduler.stop()
    await rooms.close_all()
    await jobs.close()


async def test_the_room_opens_five_minutes_before_the_bell_and_not_earlier(
    harness: Harness,
) -> None:
    english = group_id(harness.db, "wck-en-3")
    harness.clock.set(MONDAY, 9, 4, 59)
    await harness.scheduler.tick()
    assert f"sync-{english}" not in await harness.open_rooms()
    assert harness.recordings() == []

    harness.clock.set(MONDAY, 9, 5)
    await harness.scheduler.tick()
    assert await harness.open_rooms() == [f"sync-{english}"]
    (recording,) = harness.recordings()
    assert recording.sync_group_id == english and recording.status == "recording"
    assert harness.active.recording_of(english) == recording.id
    shown = {row["code"]: row for row in harness.scheduler.scheduled()}
    assert shown["wck-en-3"]["state"] == "open"
    assert shown["wck-en-5"]["state"] == "upcoming"


async def test_ticks_are_idempotent(harness: Harness) -> None:
    english = group_id(harness.db, "wck-en-3")
    harness.clock.set(MONDAY, 9, 6)
    await harness.scheduler.tick()
    room = await harness.rooms.get(f"sync-{english}")
    for minute in (7, 20, 45):
        harness.clock.set(MONDAY, 9, minute)
        await harness.scheduler.tick()
        await harness.scheduler.tick()
    assert await harness.rooms.get(f"sync-{english}") is room
    assert len(harness.recordings()) == 1


async def test_the_room_closes_after_the_last_classroom_and_the_recording_ends(
    harness: Harness,
) -> None:
    english = group_id(harness.db, "wck-en-3")
    harness.clock.set(MONDAY, 9, 5)
    await harness.scheduler.tick()
    harness.clock.set(MONDAY, 9, 54, 59)  # the bell is at 09:50 everywhere, +5 min
    await harness.scheduler.tick()
    assert f"sync-{english}" in await harness.open_rooms()

    harness.clock.set(MONDAY, 9, 55)
    await harness.scheduler.tick()
    assert f"sync-{english}" not in await harness.open_rooms()
    (recording,) = harness.recordings()
    assert recording.status == "failed"  # nobody published: no file, said plainly
    assert harness.active.recording_of(english) is None


async def test_a_lead_classroom_in_the_scheduled_room_is_recorded_until_the_room_closes(
    harness: Harness,
) -> None:
    english = group_id(harness.db, "wck-en-3")
    harness.clock.set(MONDAY, 9, 8)
    await harness.scheduler.tick()
    lead = ClassroomBot(
        ParticipantIdentity("terminal-1", "王村口小学", "lead", f"sync-{english}", "lesson"),
        fps=10,
    )
    session = start_local(lead, harness.rooms)
    try:
        await asyncio.wait_for(lead.connected.wait(), 10)
        recording_id = harness.active.recording_of(english)
        assert recording_id is not None
        recorder = harness.active.by_id[recording_id]
        for _ in range(100):
            if recorder.tap_packets > 50:
                break
            await asyncio.sleep(0.05)
        harness.clock.set(MONDAY, 10, 0)
        await harness.scheduler.tick()
        await asyncio.wait_for(lead.done.wait(), 5)  # the room told the classroom it closed
    finally:
        await session.stop()
    (recording,) = harness.recordings()
    assert recording.status == "processing"
    for _ in range(50):
        if harness.processed:
            break
        await asyncio.sleep(0.05)
    assert harness.processed == [recording.id]


async def test_a_room_emptied_early_is_reopened_with_a_fresh_recording(harness: Harness) -> None:
    english = group_id(harness.db, "wck-en-3")
    harness.clock.set(MONDAY, 9, 5)
    await harness.scheduler.tick()
    await harness.rooms.close(f"sync-{english}")  # what the registry does when the last one leaves
    harness.clock.set(MONDAY, 9, 6)
    await harness.scheduler.tick()
    room = await harness.rooms.get(f"sync-{english}")
    assert room is not None and not room.closed
    first, second = harness.recordings()
    assert first.status == "failed" and second.status == "recording"


async def test_holidays_and_weekends_open_nothing(harness: Harness) -> None:
    for day in (HOLIDAY, PLAIN_SATURDAY):
        for hour in range(7, 17):
            harness.clock.set(day, hour, 30)
            await harness.scheduler.tick()
            assert await harness.open_rooms() == []
    assert harness.scheduler.scheduled() == []
    assert harness.recordings() == []


async def test_a_makeup_saturday_follows_its_weekday(harness: Harness) -> None:
    def occurrences(day: date) -> list[LessonOccurrence]:
        with harness.db.sessions() as session:
            return lesson_occurrences(session, day)

    thursday = await asyncio.to_thread(occurrences, THURSDAY)
    saturday = await asyncio.to_thread(occurrences, MAKEUP_SATURDAY)
    assert thursday, "the demo has sync lessons on Thursdays"

    def shape(day: date, found: list[Any]) -> list[tuple[int, int, str, str]]:
        return [
            (o.sync_group_id, o.lead_period, o.starts_at.strftime("%H:%M"), o.ends_at.isoformat())
            for o in found
            if o.day == day
        ]

    assert [s[:3] for s in shape(MAKEUP_SATURDAY, saturday)] == [
        s[:3] for s in shape(THURSDAY, thursday)
    ]
    first = saturday[0]
    moment = first.starts_at - timedelta(minutes=4)
    harness.clock.set(MAKEUP_SATURDAY, moment.hour, moment.minute)
    await harness.scheduler.tick()
    assert first.room_id in await harness.open_rooms()


async def test_a_database_error_skips_the_tick_and_keeps_open_rooms(harness: Harness) -> None:
    english = group_id(harness.db, "wck-en-3")
    harness.clock.set(MONDAY, 9, 5)
    await harness.scheduler.tick()

    def broken() -> Any:
        raise OSError("database is down")

    working: Callable[[], Any] = harness.scheduler._sessions
    harness.scheduler._sessions = broken  # type: ignore[assignment]
    harness.clock.set(MONDAY, 9, 30)
    await harness.scheduler.tick()  # logs, does not raise
    assert f"sync-{english}" in await harness.open_rooms()
    harness.clock.set(MONDAY, 9, 56)  # past its known closing time: closed all the same
    await harness.scheduler.tick()
    assert f"sync-{english}" not in await harness.open_rooms()
    harness.scheduler._sessions = working  # type: ignore[assignment]
    harness.clock.set(MONDAY, 14, 0)
    await harness.scheduler.tick()
    assert f"sync-{group_id(harness.db, 'wck-en-5')}" in await harness.open_rooms()


class HeldWhereTheRecorderAttaches(LessonScheduler):
    """A scheduler whose ``_ensure_open`` waits, once the room is open and kept open, where
    the recorder attaches (``reached`` set) until it is cancelled."""

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.reached = asyncio.Event()

    async def _attach_recorder(self, room: Room, group_id: int) -> int | None:
        self.reached.set()
        await asyncio.Event().wait()  # until cancelled
        raise AssertionError("not reached")


async def _tick_cancelled_at_the_recorder(
    sqlite_db: DemoDatabase, rooms: InProcessRoomRegistry
) -> HeldWhereTheRecorderAttaches:
    scheduler = HeldWhereTheRecorderAttaches(
        sessions=sqlite_db.sessions,
        rooms=lambda: rooms,
        clock=FixedClock(datetime(2026, 9, 21, 9, 6, tzinfo=LOCAL_TIMEZONE)),
    )
    tick = asyncio.ensure_future(scheduler.tick())
    await scheduler.reached.wait()
    tick.cancel()
    with pytest.raises(asyncio.CancelledError):
        await tick
    return scheduler


async def test_a_tick_cancelled_while_opening_a_room_closes_the_room_it_opened(
    sqlite_db: DemoDatabase,
) -> None:
    rooms = InProcessRoomRegistry()
    opened: list[str] = []
    real_open = rooms.open

    async def open_and_note(room_id: str, *, kind: Any) -> Room:
        opened.append(room_id)
        return await real_open(room_id, kind=kind)

    rooms.open = open_and_note  # type: ignore[method-assign]
    try:
        scheduler = await _tick_cancelled_at_the_recorder(sqlite_db, rooms)
        assert len(opened) == 1  # held in the first room's opening
        assert await rooms.room_ids() == []  # closed at the cancellation, not at close_all
        assert scheduler.scheduled() != [] and scheduler._open == {}
    finally:
        await rooms.close_all()


async def test_a_room_already_open_is_kept_and_closed_by_the_scheduler_after_a_cancelled_tick(
    sqlite_db: DemoDatabase,
) -> None:
    """A classroom joined before the bell: the cancelled tick does not close the lesson under
    it; the scheduler keeps the room and closes it when it stops."""
    rooms = InProcessRoomRegistry()
    english = group_id(sqlite_db, "wck-en-3")
    joined_first = await rooms.open(f"sync-{english}", kind="lesson")
    try:
        scheduler = await _tick_cancelled_at_the_recorder(sqlite_db, rooms)
        room_ids = await rooms.room_ids()
        assert f"sync-{english}" in room_ids and not joined_first.closed
        await scheduler.stop()
        assert f"sync-{english}" not in await rooms.room_ids() and joined_first.closed
    finally:
        await rooms.close_all()


def test_the_app_runs_the_scheduler_and_lists_the_open_lesson(
    sqlite_db: DemoDatabase, tmp_path: Path
) -> None:
    app = make_test_app(sqlite_db, tmp_path, lesson_scheduler=True)
    english = group_id(sqlite_db, "wck-en-3")
    with TestClient(app) as client:
        scheduler: LessonScheduler = app.state.lesson_scheduler
        assert scheduler is not None
        scheduler.clock = FixedClock(datetime(2026, 9, 21, 9, 6, tzinfo=LOCAL_TIMEZONE))
        assert client.portal is not None
        client.portal.call(scheduler.tick)
        live = client.get("/api/live-lessons", headers=bearer(client, "admin-wck")).json()
        assert [lesson["sync_group_id"] for lesson in live] == [english]
    # shutdown closed the room and stopped its recording
    assert app.state.recordings.recording_of(english) is None


def test_test_apps_do_not_run_the_scheduler_unless_asked(
    sqlite_db: DemoDatabase, tmp_path: Path
) -> None:
    with TestClient(make_test_app(sqlite_db, tmp_path)) as client:
        assert client.app.state.lesson_scheduler is None  # type: ignore[attr-defined]


async def test_a_sync_lesson_moved_by_an_applied_adjustment_opens_at_its_new_bell(
    harness: Harness,
) -> None:
    english = group_id(harness.db, "wck-en-3")

    def move_the_lead() -> LessonOccurrence:
        with harness.db.sessions() as session:
            group = session.get_one(SyncGroup, english)
            lead = session.get_one(Lesson, group.lead_lesson_id)
            plan = plan_absence(
                session, term_id=group.term_id, teacher_id=lead.teacher_id, day=MONDAY
            )
            apply_plan(
                session,
                term_id=group.term_id,
                teacher_id=lead.teacher_id,
                day=MONDAY,
                reason="",
                created_by=None,
                moves=[
                    MoveIn(
                        m.lesson_id,
                        m.old.date,
                        m.old.period,
                        m.new.date,
                        m.new.period,
                        m.new.room_code,
                    )
                    for m in plan.moves
                ],
                substitutions=[],
            )
            session.commit()
            moved = next(m for m in plan.moves if m.lesson_id == lead.id)
            (occurrence,) = [
                o
                for o in lesson_occurrences(session, moved.new.date)
                if o.sync_group_id == english and o.lead_period == moved.new.period
            ]
        return occurrence

    occurrence = await asyncio.to_thread(move_the_lead)
    harness.clock.set(MONDAY, 9, 6)  # its weekly bell: nothing opens that Monday
    await harness.scheduler.tick()
    assert f"sync-{english}" not in await harness.open_rooms()
    before = occurrence.starts_at - timedelta(minutes=4)
    harness.clock.set(before.date(), before.hour, before.minute)
    await harness.scheduler.tick()
    assert f"sync-{english}" in await harness.open_rooms()
