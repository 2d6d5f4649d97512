"""What actually happened in a synchronized lesson or a research meeting, from the room's events.

A ``LessonRun`` is one synchronized-lesson occurrence (sync group, day, lead period) with the
planned slot from the timetable, the intervals in which the lead classroom published (was live),
the classrooms that joined and for how long, and the recording made of it. ``held`` means the
lead was live for at least ``HELD_SHARE`` of the slot.

``RunTracker`` listens to a room's ``EventHub`` (it needs nothing else of the room, so it works
wherever rooms live) and writes what it saw every ``checkpoint_seconds``: an interval still
open is written as ending at the checkpoint, so a crash loses at most that much. Intervals are
stored, not sums, and every write is a union with what the row already holds: a reconnect that
overlaps the previous connection, a checkpoint written twice, or a restarted process tracking
the same occurrence again never count a second twice. Rows are keyed by
(sync group, day, lead period), so a group with a double period on one day has two runs.

``AttendanceTracker`` does the same for a research meeting room: who joined and for how long
goes to ``research.service.record_attendance``, which already merges overlapping reports.

Times come from the ``clock`` given (the lesson scheduler's), read when each event arrives.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, Protocol

from sqlalchemy import (
    JSON,
    CheckConstraint,
    Date,
    ForeignKey,
    String,
    UniqueConstraint,
    select,
)
from sqlalchemy.orm import Mapped, Session, mapped_column, relationship, sessionmaker

from common.accounts.models import Account
from common.alliance.models import Campus, ClassroomTerminal, Room, Teacher
from common.db import Base, TimestampMixin, transaction
from common.errors import AppError
from common.logging import get_logger

if TYPE_CHECKING:
    from streaming.sfu.events import EventHub, EventStream, RoomEvent

log = get_logger(__name__)

# The lesson counts as held when the lead classroom was live for this share of its slot.
HELD_SHARE = 0.8
CHECKPOINT_SECONDS = 5.0

Interval = tuple[float, float]  # POSIX seconds, start < end


# -- intervals --------------------------------------------------------------------------------


def merge_intervals(intervals: Iterable[Sequence[float]]) -> list[Interval]:
    """The union of intervals, sorted, touching ones joined; empty ones dropped."""
    ordered = sorted((float(a), float(b)) for a, b in intervals if b > a)
    merged: list[Interval] = []
    for start, end in ordered:
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


def covered_seconds(intervals: Iterable[Sequence[float]], start: float, end: float) -> float:
    """How much of [start, end) the union of ``intervals`` covers."""
    return sum(
        max(0.0, min(b, end) - max(a, start)) for a, b in merge_intervals(intervals) if b > start
    )


def _epoch(moment: datetime) -> float:
    if moment.tzinfo is None:  # SQLite hands back naive datetimes; they were stored in UTC
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def _moment(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


# -- tables -----------------------------------------------------------------------------------


class LessonRun(TimestampMixin, Base):
    """One synchronized-lesson occurrence as it happened (or did not)."""

    __tablename__ = "lesson_runs"
    __table_args__ = (
        UniqueConstraint("sync_group_id", "day", "lead_period"),
        CheckConstraint("lead_live_seconds >= 0", name="non_negative_live"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    sync_group_id: Mapped[int] = mapped_column(
        ForeignKey("sync_groups.id", ondelete="CASCADE"), index=True
    )
    day: Mapped[date] = mapped_column(Date, index=True)
    lead_period: Mapped[int]
    planned_start: Mapped[datetime]
    planned_end: Mapped[datetime]
    # The lead classroom's publishing intervals, [[start, end], ...] in POSIX seconds.
    lead_intervals: Mapped[list[list[float]]] = mapped_column(JSON, default=list)
    lead_live_seconds: Mapped[int] = mapped_column(default=0)  # inside the planned slot
    held: Mapped[bool] = mapped_column(default=False)
    recording_id: Mapped[int | None] = mapped_column(
        ForeignKey("recordings.id", ondelete="SET NULL"), default=None
    )
    checkpointed_at: Mapped[datetime | None] = mapped_column(default=None)
    ended_at: Mapped[datetime | None] = mapped_column(default=None)

    classrooms: Mapped[list[LessonRunClassroom]] = relationship(
        back_populates="run", cascade="all, delete-orphan", order_by="LessonRunClassroom.id"
    )

    @property
    def slot_seconds(self) -> float:
        return _epoch(self.planned_end) - _epoch(self.planned_start)


class LessonRunClassroom(Base):
    """A classroom (terminal or teacher's browser) in a lesson run, and how long it was there."""

    __tablename__ = "lesson_run_classrooms"
    __table_args__ = (
        UniqueConstraint("run_id", "participant_id"),
        CheckConstraint("seconds >= 0", name="non_negative_seconds"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("lesson_runs.id", ondelete="CASCADE"))
    participant_id: Mapped[str] = mapped_column(String(64))
    role: Mapped[str] = mapped_column(String(16))  # lead / remote
    school_id: Mapped[int | None] = mapped_column(
        ForeignKey("schools.id", ondelete="SET NULL"), default=None
    )
    intervals: Mapped[list[list[float]]] = mapped_column(JSON, default=list)
    seconds: Mapped[int] = mapped_column(default=0)  # inside the planned slot

    run: Mapped[LessonRun] = relationship(back_populates="classrooms")


# -- what the tracker needs from its surroundings ---------------------------------------------


class Clock(Protocol):
    def now(self) -> datetime: ...


class EventSource(Protocol):
    """A room, or anything else with a room's events (``streaming.sfu.room.Room``)."""

    @property
    def events(self) -> EventHub: ...


class Slot(Protocol):
    """A planned synchronized lesson (``streaming.lifecycle.LessonOccurrence``)."""

    @property
    def sync_group_id(self) -> int: ...
    @property
    def day(self) -> date: ...
    @property
    def lead_period(self) -> int: ...
    @property
    def starts_at(self) -> datetime: ...
    @property
    def ends_at(self) -> datetime: ...


def school_of_participant(session: Session, participant_id: str) -> int | None:
    """The school a participant id (``terminal-N``, ``teacher-N``, ``account-N``) belongs to."""
    kind, _, number = participant_id.rpartition("-")
    if not number.isdigit():
        return None
    row_id = int(number)
    if kind == "terminal":
        return session.scalar(
            select(Campus.school_id)
            .join(Room, Room.campus_id == Campus.id)
            .join(ClassroomTerminal, ClassroomTerminal.room_id == Room.id)
            .where(ClassroomTerminal.id == row_id)
        )
    if kind == "teacher":
        return session.scalar(select(Teacher.school_id).where(Teacher.id == row_id))
    if kind == "account":
        return session.scalar(select(Account.school_id).where(Account.id == row_id))
    return None


def teacher_of_participant(session: Session, participant_id: str) -> int | None:
    kind, _, number = participant_id.rpartition("-")
    if not number.isdigit():
        return None
    if kind == "teacher":
        return int(number)
    if kind == "account":
        return session.scalar(select(Account.teacher_id).where(Account.id == int(number)))
    return None


# -- presence from events ---------------------------------------------------------------------


@dataclass
class Presence:
    """Who was in a room and who published, as closed and open intervals (pure, no I/O)."""

    roles: dict[str, str] = field(default_factory=dict)
    joined: dict[str, list[Interval]] = field(default_factory=dict)
    joined_since: dict[str, float] = field(default_factory=dict)
    connections: dict[str, int] = field(default_factory=dict)
    published: dict[str, set[str]] = field(default_factory=dict)
    live: dict[str, list[Interval]] = field(default_factory=dict)
    live_since: dict[str, float] = field(default_factory=dict)
    ended: float | None = None

    def apply(self, event: RoomEvent, at: float) -> None:
        pid = event.participant_id
        if event.kind == "lesson_ended":
            self.close_all(at)
            self.ended = at
            return
        if pid is None:
            return
        if event.kind == "participant_joined":
            self.roles[pid] = str(event.detail.get("role", self.roles.get(pid, "")))
            self.joined_since.setdefault(pid, at)
            self.connections[pid] = self.connections.get(pid, 0) + 1
        elif event.kind == "participant_left":
            # A second connection of the same classroom overlapping the first (one joined
            # before the other left): it is in the room until the last one leaves.
            remaining = max(0, self.connections.get(pid, 0) - 1)
            self.connections[pid] = remaining
            if remaining:
                return
            self._stop_publishing(pid, at)
            if (since := self.joined_since.pop(pid, None)) is not None:
                self.joined.setdefault(pid, []).append((since, at))
        elif event.kind == "publisher_joined":
            sources = self.published.setdefault(pid, set())
            if not sources:
                self.live_since.setdefault(pid, at)
            sources.add(str(event.detail.get("source", event.detail.get("media", "media"))))
        elif event.kind == "publisher_left":
            sources = self.published.get(pid, set())
            sources.discard(str(event.detail.get("source", event.detail.get("media", "media"))))
            if not sources:
                self._stop_publishing(pid, at)

    def _stop_publishing(self, pid: str, at: float) -> None:
        self.published.pop(pid, None)
        if (since := self.live_since.pop(pid, None)) is not None:
            self.live.setdefault(pid, []).append((since, at))

    def close_all(self, at: float) -> None:
        for pid in list(self.live_since):
            self._stop_publishing(pid, at)
        for pid, since in list(self.joined_since.items()):
            self.joined.setdefault(pid, []).append((since, at))
        self.joined_since.clear()
        self.connections.clear()

    def joined_until(self, now: float) -> dict[str, list[Interval]]:
        """Each participant's intervals in the room, open ones ending at ``now``."""
        found = {pid: list(spans) for pid, spans in self.joined.items()}
        for pid, since in self.joined_since.items():
            found.setdefault(pid, []).append((since, max(since, now)))
        return found

    def live_until(self, now: float) -> dict[str, list[Interval]]:
        """Each participant's publishing intervals, open ones ending at ``now``."""
        found = {pid: list(spans) for pid, spans in self.live.items()}
        for pid, since in self.live_since.items():
            found.setdefault(pid, []).append((since, max(since, now)))
        return found


# -- the trackers -----------------------------------------------------------------------------

# Trackers whose room is still open; asyncio keeps only weak references to tasks.
_RUNNING: set[_Tracker] = set()


class _Tracker:
    """Listens to a room's events and checkpoints them; subclasses decide what to write.

    Owns two tasks: the checkpoint timer, and a wait for the room's hub to close (then the
    last write). ``stop()`` ends both early.
    """

    def __init__(
        self,
        source: EventSource,
        *,
        sessions: sessionmaker[Session],
        clock: Clock,
        checkpoint_seconds: float = CHECKPOINT_SECONDS,
    ) -> None:
        self.presence = Presence()
        self.sessions = sessions
        self.clock = clock
        self.checkpoint_seconds = checkpoint_seconds
        self.checkpoints = 0
        self._hub = source.events
        self._unlisten: Callable[[], None] | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._write_lock = threading.Lock()
        self._stopped = False

    def start(self) -> None:
        # A classroom may have joined before the tracker (the room opened on its first join):
        # what the hub has seen so far counts at the time it happened.
        now = _epoch(self.clock.now())
        for event in list(self._hub.history):
            self.presence.apply(event, min(event.at, now))
        self._unlisten = self._hub.listen(self._on_event)
        closed = self._hub.subscribe(maxsize=1)
        self._tasks = [
            asyncio.ensure_future(self._checkpoint_loop()),
            asyncio.ensure_future(self._until_closed(closed)),
        ]
        _RUNNING.add(self)

    def _on_event(self, event: RoomEvent) -> None:
        self.presence.apply(event, _epoch(self.clock.now()))

    async def _checkpoint_loop(self) -> None:
        while True:
            await asyncio.sleep(self.checkpoint_seconds)
            try:
                await self.checkpoint()
            except Exception:  # a database hiccup must not end the tracking
                log.exception("lesson_run_checkpoint_failed")

    async def _until_closed(self, closed: EventStream) -> None:
        async for _ in closed:
            pass  # the events themselves arrive through the listener, in order
        await self.stop()

    async def checkpoint(self, *, final: bool = False) -> None:
        """Write what was seen so far (open intervals end now)."""
        now = _epoch(self.clock.now())
        if final:
            self.presence.close_all(now)
        await asyncio.to_thread(self._locked_write, now, final)
        self.checkpoints += 1

    def _locked_write(self, now: float, final: bool) -> None:
        with self._write_lock:
            self.write(now, final=final)

    def write(self, now: float, *, final: bool) -> None:
        raise NotImplementedError

    async def stop(self, *, flush: bool = True) -> None:
        """Stop listening; with ``flush`` (the default) write the final state.

        ``flush=False`` leaves the rows as the last checkpoint wrote them, as a process that
        dies does.
        """
        if self._stopped:
            return
        self._stopped = True
        if self._unlisten is not None:
            with contextlib.suppress(ValueError):
                self._unlisten()
        current = asyncio.current_task()
        for task in self._tasks:
            if task is not current:
                task.cancel()
        await asyncio.gather(*(t for t in self._tasks if t is not current), return_exceptions=True)
        try:
            if flush:
                await self.checkpoint(final=True)
        except Exception:
            log.exception("lesson_run_final_write_failed")
        finally:
            _RUNNING.discard(self)


class RunTracker(_Tracker):
    """Tracks one synchronized-lesson occurrence into its ``LessonRun``."""

    def __init__(
        self,
        source: EventSource,
        slot: Slot,
        *,
        sessions: sessionmaker[Session],
        clock: Clock,
        recording_id: int | None = None,
        checkpoint_seconds: float = CHECKPOINT_SECONDS,
    ) -> None:
        super().__init__(
            source, sessions=sessions, clock=clock, checkpoint_seconds=checkpoint_seconds
        )
        self.slot = slot
        self.recording_id = recording_id

    def write(self, now: float, *, final: bool) -> None:
        with transaction(self.sessions) as session:
            record_run(
                session,
                slot=self.slot,
                lead_intervals=[
                    span
                    for pid, spans in self.presence.live_until(now).items()
                    if self.presence.roles.get(pid) == "lead"
                    for span in spans
                ],
                classrooms={
                    pid: (self.presence.roles.get(pid, ""), spans)
                    for pid, spans in self.presence.joined_until(now).items()
                    if self.presence.roles.get(pid) in ("lead", "remote")
                },
                recording_id=self.recording_id,
                checkpointed_at=_moment(now),
                ended_at=_moment(self.presence.ended) if self.presence.ended else None,
            )


def record_run(
    session: Session,
    *,
    slot: Slot,
    lead_intervals: Iterable[Sequence[float]],
    classrooms: dict[str, tuple[str, list[Interval]]],
    recording_id: int | None = None,
    checkpointed_at: datetime | None = None,
    ended_at: datetime | None = None,
) -> LessonRun:
    """Add what was seen to the occurrence's run (created on first sight); a union, so
    writing the same intervals again changes nothing."""
    run = session.scalar(
        select(LessonRun).where(
            LessonRun.sync_group_id == slot.sync_group_id,
            LessonRun.day == slot.day,
            LessonRun.lead_period == slot.lead_period,
        )
    )
    if run is None:
        run = LessonRun(
            sync_group_id=slot.sync_group_id,
            day=slot.day,
            lead_period=slot.lead_period,
            planned_start=slot.starts_at.astimezone(UTC),
            planned_end=slot.ends_at.astimezone(UTC),
            lead_intervals=[],
        )
        session.add(run)
    start, end = _epoch(slot.starts_at), _epoch(slot.ends_at)
    merged = merge_intervals([*run.lead_intervals, *lead_intervals])
    run.lead_intervals = [[a, b] for a, b in merged]
    live = covered_seconds(merged, start, end)
    run.lead_live_seconds = round(live)
    run.held = live >= HELD_SHARE * (end - start)
    if recording_id is not None:
        run.recording_id = recording_id
    if checkpointed_at is not None:
        run.checkpointed_at = checkpointed_at
    if ended_at is not None:
        run.ended_at = ended_at
    existing = {c.participant_id: c for c in run.classrooms}
    for pid, (role, spans) in classrooms.items():
        row = existing.get(pid)
        if row is None:
            row = LessonRunClassroom(
                participant_id=pid,
                role=role,
                school_id=school_of_participant(session, pid),
                intervals=[],
            )
            run.classrooms.append(row)
        joined = merge_intervals([*row.intervals, *spans])
        row.intervals = [[a, b] for a, b in joined]
        row.seconds = round(covered_seconds(joined, start, end))
    session.flush()
    return run


def attach_run_tracker(
    room: EventSource,
    occurrence: Slot,
    sessions: sessionmaker[Session],
    clock: Clock,
    *,
    recording_id: int | None = None,
    checkpoint_seconds: float = CHECKPOINT_SECONDS,
) -> RunTracker:
    """Track a lesson room from now until its events close (the room closed) or ``stop()``."""
    tracker = RunTracker(
        room,
        occurrence,
        sessions=sessions,
        clock=clock,
        recording_id=recording_id,
        checkpoint_seconds=checkpoint_seconds,
    )
    tracker.start()
    return tracker


class AttendanceTracker(_Tracker):
    """Tracks who joined a research meeting room into ``research_attendance``."""

    def __init__(
        self,
        source: EventSource,
        research_session_id: int,
        *,
        sessions: sessionmaker[Session],
        clock: Clock,
        checkpoint_seconds: float = CHECKPOINT_SECONDS,
    ) -> None:
        super().__init__(
            source, sessions=sessions, clock=clock, checkpoint_seconds=checkpoint_seconds
        )
        self.research_session_id = research_session_id

    def write(self, now: float, *, final: bool) -> None:
        from research.service import record_attendance

        for pid, spans in self.presence.joined_until(now).items():
            if self.presence.roles.get(pid) == "inspector":
                continue
            try:
                with transaction(self.sessions) as session:
                    teacher_id = teacher_of_participant(session, pid)
                    if teacher_id is None:
                        continue
                    # Chronological and repeated reports are merged by record_attendance.
                    for start, end in merge_intervals(spans):
                        record_attendance(
                            session,
                            self.research_session_id,
                            teacher_id,
                            _moment(start),
                            _moment(end),
                        )
            except AppError as exc:
                log.warning(
                    "research_attendance_not_recorded",
                    participant=pid,
                    research_session=self.research_session_id,
                    reason=exc.message,
                )


def attach_attendance_tracker(
    room: EventSource,
    research_session_id: int,
    sessions: sessionmaker[Session],
    clock: Clock,
    *,
    checkpoint_seconds: float = CHECKPOINT_SECONDS,
) -> AttendanceTracker:
    """Take a research meeting's attendance from who joins its room and for how long."""
    tracker = AttendanceTracker(
        room,
        research_session_id,
        sessions=sessions,
        clock=clock,
        checkpoint_seconds=checkpoint_seconds,
    )
    tracker.start()
    return tracker
