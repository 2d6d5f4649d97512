"""A graceful stop of the SFU worker (SIGTERM, a deploy) during a 教研 meeting's recording: the
finishing runs to its end within the grace, so the recording is ready on its preview, its
composition queued, when the stop returns; whether the host pressed 停止录制 just before, or
the recording stops with the room as the worker closes it. During a lesson recorded with live
HLS: no ffmpeg of the live transcoder is left running when the stop returns. The worker as
``tongke sfu`` runs it (started, its rooms claimed in a real redis-server, its jobs queued
there), aiortc bots in its rooms, a real SQLite file.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace
from pathlib import Path

import pytest
from sqlalchemy import select

from common.jobs import make_job_queue
from recordings.meeting_preview import PREVIEW_DIR, PREVIEW_NAME, chunk_path
from recordings.meetings import PREVIEW_MESSAGE, MeetingRecordings
from recordings.models import Recording
from recordings.service import new_recording_for_sync_group
from research.models import ResearchSession
from streaming.access import lesson_room_id
from streaming.worker import SfuWorker
from tests.conftest import DemoDatabase
from tests.fixtures.classrooms import Classrooms, eventually
from tests.fixtures.loop_guard import in_process_loop_guard  # noqa: F401 - fixture
from tests.integration.streaming.test_sfu_workers import sweeper_settings
from web.jobs import register_all

pytestmark = [
    pytest.mark.redis,
    pytest.mark.timeout(180),
    pytest.mark.usefixtures("in_process_loop_guard"),  # the worker runs here, on the test's loop
]


@pytest.mark.parametrize("host_stops", [True, False], ids=["host-stopped", "still-recording"])
async def test_a_graceful_worker_stop_finishes_the_meeting_recording_first(
    redis_server: str, sqlite_db: DemoDatabase, tmp_path: Path, host_stops: bool
) -> None:
    settings = sweeper_settings(
        redis_server, sqlite_db, tmp_path / "media", recording_meeting_chunk_seconds=2.0
    )
    with sqlite_db.sessions() as session:
        first = select(ResearchSession.id).order_by(ResearchSession.id)
        room_id = f"research-{session.scalars(first).first()}"
    worker = SfuWorker(
        settings, worker_id="deployed", url="http://127.0.0.1:9", register_jobs=register_all
    )
    await worker.start()
    classrooms = Classrooms(worker.rooms)
    stopped = False
    try:
        room = await worker.rooms.open(room_id, kind="meeting")
        worker.meeting_trackers().ensure(room)  # as the worker's first join does
        bots = classrooms.join_meeting(room_id)
        await eventually(lambda: all(bot.connected.is_set() for bot in bots), timeout=20)
        recordings: MeetingRecordings = worker.meeting_trackers().recordings
        await room.start_recording(room.participants["teacher-1"])
        recording_id, recorder = recordings.by_room[room_id]
        folder = recorder.folder
        await eventually(lambda: chunk_path(folder, 1).exists(), timeout=30)
        if host_stops:
            await room.stop_recording(room.participants["teacher-1"])
            assert recording_id in recordings.finishing  # the preview is yet to be made
        with sqlite_db.sessions() as session:
            assert session.get_one(Recording, recording_id).status != "ready"

        await worker.stop()  # what uvicorn's shutdown runs at SIGTERM
        stopped = True
        with sqlite_db.sessions() as session:
            row = session.get_one(Recording, recording_id)
            assert row.status == "ready", row.status_message
            assert row.status_message == PREVIEW_MESSAGE
            assert row.outputs["meeting_version"] == "preview"
            assert row.job_id == f"meeting-recording-{recording_id}"
        assert (folder / PREVIEW_DIR / PREVIEW_NAME).exists()
        assert not recordings.finishing
        jobs = make_job_queue(settings)
        register_all(jobs, settings)
        try:
            assert (await jobs.status(row.job_id)).state == "queued"
        finally:
            await jobs.close()
    finally:
        await classrooms.stop_all()
        if not stopped:
            await worker.stop()


def _new_recording(db: DemoDatabase, sync_group_id: int) -> int:
    with db.sessions() as session, session.begin():
        return new_recording_for_sync_group(session, sync_group_id=sync_group_id).id


async def test_a_graceful_worker_stop_leaves_no_live_encoder_running(
    redis_server: str, sqlite_db: DemoDatabase, tmp_path: Path
) -> None:
    """uvicorn re-raises SIGTERM once the worker's stop returns, and the process dies at once:
    a live transcoder's ffmpeg still running then was orphaned (seen in the suite: both
    renditions' ffmpeg outlived their worker)."""
    settings = sweeper_settings(redis_server, sqlite_db, tmp_path / "media")
    worker = SfuWorker(
        settings, worker_id="deployed", url="http://127.0.0.1:9", register_jobs=register_all
    )
    await worker.start()
    target = worker.recording_target()
    # a host slot of its own (the default folder is the host's), not niced on a loaded machine
    target.active.live_hls = replace(target.active.live_hls, slots_dir=tmp_path / "slots", nice=0)
    group = 4
    classrooms = Classrooms(worker.rooms, default_room=lesson_room_id(group))
    stopped = False
    try:
        recording_id = await asyncio.to_thread(_new_recording, sqlite_db, group)
        status, body = await worker.record({"recording_id": recording_id, "sync_group_id": group})
        assert status == 200, body
        classrooms.start("lead", "lead", width=320, height=180, fps=15)
        transcoder = target.active.transcoders[recording_id]
        await eventually(lambda: transcoder.media_s > 0, timeout=30)
        encoders = transcoder.encoder_pids
        assert len(encoders) == 2  # main and low

        await worker.stop()  # what uvicorn's shutdown runs at SIGTERM
        stopped = True
        assert [pid for pid in encoders if Path(f"/proc/{pid}").exists()] == []
        assert transcoder.outcome is not None  # ended, the tail encoded or cut at the grace
    finally:
        await classrooms.stop_all()
        if not stopped:
            await worker.stop()
