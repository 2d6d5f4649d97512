"""Rooms follow the timetable: a sync lesson's room opens before its bell and closes after it.

``LessonScheduler`` is a task owned by the web app. Every ``interval`` seconds it reads today's
synchronized-lesson occurrences from the alliance's records (``lesson_occurrences``): the
current term of each alliance, today's weekday (or the weekday a make-up day follows; nothing
on holidays and weekends), wall-clock times from the lead campus's bells. A room
``sync-{group}`` opens ``open_before`` ahead of the lead's start with a recorder attached
(``recordings.service.attach_recorder``), and closes ``close_after`` past the latest end among
the group's classrooms. Each tick compares what should be open with what is, so ticks are
idempotent, a restart mid-lesson reopens the room, and a database error only skips a tick.

aiortc loads only when the first room opens (the web process starts without it).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.orm import Session, joinedload, sessionmaker

from common.alliance.adjustments import dated_placements
from common.alliance.adjustments import timetable_weekday as timetable_weekday  # re-exported
from common.alliance.models import Lesson, SyncGroup, SyncGroupMember, Term
from common.alliance.timetable import bells_for
from common.jobs import JobQueue
from common.logging import get_logger
from streaming.access import lesson_room_id
from streaming.sfu.errors import RoomOwnedElsewhere

if TYPE_CHECKING:
    from recordings.service import ActiveRecordings
    from streaming.sfu.registry import RoomRegistry
    from streaming.sfu.room import Room

log = get_logger(__name__)

LOCAL_TIMEZONE = ZoneInfo("Asia/Shanghai")
# A remote classroom's period counts as the same lesson when it starts this close to the lead's.
PAIRING_TOLERANCE = timedelta(minutes=30)


class LessonClock:
    """Local time where the schools are (Asia/Shanghai); tests substitute a fixed clock."""

    def now(self) -> datetime:
        return datetime.now(LOCAL_TIMEZONE)


@dataclass(frozen=True)
class LessonOccurrence:
    """One synchronized lesson on one day: the lead's bell and the last classroom's end."""

    sync_group_id: int
    code: str
    day: date
    lead_period: int
    starts_at: datetime
    ends_at: datetime

    @property
    def room_id(self) -> str:
        return lesson_room_id(self.sync_group_id)


def _terms_in_session(session: Session, day: date) -> list[Term]:
    """Per alliance, the term ``day`` falls in (the one marked current first)."""
    terms = session.scalars(
        select(Term)
        .where(Term.start_date <= day, Term.end_date >= day)
        .options(joinedload(Term.calendar_days))
        .order_by(Term.alliance_id, Term.is_current.desc(), Term.start_date.desc())
    ).unique()
    chosen: dict[int, Term] = {}
    for term in terms:
        chosen.setdefault(term.alliance_id, term)
    return list(chosen.values())


def lesson_occurrences(session: Session, day: date) -> list[LessonOccurrence]:
    """Every synchronized lesson held on ``day``, in wall-clock order."""
    found: list[LessonOccurrence] = []
    bells: dict[int, dict[str, dict[int, tuple[time, time]]]] = {}

    def slot(campus_id: int, weekday: str, period: int) -> tuple[time, time] | None:
        if campus_id not in bells:
            bells[campus_id] = bells_for(session, campus_id)
        return bells[campus_id].get(weekday, {}).get(period)

    def at(moment: time) -> datetime:
        return datetime.combine(day, moment, tzinfo=LOCAL_TIMEZONE)

    for term in _terms_in_session(session, day):
        weekday = timetable_weekday(term, day)
        if weekday is None:
            continue
        periods: dict[int, list[int]] = {}
        # The day's occurrences with its applied 调课 (a moved sync lesson opens at its new bell).
        for placement in dated_placements(session, term, [day]):
            periods.setdefault(placement.lesson_id, []).append(placement.period)
        groups = session.scalars(
            select(SyncGroup)
            .where(SyncGroup.term_id == term.id)
            .options(
                joinedload(SyncGroup.lead_lesson).joinedload(Lesson.school_class),
                joinedload(SyncGroup.members)
                .joinedload(SyncGroupMember.lesson)
                .joinedload(Lesson.school_class),
            )
        ).unique()
        for group in groups:
            lead_campus = group.lead_lesson.school_class.campus_id
            for period in sorted(periods.get(group.lead_lesson_id, [])):
                lead_slot = slot(lead_campus, weekday, period)
                if lead_slot is None:
                    log.warning("sync_lesson_without_bell", sync_group=group.id, period=period)
                    continue
                starts_at, ends_at = at(lead_slot[0]), at(lead_slot[1])
                for member in group.members:
                    campus = member.lesson.school_class.campus_id
                    slots = [
                        s
                        for p in periods.get(member.lesson_id, [])
                        if (s := slot(campus, weekday, p)) is not None
                    ]
                    if not slots:
                        continue
                    nearest = min(slots, key=lambda s: abs(at(s[0]) - starts_at))
                    if abs(at(nearest[0]) - starts_at) <= PAIRING_TOLERANCE:
                        ends_at = max(ends_at, at(nearest[1]))
                found.append(
                    LessonOccurrence(
                        sync_group_id=group.id,
                        code=group.code,
                        day=day,
                        lead_period=period,
                        starts_at=starts_at,
                        ends_at=ends_at,
                    )
                )
    return sorted(found, key=lambda o: (o.starts_at, o.sync_group_id))


@dataclass
class _OpenRoom:
    room: Room
    occurrence: LessonOccurrence
    closes_at: datetime
    recording_id: int | None


@dataclass(frozen=True)
class RecordingTarget:
    """What ``attach_recorder`` needs besides the room."""

    media_root: Path
    jobs: JobQueue
    active: ActiveRecordings


class LessonScheduler:
    """Opens and closes lesson rooms by the timetable; owns one task (``start``/``stop``)."""

    def __init__(
        self,
        *,
        sessions: sessionmaker[Session],
        rooms: Callable[[], RoomRegistry],
        clock: LessonClock | None = None,
        open_before: timedelta = timedelta(minutes=5),
        close_after: timedelta = timedelta(minutes=5),
        interval: float = 30.0,
        recording: RecordingTarget | None = None,
        placement: Callable[[str], Awaitable[bool]] | None = None,
    ) -> None:
        """``placement(room_id)``: whether this process should open that room (an SFU
        worker asks the Redis directory, so one scheduler acts per room); None: always."""
        self._sessions = sessions
        self._placement = placement
        self._rooms = rooms
        self.clock = clock or LessonClock()
        self.open_before = open_before
        self.close_after = close_after
        self.interval = interval
        self._recording = recording
        self._open: dict[int, _OpenRoom] = {}
        self._today: list[LessonOccurrence] = []
        self._task: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()

    # -- the task ---------------------------------------------------------------------

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.ensure_future(self._run())

    async def stop(self) -> None:
        """Cancel the task, then close the rooms it opened (their recordings stop)."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        async with self._lock:
            for group_id in list(self._open):
                await self._close(group_id)

    async def _run(self) -> None:
        while True:
            try:
                await self.tick()
            except Exception:  # the loop must outlive any one tick
                log.exception("lesson_scheduler_tick_failed")
            await asyncio.sleep(self.interval)

    # -- one tick ---------------------------------------------------------------------

    def window(self, occurrence: LessonOccurrence) -> tuple[datetime, datetime]:
        return occurrence.starts_at - self.open_before, occurrence.ends_at + self.close_after

    async def tick(self) -> None:
        """Bring the rooms in line with the timetable at ``clock.now()``."""
        async with self._lock:
            now = self.clock.now()
            try:
                self._today = await asyncio.to_thread(self._load, now.date())
                loaded = True
            except Exception:
                log.exception("lesson_scheduler_db_failed", day=str(now.date()))
                loaded = False
            due: dict[int, tuple[LessonOccurrence, datetime]] = {}
            for occurrence in self._today if loaded else []:
                opens_at, closes_at = self.window(occurrence)
                if opens_at <= now < closes_at:
                    held = due.get(occurrence.sync_group_id)
                    if held is None or closes_at > held[1]:
                        due[occurrence.sync_group_id] = (occurrence, closes_at)
            for group_id, entry in list(self._open.items()):
                # Without fresh records, a room stays open until its known closing time.
                if group_id not in due and (loaded or now >= entry.closes_at):
                    await self._close(group_id)
            for occurrence, closes_at in due.values():
                try:
                    await self._ensure_open(occurrence, closes_at)
                except RoomOwnedElsewhere as exc:  # another worker's scheduler has it
                    log.info("lesson_room_elsewhere", room=exc.room_id, owner=exc.owner)
                except Exception:
                    log.exception("lesson_room_open_failed", sync_group=occurrence.sync_group_id)

    def _load(self, day: date) -> list[LessonOccurrence]:
        with self._sessions() as session:
            return lesson_occurrences(session, day)

    async def _ensure_open(self, occurrence: LessonOccurrence, closes_at: datetime) -> None:
        group_id = occurrence.sync_group_id
        registry = self._rooms()
        current = self._open.get(group_id)
        if (
            current is None
            and self._placement is not None
            and not await self._placement(occurrence.room_id)
        ):
            return
        existing = await registry.get(occurrence.room_id)
        if current is not None and existing is current.room and not existing.closed:
            current.closes_at = closes_at
            return
        if current is not None:
            # The room closed under us (the last classroom left): record the new one afresh.
            del self._open[group_id]
            await self._stop_recorder(current)
        opened_here = existing is None or existing.closed
        room = await registry.open(occurrence.room_id, kind="lesson")
        registry.keep_open(occurrence.room_id)
        try:
            recording_id = await self._attach_recorder(room, group_id)
        except asyncio.CancelledError:
            # Cancelled (stop, shutdown) with the room kept open and not yet ours to close:
            # nobody else would close it before close_all.
            await asyncio.shield(
                self._release_cancelled(
                    registry, room, occurrence, closes_at, opened_here=opened_here
                )
            )
            raise
        self._track_run(room, occurrence, recording_id)
        self._open[group_id] = _OpenRoom(room, occurrence, closes_at, recording_id)
        log.info(
            "lesson_room_opened",
            room=occurrence.room_id,
            code=occurrence.code,
            starts_at=occurrence.starts_at.isoformat(),
            closes_at=closes_at.isoformat(),
            recording_id=recording_id,
        )

    async def _release_cancelled(
        self,
        registry: RoomRegistry,
        room: Room,
        occurrence: LessonOccurrence,
        closes_at: datetime,
        *,
        opened_here: bool,
    ) -> None:
        """What an ``_ensure_open`` cancelled after the room opened leaves behind: the room
        it opened is closed; one that was already open (a classroom joined first) is tracked
        with no recording, closed by the scheduler at its time like every room it keeps."""
        room_id = occurrence.room_id
        if not opened_here:
            self._open[occurrence.sync_group_id] = _OpenRoom(room, occurrence, closes_at, None)
            return
        try:
            if await registry.get(room_id) is room:
                await registry.close(room_id)
        except Exception:
            log.exception("lesson_room_close_failed", room=room_id)
        log.info("lesson_room_open_cancelled", room=room_id)

    async def _close(self, group_id: int) -> None:
        entry = self._open.pop(group_id)
        room_id = entry.occurrence.room_id
        try:
            registry = self._rooms()
            if await registry.get(room_id) is entry.room:
                await registry.close(room_id)
        except Exception:
            log.exception("lesson_room_close_failed", room=room_id)
        await self._stop_recorder(entry)
        log.info("lesson_room_closed", room=room_id, code=entry.occurrence.code)

    # -- recording hooks --------------------------------------------------------------

    async def _attach_recorder(self, room: Room, group_id: int) -> int | None:
        if self._recording is None:
            return None
        try:
            from recordings.service import attach_recorder
        except ImportError:
            log.exception("recordings_unavailable", sync_group=group_id)
            return None
        target = self._recording
        try:
            recording_id, _ = await attach_recorder(
                room,
                sync_group_id=group_id,
                sessions=self._sessions,
                media_root=target.media_root,
                jobs=target.jobs,
                active=target.active,
            )
        except Exception:  # a recording that cannot start must not keep the lesson shut
            log.exception("lesson_recording_not_started", sync_group=group_id)
            return None
        return recording_id

    async def _stop_recorder(self, entry: _OpenRoom) -> None:
        if entry.recording_id is None or self._recording is None:
            return
        recorder = self._recording.active.by_id.get(entry.recording_id)
        if recorder is None:
            return  # already stopped (the room's lesson_ended did it)
        with contextlib.suppress(Exception):
            await recorder.stop()

    # -- lesson-run hook (research.lesson_runs: what actually happened, for the dashboard) --

    def _track_run(
        self, room: Room, occurrence: LessonOccurrence, recording_id: int | None
    ) -> None:
        try:
            from research.lesson_runs import attach_run_tracker

            # The tracker ends by itself when the room's events close.
            attach_run_tracker(
                room, occurrence, self._sessions, self.clock, recording_id=recording_id
            )
        except Exception:  # tracking must never keep a lesson shut
            log.exception("lesson_run_tracker_not_started", sync_group=occurrence.sync_group_id)

    # -- what the API may show --------------------------------------------------------

    def scheduled(self) -> list[dict[str, Any]]:
        """Today's synchronized lessons as of the last tick: open, upcoming or over."""
        now = self.clock.now()
        rows = []
        for occurrence in self._today:
            opens_at, closes_at = self.window(occurrence)
            entry = self._open.get(occurrence.sync_group_id)
            if entry is not None and opens_at <= now < closes_at:
                state = "open"
            elif now < opens_at:
                state = "upcoming"
            else:
                state = "over"
            rows.append(
                {
                    "sync_group_id": occurrence.sync_group_id,
                    "code": occurrence.code,
                    "room": occurrence.room_id,
                    "opens_at": opens_at.isoformat(),
                    "starts_at": occurrence.starts_at.isoformat(),
                    "ends_at": occurrence.ends_at.isoformat(),
                    "closes_at": closes_at.isoformat(),
                    "state": state,
                    "recording_id": entry.recording_id if entry is not None else None,
                }
            )
        return rows
