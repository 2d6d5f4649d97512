"""A meeting recording's finisher holds it on a short lease it renews while it works.

Killed (a real child process, SIGKILL) while it makes the preview, its work is taken over once
the lease ran out, by the processes that had found it held (a room opened again, a sweep): they
look again when the lease ends, exactly one of them takes it, makes the preview (keeping the
chunk the killed one made) and queues the composition, once. A finisher that lost its claim
(another process took it over) stops and writes nothing over the new owner's work. The leases
are shortened to ``LEASE_S`` here (40 s by default). The real ``MeetingRecordings``, ffmpeg and
a SQLite file; the child pauses, deterministically, where it makes its second chunk.

Run in a private network namespace (only loopback), as CI does:
    unshare -n sh -c 'ip link set lo up && .venv/bin/pytest tests/integration/recordings'
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import textwrap
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, update

from common.jobs import InProcessJobQueue, JobContext
from common.settings import Settings
from recordings.meeting_capture import TIMELINE_NAME, MeetingTimeline
from recordings.meeting_preview import PREVIEW_DIR, PREVIEW_NAME, chunk_path
from recordings.meetings import (
    CLAIM_KEY,
    PENDING_MESSAGE,
    MeetingRecordings,
    claim_to_finish,
)
from recordings.models import Recording
from research.models import ResearchSession
from tests.conftest import DemoDatabase
from tests.fixtures.classrooms import eventually
from tests.fixtures.recordings import (
    job_queued,
    line_starting,
    meeting_left_behind,
    recorder_child,
    recording_row,
)
from tests.integration.streaming.test_meeting_recording import ffprobe_duration
from web.jobs import register_all

pytestmark = pytest.mark.timeout(180)

# renewed every second: the child, alive, must renew within a lease three times over (its
# loop idles meanwhile); 2 s worked in 6 of 6 runs (taken over 2.37-2.83 s after the kill),
# 4 s keeps a stall of the loaded machine from looking like a death
LEASE_S = 4.0
CHUNK_S = 5.0  # the 12 s left behind: three chunks

CHILD = textwrap.dedent(
    """
    import asyncio, sys
    from pathlib import Path

    from common.db import make_engine, session_factory
    from common.jobs import InProcessJobQueue
    from recordings import meeting_preview
    from recordings.meetings import MeetingRecordings

    async def main():
        url, media, recording_id, folder, chunk_s, lease_s = sys.argv[1:7]
        real_chunk = meeting_preview.make_chunk

        async def make_chunk(folder, timeline, *, index, **options):
            if index == 1:  # the first chunk made: the finisher stands here until it is killed
                print("mixing 1", flush=True)
                await asyncio.Event().wait()
            return await real_chunk(folder, timeline, index=index, **options)

        meeting_preview.make_chunk = make_chunk
        recordings = MeetingRecordings(
            session_factory(make_engine(url)),
            Path(media),
            InProcessJobQueue(),
            preview_chunk_s=float(chunk_s),
            finish_lease_s=float(lease_s),
        )
        recordings.finish_soon(
            int(recording_id), Path(folder), chunk_s=float(chunk_s), recorded=None
        )
        await asyncio.Event().wait()

    asyncio.run(main())
    """
)


@dataclass
class LeftBehind:
    db: DemoDatabase
    media_root: Path
    settings: Settings
    research_session_id: int
    recording_id: int
    folder: Path


@pytest.fixture
def left_behind(sqlite_db: DemoDatabase, tmp_path: Path) -> LeftBehind:
    """A meeting recording a killed process left "recording" (12 s of two teachers' files)."""
    media_root = tmp_path / "media"
    with sqlite_db.sessions() as session:
        first = select(ResearchSession.id).order_by(ResearchSession.id)
        research_session_id = session.scalars(first).first()
    assert research_session_id is not None
    recording_id = meeting_left_behind(
        sqlite_db, media_root, research_session_id=research_session_id
    )
    with sqlite_db.sessions() as session:
        raw_path = session.get_one(Recording, recording_id).raw_path
    settings = Settings(
        environment="test",
        database_url=sqlite_db.url,
        media_root=media_root,
        recording_meeting_chunk_seconds=CHUNK_S,
        recording_meeting_finish_lease_seconds=LEASE_S,
    )
    return LeftBehind(
        sqlite_db,
        media_root,
        settings,
        research_session_id,
        recording_id,
        (media_root / raw_path).parent,
    )


@pytest.fixture
async def held_queues(left_behind: LeftBehind) -> AsyncIterator[list[InProcessJobQueue]]:
    """Two processes' job queues with the real jobs, each with its one slot held: a
    composition queued waits there (its queueing is what is counted)."""
    released = asyncio.Event()

    async def hold(_ctx: JobContext) -> dict[str, Any]:
        await released.wait()
        return {}

    queues = [InProcessJobQueue(max_jobs=1), InProcessJobQueue(max_jobs=1)]
    for jobs in queues:
        register_all(jobs, left_behind.settings)
        jobs.register("hold_the_queue", hold, max_retries=0)
        await jobs.enqueue("hold_the_queue")
    try:
        yield queues
    finally:
        released.set()
        for jobs in queues:
            await jobs.close()


async def test_a_finisher_killed_mid_preview_is_taken_over_when_its_lease_ends(
    left_behind: LeftBehind, held_queues: list[InProcessJobQueue]
) -> None:
    db, recording_id, folder = left_behind.db, left_behind.recording_id, left_behind.folder
    reopened, sweep = (
        MeetingRecordings.from_settings(db.sessions, left_behind.settings, jobs)
        for jobs in held_queues
    )
    child = recorder_child(
        CHILD,
        db.url,
        str(left_behind.media_root),
        str(recording_id),
        str(folder),
        str(CHUNK_S),
        str(LEASE_S),
    )
    try:
        assert line_starting(child, "mixing 1"), "the child never made its preview"
        row = recording_row(db, recording_id)
        assert (row.status, row.status_message) == ("processing", PENDING_MESSAGE)
        claim, taken_at = row.outputs[CLAIM_KEY], row.updated_at
        assert chunk_path(folder, 0).exists() and not chunk_path(folder, 1).exists()

        # the meeting's room opened again here, and a sweep: both find it held, and look
        # again when its lease ends; renewed meanwhile, it stays the child's
        # (each checked at once: under load one's look may already be under way while the
        # other searches, and for that moment it is between lookouts)
        assert (
            await reopened.recover_interrupted(research_session_id=left_behind.research_session_id)
            == []
        )
        assert set(reopened.lookouts) == {left_behind.research_session_id}
        assert await sweep.recover_interrupted() == []
        assert set(sweep.lookouts) == {left_behind.research_session_id}
        await asyncio.sleep(2 * LEASE_S)  # a dead child's lease would have run out twice
        row = recording_row(db, recording_id)
        assert row.outputs[CLAIM_KEY] == claim and row.updated_at > taken_at, "not renewed"
        assert row.status == "processing" and not reopened.finishing and not sweep.finishing
        assert (
            await asyncio.to_thread(
                claim_to_finish, db.sessions, recording_id=recording_id, lease_s=LEASE_S
            )
            is None
        )

        os.kill(child.pid, signal.SIGKILL)
        killed_at = time.monotonic()
    finally:
        child.kill()
        child.wait()
    try:
        # nobody asks again: the lookouts take it over once the lease ran out
        def ready() -> bool:
            return recording_row(db, recording_id).status == "ready"

        await eventually(ready, timeout=60, interval=0.05)
        taken_over_s = time.monotonic() - killed_at
        await asyncio.gather(*reopened.finishing.values(), *sweep.finishing.values())
        row = recording_row(db, recording_id)
        job_id = f"meeting-recording-{recording_id}"
        assert [await job_queued(jobs, job_id) for jobs in held_queues].count(True) == 1
        assert row.job_id == job_id
        assert re.fullmatch(
            r"录制中断，已保存到 \d\d:\d\d:\d\d 的预览版；完整版合成中", row.status_message
        ), row.status_message
        assert CLAIM_KEY not in row.outputs
        assert row.outputs["meeting_version"] == "preview" and row.outputs["preview_chunks"] == 3
        timeline = MeetingTimeline.read(folder / TIMELINE_NAME)
        assert timeline.duration_s == pytest.approx(12.0, abs=0.5)
        preview = folder / PREVIEW_DIR / PREVIEW_NAME
        assert ffprobe_duration(preview) == pytest.approx(timeline.duration_s, abs=0.5)
        # found again later: nothing more to do
        assert await sweep.recover_interrupted() == []
        assert not sweep.lookouts and not reopened.lookouts
        print(f"taken over and ready {taken_over_s:.2f} s after the kill (lease {LEASE_S} s)")
    finally:
        for recordings in (reopened, sweep):
            await recordings.close()


async def test_a_finisher_that_lost_its_claim_stops_and_writes_nothing(
    left_behind: LeftBehind, held_queues: list[InProcessJobQueue]
) -> None:
    db, recording_id, folder = left_behind.db, left_behind.recording_id, left_behind.folder
    slow, _ = held_queues
    finisher = MeetingRecordings(
        db.sessions, left_behind.media_root, slow, preview_chunk_s=2.0, finish_lease_s=LEASE_S
    )
    try:
        finisher.finish_soon(recording_id, folder, chunk_s=2.0, recorded=None)  # six chunks
        task = finisher.finishing[recording_id]

        def mixing() -> bool:
            return any((folder / PREVIEW_DIR).glob(".*.partial"))

        await eventually(mixing, timeout=30, interval=0.01)
        # it stalled (a lease without renewal) and another process took it over
        with db.sessions() as session:
            stalled = datetime.now(UTC) - timedelta(seconds=LEASE_S + 10)
            session.execute(
                update(Recording).where(Recording.id == recording_id).values(updated_at=stalled)
            )
            session.commit()
        successor = await asyncio.to_thread(
            claim_to_finish, db.sessions, recording_id=recording_id, lease_s=LEASE_S
        )
        assert successor is not None
        await asyncio.wait_for(task, timeout=60)
        row = recording_row(db, recording_id)
        assert (row.status, row.status_message) == ("processing", PENDING_MESSAGE)
        assert row.outputs[CLAIM_KEY] == successor and row.job_id is None
        assert "meeting_version" not in row.outputs
        assert not await job_queued(slow, f"meeting-recording-{recording_id}")
    finally:
        await finisher.close()
