"""The SFU workers' sweep finishes the 教研 meeting recordings a dead worker left behind: once
nobody hosts the meeting's room and the files stood still for ``recording_abandon_seconds``,
the preview is made from them (the timeline, left open by the crash, ends where the files do),
the recording is ready on it with the interruption in its status and the composition queued;
a meeting whose room a live worker hosts is left to it, unless the process finishing it died
(its lease ran out: nobody else would take it over). A real redis-server and SQLite file.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select, update

from common.settings import Settings
from recordings.meeting_capture import TIMELINE_NAME, MeetingTimeline
from recordings.meetings import claim_to_finish
from recordings.models import Recording
from research.models import ResearchSession
from streaming.worker import SfuWorker
from tests.conftest import DemoDatabase
from tests.fixtures.classrooms import eventually
from tests.fixtures.loop_guard import in_process_loop_guard  # noqa: F401 - fixture
from tests.fixtures.recordings import meeting_left_behind, recording_row
from tests.integration.streaming.test_sfu_workers import sweeper_settings
from web.jobs import register_all

pytestmark = [
    pytest.mark.redis,
    pytest.mark.timeout(180),
    pytest.mark.usefixtures("in_process_loop_guard"),  # the worker runs here, on the test's loop
]


@asynccontextmanager
async def sweeper(settings: Settings, *, hosting: int) -> AsyncIterator[SfuWorker]:
    """A worker that sweeps (not started), while another live one hosts the meeting room of
    research session ``hosting``."""
    worker = SfuWorker(
        settings, worker_id="sweeper", url="http://127.0.0.1:9", register_jobs=register_all
    )
    try:
        alive = await worker.cluster.claim(f"research-{hosting}", "sfu-alive")
        assert alive == "sfu-alive"
        yield worker
    finally:
        await worker.meeting_trackers().recordings.close()
        if worker._jobs is not None:
            await worker._jobs.close()
        await worker.cluster.close()


async def test_the_sweep_finishes_a_dead_workers_meeting_once_nobody_hosts_its_room(
    redis_server: str, sqlite_db: DemoDatabase, tmp_path: Path
) -> None:
    settings = sweeper_settings(
        redis_server, sqlite_db, tmp_path / "media", recording_meeting_chunk_seconds=5
    )
    with sqlite_db.sessions() as session:
        ids = session.scalars(select(ResearchSession.id).order_by(ResearchSession.id).limit(2))
        rows = {
            await asyncio.to_thread(
                meeting_left_behind,
                sqlite_db,
                settings.media_root,
                research_session_id=research_session_id,
            ): research_session_id
            for research_session_id in list(ids)
        }
    left, hosted = rows
    async with sweeper(settings, hosting=rows[hosted]) as worker:
        assert await worker.finish_abandoned_meetings() == [], "fresh within the setting"
        assert await worker.finish_abandoned_meetings(stale_after_s=0) == [left]
        recordings = worker.meeting_trackers().recordings
        await asyncio.gather(*recordings.finishing.values())
        assert await worker.finish_abandoned_meetings(stale_after_s=0) == [], "done once"
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


async def test_the_sweep_takes_over_a_dead_finishers_meeting_even_in_a_hosted_room(
    redis_server: str, sqlite_db: DemoDatabase, tmp_path: Path
) -> None:
    """Its finisher (the worker hosting the room, or another) was killed mid-preview: once its
    lease ran out the sweep takes it over, hosted room or not, files fresh or not."""
    settings = sweeper_settings(
        redis_server,
        sqlite_db,
        tmp_path / "media",
        recording_meeting_chunk_seconds=5,
        recording_meeting_finish_lease_seconds=2.0,
    )
    with sqlite_db.sessions() as session:
        research_session_id = session.scalars(
            select(ResearchSession.id).order_by(ResearchSession.id)
        ).first()
    assert research_session_id is not None
    recording_id = await asyncio.to_thread(
        meeting_left_behind, sqlite_db, settings.media_root, research_session_id=research_session_id
    )
    assert await asyncio.to_thread(
        claim_to_finish, sqlite_db.sessions, recording_id=recording_id, lease_s=2.0
    )
    async with sweeper(settings, hosting=research_session_id) as worker:
        assert await worker.finish_abandoned_meetings() == [], "its lease runs"
        with sqlite_db.sessions() as session:  # the finisher's last renewal, 12 s ago
            session.execute(
                update(Recording)
                .where(Recording.id == recording_id)
                .values(updated_at=datetime.now(UTC) - timedelta(seconds=12))
            )
            session.commit()
        assert await worker.finish_abandoned_meetings() == [recording_id]
        recordings = worker.meeting_trackers().recordings
        await asyncio.gather(*recordings.finishing.values())
    with sqlite_db.sessions() as session:
        finished = session.get_one(Recording, recording_id)
        assert finished.status == "ready", finished.status_message
        assert finished.job_id == f"meeting-recording-{recording_id}"


async def test_a_running_worker_takes_over_a_dead_finishers_meeting_by_itself(
    redis_server: str, sqlite_db: DemoDatabase, tmp_path: Path
) -> None:
    """No call from outside: the worker's heartbeat runs the meetings' part of the sweep every
    half finisher lease (here 1 s; heartbeats every 1/6 s)."""
    settings = sweeper_settings(
        redis_server,
        sqlite_db,
        tmp_path / "media",
        recording_meeting_chunk_seconds=5,
        recording_meeting_finish_lease_seconds=1.0,
        sfu_lease_seconds=0.5,
    )
    with sqlite_db.sessions() as session:
        research_session_id = session.scalars(
            select(ResearchSession.id).order_by(ResearchSession.id)
        ).first()
    assert research_session_id is not None
    worker = SfuWorker(
        settings, worker_id="sweeper", url="http://127.0.0.1:9", register_jobs=register_all
    )
    await worker.start()
    try:
        recording_id = await asyncio.to_thread(
            meeting_left_behind,
            sqlite_db,
            settings.media_root,
            research_session_id=research_session_id,
        )
        # taken by a finisher that died at once (never renewed)
        assert await asyncio.to_thread(
            claim_to_finish, sqlite_db.sessions, recording_id=recording_id, lease_s=1.0
        )

        def ready() -> bool:
            return recording_row(sqlite_db, recording_id).status == "ready"

        await eventually(ready, timeout=60)
    finally:
        await worker.stop()
    assert recording_row(sqlite_db, recording_id).job_id == f"meeting-recording-{recording_id}"
