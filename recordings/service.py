"""The resource library: who sees which recording, search, resume points, starting recorders.

Visibility follows ``common.accounts.permissions`` (``Kind.RECORDING``) with one row-level
twist the scope model cannot express: a recording belongs to the lead school, but is shown to
every class of its sync group, so for pupils (level "class") and school admins (level
"school") access is decided through ``recording_classes``. One SQL filter
(``visible_filter``) serves lists and single reads, so the two can never disagree.

Search (``q``) goes through the term index of ``recordings.search`` (Chinese by character
bigrams), the same SQL on SQLite and PostgreSQL. Not here yet: collections, retention.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from functools import partial
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from sqlalchemy import ColumnElement, false, func, or_, select, true
from sqlalchemy.orm import Session, sessionmaker

from common.accounts.permissions import Action, Kind, Principal, Scope, can, visibility
from common.alliance.models import (
    WEEKDAYS,
    Grade,
    Lesson,
    SchoolClass,
    Subject,
    SyncGroup,
    Teacher,
    Term,
    TimetableEntry,
    grade_name,
)
from common.db import seconds_since, transaction
from common.errors import ConflictError, NotFoundError, PermissionDeniedError
from common.jobs import JobQueue
from common.logging import get_logger
from recordings.models import (
    Recording,
    RecordingRetention,
    RecordingSearchTerm,
    RecordingView,
    recording_classes,
)
from recordings.processing import PROCESS_JOB
from recordings.schemas import RecordingFilters
from recordings.search import having_all_terms, query_terms
from recordings.storage import LocalStorage, MediaStorage
from recordings.storage_clock import StorageClock, fresh_stat

if TYPE_CHECKING:
    # PyAV and aiortc load only where a recorder runs (the web process starts without them).
    from common.settings import Settings
    from recordings.alerts import RecorderAlert
    from recordings.capture import LessonRecorder, RecordingSummary
    from recordings.live_hls import LiveHlsPolicy, LiveTranscoder
    from streaming.sfu.room import Room

log = get_logger(__name__)

TIMEZONE = ZoneInfo("Asia/Shanghai")
RAW_NAME = "raw.webm"
# A position reported after this long a pause starts a new viewing (one more replay).
NEW_VIEWING_AFTER = timedelta(minutes=30)


# -- visibility -------------------------------------------------------------------------


def _shown_to_classes(condition: ColumnElement[bool]) -> ColumnElement[bool]:
    shown = (
        select(recording_classes.c.recording_id)
        .join(SchoolClass, SchoolClass.id == recording_classes.c.class_id)
        .where(condition)
    )
    return Recording.id.in_(shown)


def visible_filter(principal: Principal) -> ColumnElement[bool]:
    """The recordings ``principal`` may see, as a WHERE clause."""
    level = visibility(principal, Kind.RECORDING)
    if level is None or level == "self":
        return false()
    if level == "all":
        return true()
    if principal.alliance_id is None:
        return false()
    in_alliance = Recording.alliance_id == principal.alliance_id
    if level == "alliance":
        return in_alliance
    if level == "school":
        return in_alliance & or_(
            Recording.school_id == principal.school_id,
            _shown_to_classes(SchoolClass.school_id == principal.school_id),
        )
    if principal.class_id is None:
        return false()
    # pupils watch their classes' lessons, never a teachers' 教研 meeting
    return (
        in_alliance
        & Recording.research_session_id.is_(None)
        & _shown_to_classes(recording_classes.c.class_id == principal.class_id)
    )


def get_visible(session: Session, principal: Principal, recording_id: int) -> Recording:
    """The recording, or 404 when there is none and 403 when the caller may not see it."""
    recording = session.get(Recording, recording_id)
    if recording is None:
        raise NotFoundError(f"录像 {recording_id} 不存在")
    allowed = session.scalar(
        select(func.count())
        .select_from(Recording)
        .where(Recording.id == recording_id, visible_filter(principal))
    )
    if not allowed:
        raise PermissionDeniedError(
            "没有权限查看此录像", detail={"role": principal.role, "kind": "recording"}
        )
    return recording


def may_manage(
    principal: Principal, *, alliance_id: int, school_id: int, teacher_id: int | None
) -> bool:
    """Admins within their scope; the lead teacher for their own lessons."""
    if principal.role == "teacher":
        return teacher_id is not None and principal.teacher_id == teacher_id
    return can(
        principal,
        Action.MANAGE,
        Kind.RECORDING,
        Scope(alliance_id=alliance_id, school_id=school_id),
    )


def authorize_manage(principal: Principal, recording: Recording) -> None:
    if not may_manage(
        principal,
        alliance_id=recording.alliance_id,
        school_id=recording.school_id,
        teacher_id=recording.teacher_id,
    ):
        raise PermissionDeniedError("没有权限管理此录像", detail={"role": principal.role})


# -- the library ------------------------------------------------------------------------


def search(session: Session, principal: Principal, filters: RecordingFilters) -> list[Recording]:
    """Recordings the caller may see, newest first, narrowed by ``filters``."""
    stmt = select(Recording).where(visible_filter(principal))
    if filters.school_id is not None:
        stmt = stmt.where(Recording.school_id == filters.school_id)
    if filters.grade is not None:
        stmt = stmt.where(Recording.grade_level == filters.grade)
    if filters.subject_id is not None:
        stmt = stmt.where(Recording.subject_id == filters.subject_id)
    if filters.teacher_id is not None:
        stmt = stmt.where(Recording.teacher_id == filters.teacher_id)
    if filters.sync_group_id is not None:
        stmt = stmt.where(Recording.sync_group_id == filters.sync_group_id)
    if filters.status is not None:
        stmt = stmt.where(Recording.status == filters.status)
    if filters.date_from is not None:
        stmt = stmt.where(Recording.date >= filters.date_from)
    if filters.date_to is not None:
        stmt = stmt.where(Recording.date <= filters.date_to)
    if filters.q and (terms := query_terms(filters.q)):
        # every term of the query (recordings.search): the same SQL on SQLite and PostgreSQL
        having_all = having_all_terms(
            RecordingSearchTerm.recording_id, RecordingSearchTerm.term, terms
        )
        stmt = stmt.where(Recording.id.in_(having_all))
    stmt = stmt.order_by(Recording.date.desc(), Recording.id.desc())
    return list(session.scalars(stmt.limit(filters.limit).offset(filters.offset)))


def replays_of(session: Session, recording_ids: list[int]) -> dict[int, int]:
    if not recording_ids:
        return {}
    rows = session.execute(
        select(RecordingView.recording_id, func.sum(RecordingView.replays))
        .where(RecordingView.recording_id.in_(recording_ids))
        .group_by(RecordingView.recording_id)
    ).all()
    return {recording_id: int(total or 0) for recording_id, total in rows}


def position_of(session: Session, principal: Principal, recording_id: int) -> float | None:
    return session.scalar(
        select(RecordingView.position_s).where(
            RecordingView.account_id == principal.account_id,
            RecordingView.recording_id == recording_id,
        )
    )


def record_position(
    session: Session, principal: Principal, recording: Recording, *, position_s: float
) -> RecordingView:
    """Remember where the viewer is; the first report, or one after a long pause, is a replay."""
    view = session.scalars(
        select(RecordingView).where(
            RecordingView.account_id == principal.account_id,
            RecordingView.recording_id == recording.id,
        )
    ).one_or_none()
    now = datetime.now(UTC)
    if view is None:
        view = RecordingView(
            account_id=principal.account_id,
            recording_id=recording.id,
            position_s=position_s,
            replays=1,
        )
        session.add(view)
    else:
        last = view.updated_at if view.updated_at.tzinfo else view.updated_at.replace(tzinfo=UTC)
        if now - last > NEW_VIEWING_AFTER:
            view.replays += 1
        view.position_s = position_s
        view.updated_at = now
    session.flush()
    return view


def media_key(recording: Recording, rendition: str) -> str:
    """The storage key (path relative to the media root) of a rendition; NotFoundError until
    processing made it."""
    if recording.media_deleted_at is not None:
        raise NotFoundError("录像已过保留期，文件已删除")
    outputs = recording.outputs or {}
    folder = PurePosixPath(recording.raw_path).parent
    if rendition == "preview":
        # a meeting's preview has a URL of its own, kept after the composed version replaced
        # it, so a browser still playing it never gets the other file's bytes for its ranges
        if (preview := preview_key(recording)) is None:
            raise NotFoundError("预览版已删除，请刷新页面播放完整版")
        return preview
    if rendition == "raw" and recording.raw_path:
        return recording.raw_path
    if rendition in ("mp4", "poster") and outputs.get(rendition):
        return str(folder / outputs[rendition])
    raise NotFoundError("录像文件尚未生成" if rendition != "raw" else "原始录像不存在")


def preview_key(recording: Recording) -> str | None:
    """The key of a 教研 meeting's preview (``recordings.meeting_preview``) while it exists
    (until the first retention run a day after the composed version replaced it), else None."""
    outputs = recording.outputs or {}
    if not outputs.get("preview"):
        return None
    return str(PurePosixPath(recording.raw_path).parent / outputs["preview"])


def playing_preview(recording: Recording) -> bool:
    """Whether the preview is the version to play (its composition has not replaced it)."""
    outputs = recording.outputs or {}
    return outputs.get("meeting_version") == "preview" and preview_key(recording) is not None


HLS_FILE = re.compile(r"(?:[a-z0-9_]{1,32}/)?[a-z0-9_]{1,64}\.(?:m3u8|m4s|mp4)")


def hls_key(recording: Recording, path: str) -> str:
    """The key of an HLS playlist, init or segment of a recording; NotFoundError for anything
    else (no HLS yet, or a name that is not one of ours)."""
    outputs = {} if recording.media_deleted_at is not None else (recording.outputs or {})
    if not outputs.get("hls") or not HLS_FILE.fullmatch(path):
        raise NotFoundError("HLS 版本尚未生成" if not outputs.get("hls") else "文件不存在")
    folder = PurePosixPath(recording.raw_path).parent / PurePosixPath(outputs["hls"]).parent
    return str(folder / path)


def thumbnails_key(recording: Recording, name: str) -> str:
    """The key of the thumbnail sprite or its WebVTT index."""
    thumbnails = (recording.outputs or {}).get("thumbnails") or {}
    if recording.media_deleted_at is not None:
        thumbnails = {}
    if name not in (thumbnails.get("sprite"), thumbnails.get("index")):
        raise NotFoundError("缩略图尚未生成")
    return str(PurePosixPath(recording.raw_path).parent / name)


def local_file(media_root: Path, key: str) -> Path | None:
    """The file behind a key on local disk, if it is there (and inside the media root)."""
    path = (media_root / key).resolve()
    if media_root.resolve() not in path.parents or not path.is_file():
        return None
    return path


def media_path(media_root: Path, recording: Recording, rendition: str) -> Path:
    """The local file behind a rendition; NotFoundError until it exists."""
    path = local_file(media_root, media_key(recording, rendition))
    if path is None:
        raise NotFoundError("录像文件尚未生成" if rendition != "raw" else "原始录像不存在")
    return path


def delete_media(*, media_root: Path, remote: MediaStorage | None, recording: Recording) -> int:
    """Every file of a recording, on local disk and in the bucket; returns how many went."""
    if not recording.raw_path:
        return 0
    folder = str(PurePosixPath(recording.raw_path).parent)
    deleted = LocalStorage(media_root).delete_prefix(folder)
    if remote is not None:
        deleted += remote.delete_prefix(folder + "/")
    log.info("recording_media_deleted", recording=recording.id, files=deleted)
    return deleted


def delete_recording(
    session: Session,
    *,
    recording: Recording,
    media_root: Path,
    remote: MediaStorage | None,
    active: ActiveRecordings,
) -> int:
    """Remove a recording: its files first, then the row (views and class links cascade)."""
    if recording.id in active.by_id:
        raise ConflictError("正在录制，请先停止录制再删除")
    deleted = delete_media(media_root=media_root, remote=remote, recording=recording)
    session.delete(recording)
    session.flush()
    return deleted


# -- retention ----------------------------------------------------------------------------


def retention_of(session: Session, principal: Principal, alliance_id: int) -> int | None:
    """The alliance's keep-days (None: kept until deleted by hand); its members may read it."""
    if not can(principal, Action.READ, Kind.RECORDING, Scope(alliance_id=alliance_id)):
        raise PermissionDeniedError("没有权限查看此教联体的录像保留规则")
    rule = session.get(RecordingRetention, alliance_id)
    return rule.keep_days if rule is not None else None


def set_retention(
    session: Session, principal: Principal, alliance_id: int, *, keep_days: int | None
) -> int | None:
    """Set or clear the rule; only the alliance's administrators may."""
    if not can(principal, Action.MANAGE, Kind.RECORDING, Scope(alliance_id=alliance_id)):
        raise PermissionDeniedError("只有教联体管理员可以设置录像保留期限")
    rule = session.get(RecordingRetention, alliance_id)
    if keep_days is None:
        if rule is not None:
            session.delete(rule)
    elif rule is None:
        session.add(RecordingRetention(alliance_id=alliance_id, keep_days=keep_days))
    else:
        rule.keep_days = keep_days
    session.flush()
    return keep_days


def expire_recordings(
    sessions: sessionmaker[Session],
    *,
    media_root: Path,
    remote: MediaStorage | None,
    today: date | None = None,
) -> list[int]:
    """Delete the files of every recording past its alliance's keep-days (unless kept) and mark
    its row; returns their ids. Safe to run at any time and as often as wanted."""
    today = today or datetime.now(TIMEZONE).date()
    expired: list[int] = []
    with sessions() as session:
        rules = [(r.alliance_id, r.keep_days) for r in session.scalars(select(RecordingRetention))]
    for alliance_id, keep_days in rules:
        cutoff = today - timedelta(days=keep_days)
        with sessions() as session:
            due = list(
                session.scalars(
                    select(Recording).where(
                        Recording.alliance_id == alliance_id,
                        Recording.date < cutoff,
                        Recording.keep.is_(False),
                        Recording.media_deleted_at.is_(None),
                        Recording.status != "recording",
                    )
                )
            )
            for recording in due:
                delete_media(media_root=media_root, remote=remote, recording=recording)
                recording.media_deleted_at = datetime.now(UTC)
                recording.status_message = f"已过保留期（{keep_days} 天），录像文件已删除"
                session.commit()  # one by one: a crash midway leaves every row true
                expired.append(recording.id)
    if expired:
        log.info("recordings_expired", count=len(expired), recording_ids=expired)
    retire_previews(sessions, media_root=media_root, remote=remote)
    return expired


PREVIEW_KEPT_AFTER_COMPOSED = timedelta(days=1)


def retire_previews(
    sessions: sessionmaker[Session],
    *,
    media_root: Path,
    remote: MediaStorage | None,
    now: datetime | None = None,
) -> list[int]:
    """Delete the preview of every 教研 meeting whose composed version replaced it more than
    ``PREVIEW_KEPT_AFTER_COMPOSED`` ago (run with the daily retention); returns their ids."""
    now = now or datetime.now(UTC)
    retired: list[int] = []
    with sessions() as session:
        candidates = session.scalars(
            select(Recording).where(
                Recording.research_session_id.is_not(None),
                Recording.media_deleted_at.is_(None),
            )
        )
        for recording in candidates:
            outputs = recording.outputs or {}
            since = outputs.get("preview_retired_at")
            if not outputs.get("preview") or not isinstance(since, str):
                continue
            if now - datetime.fromisoformat(since) < PREVIEW_KEPT_AFTER_COMPOSED:
                continue
            folder = PurePosixPath(outputs["preview"]).parent
            prefix = f"{PurePosixPath(recording.raw_path).parent / folder}/"
            LocalStorage(media_root).delete_prefix(prefix)
            if remote is not None:
                remote.delete_prefix(prefix)
            recording.outputs = {k: v for k, v in outputs.items() if not k.startswith("preview")}
            session.commit()  # one by one, as expiry
            retired.append(recording.id)
    if retired:
        log.info("meeting_previews_retired", count=len(retired), recording_ids=retired)
    return retired


def update_recording(
    session: Session,
    principal: Principal,
    recording: Recording,
    *,
    title: str | None,
    topic: str | None,
    keep: bool | None,
) -> Recording:
    """Edit the library entry (the search index follows); managers only."""
    authorize_manage(principal, recording)
    if title is not None:
        recording.title = title
    if topic is not None:
        recording.topic = topic
    if keep is not None:
        recording.keep = keep
    session.flush()
    return recording


# -- starting and stopping --------------------------------------------------------------


def new_recording_for_sync_group(
    session: Session, *, sync_group_id: int, topic: str = "", principal: Principal | None = None
) -> Recording:
    """A ``recording`` row carrying the sync group's timetable metadata; with a principal, only
    if they may start it (admins in scope, the lead teacher)."""
    group = session.get(SyncGroup, sync_group_id)
    if group is None:
        raise NotFoundError(f"同步课堂 {sync_group_id} 不存在")
    lead = session.get_one(Lesson, group.lead_lesson_id)
    lead_class = session.get_one(SchoolClass, lead.class_id)
    alliance_id = session.get_one(Term, group.term_id).alliance_id
    if principal is not None and not may_manage(
        principal,
        alliance_id=alliance_id,
        school_id=lead_class.school_id,
        teacher_id=lead.teacher_id,
    ):
        raise PermissionDeniedError("没有权限录制这节同步课堂", detail={"role": principal.role})
    level = session.get_one(Grade, lead_class.grade_id).level
    subject = session.get_one(Subject, lead.subject_id)
    teacher = session.get_one(Teacher, lead.teacher_id)
    today = datetime.now(TIMEZONE).date()
    member_classes = [
        session.get_one(SchoolClass, session.get_one(Lesson, m.lesson_id).class_id)
        for m in group.members
    ]
    recording = Recording(
        alliance_id=alliance_id,
        school_id=lead_class.school_id,
        campus_id=lead_class.campus_id,
        class_id=lead_class.id,
        grade_level=level,
        sync_group_id=group.id,
        subject_id=subject.id,
        teacher_id=teacher.id,
        date=today,
        period=_period_today(session, lead.id, today),
        topic=topic,
        title=f"{grade_name(level)}{subject.name} · {teacher.name} · {today:%m月%d日}",
        status="recording",
        visible_classes=[lead_class, *(c for c in member_classes if c.id != lead_class.id)],
    )
    session.add(recording)
    session.flush()
    recording.raw_path = f"recordings/{recording.id}/{RAW_NAME}"
    session.flush()
    return recording


def _period_today(session: Session, lesson_id: int, today: date) -> int | None:
    periods = session.scalars(
        select(TimetableEntry.period).where(
            TimetableEntry.lesson_id == lesson_id, TimetableEntry.day == WEEKDAYS[today.weekday()]
        )
    ).all()
    return periods[0] if len(periods) == 1 else None


# A stopping process lets its live transcoders encode the lesson's tail this long (the feed
# trails the recorder by seconds, rarely more): inside the SFU's 40 s stop grace with the
# meetings' 20 s (docker-compose.yml)
LIVE_FINISH_GRACE_S = 10.0


@dataclass
class ActiveRecordings:
    """The recorders running in this process, by recording id (one per sync group at a time)."""

    by_id: dict[int, LessonRecorder] = field(default_factory=dict)
    sync_groups: dict[int, int] = field(default_factory=dict)  # sync group id → recording id
    # sync groups whose start is writing or reading its row off the loop (``reserve``)
    starting: set[int] = field(default_factory=set)
    # H.264/HLS during the lesson (None: after the end only); the transcoders running here
    live_hls: LiveHlsPolicy | None = None
    transcoders: dict[int, LiveTranscoder] = field(default_factory=dict)
    # a recorder raises ``low_disk`` below this much free space (TONGKE_RECORDING_MIN_FREE_MB;
    # None: the recorder's default)
    min_free_bytes: int | None = None

    alert_tasks: set[asyncio.Future[None]] = field(default_factory=set)
    # rows of starts cancelled mid-write, being failed (``fail_cancelled_start``)
    cleanup_tasks: set[asyncio.Future[None]] = field(default_factory=set)

    @classmethod
    def from_settings(cls, settings: Settings) -> ActiveRecordings:
        from recordings.live_hls import LiveHlsPolicy

        return cls(
            live_hls=LiveHlsPolicy.from_settings(settings),
            min_free_bytes=settings.recording_min_free_mb * 1024 * 1024,
        )

    def recording_of(self, sync_group_id: int) -> int | None:
        return self.sync_groups.get(sync_group_id)

    def busy(self, sync_group_id: int) -> bool:
        """Whether the group records here, or a start of it is on its way."""
        return sync_group_id in self.sync_groups or sync_group_id in self.starting

    @contextmanager
    def reserve(self, sync_group_id: int) -> Iterator[None]:
        """Hold the group for one start while its database work runs off the event loop:
        checked and taken on the loop before the first await, so of two starts racing the
        second is refused at once (``ConflictError``), as if the first were recording."""
        if (running := self.recording_of(sync_group_id)) is not None:
            raise ConflictError("这节同步课堂正在录制", detail={"recording_id": running})
        if sync_group_id in self.starting:
            raise ConflictError("这节同步课堂正在开始录制，请稍候")
        self.starting.add(sync_group_id)
        try:
            yield
        finally:
            self.starting.discard(sync_group_id)

    async def close(self, *, grace_s: float = LIVE_FINISH_GRACE_S) -> None:
        """The process stops (after its rooms closed): every recorder stops (its processing
        queued as ever), the live transcoders get ``grace_s`` to encode the lesson's tail, then
        are cancelled, which kills their ffmpeg (the job then transcodes after the end). Without
        this a stop left them encoding: uvicorn re-raises SIGTERM once the lifespan is over and
        the process died with its encoders running, orphaned."""
        recorders = list(self.by_id.values())
        await asyncio.gather(*(recorder.stop() for recorder in recorders), return_exceptions=True)
        transcoders = list(self.transcoders.values())
        if transcoders and grace_s > 0:
            ending = [asyncio.ensure_future(transcoder.wait()) for transcoder in transcoders]
            await asyncio.wait(ending, timeout=grace_s)
        for transcoder in transcoders:
            if transcoder.outcome is None:
                log.warning("live_hls_cancelled_at_stop", raw=str(transcoder.raw))
            await transcoder.cancel()

    def forget(self, recording_id: int) -> None:
        self.by_id.pop(recording_id, None)
        for group, active in list(self.sync_groups.items()):
            if active == recording_id:
                del self.sync_groups[group]


@dataclass(frozen=True)
class RowToRecord:
    """What a recorder needs of its ``recording`` row, read in the row's own thread."""

    recording_id: int
    raw_path: str
    title: str

    @classmethod
    def of(cls, recording: Recording) -> RowToRecord:
        return cls(recording.id, recording.raw_path, recording.title)


# The database work of starting and stopping runs in a thread (``asyncio.to_thread``), one
# transaction each: on an SFU worker the event loop forwards every classroom's packets, and a
# write waiting for SQLite's lock (up to its busy timeout) or a slow PostgreSQL there would
# freeze every live lesson meanwhile.


def new_recording_row(
    sessions: sessionmaker[Session],
    *,
    sync_group_id: int,
    topic: str = "",
    principal: Principal | None = None,
) -> RowToRecord:
    """``new_recording_for_sync_group`` in a transaction of its own (for a thread)."""
    with transaction(sessions) as session:
        return RowToRecord.of(
            new_recording_for_sync_group(
                session, sync_group_id=sync_group_id, topic=topic, principal=principal
            )
        )


def _row_to_record(sessions: sessionmaker[Session], recording_id: int) -> RowToRecord:
    with sessions() as session:
        return RowToRecord.of(session.get_one(Recording, recording_id))


async def attach_recorder(
    room: Room,
    *,
    sync_group_id: int,
    sessions: sessionmaker[Session],
    media_root: Path,
    jobs: JobQueue,
    active: ActiveRecordings,
    principal: Principal | None = None,
    topic: str = "",
) -> tuple[int, LessonRecorder]:
    """Record a sync group's lesson room from now until ``stop_recording`` or the lesson ends;
    processing is queued as soon as it stops. Called by the start route, and by the SFU side
    when a timetabled lesson room opens (``principal=None``: the system records)."""
    make_row = partial(
        new_recording_row, sessions, sync_group_id=sync_group_id, topic=topic, principal=principal
    )
    return await _record(room, make_row, sync_group_id, sessions, media_root, jobs, active)


async def record_into(
    room: Room,
    *,
    recording_id: int,
    sync_group_id: int,
    sessions: sessionmaker[Session],
    media_root: Path,
    jobs: JobQueue,
    active: ActiveRecordings,
) -> LessonRecorder:
    """Start a recorder on ``room`` for a ``recording`` row made already (an SFU worker does
    this for a row the web process made when it checked who may record)."""
    make_row = partial(_row_to_record, sessions, recording_id)
    _, recorder = await _record(room, make_row, sync_group_id, sessions, media_root, jobs, active)
    return recorder


async def _record(
    room: Room,
    make_row: Callable[[], RowToRecord],
    sync_group_id: int,
    sessions: sessionmaker[Session],
    media_root: Path,
    jobs: JobQueue,
    active: ActiveRecordings,
) -> tuple[int, LessonRecorder]:
    """Record ``room`` into the row ``make_row`` makes or reads (in a thread), the group
    reserved meanwhile. The recorder starts once the row exists and is registered in
    ``active`` before the reservation ends, with no await between: nobody sees the group
    neither reserved nor recording."""
    from recordings import live_hls
    from recordings.capture import DEFAULT_MIN_FREE_BYTES, LessonRecorder

    with active.reserve(sync_group_id):
        writing = asyncio.ensure_future(asyncio.to_thread(make_row))
        try:
            row = await asyncio.shield(writing)  # the thread writes on whatever happens here
        except asyncio.CancelledError:
            # stopped mid-write (a shutdown during the scheduler's tick): the row is failed at
            # once, before the reservation goes, not left "recording" for the sweep
            await fail_cancelled_start(writing, sessions, active)
            raise
        recording_id = row.recording_id
        recorder = LessonRecorder(
            room,
            media_root / row.raw_path,
            metadata={"title": row.title, "comment": f"tongke recording {recording_id}"},
            min_free_bytes=(
                DEFAULT_MIN_FREE_BYTES if active.min_free_bytes is None else active.min_free_bytes
            ),
        )

        recorder.on_alert.append(alerts_to_row(sessions, recording_id, active.alert_tasks))

        async def queue_processing(stopped: LessonRecorder) -> None:
            active.forget(recording_id)
            await finish_recording(sessions, jobs=jobs, recording_id=recording_id, stopped=stopped)

        # finished by the recorder's stop, before processing is queued (callbacks run in order)
        transcoder = live_hls.attach(recorder, active.live_hls)
        if transcoder is not None:
            active.transcoders[recording_id] = transcoder
            transcoder.on_ended = lambda: active.transcoders.pop(recording_id, None)
        recorder.on_stopped.append(queue_processing)
        active.by_id[recording_id] = recorder
        active.sync_groups[sync_group_id] = recording_id
        recorder.start()
    if room.closed:
        # the lesson ended while the row was written: nothing comes any more, and the room's
        # lesson_ended went before the recorder listened; its stop fails the empty recording
        log.warning("recording_room_closed_at_start", recording=recording_id, room=room.room_id)
        recorder.stop_soon()
    return recording_id, recorder


CANCELLED_START_MESSAGE = "录制未能开始：服务正在停止"


def _fail_unstarted(sessions: sessionmaker[Session], recording_id: int) -> None:
    with transaction(sessions) as session:
        recording = session.get_one(Recording, recording_id)
        if recording.status == "recording":
            recording.status = "failed"
            recording.status_message = CANCELLED_START_MESSAGE


async def _fail_when_written(
    writing: asyncio.Future[RowToRecord], sessions: sessionmaker[Session]
) -> None:
    try:
        row = await writing
    except Exception:
        return  # nothing written: its transaction rolled back
    try:
        await asyncio.to_thread(_fail_unstarted, sessions, row.recording_id)
    except Exception:  # the sweep fails it later (``PENDING_START_S``)
        log.exception("recording_cancelled_start_not_failed", recording=row.recording_id)
        return
    log.info("recording_start_cancelled", recording=row.recording_id)


async def fail_cancelled_start(
    writing: asyncio.Future[RowToRecord],
    sessions: sessionmaker[Session],
    active: ActiveRecordings,
) -> None:
    """A start cancelled while its row was written or read (``writing``, in a thread): once
    that is done, the row is failed with ``CANCELLED_START_MESSAGE``; shielded, so the
    cancelled task waits for it (a second cancellation leaves it running in ``active``)."""
    cleanup = asyncio.ensure_future(_fail_when_written(writing, sessions))
    active.cleanup_tasks.add(cleanup)
    cleanup.add_done_callback(active.cleanup_tasks.discard)
    await asyncio.shield(cleanup)


def alerts_to_row(
    sessions: sessionmaker[Session], recording_id: int, tasks: set[asyncio.Future[None]]
) -> Callable[[object, RecorderAlert], None]:
    """An ``on_alert`` callback that notes each alert on the recording row (off the loop, one
    write at a time so none is lost; ``tasks`` keeps the writes alive until they are done)."""
    one_at_a_time = asyncio.Lock()

    async def write(alert: RecorderAlert) -> None:
        async with one_at_a_time:
            await asyncio.to_thread(note_alert, sessions, recording_id=recording_id, alert=alert)

    def on_alert(_recorder: object, alert: RecorderAlert) -> None:
        task = asyncio.ensure_future(write(alert))
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    return on_alert


def note_alert(sessions: sessionmaker[Session], *, recording_id: int, alert: RecorderAlert) -> None:
    """Put a recorder's alert on its recording row, where the library and the 巡课 wall show
    it (``outputs["alerts"]``, kept through processing). The database may sit on the same
    full disk: then the log line the recorder wrote is all there is."""
    try:
        with transaction(sessions) as session:
            recording = session.get_one(Recording, recording_id)
            if recording.status == "recording":
                recording.status_message = alert.message[:500]
            noted = {
                "kind": alert.kind,
                "message": alert.message,
                "at_s": alert.at_s,
                "free_bytes": alert.free_bytes,
                "raised_at": datetime.now(UTC).isoformat(timespec="seconds"),
            }
            outputs = recording.outputs or {}
            recording.outputs = {**outputs, "alerts": [*outputs.get("alerts", []), noted]}
    except Exception:
        log.exception("recording_alert_not_saved", recording=recording_id, kind=alert.kind)


def live_recording_alert(session: Session, sync_group_id: int) -> str:
    """The latest alert of the sync group's recording in progress (for the 巡课 wall), or ""."""
    recording = session.scalars(
        select(Recording)
        .where(Recording.sync_group_id == sync_group_id, Recording.status == "recording")
        .order_by(Recording.id.desc())
        .limit(1)
    ).first()
    alerts = (recording.outputs or {}).get("alerts", []) if recording is not None else []
    return str(alerts[-1].get("message", "")) if alerts else ""


def _mark_stopped(
    sessions: sessionmaker[Session], *, recording_id: int, summary: RecordingSummary | None
) -> bool:
    """The row once its recorder closed the file; whether there is anything to process."""
    with transaction(sessions) as session:
        recording = session.get_one(Recording, recording_id)
        if summary is None or summary.bytes == 0:
            recording.status = "failed"
            recording.status_message = "没有收到主讲教室的音视频，未生成录像"
            return False
        recording.status = "processing"
        recording.status_message = "等待处理"
        recording.outputs = {**(recording.outputs or {}), "raw_duration_s": summary.duration_s}
        return True


def _note_job(sessions: sessionmaker[Session], *, recording_id: int, job_id: str) -> None:
    with transaction(sessions) as session:
        session.get_one(Recording, recording_id).job_id = job_id


async def finish_recording(
    sessions: sessionmaker[Session], *, jobs: JobQueue, recording_id: int, stopped: LessonRecorder
) -> str | None:
    """After the recorder closed its file: queue processing, or fail an empty recording."""
    summary = stopped.summary
    captured = await asyncio.to_thread(
        _mark_stopped, sessions, recording_id=recording_id, summary=summary
    )
    if summary is None or not captured:
        return None
    job_id = await jobs.enqueue(
        PROCESS_JOB, job_id=f"recording-{recording_id}-{summary.bytes}", recording_id=recording_id
    )
    await asyncio.to_thread(_note_job, sessions, recording_id=recording_id, job_id=job_id)
    return job_id


PENDING_START_S = 30.0  # a row the web process made for a start still on its way


@dataclass(frozen=True)
class InterruptedRecording:
    recording_id: int
    topic: str
    interrupted_at: datetime  # the raw file's last write (UTC), else the row's creation
    captured: bool  # whether anything was written before the interruption


def _interrupted(
    session: Session,
    *,
    sync_group_id: int,
    running: set[int],
    media_root: Path,
    stale_after_s: float,
) -> list[InterruptedRecording]:
    """The group's recordings no recorder in ``running`` holds whose raw file stood still
    for ``stale_after_s`` on the clock of the storage that stamped it, or that have no file
    (their start never reached a recorder) and were made ``PENDING_START_S`` (or
    ``stale_after_s``) ago on the database's clock, which wrote ``created_at``: the clock of
    the host that asks plays no part."""
    found = []
    clock = StorageClock()
    rows = session.execute(
        select(Recording, seconds_since(Recording.created_at)).where(
            Recording.sync_group_id == sync_group_id, Recording.status == "recording"
        )
    ).all()
    for row, created_s in rows:
        if row.id in running:
            continue
        raw = media_root / row.raw_path if row.raw_path else None
        if raw is not None and raw.is_file():
            stat = fresh_stat(raw)
            if stale_after_s > 0:
                idle_s = clock.seconds_since_write(raw, written=stat.st_mtime)
                if idle_s is None or idle_s < stale_after_s:  # unreadable: left (logged)
                    continue
            written = datetime.fromtimestamp(stat.st_mtime, UTC)
            found.append(InterruptedRecording(row.id, row.topic, written, stat.st_size > 0))
            continue
        if created_s > PENDING_START_S and created_s >= stale_after_s:
            made = row.created_at
            made = made if made.tzinfo else made.replace(tzinfo=UTC)
            found.append(InterruptedRecording(row.id, row.topic, made, False))
    return found


def _close_interrupted_rows(
    sessions: sessionmaker[Session],
    *,
    sync_group_id: int,
    running: frozenset[int],
    media_root: Path,
    stale_after_s: float,
) -> list[InterruptedRecording]:
    """The transaction of ``close_interrupted_recordings`` (its raw files' stats with it)."""
    with transaction(sessions) as session:
        interrupted = _interrupted(
            session,
            sync_group_id=sync_group_id,
            running=set(running),
            media_root=media_root,
            stale_after_s=stale_after_s,
        )
        for part in interrupted:
            row = session.get_one(Recording, part.recording_id)
            local = part.interrupted_at.astimezone(TIMEZONE)
            row.outputs = {**(row.outputs or {}), "interrupted_at": part.interrupted_at.isoformat()}
            if part.captured:
                row.status = "processing"
                row.status_message = f"媒体服务器中断，录像止于 {local:%H:%M:%S}"
            else:
                row.status = "failed"
                row.status_message = "媒体服务器中断，没有录下音视频"
    return interrupted


async def close_interrupted_recordings(
    *,
    sync_group_id: int,
    sessions: sessionmaker[Session],
    media_root: Path,
    jobs: JobQueue,
    running: set[int],
    stale_after_s: float = 0.0,
) -> list[InterruptedRecording]:
    """Recordings of the group still "recording" that no recorder in ``running`` holds and
    whose raw file has not grown for ``stale_after_s`` (on its storage's clock: ``_interrupted``):
    queue what they captured for processing (or fail them if nothing was), the interruption
    noted in the status."""
    interrupted = await asyncio.to_thread(
        _close_interrupted_rows,
        sessions,
        sync_group_id=sync_group_id,
        running=frozenset(running),
        media_root=media_root,
        stale_after_s=stale_after_s,
    )
    for part in interrupted:
        log.warning("recording_interrupted", recording=part.recording_id, sync_group=sync_group_id)
        if part.captured:
            job_id = await jobs.enqueue(
                PROCESS_JOB,
                job_id=f"recording-{part.recording_id}-interrupted",
                recording_id=part.recording_id,
            )
            await asyncio.to_thread(
                _note_job, sessions, recording_id=part.recording_id, job_id=job_id
            )
    return interrupted


def groups_recording(sessions: sessionmaker[Session]) -> list[int]:
    """The sync groups with a recording in the "recording" state."""
    with sessions() as session:
        return sorted(
            {
                group
                for group in session.scalars(
                    select(Recording.sync_group_id).where(Recording.status == "recording")
                )
                if group is not None
            }
        )


def _new_continuation_row(
    sessions: sessionmaker[Session],
    *,
    sync_group_id: int,
    last: InterruptedRecording,
    now: datetime,
) -> RowToRecord:
    with transaction(sessions) as session:
        continuation = new_recording_for_sync_group(
            session, sync_group_id=sync_group_id, topic=last.topic
        )
        gap_from = last.interrupted_at.astimezone(TIMEZONE)
        continuation.status_message = (
            f"续录：{gap_from:%H:%M:%S} 至 {now.astimezone(TIMEZONE):%H:%M:%S} 媒体服务器中断，"
            "这段没有录到"
        )
        continuation.outputs = {
            "continues_recording_id": last.recording_id,
            "gap": {"from": last.interrupted_at.isoformat(), "to": now.isoformat()},
        }
        return RowToRecord.of(continuation)


async def resume_interrupted_recordings(
    room: Room,
    *,
    sync_group_id: int,
    sessions: sessionmaker[Session],
    media_root: Path,
    jobs: JobQueue,
    active: ActiveRecordings,
) -> int | None:
    """Called by the SFU worker that has just claimed a sync group's room for a join: a
    recording still "recording" there that no recorder of this worker holds was left by a
    worker that died (its claim ran out, or we could not have claimed the room). What it
    captured is queued for processing (``close_interrupted_recordings``); the lesson goes on
    (someone is joining), so recording carries on into a continuation whose gap is noted.
    Returns the continuation's id (None: nothing was interrupted, or the group already
    records here or is starting to)."""
    now = datetime.now(UTC)
    interrupted = await close_interrupted_recordings(
        sync_group_id=sync_group_id,
        sessions=sessions,
        media_root=media_root,
        jobs=jobs,
        running=set(active.by_id),
    )
    if not interrupted or active.busy(sync_group_id):
        return None
    last = max(interrupted, key=lambda part: part.interrupted_at)
    make_row = partial(
        _new_continuation_row, sessions, sync_group_id=sync_group_id, last=last, now=now
    )
    continuation_id, _ = await _record(
        room, make_row, sync_group_id, sessions, media_root, jobs, active
    )
    return continuation_id


async def stop_recording(active: ActiveRecordings, recording_id: int) -> None:
    recorder = active.by_id.get(recording_id)
    if recorder is None:
        raise ConflictError("这段录像没有在录制")
    await recorder.stop()


def out_fields(recording: Recording) -> dict[str, Any]:
    """The row's fields for ``RecordingOut`` (media URLs are the router's business)."""
    outputs = recording.outputs or {}
    return {
        "id": recording.id,
        "title": recording.title,
        "topic": recording.topic,
        "status": "expired" if recording.media_deleted_at else recording.status,
        "status_message": recording.status_message,
        "date": recording.date,
        "period": recording.period,
        "alliance_id": recording.alliance_id,
        "school_id": recording.school_id,
        "campus_id": recording.campus_id,
        "class_id": recording.class_id,
        "grade_level": recording.grade_level,
        "sync_group_id": recording.sync_group_id,
        "research_session_id": recording.research_session_id,
        "subject_id": recording.subject_id,
        "teacher_id": recording.teacher_id,
        "visible_class_ids": sorted(c.id for c in recording.visible_classes),
        "duration_s": outputs.get("duration_s", outputs.get("raw_duration_s")),
        "chapters": outputs.get("chapters", []),
        "meeting_version": outputs.get("meeting_version"),
        "job_id": recording.job_id,
        "created_at": recording.created_at,
        "processed_at": recording.processed_at,
        "keep": recording.keep,
        "media_deleted_at": recording.media_deleted_at,
    }
