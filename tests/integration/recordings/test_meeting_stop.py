"""The host's 停止录制 answers as soon as the files are closed: the preview is made, the
recording made ready on it and the composition queued afterwards, in a background task of
``MeetingRecordings``; a process stopping mid-preview finishes it within its grace, and one
whose grace runs out leaves the recording to the next one.
A real meeting room with two aiortc teacher bots (in process, loopback), the real
``MeetingRecordings`` on a real SQLite file, the real jobs (the composition held in the queue).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from common.jobs import InProcessJobQueue, JobContext
from common.settings import Settings
from recordings.meeting_capture import TIMELINE_NAME, MeetingTimeline
from recordings.meeting_preview import PREVIEW_DIR, PREVIEW_NAME, chunk_path
from recordings.meetings import PENDING_MESSAGE, PREVIEW_MESSAGE, MeetingRecordings
from recordings.models import Recording
from research.models import ResearchSession
from streaming.sfu import InProcessRoomRegistry
from streaming.sfu.room import Room
from tests.conftest import DemoDatabase
from tests.fixtures.classrooms import Classrooms, eventually
from web.jobs import register_all

pytestmark = pytest.mark.timeout(180)

CHUNK_S = 2.0


@dataclass
class RecordedMeeting:
    room: Room
    recordings: MeetingRecordings
    jobs: InProcessJobQueue
    settings: Settings
    db: DemoDatabase


@pytest.fixture
async def meeting(sqlite_db: DemoDatabase, tmp_path: Path) -> AsyncIterator[RecordedMeeting]:
    """Two teachers in a research session's room, its recording hooks this process's; the
    job queue has one slot, held: a composition queued waits there."""
    with sqlite_db.sessions() as session:
        session_id = session.scalars(
            select(ResearchSession.id).order_by(ResearchSession.id)
        ).first()
    room_id = f"research-{session_id}"
    settings = Settings(
        environment="test",
        database_url=sqlite_db.url,
        media_root=tmp_path / "media",
        recording_meeting_chunk_seconds=CHUNK_S,
    )
    jobs = InProcessJobQueue(max_jobs=1)
    register_all(jobs, settings)
    released = asyncio.Event()

    async def hold(_ctx: JobContext) -> dict[str, Any]:
        await released.wait()
        return {}

    jobs.register("hold_the_queue", hold, max_retries=0)
    await jobs.enqueue("hold_the_queue")
    recordings = MeetingRecordings.from_settings(sqlite_db.sessions, settings, jobs)
    rooms = InProcessRoomRegistry()
    classrooms = Classrooms(rooms)
    try:
        bots = classrooms.join_meeting(room_id)
        await eventually(lambda: all(bot.connected.is_set() for bot in bots), timeout=20)
        room = await rooms.get(room_id)
        assert room is not None
        room.recording_hooks = recordings
        yield RecordedMeeting(room, recordings, jobs, settings, sqlite_db)
    finally:
        await classrooms.stop_all()
        await rooms.close_all()
        await recordings.close()
        released.set()
        await jobs.close()


def _row(db: DemoDatabase, recording_id: int) -> Recording:
    with db.sessions() as session:
        return session.get_one(Recording, recording_id)


async def _record(meeting: RecordedMeeting) -> tuple[int, Path]:
    """Record ~5 s (two 2 s chunks made meanwhile); the recording's id and folder."""
    await meeting.room.start_recording(meeting.room.participants["teacher-1"])
    recording_id, recorder = meeting.recordings.by_room[meeting.room.room_id]
    await eventually(lambda: chunk_path(recorder.folder, 1).exists(), timeout=30)
    await asyncio.sleep(1.0)
    return recording_id, recorder.folder


async def test_the_stop_answers_before_the_preview_which_follows(
    meeting: RecordedMeeting,
) -> None:
    recording_id, folder = await _record(meeting)
    preview = folder / PREVIEW_DIR / PREVIEW_NAME
    started = time.monotonic()
    await meeting.room.stop_recording(meeting.room.participants["teacher-1"])
    stop_s = time.monotonic() - started
    assert not preview.exists()  # the host has the answer; the preview is yet to be made
    assert _row(meeting.db, recording_id).status != "ready"
    seen: list[tuple[str, str]] = []

    def on_preview() -> bool:
        row = _row(meeting.db, recording_id)
        if not seen or seen[-1] != (row.status, row.status_message):
            seen.append((row.status, row.status_message))
        return row.status == "ready"

    await eventually(on_preview, timeout=60, interval=0.02)
    row = _row(meeting.db, recording_id)
    assert ("processing", PENDING_MESSAGE) in seen, seen  # 正在生成预览… meanwhile
    assert row.status_message == PREVIEW_MESSAGE
    assert row.outputs["meeting_version"] == "preview" and preview.exists()
    # the composition queued once the preview was there (held in the queue here)
    job_id = f"meeting-recording-{recording_id}"
    assert row.job_id == job_id
    assert (await meeting.jobs.status(job_id)).state == "queued"
    # the row is read ready from the loop's thread, maybe before the loop resumed the task
    await eventually(lambda: not meeting.recordings.finishing, timeout=5, interval=0.01)
    print(f"stop answered in {stop_s:.3f} s; preview {row.outputs['preview_after_s']} s later")


async def test_a_shutdown_whose_grace_runs_out_mid_preview_leaves_it_to_the_next_process(
    meeting: RecordedMeeting,
) -> None:
    recording_id, folder = await _record(meeting)
    for index in (0, 1):  # lost: the preview mixes them again, and takes longer
        chunk_path(folder, index).unlink()
    await meeting.room.stop_recording(meeting.room.participants["teacher-1"])

    def mixing() -> bool:
        return any((folder / PREVIEW_DIR).glob(".*.partial"))

    await eventually(mixing, timeout=30, interval=0.01)
    await meeting.recordings.close(grace_s=0)  # the process stops, its ffmpeg mid-chunk
    row = _row(meeting.db, recording_id)
    assert row.status == "recording" and row.job_id is None, row.status_message
    assert not (folder / PREVIEW_DIR / PREVIEW_NAME).exists()

    # the next process (its start, or the room's next opening) finishes it
    following = MeetingRecordings.from_settings(meeting.db.sessions, meeting.settings, meeting.jobs)
    assert await following.recover_interrupted() == [recording_id]
    await asyncio.gather(*following.finishing.values())
    row = _row(meeting.db, recording_id)
    assert row.status == "ready" and row.status_message == PREVIEW_MESSAGE  # stopped, not cut
    timeline = MeetingTimeline.read(folder / TIMELINE_NAME)
    assert row.outputs["preview_chunks_remade"] >= 2
    assert row.outputs["duration_s"] == pytest.approx(timeline.duration_s, abs=0.5)
    assert row.job_id == f"meeting-recording-{recording_id}"
