"""Recording online 教研 meetings into the library: the row, starting and finishing.

The meeting's host (the session's host, the group leader or the alliance admin: the room
checks ``identity.host``) starts and stops the recording over the meeting socket; the process
that owns the room (web process or SFU worker) records it (``recordings.meeting_capture``)
and, once it stops, queues ``compose_meeting`` (``recordings.composition``), which makes the
one replayable file and then runs the usual processing (poster, chapters, renditions).

A meeting recording belongs to the alliance and is never shown to a class: pupils never see
it (``recordings.service.visible_filter``), teachers and staff see it by their scope.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from common.alliance.models import School, Teacher
from common.db import transaction
from common.errors import AppError, NotFoundError
from common.jobs import JobQueue
from common.logging import get_logger
from common.settings import Settings
from recordings.capture import DEFAULT_MIN_FREE_BYTES
from recordings.models import Recording
from recordings.service import RAW_NAME, alerts_to_row
from research.models import ResearchGroup, ResearchSession
from streaming.sfu.errors import RoomError

if TYPE_CHECKING:
    from recordings.meeting_capture import MeetingRecorder, MeetingTimeline
    from streaming.sfu.identity import ParticipantIdentity
    from streaming.sfu.room import Room

log = get_logger(__name__)

COMPOSE_JOB = "compose_meeting_recording"
PREVIEW_MESSAGE = "可先播放预览版（全员混音与主持人画面）；完整版合成中"


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
        )

    async def start(self, room: Room, by: ParticipantIdentity) -> None:
        """``RecordingHooks.start``: a new library row and the room's recorder."""
        from recordings.meeting_capture import MeetingRecorder
        from streaming.access import research_session_of_room

        research_session_id = research_session_of_room(room.room_id)
        if research_session_id is None:
            raise NotFoundError("这不是教研会议")
        prefix, _, number = by.participant_id.partition("-")
        started_by = int(number) if prefix == "teacher" and number.isdigit() else None
        try:
            with transaction(self.sessions) as session:
                recording = new_recording_for_research_session(
                    session, research_session_id=research_session_id, started_by=started_by
                )
                recording_id, raw_path = recording.id, recording.raw_path
            folder = (self.media_root / raw_path).parent
            folder.mkdir(parents=True, exist_ok=True)
        except AppError as exc:  # the room tells the host why, the meeting goes on
            raise RoomError(exc.message, code=exc.code) from exc
        except (SQLAlchemyError, OSError) as exc:
            log.exception("meeting_recording_start_failed", room=room.room_id)
            raise RoomError("录像服务暂不可用，请稍后再试", code="recording_failed") from exc
        recorder = MeetingRecorder(
            room,
            folder,
            min_free_bytes=self.min_free_bytes,
            preview_chunk_s=self.preview_chunk_s,
        )

        async def queue_composition(stopped: MeetingRecorder) -> None:
            self.by_room.pop(room.room_id, None)
            await finish_meeting_recording(
                self.sessions, jobs=self.jobs, recording_id=recording_id, stopped=stopped
            )

        recorder.on_stopped.append(queue_composition)
        recorder.on_alert.append(alerts_to_row(self.sessions, recording_id, self.alert_tasks))
        self.by_room[room.room_id] = (recording_id, recorder)
        recorder.start()
        log.info(
            "meeting_recording", room=room.room_id, recording=recording_id, by=by.participant_id
        )

    async def stop(self, room: Room) -> None:
        """``RecordingHooks.stop``: close the files; the composition is queued after."""
        running = self.by_room.get(room.room_id)
        if running is not None:
            await running[1].stop()


async def finish_meeting_recording(
    sessions: sessionmaker[Session], *, jobs: JobQueue, recording_id: int, stopped: MeetingRecorder
) -> str | None:
    """After the meeting's files closed: queue the composition, or fail an empty recording."""
    recorded = sum(r.summary.bytes for r in stopped.recorders.values() if r.summary is not None)
    with transaction(sessions) as session:
        recording = session.get_one(Recording, recording_id)
        if recorded == 0:
            recording.status = "failed"
            recording.status_message = "录制期间没有收到任何参会教师的音视频，未生成录像"
            return None
        recording.status = "processing"
        recording.status_message = "等待合成会议录像"
        recording.outputs = {
            **(recording.outputs or {}),
            "raw_duration_s": stopped.timeline.duration_s,
        }
    if stopped.preview_chunk_s:
        await publish_preview(
            sessions,
            recording_id=recording_id,
            folder=stopped.folder,
            timeline=stopped.timeline,
            chunk_s=stopped.preview_chunk_s,
        )
    job_id = await jobs.enqueue(
        COMPOSE_JOB, job_id=f"meeting-recording-{recording_id}", recording_id=recording_id
    )
    with transaction(sessions) as session:
        session.get_one(Recording, recording_id).job_id = job_id
    return job_id


async def publish_preview(
    sessions: sessionmaker[Session],
    *,
    recording_id: int,
    folder: Path,
    timeline: MeetingTimeline,
    chunk_s: float,
) -> None:
    """The preview (``recordings.meeting_preview``) made and the recording ``ready`` on it; a
    failure only leaves the recording waiting for its composition, as without a preview."""
    from recordings.meeting_preview import make_preview
    from recordings.processing import ProcessingError

    started = time.monotonic()
    try:
        preview = await make_preview(folder, timeline, chunk_s=chunk_s)
    except (ProcessingError, OSError) as exc:
        log.warning("meeting_preview_failed", recording=recording_id, error=str(exc))
        return
    preview["preview_after_s"] = round(time.monotonic() - started, 2)
    with transaction(sessions) as session:
        recording = session.get_one(Recording, recording_id)
        if recording.status != "processing":
            return  # deleted or failed meanwhile
        recording.status = "ready"
        recording.status_message = PREVIEW_MESSAGE
        recording.outputs = {**(recording.outputs or {}), **preview, "playable": "preview"}
    log.info("meeting_preview_ready", recording=recording_id, seconds=preview["preview_after_s"])
