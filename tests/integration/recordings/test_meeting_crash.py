"""A 教研 meeting's recording survives its process: kill -9 of a real child process that
records a meeting (an in-process SFU room, two aiortc teacher bots, the real
``MeetingRecordings`` writing to a real SQLite file), then two "processes" find it at once (the
meeting's room opened again here, and a sweep): exactly one of them makes the preview from the
chunks on disk and the killed files, marks the recording ready on it with the interruption in
its status, and queues the composition, which then composes the truncated files.

Run in a private network namespace (only loopback), as CI does:
    unshare -n sh -c 'ip link set lo up && .venv/bin/pytest tests/integration/recordings'
"""

from __future__ import annotations

import asyncio
import math
import os
import re
import signal
import textwrap
import time
from pathlib import Path

import av
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from common.jobs import InProcessJobQueue
from common.settings import Settings
from recordings.meeting_capture import TIMELINE_NAME, MeetingTimeline
from recordings.meeting_preview import PREVIEW_DIR, PREVIEW_NAME, chunk_path
from recordings.meetings import MeetingRecordings
from research.models import ResearchSession
from streaming.lifecycle import LessonClock
from streaming.meetings import MeetingTrackers
from streaming.sfu import InProcessRoomRegistry
from tests.conftest import DemoDatabase, make_test_app
from tests.fixtures.classrooms import eventually
from tests.fixtures.recordings import (
    job_queued,
    line_starting,
    meeting_left_behind,
    recorder_child,
    recording_row,
)
from tests.integration.streaming.test_meeting_recording import _loudest, ffprobe_duration
from web.jobs import register_all
from web.routers.lessons import _meeting_trackers

pytestmark = pytest.mark.timeout(300)

CHUNK_S = 2.0
LOUD = 0.05  # the bots' tones peak at 0.3; silence decodes to ~0

CHILD = textwrap.dedent(
    """
    import asyncio, sys
    from pathlib import Path

    from common.db import make_engine, session_factory
    from common.jobs import InProcessJobQueue
    from recordings.meeting_preview import chunk_path
    from recordings.meetings import MeetingRecordings
    from streaming.bots import use_loopback_only
    from streaming.sfu import InProcessRoomRegistry
    from tests.fixtures.classrooms import Classrooms

    async def main():
        use_loopback_only()
        url, media, session_id, chunk_s = sys.argv[1:5]
        room_id = f"research-{session_id}"
        rooms = InProcessRoomRegistry()
        recordings = MeetingRecordings(
            session_factory(make_engine(url)),
            Path(media),
            InProcessJobQueue(),
            preview_chunk_s=float(chunk_s),
        )
        bots = Classrooms(rooms).join_meeting(room_id)
        while not all(bot.connected.is_set() for bot in bots):
            await asyncio.sleep(0.05)
        room = await rooms.get(room_id)
        room.recording_hooks = recordings
        await room.start_recording(room.participants["teacher-1"])
        recording_id, recorder = recordings.by_room[room_id]
        while not chunk_path(recorder.folder, 1).exists():  # two chunks made while it runs
            await asyncio.sleep(0.05)
        print(f"recording {recording_id}", flush=True)
        await asyncio.sleep(600)

    asyncio.run(main())
    """
)


async def test_a_killed_meeting_recorder_gets_its_preview_once(
    sqlite_db: DemoDatabase, tmp_path: Path
) -> None:
    media_root = tmp_path / "media"
    with sqlite_db.sessions() as session:
        session_id = session.scalars(
            select(ResearchSession.id).order_by(ResearchSession.id)
        ).first()
    assert session_id is not None
    child = recorder_child(CHILD, sqlite_db.url, str(media_root), str(session_id), "2.0")
    try:
        line = line_starting(child, "recording ")
        assert line, "the child never recorded"
        recording_id = int(line.split()[1])
        time.sleep(1.0)  # into the next chunk: the one in progress is lost with the process
        os.kill(child.pid, signal.SIGKILL)
        killed_at = time.time()
    finally:
        child.kill()
        child.wait()

    recording = recording_row(sqlite_db, recording_id)
    assert recording.status == "recording"  # nobody told the database
    folder = (media_root / recording.raw_path).parent
    assert MeetingTimeline.read(folder / TIMELINE_NAME).stopped_at is None
    assert chunk_path(folder, 0).exists() and chunk_path(folder, 1).exists()

    # two processes find it at once: the meeting's room opened again here (its next join),
    # and a sweep; each with its own job queue (the real jobs), and the default 60 s chunks
    settings = Settings(
        environment="test",
        database_url=sqlite_db.url,
        media_root=media_root,
        recording_meeting_chunk_seconds=60,
    )
    queues = [InProcessJobQueue(), InProcessJobQueue()]
    for jobs in queues:
        register_all(jobs, settings)
    reopened, sweep = (
        MeetingRecordings.from_settings(sqlite_db.sessions, settings, jobs) for jobs in queues
    )
    rooms = InProcessRoomRegistry()
    try:
        room = await rooms.open(f"research-{session_id}", kind="meeting")
        MeetingTrackers(sqlite_db.sessions, LessonClock(), recordings=reopened).ensure(room)
        tried = await sweep.recover_interrupted()
        assert tried == [recording_id]
        await eventually(lambda: not reopened.searches, timeout=30)
        await asyncio.gather(*reopened.finishing.values(), *sweep.finishing.values())

        job_id = f"meeting-recording-{recording_id}"
        assert [await job_queued(jobs, job_id) for jobs in queues].count(True) == 1
        recording = recording_row(sqlite_db, recording_id)
        assert recording.status == "ready", recording.status_message
        assert recording.job_id == job_id
        message = re.fullmatch(
            r"录制中断，已保存到 (\d\d:\d\d:\d\d) 的预览版；完整版合成中", recording.status_message
        )
        assert message is not None, recording.status_message
        outputs = recording.outputs
        assert outputs["meeting_version"] == "preview" and outputs["playable"] == "preview"
        # the timeline ends where the killed files do: within the 2 s a kill may lose
        timeline = MeetingTimeline.read(folder / TIMELINE_NAME)
        assert timeline.stopped_at is not None and timeline.duration_s is not None
        assert killed_at - 2.5 < timeline.stopped_at <= killed_at
        # 2 s chunks, as the row says (not the 60 s of this process's settings): the two made
        # while it ran were kept, the rest mixed from the killed files
        assert outputs["preview_chunks"] == math.ceil(timeline.duration_s / CHUNK_S)
        assert all(chunk_path(folder, i).stat().st_mtime < killed_at for i in (0, 1))
        preview = folder / PREVIEW_DIR / PREVIEW_NAME
        assert abs(ffprobe_duration(preview) - timeline.duration_s) <= 0.5
        with av.open(str(preview)) as container:
            assert container.streams.audio and container.streams.video
        assert _loudest(preview) > LOUD

        # found again later (another sweep, another opening): nothing more to do
        assert await sweep.recover_interrupted() == []
        assert await reopened.recover_interrupted(research_session_id=session_id) == []

        # the composition queued by whichever took it composes the killed files
        def composed() -> bool:
            outputs = recording_row(sqlite_db, recording_id).outputs
            return outputs.get("meeting_version") == "composed"

        await eventually(composed, timeout=200)
        raw = folder / "raw.webm"
        assert abs(ffprobe_duration(raw) - timeline.duration_s) <= 0.5
    finally:
        await rooms.close_all()
        for recordings in (reopened, sweep):
            await recordings.close()
        for jobs in queues:
            await jobs.close()


def test_a_web_process_finishes_at_its_start_what_the_last_one_left(
    sqlite_db: DemoDatabase, tmp_path: Path
) -> None:
    """Rooms in the web process: the process that held the meeting was killed; the next one
    finishes its recording as it starts (in the background: it serves meanwhile), with the one
    ``MeetingRecordings`` its meeting rooms record with too."""
    with sqlite_db.sessions() as session:
        first = select(ResearchSession.id).order_by(ResearchSession.id)
        session_id = session.scalars(first).first()
    assert session_id is not None
    recording_id = meeting_left_behind(
        sqlite_db, tmp_path / "media", research_session_id=session_id
    )
    app = make_test_app(sqlite_db, tmp_path, recording_meeting_chunk_seconds=5)
    with TestClient(app):
        recordings = app.state.meeting_recordings
        assert isinstance(recordings, MeetingRecordings)
        assert _meeting_trackers(app).recordings is recordings  # one per process
        deadline = time.monotonic() + 60
        while (recording := recording_row(sqlite_db, recording_id)).status != "ready":
            assert time.monotonic() < deadline, recording.status_message
            time.sleep(0.1)
    assert recording.status_message.startswith("录制中断，已保存到 ")
    assert recording.job_id == f"meeting-recording-{recording_id}"
    assert recording.outputs["meeting_version"] == "preview"
    assert recording.outputs["duration_s"] == pytest.approx(12.0, abs=0.5)
