"""Lesson runs from room events: a fixed clock, synthetic events, a real database.

The slot is 09:10–09:50 (40 minutes) on a school Monday after the demo's invented history
(research/demo_history.py); "minute m" means 09:10 + m.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import pytest
from sqlalchemy import select

from common.alliance.models import ClassroomTerminal, Room, SyncGroup, Teacher
from research import lesson_runs
from research.lesson_runs import (
    LessonRun,
    LessonRunClassroom,
    attach_attendance_tracker,
    attach_run_tracker,
    covered_seconds,
    merge_intervals,
    record_run,
)
from research.models import Attendance, ResearchSession
from streaming.lifecycle import LOCAL_TIMEZONE, LessonClock
from streaming.sfu.events import EventHub, RoomEvent, RoomEventKind
from tests.conftest import DemoDatabase
from tests.fixtures.loop_guard import in_process_loop_guard  # noqa: F401 - fixture

# product code (the scheduler, the run tracker) runs on the test's loop
pytestmark = pytest.mark.usefixtures("in_process_loop_guard")

DAY = date(2026, 12, 14)
START = datetime.combine(DAY, time(9, 10), LOCAL_TIMEZONE)
SLOT = 40 * 60


class FixedClock(LessonClock):
    def __init__(self, moment: datetime) -> None:
        self.moment = moment

    def now(self) -> datetime:
        return self.moment

    def at_minute(self, minute: float) -> None:
        self.moment = START + timedelta(minutes=minute)


@dataclass
class FakeRoom:
    """All a tracker needs of a room: its events."""

    events: EventHub = field(default_factory=EventHub)

    def emit(self, kind: RoomEventKind, participant: str | None, **detail: Any) -> None:
        self.events.emit(RoomEvent(kind, "sync-test", participant, detail))


@dataclass(frozen=True)
class Occurrence:
    sync_group_id: int
    day: date
    lead_period: int
    starts_at: datetime
    ends_at: datetime


def _occurrence(db: DemoDatabase) -> Occurrence:
    with db.sessions() as session:
        group_id = session.scalars(select(SyncGroup.id).where(SyncGroup.code == "wck-en-3")).one()
    return Occurrence(group_id, DAY, 2, START, START + timedelta(seconds=SLOT))


def _terminal_of_school(db: DemoDatabase, school_name: str) -> tuple[str, int]:
    from common.alliance.models import Campus, School

    with db.sessions() as session:
        found = session.execute(
            select(ClassroomTerminal.id, School.id)
            .join(Room, Room.id == ClassroomTerminal.room_id)
            .join(Campus, Campus.id == Room.campus_id)
            .join(School, School.id == Campus.school_id)
            .where(School.name == school_name)
            .order_by(ClassroomTerminal.id)
        ).first()
    assert found is not None
    terminal_id, school_id = found
    return f"terminal-{terminal_id}", school_id


def _run(db: DemoDatabase, occurrence: Occurrence) -> LessonRun:
    with db.sessions() as session:
        runs = list(
            session.scalars(
                select(LessonRun).where(
                    LessonRun.sync_group_id == occurrence.sync_group_id,
                    LessonRun.day == occurrence.day,
                )
            )
        )
        assert len(runs) == 1, runs
        for classroom in runs[0].classrooms:
            session.expunge(classroom)
        return runs[0]


def _lead_live(room: FakeRoom, clock: FixedClock, minute: float, lead: str = "terminal-1") -> None:
    clock.at_minute(minute)
    room.emit("participant_joined", lead, role="lead")
    room.emit("publisher_joined", lead, source="camera", media="video")
    room.emit("publisher_joined", lead, source="mic", media="audio")


def _lead_gone(room: FakeRoom, clock: FixedClock, minute: float, lead: str = "terminal-1") -> None:
    clock.at_minute(minute)
    room.emit("publisher_left", lead, source="camera", reason="left")
    room.emit("publisher_left", lead, source="mic", reason="left")
    room.emit("participant_left", lead, role="lead", reason="left")


# -- pure interval arithmetic -----------------------------------------------------------------


def test_intervals_merge_and_cover_only_the_slot() -> None:
    assert merge_intervals([(5, 10), (0, 3), (2, 4), (10, 12), (20, 20)]) == [(0, 4), (5, 12)]
    assert covered_seconds([(0, 10), (5, 15), (30, 50)], 8, 40) == 7 + 10


# -- the lesson tracker -----------------------------------------------------------------------


async def test_a_full_lesson_is_held_and_remote_classrooms_are_timed(
    sqlite_db: DemoDatabase,
) -> None:
    occurrence = _occurrence(sqlite_db)
    remote, remote_school = _terminal_of_school(sqlite_db, "蔡源小学")
    clock = FixedClock(START - timedelta(minutes=5))
    room = FakeRoom()
    tracker = attach_run_tracker(room, occurrence, sqlite_db.sessions, clock)
    clock.at_minute(-3)
    room.emit("participant_joined", "account-9", role="inspector")  # patrol: not a classroom
    room.emit("participant_joined", remote, role="remote")
    _lead_live(room, clock, -2)
    clock.at_minute(30)
    room.emit("participant_left", remote, role="remote", reason="left")
    _lead_gone(room, clock, 41)
    clock.at_minute(42)
    room.emit("lesson_ended", None)
    await room.events.close()  # the room closed: the tracker writes its last state and ends
    for _ in range(50):
        if tracker not in lesson_runs._RUNNING:
            break
        await asyncio.sleep(0.01)
    assert tracker not in lesson_runs._RUNNING

    run = _run(sqlite_db, occurrence)
    assert run.lead_live_seconds == SLOT  # before the bell and after it do not count
    assert run.held
    assert run.ended_at is not None
    classrooms = {c.participant_id: c for c in run.classrooms}
    assert set(classrooms) == {"terminal-1", remote}
    assert classrooms[remote].role == "remote"
    assert classrooms[remote].school_id == remote_school
    assert classrooms[remote].seconds == 30 * 60


@pytest.mark.parametrize(
    ("gap", "held"),
    [((20, 25), True), ((20, 29), False)],  # 35 of 40 minutes live; 31 of 40 (77.5%)
)
async def test_an_interrupted_lesson_is_held_only_with_80_percent_live(
    sqlite_db: DemoDatabase, gap: tuple[int, int], held: bool
) -> None:
    occurrence = _occurrence(sqlite_db)
    clock = FixedClock(START)
    room = FakeRoom()
    tracker = attach_run_tracker(room, occurrence, sqlite_db.sessions, clock)
    _lead_live(room, clock, 0)
    _lead_gone(room, clock, gap[0])
    _lead_live(room, clock, gap[1])
    _lead_gone(room, clock, 40)
    await tracker.stop()
    run = _run(sqlite_db, occurrence)
    assert run.lead_live_seconds == (40 - (gap[1] - gap[0])) * 60
    assert run.held is held


async def test_a_lead_that_stops_publishing_but_stays_is_not_live(
    sqlite_db: DemoDatabase,
) -> None:
    occurrence = _occurrence(sqlite_db)
    clock = FixedClock(START)
    room = FakeRoom()
    tracker = attach_run_tracker(room, occurrence, sqlite_db.sessions, clock)
    _lead_live(room, clock, 0)
    clock.at_minute(10)
    room.emit("publisher_left", "terminal-1", source="camera")  # mic still on: still live
    clock.at_minute(15)
    room.emit("publisher_left", "terminal-1", source="mic")  # nothing published from here
    clock.at_minute(40)
    await tracker.stop()
    run = _run(sqlite_db, occurrence)
    assert run.lead_live_seconds == 15 * 60
    assert not run.held


async def test_reconnects_and_repeated_checkpoints_never_count_a_second_twice(
    sqlite_db: DemoDatabase,
) -> None:
    occurrence = _occurrence(sqlite_db)
    clock = FixedClock(START)
    room = FakeRoom()
    tracker = attach_run_tracker(room, occurrence, sqlite_db.sessions, clock)
    _lead_live(room, clock, 0)
    clock.at_minute(5)
    # Renegotiation announces the same tracks again while they are live.
    room.emit("publisher_joined", "terminal-1", source="camera", media="video")
    clock.at_minute(10)
    await tracker.checkpoint()
    await tracker.checkpoint()
    # The terminal reconnects: the SFU replaces the old connection by the new one.
    clock.at_minute(12)
    room.emit("publisher_left", "terminal-1", source="camera", reason="replaced")
    room.emit("publisher_left", "terminal-1", source="mic", reason="replaced")
    room.emit("participant_left", "terminal-1", role="lead", reason="replaced")
    _lead_live(room, clock, 12)
    clock.at_minute(20)
    await tracker.checkpoint()
    _lead_gone(room, clock, 25)
    await tracker.stop()

    # The same intervals reported again (another process, a retried write) change nothing.
    def report_again() -> None:
        with sqlite_db.sessions() as session:
            record_run(
                session,
                slot=occurrence,
                lead_intervals=[(START.timestamp(), START.timestamp() + 25 * 60)],
                classrooms={},
            )
            session.commit()

    await asyncio.to_thread(report_again)
    run = _run(sqlite_db, occurrence)
    assert run.lead_live_seconds == 25 * 60
    assert run.lead_intervals == [[START.timestamp(), START.timestamp() + 25 * 60]]


async def test_a_crash_loses_only_what_came_after_the_last_checkpoint(
    sqlite_db: DemoDatabase,
) -> None:
    occurrence = _occurrence(sqlite_db)
    remote, _ = _terminal_of_school(sqlite_db, "龙洋小学")
    clock = FixedClock(START)
    room = FakeRoom()
    first = attach_run_tracker(room, occurrence, sqlite_db.sessions, clock)
    _lead_live(room, clock, 0)
    room.emit("participant_joined", remote, role="remote")
    clock.at_minute(10)
    await first.checkpoint()  # open intervals are written as ending now
    clock.at_minute(12)
    await first.stop(flush=False)  # the process dies: minutes 10–12 were never written

    mid = _run(sqlite_db, occurrence)
    assert mid.lead_live_seconds == 10 * 60
    assert mid.checkpointed_at is not None

    # After the restart the scheduler reopens the room and tracks the same occurrence again.
    clock.at_minute(13)
    reopened = FakeRoom()
    second = attach_run_tracker(reopened, occurrence, sqlite_db.sessions, clock)
    _lead_live(reopened, clock, 13)
    reopened.emit("participant_joined", remote, role="remote")
    _lead_gone(reopened, clock, 40)
    clock.at_minute(40)
    reopened.emit("participant_left", remote, role="remote", reason="left")
    await second.stop()

    run = _run(sqlite_db, occurrence)
    assert run.lead_live_seconds == (10 + 27) * 60
    assert run.held  # 37 of 40 minutes
    assert {c.participant_id: c.seconds for c in run.classrooms} == {
        "terminal-1": 37 * 60,
        remote: 37 * 60,
    }


async def test_checkpoints_run_by_themselves(sqlite_db: DemoDatabase) -> None:
    occurrence = _occurrence(sqlite_db)
    clock = FixedClock(START)
    room = FakeRoom()
    tracker = attach_run_tracker(
        room, occurrence, sqlite_db.sessions, clock, checkpoint_seconds=0.02
    )
    _lead_live(room, clock, 0)
    clock.at_minute(7)
    for _ in range(200):
        if tracker.checkpoints >= 2:
            break
        await asyncio.sleep(0.01)
    assert tracker.checkpoints >= 2
    await tracker.stop(flush=False)
    assert _run(sqlite_db, occurrence).lead_live_seconds == 7 * 60


def test_record_run_stores_intervals_alike_in_both_databases(db: DemoDatabase) -> None:
    occurrence = _occurrence(db)
    base = START.timestamp()
    with db.sessions() as session:
        record_run(
            session,
            slot=occurrence,
            lead_intervals=[(base, base + 600), (base + 900, base + 2400)],
            classrooms={"teacher-1": ("remote", [(base - 60, base + 2400)])},
            recording_id=None,
        )
        record_run(
            session,
            slot=occurrence,
            lead_intervals=[(base + 500, base + 1000)],
            classrooms={"teacher-1": ("remote", [(base + 100, base + 200)])},
        )
        session.flush()
        run = session.scalars(select(LessonRun).where(LessonRun.day == DAY)).one()
        assert run.lead_live_seconds == 2400
        assert run.held
        assert run.planned_start.astimezone(UTC) == START.astimezone(UTC)
        classroom = session.scalars(
            select(LessonRunClassroom).where(LessonRunClassroom.run_id == run.id)
        ).one()
        assert classroom.seconds == 2400
        teacher_school = session.get_one(Teacher, 1).school_id
        assert classroom.school_id == teacher_school
        session.rollback()


# -- research meetings ------------------------------------------------------------------------


async def test_meeting_attendance_comes_from_who_joined_and_for_how_long(
    sqlite_db: DemoDatabase,
) -> None:
    with sqlite_db.sessions() as session:
        row = session.scalars(
            select(ResearchSession)
            .where(ResearchSession.status == "planned")
            .order_by(ResearchSession.day)
        ).first()
        assert row is not None
        members = [m.id for m in row.group.members][:3]
        research_id, day, start = row.id, row.day, row.start_time
    begin = datetime.combine(day, start, LOCAL_TIMEZONE)
    clock = FixedClock(begin)
    room = FakeRoom()
    tracker = attach_attendance_tracker(room, research_id, sqlite_db.sessions, clock)

    def at(minute: int) -> None:
        clock.moment = begin + timedelta(minutes=minute)

    at(0)
    room.emit("participant_joined", f"teacher-{members[0]}", role="meeting")
    room.emit("participant_joined", f"teacher-{members[1]}", role="meeting")
    room.emit("participant_joined", "account-1", role="inspector")  # the bureau looking in
    at(20)
    await tracker.checkpoint()
    at(25)
    room.emit("participant_left", f"teacher-{members[1]}", role="meeting", reason="replaced")
    room.emit("participant_joined", f"teacher-{members[1]}", role="meeting")
    at(30)
    await tracker.checkpoint()
    room.emit("participant_left", f"teacher-{members[1]}", role="meeting", reason="left")
    at(60)
    room.emit("participant_left", f"teacher-{members[0]}", role="meeting", reason="left")
    await tracker.stop()

    with sqlite_db.sessions() as session:
        seconds = dict(
            session.execute(
                select(Attendance.teacher_id, Attendance.seconds).where(
                    Attendance.session_id == research_id
                )
            ).all()
        )
        assert session.get_one(ResearchSession, research_id).status == "held"
    assert seconds == {members[0]: 60 * 60, members[1]: 30 * 60}


# -- the scheduler's hook ---------------------------------------------------------------------


async def test_the_lesson_scheduler_tracks_every_room_it_opens(sqlite_db: DemoDatabase) -> None:
    from streaming.lifecycle import LessonScheduler
    from streaming.sfu import InProcessRoomRegistry

    occurrence = _occurrence(sqlite_db)
    rooms = InProcessRoomRegistry()
    clock = FixedClock(START - timedelta(minutes=4))
    scheduler = LessonScheduler(sessions=sqlite_db.sessions, rooms=lambda: rooms, clock=clock)
    try:
        await scheduler.tick()
        room = await rooms.get(f"sync-{occurrence.sync_group_id}")
        assert room is not None
        # The room's own hub, as the SFU would fill it (no WebRTC needed for the bookkeeping).
        clock.at_minute(0)
        room.events.emit(
            RoomEvent("participant_joined", room.room_id, "terminal-1", {"role": "lead"})
        )
        room.events.emit(
            RoomEvent("publisher_joined", room.room_id, "terminal-1", {"source": "camera"})
        )
        clock.at_minute(41)
        room.events.emit(
            RoomEvent("participant_left", room.room_id, "terminal-1", {"role": "lead"})
        )
        clock.at_minute(46)
        await scheduler.tick()  # past the close: the room closes, the tracker writes and ends
        assert await rooms.get(room.room_id) is None
        for _ in range(100):
            if not lesson_runs._RUNNING:
                break
            await asyncio.sleep(0.01)
        assert not lesson_runs._RUNNING
    finally:
        await scheduler.stop()
        await rooms.close_all()
    run = _run(sqlite_db, occurrence)
    assert run.held
    assert run.lead_live_seconds == SLOT


async def test_what_the_room_saw_before_the_tracker_came_counts(sqlite_db: DemoDatabase) -> None:
    occurrence = _occurrence(sqlite_db)
    clock = FixedClock(START + timedelta(minutes=2))
    room = FakeRoom()
    # The lead classroom opened the room by joining at the bell, two minutes before the tick.
    at_bell = START.timestamp()
    room.events.emit(
        RoomEvent("participant_joined", "sync-test", "terminal-1", {"role": "lead"}, at=at_bell)
    )
    room.events.emit(
        RoomEvent("publisher_joined", "sync-test", "terminal-1", {"source": "camera"}, at=at_bell)
    )
    tracker = attach_run_tracker(room, occurrence, sqlite_db.sessions, clock)
    _lead_gone(room, clock, 40)
    await tracker.stop()
    run = _run(sqlite_db, occurrence)
    assert run.lead_live_seconds == SLOT
