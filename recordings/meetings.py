"""Recording online 教研 meetings into the library: the row, starting and finishing.

The meeting's host (the session's host, the group leader or the alliance admin: the room
checks ``identity.host``) starts and stops the recording over the meeting socket; the process
that owns the room (web process or SFU worker) records it (``recordings.meeting_capture``).
Once the files are closed the stop answers; a background task of ``MeetingRecordings`` then
finishes the recording: the preview (``recordings.meeting_preview``), the recording ready on
it, and ``compose_meeting`` (``recordings.composition``) queued, which makes the one
replayable file and then runs the usual processing (poster, chapters, renditions).

A process killed while it records (or while it finishes) leaves the row unfinished: the next
process that opens the meeting's room, the web process's start (rooms in process) and the SFU
workers' sweep (rooms nobody hosts, files that stood still: judged on the clock of the storage
that stamped them, ``recordings.storage_clock``) finish it from the files on disk, exactly once
(the row is taken with a compare-and-set). The process finishing a recording holds it on a
short lease (``FinishClaim``, renewed every quarter of it), so a killed finisher's work is
taken over once its lease ran out, by whichever of those finds it; a finisher that lost its
claim stops and writes nothing. The lease is written and judged on the database server's clock
(``db_now``, ``seconds_since``: the renewal, the takeover's condition in the same UPDATE, the
time left to a finder), never on a process's own: a host whose clock runs ahead takes over no
live lease, one whose clock runs behind waits no longer than the lease. A graceful stop lets
the finishing in progress run to its end within a grace (``MeetingRecordings.close``). Every
database write runs in a thread, never on the event loop that forwards the meeting's packets.

A meeting recording belongs to the alliance and is never shown to a class: pupils never see
it (``recordings.service.visible_filter``), teachers and staff see it by their scope.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar, cast

from sqlalchemy import CursorResult, and_, or_, select, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from common.alliance.models import School, Teacher
from common.db import db_now, seconds_since, transaction
from common.errors import AppError, NotFoundError
from common.jobs import JobQueue
from common.logging import get_logger
from common.settings import Settings
from recordings.capture import DEFAULT_MIN_FREE_BYTES
from recordings.models import Recording
from recordings.service import RAW_NAME, TIMEZONE, alerts_to_row
from recordings.storage_clock import StorageClock, fresh_stat, is_probe
from research.models import ResearchGroup, ResearchSession
from streaming.sfu.errors import RoomError

if TYPE_CHECKING:
    from recordings.meeting_capture import MeetingRecorder, MeetingTimeline
    from streaming.sfu.identity import ParticipantIdentity
    from streaming.sfu.room import Room

log = get_logger(__name__)

T = TypeVar("T")

COMPOSE_JOB = "compose_meeting_recording"
PREVIEW_MESSAGE = "可先播放预览版（全员混音与主持人画面）；完整版合成中"
PENDING_MESSAGE = "正在生成预览…"
COMPOSE_MESSAGE = "等待合成会议录像"
EMPTY_MESSAGE = "录制期间没有收到任何参会教师的音视频，未生成录像"
# The lease of a process finishing a recording (TONGKE_RECORDING_MEETING_FINISH_LEASE_SECONDS):
# renewed every quarter of it while the preview is made (seconds; a few minutes to remake
# every chunk of a long meeting), so a killed finisher's work waits at most this long.
FINISH_LEASE_S = 40.0
# A graceful stop lets the finishing in progress run this long
# (TONGKE_RECORDING_MEETING_FINISH_GRACE_SECONDS), then hands what is left back.
FINISH_GRACE_S = 20.0
# ``outputs`` key of the claim's token: which process holds the recording now
CLAIM_KEY = "finish_claim"


def meeting_title(group_name: str, day: date, topic: str) -> str:
    return f"教研：{group_name} {day:%m月%d日} {topic}".strip()[:200]


def new_recording_for_research_session(
    session: Session, *, research_session_id: int, started_by: int | None = None
) -> Recording:
    """A ``recording`` row tagged with the session: alliance, the group's subject, the host as
    teacher, the session's day and topic; linked both ways (``ResearchSession.recording_id``).
    ``started_by``: the teacher who pressed 开始录制 (the school when there is no host)."""
    row = session.get(ResearchSession, research_session_id)
    if row is None:
        raise NotFoundError(f"教研活动 {research_session_id} 不存在")
    group = session.get_one(ResearchGroup, row.group_id)
    teacher_id = row.host_id or group.leader_id or started_by
    teacher = session.get(Teacher, teacher_id) if teacher_id is not None else None
    school_id = (
        teacher.school_id
        if teacher is not None
        else session.scalars(
            select(School.id).where(School.alliance_id == group.alliance_id).order_by(School.id)
        ).first()
    )
    if school_id is None:
        raise NotFoundError("教联体中没有学校，无法保存录像")
    day = row.day  # the room opens only around the session's own time
    recording = Recording(
        alliance_id=group.alliance_id,
        school_id=school_id,
        campus_id=teacher.home_campus_id if teacher is not None else None,
        research_session_id=row.id,
        subject_id=group.subject_id,
        teacher_id=teacher.id if teacher is not None else None,
        date=day,
        topic=row.topic,
        title=meeting_title(group.name, day, row.topic),
        status="recording",
    )
    session.add(recording)
    session.flush()
    recording.raw_path = f"recordings/{recording.id}/{RAW_NAME}"
    row.recording_id = recording.id
    session.flush()
    return recording


@dataclass(frozen=True)
class UnfinishedMeeting:
    """A meeting recording no process has finished: still "recording" (its recorder may be
    running in this or another process, or its process died) or taken and not finished."""

    recording_id: int
    research_session_id: int
    folder: Path
    chunk_s: float | None  # the preview's chunk length the recording was made with
    created_s: float  # seconds since the row was made, on the database's clock
    # taken by a process to finish it: how long its lease had left when found, unless renewed
    # (seconds, on the database's clock; 0 or less: ran out)
    lease_left_s: float | None = None


def _taken(row: Recording) -> bool:
    """Taken by a process to finish it, and not finished (``claim_to_finish``'s condition)."""
    return (
        row.status == "processing" and row.status_message == PENDING_MESSAGE and row.job_id is None
    )


def idle_seconds(part: UnfinishedMeeting) -> float | None:
    """Seconds since the recording's newest file was written, on the clock of the storage
    that stamped it (``recordings.storage_clock``); with no file, since the row was made, on
    the database's. None: the storage's clock cannot be read (logged). A blocking call."""
    times = [
        fresh_stat(path).st_mtime
        for path in part.folder.rglob("*")
        if path.is_file() and not is_probe(path)
    ]
    if not times:
        return part.created_s
    return StorageClock().seconds_since(part.folder, written=max(times))


def unfinished_meetings(
    sessions: sessionmaker[Session],
    *,
    media_root: Path,
    research_session_id: int | None = None,
    lease_s: float = FINISH_LEASE_S,
) -> list[UnfinishedMeeting]:
    """The meeting recordings to finish (of one session, or all), with how old their rows are
    and, for those a process took, how long its lease has left, by the database's clock (a
    blocking call: run it in a thread)."""
    query = select(
        Recording, seconds_since(Recording.updated_at), seconds_since(Recording.created_at)
    ).where(
        Recording.research_session_id.is_not(None),
        Recording.status.in_(("recording", "processing")),
    )
    if research_session_id is not None:
        query = query.where(Recording.research_session_id == research_session_id)
    found = []
    with sessions() as session:
        for row, held_s, created_s in session.execute(query):
            taken = _taken(row)
            if not (row.status == "recording" or taken) or row.research_session_id is None:
                continue
            folder = (media_root / row.raw_path).parent
            chunk_s = (row.outputs or {}).get("preview_chunk_s")
            found.append(
                UnfinishedMeeting(
                    recording_id=row.id,
                    research_session_id=row.research_session_id,
                    folder=folder,
                    chunk_s=float(chunk_s) if chunk_s else None,
                    created_s=created_s,
                    lease_left_s=lease_s - held_s if taken else None,
                )
            )
    return found


def being_finished(session: Session, recording_id: int, *, lease_s: float) -> bool:
    """Whether a process took the meeting recording to finish it (its preview) and its lease
    (``lease_s``) still runs, by the database's clock: what it does, a composition queued
    now (重新处理) would do beside it. One that ran out (its finisher died) is not."""
    found = session.execute(
        select(Recording, seconds_since(Recording.updated_at)).where(Recording.id == recording_id)
    ).first()
    return found is not None and _taken(found[0]) and found[1] <= lease_s


def claim_to_finish(
    sessions: sessionmaker[Session], *, recording_id: int, lease_s: float = FINISH_LEASE_S
) -> str | None:
    """Take a meeting recording to finish it: one still "recording" (just stopped here, or left
    by a process that died) or one taken by a process whose lease (``lease_s``, renewed by
    ``renew_claim``) ran out, by the database's clock. One conditional UPDATE: of the processes
    that find the same recording, exactly one gets the claim's token (the others None), kept in
    ``outputs``. The recording then shows 正在生成预览…."""
    with transaction(sessions) as session:
        taken = session.execute(
            update(Recording)
            .where(
                Recording.id == recording_id,
                Recording.research_session_id.is_not(None),
                or_(
                    Recording.status == "recording",
                    and_(
                        Recording.status == "processing",
                        Recording.job_id.is_(None),
                        Recording.status_message == PENDING_MESSAGE,
                        # renewed on the database's clock, judged on it: no host's clock
                        seconds_since(Recording.updated_at) > lease_s,
                    ),
                ),
            )
            .values(status="processing", status_message=PENDING_MESSAGE, updated_at=db_now())
            .execution_options(synchronize_session=False)
        )
        if cast(CursorResult[Any], taken).rowcount != 1:
            return None
        # the row is this transaction's now (locked): the token goes in with the claim
        token = uuid.uuid4().hex
        recording = session.get_one(Recording, recording_id)
        recording.outputs = {**(recording.outputs or {}), CLAIM_KEY: token}
        return token


def _holds(token: str) -> Any:
    return Recording.outputs[CLAIM_KEY].as_string() == token


def renew_claim(sessions: sessionmaker[Session], *, recording_id: int, token: str) -> bool:
    """The finisher still working: its lease starts again now (the database's clock). One
    conditional UPDATE that succeeds only while the claim is still this one (False: taken
    over, or finished)."""
    with transaction(sessions) as session:
        renewed = session.execute(
            update(Recording)
            .where(
                Recording.id == recording_id,
                Recording.status == "processing",
                Recording.job_id.is_(None),
                _holds(token),
            )
            .values(updated_at=db_now())
            .execution_options(synchronize_session=False)
        )
        return cast(CursorResult[Any], renewed).rowcount == 1


def release_unfinished(
    sessions: sessionmaker[Session], *, recording_id: int, token: str | None = None
) -> None:
    """The process stops while it finishes a recording: back to "recording", which the next
    process that owns the room (or the sweep) finishes as if this one had died. ``token``:
    only while that claim still holds it."""
    with transaction(sessions) as session:
        session.execute(
            update(Recording)
            .where(
                Recording.id == recording_id,
                Recording.status == "processing",
                Recording.job_id.is_(None),
                Recording.status_message == PENDING_MESSAGE,
                *([_holds(token)] if token is not None else []),
            )
            .values(status="recording", status_message="录制已停止，等待生成预览")
            .execution_options(synchronize_session=False)
        )


class ClaimLostError(Exception):
    """The recording was taken over (this process's lease ran out): it must write nothing."""


@dataclass
class FinishClaim:
    """A meeting recording this process took to finish (``claim_to_finish``), held while it
    works: renewed every quarter of the lease, in a thread; lost, the work is cancelled."""

    sessions: sessionmaker[Session]
    recording_id: int
    token: str
    lease_s: float = FINISH_LEASE_S

    def renew(self) -> bool:
        """Blocking: run it in a thread."""
        return renew_claim(self.sessions, recording_id=self.recording_id, token=self.token)

    async def confirm(self) -> None:
        """Renewed now, or ``ClaimLostError`` (before what only the holder may do)."""
        if not await asyncio.to_thread(self.renew):
            raise ClaimLostError(f"meeting recording {self.recording_id} taken over")

    async def hold(self, work: Awaitable[T]) -> T:
        """``work``'s result, the claim renewed meanwhile; ``ClaimLostError`` (the work
        cancelled) once a renewal finds it taken, or none succeeded for a whole lease."""
        working = asyncio.ensure_future(work)
        renewing = asyncio.ensure_future(self._renew_until_lost())
        try:
            await asyncio.wait((working, renewing), return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            for task in (working, renewing):
                task.cancel()
            await asyncio.gather(working, renewing, return_exceptions=True)
            raise
        renewing.cancel()
        if not working.done():  # the renewals ended: the claim is lost
            working.cancel()
        await asyncio.gather(working, renewing, return_exceptions=True)
        if working.cancelled():
            raise ClaimLostError(f"meeting recording {self.recording_id} taken over")
        return working.result()

    async def _renew_until_lost(self) -> None:
        renewed = time.monotonic()
        while True:
            await asyncio.sleep(self.lease_s / 4)
            try:
                if not await asyncio.to_thread(self.renew):
                    return
                renewed = time.monotonic()
            except SQLAlchemyError as exc:  # the database may come back within the lease
                log.warning(
                    "meeting_recording_claim_not_renewed",
                    recording=self.recording_id,
                    error=repr(exc),
                )
                if time.monotonic() - renewed >= self.lease_s:
                    return  # another process may have taken it by now


@dataclass
class MeetingRecordings:
    """What a process needs to record the meeting rooms it owns, and those it is recording."""

    sessions: sessionmaker[Session]
    media_root: Path
    jobs: JobQueue
    # a recorder raises ``low_disk`` below this much free space (TONGKE_RECORDING_MIN_FREE_MB)
    min_free_bytes: int = DEFAULT_MIN_FREE_BYTES
    # the preview's chunk length (TONGKE_RECORDING_MEETING_CHUNK_SECONDS; None: no preview)
    preview_chunk_s: float | None = None
    by_room: dict[str, tuple[int, MeetingRecorder]] = field(default_factory=dict)
    alert_tasks: set[asyncio.Future[None]] = field(default_factory=set)
    # a finisher's lease (TONGKE_RECORDING_MEETING_FINISH_LEASE_SECONDS), and how long a
    # graceful stop lets the finishing run (TONGKE_RECORDING_MEETING_FINISH_GRACE_SECONDS)
    finish_lease_s: float = FINISH_LEASE_S
    finish_grace_s: float = FINISH_GRACE_S
    # recordings being finished here (preview, composition queued), the searches for
    # unfinished ones, and the searches again when the lease of a recording another process
    # holds runs out (by research session): background tasks this object owns, ended by
    # ``close()``
    finishing: dict[int, asyncio.Task[None]] = field(default_factory=dict)
    searches: set[asyncio.Task[list[int]]] = field(default_factory=set)
    lookouts: dict[int, asyncio.Task[list[int]]] = field(default_factory=dict)
    starting: set[str] = field(default_factory=set)  # rooms whose recording row is being made
    closing: bool = False

    @classmethod
    def from_settings(
        cls, sessions: sessionmaker[Session], settings: Settings, jobs: JobQueue
    ) -> MeetingRecordings:
        """As the web process and the SFU workers record: the configured free-space floor
        and preview, like ``ActiveRecordings.from_settings`` for lessons."""
        return cls(
            sessions,
            settings.media_root,
            jobs,
            min_free_bytes=settings.recording_min_free_mb * 1024 * 1024,
            preview_chunk_s=settings.recording_meeting_chunk_seconds or None,
            finish_lease_s=settings.recording_meeting_finish_lease_seconds,
            finish_grace_s=settings.recording_meeting_finish_grace_seconds,
        )

    def _new_row(self, research_session_id: int, started_by: int | None) -> tuple[int, Path]:
        with transaction(self.sessions) as session:
            recording = new_recording_for_research_session(
                session, research_session_id=research_session_id, started_by=started_by
            )
            if self.preview_chunk_s:  # what a process finishing it after a crash must know
                recording.outputs = {"preview_chunk_s": self.preview_chunk_s}
            recording_id, raw_path = recording.id, recording.raw_path
        folder = (self.media_root / raw_path).parent
        folder.mkdir(parents=True, exist_ok=True)
        return recording_id, folder

    async def start(self, room: Room, by: ParticipantIdentity) -> None:
        """``RecordingHooks.start``: a new library row and the room's recorder."""
        from recordings.meeting_capture import MeetingRecorder
        from streaming.access import research_session_of_room

        research_session_id = research_session_of_room(room.room_id)
        if research_session_id is None:
            raise NotFoundError("这不是教研会议")
        prefix, _, number = by.participant_id.partition("-")
        started_by = int(number) if prefix == "teacher" and number.isdigit() else None
        self.starting.add(room.room_id)
        try:
            recording_id, folder = await asyncio.to_thread(
                self._new_row, research_session_id, started_by
            )
        except AppError as exc:  # the room tells the host why, the meeting goes on
            raise RoomError(exc.message, code=exc.code) from exc
        except (SQLAlchemyError, OSError) as exc:
            log.exception("meeting_recording_start_failed", room=room.room_id)
            raise RoomError("录像服务暂不可用，请稍后再试", code="recording_failed") from exc
        finally:
            self.starting.discard(room.room_id)
        recorder = MeetingRecorder(
            room,
            folder,
            min_free_bytes=self.min_free_bytes,
            preview_chunk_s=self.preview_chunk_s,
        )

        def finish_later(stopped: MeetingRecorder) -> None:
            self.by_room.pop(room.room_id, None)
            recorded = any(r.summary and r.summary.bytes for r in stopped.recorders.values())
            self.finish_soon(
                recording_id, folder, chunk_s=stopped.preview_chunk_s, recorded=recorded
            )

        recorder.on_stopped.append(finish_later)
        recorder.on_alert.append(alerts_to_row(self.sessions, recording_id, self.alert_tasks))
        self.by_room[room.room_id] = (recording_id, recorder)
        recorder.start()
        log.info(
            "meeting_recording", room=room.room_id, recording=recording_id, by=by.participant_id
        )

    async def stop(self, room: Room) -> None:
        """``RecordingHooks.stop``: close the files and answer; the recording is finished
        (preview, composition queued) in the background (``finish_soon``)."""
        running = self.by_room.get(room.room_id)
        if running is not None:
            await running[1].stop()

    def finish_soon(
        self, recording_id: int, folder: Path, *, chunk_s: float | None, recorded: bool | None
    ) -> None:
        """Finish the recording in a task of this object: take it (``claim_to_finish``), then
        ``finish_meeting_recording`` while the claim is renewed (``FinishClaim``); a failure
        is logged; the stop of the process lets it run within its grace, then cancels it and
        leaves the recording to the next one (``release_unfinished``)."""
        if recording_id in self.finishing:
            return
        task = asyncio.create_task(
            self._finish(recording_id, folder, chunk_s=chunk_s, recorded=recorded),
            name=f"meeting-recording-{recording_id}-finish",
        )
        self.finishing[recording_id] = task
        task.add_done_callback(lambda done: self._finished(recording_id, done))

    async def _finish(
        self, recording_id: int, folder: Path, *, chunk_s: float | None, recorded: bool | None
    ) -> None:
        taking = asyncio.ensure_future(
            asyncio.to_thread(
                claim_to_finish,
                self.sessions,
                recording_id=recording_id,
                lease_s=self.finish_lease_s,
            )
        )
        try:
            token = await asyncio.shield(taking)
        except asyncio.CancelledError:
            if (token := await taking) is not None:  # its thread ran to the end: give it back
                await asyncio.to_thread(
                    release_unfinished, self.sessions, recording_id=recording_id, token=token
                )
            raise
        if token is None:
            log.info("meeting_recording_taken_elsewhere", recording=recording_id)
            return
        claim = FinishClaim(self.sessions, recording_id, token, self.finish_lease_s)
        try:
            await claim.hold(
                finish_meeting_recording(
                    self.sessions,
                    jobs=self.jobs,
                    recording_id=recording_id,
                    folder=folder,
                    chunk_s=chunk_s,
                    recorded=recorded,
                    claim=claim,
                )
            )
        except ClaimLostError:
            log.warning("meeting_recording_claim_lost", recording=recording_id)
        except asyncio.CancelledError:
            await asyncio.to_thread(
                release_unfinished, self.sessions, recording_id=recording_id, token=token
            )
            raise

    def _finished(self, recording_id: int, task: asyncio.Task[None]) -> None:
        self.finishing.pop(recording_id, None)
        if not task.cancelled() and (error := task.exception()) is not None:
            log.error(
                "meeting_recording_finish_failed",
                recording=recording_id,
                error=repr(error),
                exc_info=error,
            )

    async def recover_interrupted(
        self,
        *,
        research_session_id: int | None = None,
        stale_after_s: float = 0.0,
        hosted: Callable[[int], Awaitable[bool]] | None = None,
    ) -> list[int]:
        """Finish (in the background) the meeting recordings of one research session, or of
        all, that no recorder of this process holds, whose files have not been written for
        ``stale_after_s``, and whose room is not ``hosted`` (by another process); and those a
        process took to finish whose lease ran out (it died: taken over whoever hosts the
        room). One whose lease still runs is looked at again when it ends. Returns the ids it
        tries (another process finding them too takes none of them twice)."""
        from streaming.access import research_session_of_room

        found = await asyncio.to_thread(
            unfinished_meetings,
            self.sessions,
            media_root=self.media_root,
            research_session_id=research_session_id,
            lease_s=self.finish_lease_s,
        )
        tried = []
        for part in found:
            # what this process records or finishes now (after the query's await: current)
            running = {recording_id for recording_id, _ in self.by_room.values()}
            starting = {research_session_of_room(room_id) for room_id in self.starting}
            if part.recording_id in running | set(self.finishing):
                continue
            if part.lease_left_s is not None:
                if part.lease_left_s > 0:  # the database's clock: this host's plays no part
                    self._look_again(
                        part.research_session_id,
                        after_s=part.lease_left_s,
                        stale_after_s=stale_after_s,
                        hosted=hosted,
                    )
                    continue
            else:
                if part.research_session_id in starting:
                    continue
                if hosted is not None and await hosted(part.research_session_id):
                    continue
                if stale_after_s > 0:  # on the files' storage's clock, or the database's
                    idle_s = await asyncio.to_thread(idle_seconds, part)
                    if idle_s is None or idle_s < stale_after_s:
                        continue
            log.warning("meeting_recording_unfinished", recording=part.recording_id)
            self.finish_soon(
                part.recording_id,
                part.folder,
                chunk_s=part.chunk_s or self.preview_chunk_s,
                recorded=None,
            )
            tried.append(part.recording_id)
        return tried

    def _look_again(
        self,
        research_session_id: int,
        *,
        after_s: float,
        stale_after_s: float,
        hosted: Callable[[int], Awaitable[bool]] | None,
    ) -> None:
        """Search the session's recordings again once a lease another process holds ran out
        (renewed meanwhile: looked at again then)."""
        if research_session_id in self.lookouts or self.closing:
            return

        async def later() -> list[int]:
            # the claim's own condition is strict (older than the lease): a little after it
            await asyncio.sleep(after_s + min(1.0, self.finish_lease_s / 10))
            self.lookouts.pop(research_session_id, None)
            return await self.recover_interrupted(
                research_session_id=research_session_id,
                stale_after_s=stale_after_s,
                hosted=hosted,
            )

        task = asyncio.create_task(later(), name=f"meeting-recordings-lease-{research_session_id}")
        self.lookouts[research_session_id] = task

        def done(ended: asyncio.Task[list[int]]) -> None:
            if self.lookouts.get(research_session_id) is ended:
                del self.lookouts[research_session_id]
            self._searched(ended)

        task.add_done_callback(done)

    def recover_room_soon(self, room: Room) -> None:
        """A meeting room has just opened here: what a process that held it before left
        unfinished is finished now (in the background; the join goes on)."""
        from streaming.access import research_session_of_room

        research_session_id = research_session_of_room(room.room_id)
        if research_session_id is None or self.closing:
            return
        task = asyncio.create_task(
            self.recover_interrupted(research_session_id=research_session_id),
            name=f"meeting-recordings-recover-{room.room_id}",
        )
        self.searches.add(task)
        task.add_done_callback(self._searched)

    def _searched(self, task: asyncio.Task[list[int]]) -> None:
        self.searches.discard(task)
        if not task.cancelled() and (error := task.exception()) is not None:
            log.error("meeting_recording_recover_failed", error=repr(error), exc_info=error)

    async def close(self, *, grace_s: float | None = None) -> None:
        """The process stops (after its rooms closed): no more searches; the recorders end,
        and the recordings being finished get ``grace_s`` (default ``finish_grace_s``) to end,
        then are cancelled and go back to "recording" for the next process
        (``release_unfinished``)."""
        self.closing = True
        searches: list[asyncio.Future[Any]] = [*self.searches, *self.lookouts.values()]
        for task in searches:
            task.cancel()
        await asyncio.gather(*searches, return_exceptions=True)
        # a room's close stops its recorder in a task: its files closed, it is finished too
        stopping = [recorder.stop() for _, recorder in list(self.by_room.values())]
        await asyncio.gather(*stopping, return_exceptions=True)
        finishing = list(self.finishing.values())
        grace = self.finish_grace_s if grace_s is None else grace_s
        if finishing and grace > 0:
            log.info("meeting_recordings_finishing_before_stop", recordings=list(self.finishing))
            await asyncio.wait(finishing, timeout=grace)
        for task in finishing:
            if not task.done():
                log.warning("meeting_recording_left_unfinished_at_stop", task=task.get_name())
                task.cancel()
        await asyncio.gather(*finishing, *self.alert_tasks, return_exceptions=True)


def _final_timeline(folder: Path, recorded: bool | None) -> tuple[MeetingTimeline, bool] | None:
    """The recording's timeline, and whether its process died before the stop; None when it
    holds nothing. A timeline left open by a crash ends where the files do (written back, so
    the preview and the composition agree on its length)."""
    from recordings.composition import recorded_duration, source_files
    from recordings.meeting_capture import TIMELINE_NAME, MeetingTimeline, write_timeline

    path = folder / TIMELINE_NAME
    if recorded is False or not path.exists():
        return None
    timeline = MeetingTimeline.read(path)
    interrupted = timeline.stopped_at is None
    if interrupted or recorded is None:
        duration = recorded_duration(source_files(folder, timeline))
        if duration <= 0:
            return None
        if interrupted:
            timeline.stopped_at = timeline.started_at + duration
            write_timeline(path, timeline)
    return timeline, interrupted


def _claimed_row(session: Session, recording_id: int, token: str | None) -> Recording | None:
    """The row, locked for this transaction (PostgreSQL), if ``token`` still holds it (None:
    whoever calls holds it); ``ClaimLostError`` if another process took it over."""
    recording = session.get(Recording, recording_id, with_for_update=token is not None)
    if recording is None or token is None:
        return recording
    if (recording.outputs or {}).get(CLAIM_KEY) != token:
        raise ClaimLostError(f"meeting recording {recording_id} taken over")
    return recording


def _without_claim(outputs: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in outputs.items() if key != CLAIM_KEY}


def _set_status(
    sessions: sessionmaker[Session],
    *,
    recording_id: int,
    status: str,
    message: str,
    outputs: dict[str, Any] | None = None,
    token: str | None = None,
) -> dict[str, Any]:
    """The recording's ``outputs`` after the write. ``token``: only while that claim holds
    the recording (``ClaimLostError`` otherwise); a status other than "processing" ends it."""
    with transaction(sessions) as session:
        recording = _claimed_row(session, recording_id, token)
        if recording is None:
            raise NotFoundError(f"录像 {recording_id} 不存在")
        recording.status = status
        recording.status_message = message
        merged = {**(recording.outputs or {}), **(outputs or {})}
        recording.outputs = merged if status == "processing" else _without_claim(merged)
        return merged


def _published(
    sessions: sessionmaker[Session],
    *,
    recording_id: int,
    job_id: str | None,
    preview: dict[str, Any] | None,
    message: str,
    token: str | None = None,
) -> None:
    """The composition's job noted and, with a preview, the recording ready on it: one
    transaction, after the job was queued (a crash before leaves the recording to finish).
    ``token``: only while that claim holds the recording, which it then gives up."""
    with transaction(sessions) as session:
        recording = _claimed_row(session, recording_id, token)
        if recording is None:
            return
        recording.job_id = recording.job_id or job_id
        outputs = _without_claim(recording.outputs or {})
        recording.outputs = outputs
        if recording.status != "processing" or outputs.get("meeting_version") == "composed":
            return  # deleted, failed or composed meanwhile
        recording.status_message = message
        if preview is not None:
            recording.status = "ready"
            recording.outputs = {**outputs, **preview, "playable": "preview"}


async def finish_meeting_recording(
    sessions: sessionmaker[Session],
    *,
    jobs: JobQueue,
    recording_id: int,
    folder: Path,
    chunk_s: float | None,
    recorded: bool | None = None,
    claim: FinishClaim | None = None,
) -> str | None:
    """Finish a meeting recording this process took (``claim_to_finish``): the preview made
    (``chunk_s``: its chunks' length; None: no preview), the composition queued and the
    recording ready on the preview (the status says so when the recording was interrupted),
    or failed when nothing was recorded. ``recorded``: whether the recorders wrote anything
    (None: judged from the files). With the ``claim`` it holds, every write is made only
    while it still does (``ClaimLostError`` otherwise). Returns the composition's job id."""
    token = claim.token if claim is not None else None
    try:
        final = await asyncio.to_thread(_final_timeline, folder, recorded)
    except (OSError, ValueError, KeyError, TypeError) as exc:  # meeting.json or a sidecar
        log.warning("meeting_recording_unreadable", recording=recording_id, error=repr(exc))
        unreadable = f"会议录像的时间线无法读取，未生成录像：{exc}"[:500]
        await asyncio.to_thread(
            _set_status,
            sessions,
            recording_id=recording_id,
            status="failed",
            message=unreadable,
            token=token,
        )
        return None
    if final is None:
        await asyncio.to_thread(
            _set_status,
            sessions,
            recording_id=recording_id,
            status="failed",
            message=EMPTY_MESSAGE,
            token=token,
        )
        return None
    timeline, interrupted = final
    assert timeline.stopped_at is not None
    stopped = datetime.fromtimestamp(timeline.stopped_at, TIMEZONE)
    waiting = f"录制中断，录像止于 {stopped:%H:%M:%S}；{COMPOSE_MESSAGE}"
    outputs = await asyncio.to_thread(
        _set_status,
        sessions,
        recording_id=recording_id,
        status="processing",
        message=PENDING_MESSAGE if chunk_s else (waiting if interrupted else COMPOSE_MESSAGE),
        outputs={"raw_duration_s": timeline.duration_s}
        | ({"interrupted_at": stopped.isoformat()} if interrupted else {}),
        token=token,
    )
    # a finisher that died after it closed the timeline noted the interruption
    interrupted = interrupted or "interrupted_at" in outputs
    preview = await make_preview_for(
        recording_id=recording_id, folder=folder, timeline=timeline, chunk_s=chunk_s
    )
    if claim is not None:  # queued by whoever holds the recording, once
        await claim.confirm()
    job_id = await jobs.enqueue(
        COMPOSE_JOB, job_id=f"meeting-recording-{recording_id}", recording_id=recording_id
    )
    if preview is None:
        message = waiting if interrupted else COMPOSE_MESSAGE
    elif interrupted:
        message = f"录制中断，已保存到 {stopped:%H:%M:%S} 的预览版；完整版合成中"
    else:
        message = PREVIEW_MESSAGE
    await asyncio.to_thread(
        _published,
        sessions,
        recording_id=recording_id,
        job_id=job_id,
        preview=preview,
        message=message,
        token=token,
    )
    if preview is not None:
        log.info(
            "meeting_preview_ready", recording=recording_id, seconds=preview["preview_after_s"]
        )
    return job_id


async def make_preview_for(
    *, recording_id: int, folder: Path, timeline: MeetingTimeline, chunk_s: float | None
) -> dict[str, Any] | None:
    """The preview's ``outputs`` fields (``recordings.meeting_preview``), None without one: a
    failure only leaves the recording waiting for its composition, as without a preview."""
    from recordings.meeting_preview import make_preview
    from recordings.processing import ProcessingError

    if not chunk_s:
        return None
    started = time.monotonic()
    try:
        preview = await make_preview(folder, timeline, chunk_s=chunk_s)
    except (ProcessingError, OSError) as exc:
        log.warning("meeting_preview_failed", recording=recording_id, error=str(exc))
        return None
    preview["preview_after_s"] = round(time.monotonic() - started, 2)
    return preview


async def publish_preview(
    sessions: sessionmaker[Session],
    *,
    recording_id: int,
    folder: Path,
    timeline: MeetingTimeline,
    chunk_s: float,
) -> None:
    """The preview made and a ``processing`` recording ``ready`` on it (the composition is
    queued by whoever calls this)."""
    preview = await make_preview_for(
        recording_id=recording_id, folder=folder, timeline=timeline, chunk_s=chunk_s
    )
    if preview is not None:
        await asyncio.to_thread(
            _published,
            sessions,
            recording_id=recording_id,
            job_id=None,
            preview=preview,
            message=PREVIEW_MESSAGE,
        )
