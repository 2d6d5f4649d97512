"""The SFU workers' sweep finishes the 教研 meeting recordings a dead worker left behind: once
nobody hosts the meeting's room and the files stood still for ``recording_abandon_seconds``,
the preview is made from them (the timeline, left open by the crash, ends where the files do),
the recording is ready on it with the interruption in its status and the composition queued;
a meeting whose room a live worker hosts is left to it. A real redis-server and SQLite file.
"""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import pytest
from sqlalchemy import select

from recordings.meeting_capture import TIMELINE_NAME, MeetingTimeline
from recordings.models import Recording
from research.models import ResearchSession
from streaming.worker import SfuWorker
from tests.conftest import DemoDatabase
from tests.fixtures.recordings import meeting_left_behind
from tests.integration.streaming.test_sfu_workers import sweeper_settings
from web.jobs import register_all

pytestmark = [pytest.mark.redis, pytest.mark.timeout(180)]


async def test_the_sweep_finishes_a_dead_workers_meeting_once_nobody_hosts_its_room(
    redis_server: str, sqlite_db: DemoDatabase, tmp_path: Path
) -> None:
    settings = sweeper_settings(
        redis_server, sqlite_db, tmp_path / "media", recording_meeting_chunk_seconds=5
    )
    with sqlite_db.sessions() as session:
        ids = session.scalars(select(ResearchSession.id).order_by(ResearchSession.id).limit(2))
        rows = {
            meeting_left_behind(
                sqlite_db, settings.media_root, research_session_id=research_session_id
            ): research_session_id
            for research_session_id in list(ids)
        }
    left, hosted = rows
    worker = SfuWorker(
        settings, worker_id="sweeper", url="http://127.0.0.1:9", register_jobs=register_all
    )
    try:
        alive = await worker.cluster.claim(f"research-{rows[hosted]}", "sfu-alive")
        assert alive == "sfu-alive"
        assert await worker.finish_abandoned_meetings() == [], "fresh within the setting"
        assert await worker.finish_abandoned_meetings(stale_after_s=0) == [left]
        recordings = worker.meeting_trackers().recordings
        await asyncio.gather(*recordings.finishing.values())
        assert await worker.finish_abandoned_meetings(stale_after_s=0) == [], "done once"
    finally:
        await worker.meeting_trackers().recordings.close()
        if worker._jobs is not None:
            await worker._jobs.close()
        await worker.cluster.close()
    with sqlite_db.sessions() as session:
        finished, untouched = (session.get_one(Recording, i) for i in rows)
        assert untouched.status == "recording"
        assert finished.status == "ready", finished.status_message
        assert re.fullmatch(
            r"录制中断，已保存到 \d\d:\d\d:\d\d 的预览版；完整版合成中", finished.status_message
        )
        assert finished.job_id == f"meeting-recording-{left}"
        outputs = finished.outputs
    folder = (settings.media_root / finished.raw_path).parent
    timeline = MeetingTimeline.read(folder / TIMELINE_NAME)
    assert timeline.duration_s == pytest.approx(12.0, abs=0.5)  # as far as the files go
    assert outputs["meeting_version"] == "preview"
    assert outputs["preview_chunks"] == 3  # no chunks on disk: all mixed from the files
    assert outputs["duration_s"] == pytest.approx(timeline.duration_s, abs=0.5)
