"""Nothing lost when the process running the job queue stops: the recovery sweep
(``recordings.requeue``) finds processing and compositions left unfinished by a lost job and
queues them again, once.

The lesson and meeting cases run the real jobs (ffmpeg, a real SQLite file: the jobs open
their own connection, which sees only committed rows, so not the PostgreSQL fixture's
rolled-back transaction); which rows the sweep takes, and that it takes each once, runs on
SQLite and PostgreSQL; the arq cases on a real redis-server.
"""

from __future__ import annotations

import asyncio
import os
import signal
import textwrap
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from arq.worker import Worker
from fastapi.testclient import TestClient
from sqlalchemy import select, update

from common.jobs import ArqJobQueue, InProcessJobQueue, JobContext, arq_worker_settings
from common.settings import Settings
from recordings import composition, requeue, service
from recordings.meetings import (
    COMPOSE_JOB,
    COMPOSE_MESSAGE,
    PENDING_MESSAGE,
    finish_meeting_recording,
    new_recording_for_research_session,
)
from recordings.models import Recording
from recordings.processing import PROCESS_JOB, RESUMED_MESSAGE
from recordings.requeue import (
    MAX_RESUMES,
    NOTE_GRACE_S,
    PREVIEW_RESUMED_MESSAGE,
    SWEEP_JOB,
    resume_job_id,
    resume_unfinished,
)
from recordings.storage_clock import storage_now
from research.models import ResearchSession
from tests.conftest import DemoDatabase, make_test_app
from tests.fixtures.classrooms import eventually
from tests.fixtures.jobs import running_arq_worker
from tests.fixtures.recordings import (
    WCK_EN_4,
    line_starting,
    make_recording,
    meeting_left_behind,
    place_raw,
    recorder_child,
    skew_clock,
    write_test_webm,
)
from web.jobs import register_all

pytestmark = [
    pytest.mark.timeout(240),
    # arq's Worker.close() still calls redis-py's deprecated close(); not ours to fix.
    pytest.mark.filterwarnings("ignore:Call to deprecated close:DeprecationWarning"),
]


def _row(db: DemoDatabase, recording_id: int) -> Recording:
    with db.sessions() as session:
        return session.get_one(Recording, recording_id)


def _set(db: DemoDatabase, recording_id: int, **fields: Any) -> None:
    with db.sessions() as session, session.begin():
        row = session.get_one(Recording, recording_id)
        for name, value in fields.items():
            setattr(row, name, value)


def _settings(db: DemoDatabase, media_root: Path) -> Settings:
    return Settings(environment="test", database_url=db.url, media_root=media_root)


def _first_research_session(db: DemoDatabase) -> int:
    with db.sessions() as session:
        found = session.scalars(select(ResearchSession.id).order_by(ResearchSession.id)).first()
    assert found is not None
    return found


def _meeting_row(db: DemoDatabase, **fields: Any) -> int:
    with db.sessions() as session, session.begin():
        row = new_recording_for_research_session(
            session, research_session_id=_first_research_session(db)
        )
        for name, value in fields.items():
            setattr(row, name, value)
        session.flush()
        return row.id


def _finished(row: Recording) -> bool:
    outputs = row.outputs or {}
    return row.status == "ready" and outputs.get("renditions") == "ready"


class HeldJobs:
    """A real in-process queue whose processing and composition jobs note what they were
    asked and then wait (a job that is live until the test lets it go)."""

    def __init__(self) -> None:
        self.queue = InProcessJobQueue(max_jobs=10)  # every one held at once
        self.asked: list[tuple[str, int, bool]] = []
        self.release = asyncio.Event()
        for name in (PROCESS_JOB, COMPOSE_JOB):
            self.queue.register(name, self._held(name))

    def _held(self, name: str) -> Any:
        async def run(ctx: JobContext, *, recording_id: int, resumed: bool = False) -> None:
            self.asked.append((name, recording_id, resumed))
            await self.release.wait()

        return run

    async def close(self) -> None:
        await self.queue.close()


async def test_the_sweep_takes_only_unfinished_work_and_each_once(db: DemoDatabase) -> None:
    lost = await asyncio.to_thread(make_recording, db, status="processing")
    lost_job = f"recording-{lost}-123456"
    _set(db, lost, job_id=lost_job)
    never_noted = await asyncio.to_thread(
        make_recording, db, status="processing"
    )  # killed between mark and note
    renditions = await asyncio.to_thread(make_recording, db)
    _set(db, renditions, outputs={"mp4": "lesson.mp4", "renditions": "processing"})
    on_preview = await asyncio.to_thread(
        _meeting_row,
        db,
        status="ready",
        job_id="meeting-recording-x",
        outputs={"meeting_version": "preview", "playable": "preview"},
    )
    # its process queued the composition and died before it noted the job (no preview)
    awaiting = await asyncio.to_thread(
        _meeting_row, db, status="processing", status_message=COMPOSE_MESSAGE
    )
    # left alone: failed for good, being recorded, done, being finished by its meeting's
    # process (recordings.meetings), deleted by retention
    left_alone = [
        await asyncio.to_thread(make_recording, db, status="failed"),
        await asyncio.to_thread(make_recording, db, status="recording"),
        await asyncio.to_thread(make_recording, db),
        await asyncio.to_thread(
            _meeting_row, db, status="processing", status_message=PENDING_MESSAGE
        ),
        await asyncio.to_thread(
            _meeting_row,
            db,
            status="ready",
            job_id="meeting-recording-y",
            outputs={"meeting_version": "preview", "composition": "failed"},
        ),
    ]
    failed_renditions = await asyncio.to_thread(make_recording, db)
    _set(db, failed_renditions, outputs={"mp4": "lesson.mp4", "renditions": "failed"})
    left_alone.append(failed_renditions)
    expired = await asyncio.to_thread(make_recording, db, status="processing")
    _set(db, expired, media_deleted_at=_row(db, expired).created_at)
    left_alone.append(expired)
    before = {recording_id: _row(db, recording_id).job_id for recording_id in left_alone}

    first = HeldJobs()
    try:
        queued = await resume_unfinished(db.sessions, jobs=first.queue)
        expected = {
            lost: resume_job_id(job=PROCESS_JOB, recording_id=lost, lost=lost_job),
            never_noted: resume_job_id(job=PROCESS_JOB, recording_id=never_noted, lost=None),
            renditions: resume_job_id(job=PROCESS_JOB, recording_id=renditions, lost=None),
            on_preview: resume_job_id(
                job=COMPOSE_JOB, recording_id=on_preview, lost="meeting-recording-x"
            ),
            awaiting: resume_job_id(job=COMPOSE_JOB, recording_id=awaiting, lost=None),
        }
        assert sorted(queued) == sorted(str(job_id) for job_id in expected.values())
        await eventually(lambda: len(first.asked) == 5, timeout=10)
        assert sorted(first.asked) == sorted(
            [
                (PROCESS_JOB, lost, True),
                (PROCESS_JOB, never_noted, True),
                (PROCESS_JOB, renditions, True),
                (COMPOSE_JOB, on_preview, True),
                (COMPOSE_JOB, awaiting, True),
            ]
        )
        for recording_id in (lost, never_noted, renditions):
            row = _row(db, recording_id)
            assert row.job_id == expected[recording_id]
            assert row.status_message == RESUMED_MESSAGE
        meeting = _row(db, on_preview)
        assert meeting.status == "ready" and meeting.status_message == PREVIEW_RESUMED_MESSAGE
        composing = _row(db, awaiting)
        assert composing.job_id == expected[awaiting]
        assert composing.status_message == composition.RESUMED_MESSAGE
        # swept again while those jobs run: nothing more
        assert await resume_unfinished(db.sessions, jobs=first.queue) == []
    finally:
        await first.close()
    assert {recording_id: _row(db, recording_id).job_id for recording_id in left_alone} == before

    # the process stops with the jobs unfinished: the next start resumes them again
    second = HeldJobs()
    try:
        again = await resume_unfinished(db.sessions, jobs=second.queue)
        lost_again = resume_job_id(job=PROCESS_JOB, recording_id=lost, lost=expected[lost])
        assert lost_again in again and len(again) == 5
    finally:
        second.release.set()
        await second.close()


@pytest.mark.parametrize(
    "skew", [timedelta(minutes=10), timedelta(minutes=-10)], ids=["ahead", "behind"]
)
async def test_a_sweeper_whose_clock_is_off_judges_the_grace_on_the_databases(
    db: DemoDatabase, monkeypatch: pytest.MonkeyPatch, skew: timedelta
) -> None:
    """``tongke worker``'s sweep leaves alone a row changed within ``NOTE_GRACE_S`` (another
    process is queueing its job) and takes one older, on the database's clock: its host's
    clock, ahead or behind, changes neither."""
    being_queued = await asyncio.to_thread(make_recording, db, status="processing")  # queueing
    lost = await asyncio.to_thread(make_recording, db, status="processing")
    with db.sessions() as session, session.begin():  # changed 3 minutes ago, nobody since
        session.execute(
            update(Recording)
            .where(Recording.id == lost)
            .values(updated_at=datetime.now(UTC) - timedelta(seconds=NOTE_GRACE_S + 60))
        )
    skew_clock(monkeypatch, requeue, skew)  # the worker's host
    jobs = HeldJobs()
    try:
        queued = await resume_unfinished(db.sessions, jobs=jobs.queue, grace_s=NOTE_GRACE_S)
        assert queued == [resume_job_id(job=PROCESS_JOB, recording_id=lost, lost=None)]
        assert _row(db, being_queued).job_id is None
    finally:
        jobs.release.set()
        await jobs.close()


ABANDON_S = 120.0  # recording_abandon_seconds' default


def _left_recording(db: DemoDatabase, media_root: Path, *, file_age_s: float | None) -> int:
    """A lesson's row left "recording" by a dead SFU worker, with its raw file last written
    ``file_age_s`` ago on the storage's own clock (None: no file, its start never reached a
    recorder)."""
    recording_id = make_recording(db, status="recording")
    if file_age_s is not None:
        raw = media_root / _row(db, recording_id).raw_path
        raw.parent.mkdir(parents=True)
        raw.write_bytes(b"\x1a\x45\xdf\xa3" + bytes(4000))  # what a recorder wrote
        written = storage_now(raw.parent)
        assert written is not None
        os.utime(raw, (written - file_age_s, written - file_age_s))
    return recording_id


@pytest.mark.parametrize(
    "skew", [timedelta(minutes=10), timedelta(minutes=-10)], ids=["ahead", "behind"]
)
async def test_a_sweeper_whose_clock_is_off_judges_a_lessons_recording_on_the_clocks_that_wrote_it(
    db: DemoDatabase, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, skew: timedelta
) -> None:
    """The SFU workers' sweep closes a lesson's recording no recorder holds once its raw file
    stood still for ``recording_abandon_seconds``, by the clock of the storage that stamped
    the file, and one without a file by the database's, which wrote ``created_at``: its host's
    clock, ahead or behind, cuts no recording short and leaves no stale one open."""
    media_root = tmp_path / "media"
    being_written = await asyncio.to_thread(_left_recording, db, media_root, file_age_s=0)
    stale = await asyncio.to_thread(_left_recording, db, media_root, file_age_s=300)
    starting = await asyncio.to_thread(_left_recording, db, media_root, file_age_s=None)
    never_started = await asyncio.to_thread(_left_recording, db, media_root, file_age_s=None)
    with db.sessions() as session, session.begin():  # made 5 minutes ago (the database's clock)
        session.execute(
            update(Recording)
            .where(Recording.id == never_started)
            .values(created_at=datetime.now(UTC) - timedelta(seconds=300))
        )
    skew_clock(monkeypatch, service, skew)  # the sweeping worker's host
    jobs = HeldJobs()
    try:
        closed = await service.close_interrupted_recordings(
            sync_group_id=WCK_EN_4,
            sessions=db.sessions,
            media_root=media_root,
            jobs=jobs.queue,
            running=set(),
            stale_after_s=ABANDON_S,
        )
        assert sorted(part.recording_id for part in closed) == sorted([stale, never_started])
        assert _row(db, stale).status == "processing" and _row(db, stale).job_id
        assert _row(db, never_started).status == "failed"
        assert _row(db, being_written).status == _row(db, starting).status == "recording"
    finally:
        jobs.release.set()
        await jobs.close()


def test_resume_ids_are_the_same_for_every_sweeper_and_give_up_in_the_end() -> None:
    first = resume_job_id(job=PROCESS_JOB, recording_id=7, lost="recording-7-4096")
    assert first == resume_job_id(job=PROCESS_JOB, recording_id=7, lost="recording-7-4096")
    assert first is not None and first.startswith("recording-7-resume-1-")
    # another lost job (重新处理 queued one since): another id, which the queue never saw
    other = resume_job_id(job=PROCESS_JOB, recording_id=7, lost="ab12")
    assert other is not None and other.startswith("recording-7-resume-1-") and other != first
    composing = resume_job_id(job=COMPOSE_JOB, recording_id=7, lost=None)
    assert composing is not None and composing.startswith("meeting-recording-7-resume-1-")
    lost: str | None = first
    for count in range(2, MAX_RESUMES + 1):
        lost = resume_job_id(job=PROCESS_JOB, recording_id=7, lost=lost)
        assert lost is not None and lost.startswith(f"recording-7-resume-{count}-")
        assert len(lost) <= 64  # Recording.job_id
    assert resume_job_id(job=PROCESS_JOB, recording_id=7, lost=lost) is None


async def _real_queue(settings: Settings) -> InProcessJobQueue:
    queue = InProcessJobQueue(retry_backoff=0.01)
    register_all(queue, settings)
    return queue


async def _restarted(
    db: DemoDatabase, settings: Settings, recording_id: int, *, message: str, timeout: float
) -> Recording:
    """The next process's start: its sweep queues the recording's lost job again, alone (the
    row says so at once), and the job completes; returns the row as it leaves it."""
    after = await _real_queue(settings)
    try:
        (resumed,) = await resume_unfinished(db.sessions, jobs=after)
        assert f"-{recording_id}-resume-1-" in resumed
        assert _row(db, recording_id).status_message == message
        status = await after.wait(resumed, timeout=timeout)
    finally:
        await after.close()
    assert status.state == "complete", status.error
    row = _row(db, recording_id)
    assert _finished(row) and row.job_id == resumed
    return row


async def test_processing_stopped_with_its_queue_is_finished_after_a_restart(
    sqlite_db: DemoDatabase, tmp_path: Path
) -> None:
    media_root = tmp_path / "media"
    settings = _settings(sqlite_db, media_root)
    recording_id = await asyncio.to_thread(make_recording, sqlite_db, status="processing")
    place_raw(sqlite_db, recording_id, media_root, write_test_webm(tmp_path / "in.webm", 8))
    job_id = f"recording-{recording_id}-1"
    _set(sqlite_db, recording_id, job_id=job_id)

    before = await _real_queue(settings)
    try:
        await before.enqueue(PROCESS_JOB, job_id=job_id, recording_id=recording_id)

        def making_renditions() -> bool:
            outputs = _row(sqlite_db, recording_id).outputs or {}
            return outputs.get("renditions") == "processing"

        await eventually(making_renditions, timeout=60)
    finally:
        await before.close()  # the process stops mid-job
    stopped = _row(sqlite_db, recording_id)
    assert stopped.status == "ready" and stopped.outputs["renditions"] == "processing"

    row = await _restarted(sqlite_db, settings, recording_id, message=RESUMED_MESSAGE, timeout=120)
    assert row.status_message == ""
    folder = media_root / Path(row.raw_path).parent
    assert (folder / "lesson.mp4").is_file() and (folder / "hls" / "master.m3u8").is_file()


def test_a_web_process_starts_the_processing_the_last_one_had_queued(
    sqlite_db: DemoDatabase, tmp_path: Path, sample_webm: Path
) -> None:
    """Queued and not started when the process stopped: the next web process's start runs it."""
    media_root = tmp_path / "media"
    recording_id = make_recording(sqlite_db, status="processing")
    place_raw(sqlite_db, recording_id, media_root, sample_webm)
    lost = f"recording-{recording_id}-4242"
    _set(sqlite_db, recording_id, job_id=lost, status_message="等待处理")
    with TestClient(make_test_app(sqlite_db, tmp_path)):
        deadline = time.monotonic() + 90
        while not _finished(row := _row(sqlite_db, recording_id)):
            assert row.status != "failed", row.status_message
            assert time.monotonic() < deadline, (row.status, row.status_message)
            time.sleep(0.2)
    assert row.job_id == resume_job_id(job=PROCESS_JOB, recording_id=recording_id, lost=lost)
    assert (media_root / Path(row.raw_path).parent / "lesson.mp4").is_file()


async def test_a_meeting_left_on_its_preview_is_composed_after_a_restart(
    sqlite_db: DemoDatabase, tmp_path: Path
) -> None:
    media_root = tmp_path / "media"
    settings = _settings(sqlite_db, media_root)
    recording_id = await asyncio.to_thread(
        meeting_left_behind,
        sqlite_db,
        media_root,
        research_session_id=_first_research_session(sqlite_db),
    )
    folder = (media_root / _row(sqlite_db, recording_id).raw_path).parent
    before = await _real_queue(settings)
    try:
        job_id = await finish_meeting_recording(
            sqlite_db.sessions, jobs=before, recording_id=recording_id, folder=folder, chunk_s=4.0
        )
    finally:
        await before.close()  # the composition queued, lost with the process
    left = _row(sqlite_db, recording_id)
    assert job_id == f"meeting-recording-{recording_id}" and left.job_id == job_id
    assert left.status == "ready" and left.outputs["meeting_version"] == "preview"

    row = await _restarted(
        sqlite_db, settings, recording_id, message=PREVIEW_RESUMED_MESSAGE, timeout=200
    )
    assert row.outputs["meeting_version"] == "composed"
    assert row.outputs["playable"] == "raw" and (folder / "raw.webm").is_file()


KILLED_CHILD = textwrap.dedent(
    """
    import asyncio, sys
    from pathlib import Path

    from common.jobs import InProcessJobQueue
    from common.settings import Settings
    from recordings.processing import PROCESS_JOB
    from web.jobs import register_all

    async def main():
        url, media, recording_id = sys.argv[1:4]
        queue = InProcessJobQueue()
        register_all(queue, Settings(environment="test", database_url=url, media_root=Path(media)))
        job_id = await queue.enqueue(
            PROCESS_JOB, job_id=f"recording-{recording_id}-9", recording_id=int(recording_id)
        )
        while (status := await queue.status(job_id)).progress < 0.2:  # into the renditions
            assert not status.finished, status
            await asyncio.sleep(0.05)
        print(f"processing {status.progress:.2f}", flush=True)
        await asyncio.sleep(600)

    asyncio.run(main())
    """
)


async def test_processing_killed_with_its_process_is_finished_by_the_next_one(
    sqlite_db: DemoDatabase, tmp_path: Path
) -> None:
    media_root = tmp_path / "media"
    recording_id = await asyncio.to_thread(make_recording, sqlite_db, status="processing")
    place_raw(sqlite_db, recording_id, media_root, write_test_webm(tmp_path / "in.webm", 20))
    _set(sqlite_db, recording_id, job_id=f"recording-{recording_id}-9")
    child = recorder_child(KILLED_CHILD, sqlite_db.url, str(media_root), str(recording_id))
    try:
        line = await asyncio.to_thread(line_starting, child, "processing ")
        assert line, "the child never got into the renditions"
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.kill()
        child.wait()
    killed = _row(sqlite_db, recording_id)
    assert killed.status == "ready" and killed.outputs["renditions"] == "processing"

    settings = _settings(sqlite_db, media_root)
    row = await _restarted(sqlite_db, settings, recording_id, message=RESUMED_MESSAGE, timeout=180)
    assert row.outputs["duration_s"] == pytest.approx(20, abs=0.5)
    folder = media_root / Path(row.raw_path).parent
    assert not (folder / ".renditions.partial").exists()  # the killed run's work replaced


# --- with Redis: arq keeps queued jobs; the sweep runs in `tongke worker` --------------------


@pytest.fixture
async def arq_queues(
    redis_server: str, sqlite_db: DemoDatabase, tmp_path: Path
) -> AsyncIterator[tuple[ArqJobQueue, ...]]:
    """Two processes' queues on one arq queue (two workers sweeping at once)."""
    name = f"test:{uuid.uuid4().hex}"
    queues = tuple(ArqJobQueue(redis_server, queue_name=name) for _ in range(2))
    for queue in queues:
        register_all(queue, _settings(sqlite_db, tmp_path / "media"))
    yield queues
    for queue in queues:
        await queue.close()


async def _queued_in_arq(queue: ArqJobQueue) -> list[str]:
    redis = await queue._redis()
    return [member.decode() for member in await redis.zrange(queue.queue_name, 0, -1)]


@pytest.mark.redis
async def test_two_workers_sweeping_at_once_queue_a_lost_job_once(
    sqlite_db: DemoDatabase, arq_queues: tuple[ArqJobQueue, ...]
) -> None:
    unknown = await asyncio.to_thread(make_recording, sqlite_db, status="processing")
    _set(sqlite_db, unknown, job_id=f"recording-{unknown}-77")  # Redis lost it
    # the worker running it was killed past its tries: our status still says "running",
    # arq holds it no more
    given_up = await asyncio.to_thread(make_recording, sqlite_db, status="processing")
    _set(sqlite_db, given_up, job_id=f"recording-{given_up}-78")
    redis = await arq_queues[0]._redis()
    status = {"name": PROCESS_JOB, "state": "running", "enqueued_at": time.time()}
    await redis.hset(f"tongke:job:recording-{given_up}-78", mapping=status)  # type: ignore[misc]

    first, second = await asyncio.gather(
        *(resume_unfinished(sqlite_db.sessions, jobs=queue) for queue in arq_queues)
    )
    expected = {
        recording_id: str(
            resume_job_id(
                job=PROCESS_JOB, recording_id=recording_id, lost=f"recording-{recording_id}-{n}"
            )
        )
        for recording_id, n in ((unknown, 77), (given_up, 78))
    }
    assert sorted(first + second) == sorted(expected.values())
    assert sorted(await _queued_in_arq(arq_queues[0])) == sorted(expected.values())
    for recording_id in (unknown, given_up):
        row = _row(sqlite_db, recording_id)
        assert row.job_id == expected[recording_id]
        assert row.status_message == RESUMED_MESSAGE
    # queued in arq now: live, left alone by the next sweep
    assert await resume_unfinished(sqlite_db.sessions, jobs=arq_queues[1]) == []


@pytest.mark.redis
async def test_a_recording_whose_job_runs_in_arq_is_left_alone(
    sqlite_db: DemoDatabase, arq_queues: tuple[ArqJobQueue, ...], redis_server: str
) -> None:
    sweeper = arq_queues[0]
    worker_side = ArqJobQueue(redis_server, queue_name=sweeper.queue_name)
    started, release = asyncio.Event(), asyncio.Event()

    async def slow_processing(ctx: JobContext, *, recording_id: int) -> None:
        started.set()
        await release.wait()

    worker_side.register(PROCESS_JOB, slow_processing)
    recording_id = await asyncio.to_thread(make_recording, sqlite_db, status="processing")
    worker = Worker(
        **arq_worker_settings(worker_side, poll_delay=0.02, handle_signals=False, cron_jobs=[])
    )
    try:
        async with running_arq_worker(worker):
            try:
                job_id = await worker_side.enqueue(
                    PROCESS_JOB, job_id=f"recording-{recording_id}-5", recording_id=recording_id
                )
                _set(sqlite_db, recording_id, job_id=job_id, status_message="处理中")
                await asyncio.wait_for(started.wait(), timeout=20)
                assert (await sweeper.status(job_id)).state == "running"
                assert await resume_unfinished(sqlite_db.sessions, jobs=sweeper) == []
                row = _row(sqlite_db, recording_id)
                assert row.job_id == job_id and row.status_message == "处理中"
            finally:
                release.set()  # the job ends, then the worker stops
    finally:
        await worker_side.close()


@pytest.mark.redis
async def test_a_worker_starting_resumes_what_a_lost_job_left(
    sqlite_db: DemoDatabase, tmp_path: Path, redis_server: str, sample_webm: Path
) -> None:
    """``tongke worker``: the sweep is an arq cron run at the worker's start (and every 5
    minutes); the processing it queues runs in that worker."""
    media_root = tmp_path / "media"
    recording_id = await asyncio.to_thread(make_recording, sqlite_db, status="processing")
    place_raw(sqlite_db, recording_id, media_root, sample_webm)
    _set(sqlite_db, recording_id, job_id=f"recording-{recording_id}-31")  # Redis lost it
    # unchanged for longer than the sweep's grace (NOTE_GRACE_S): nobody is queueing it now
    with sqlite_db.sessions() as session, session.begin():
        session.execute(
            update(Recording)
            .where(Recording.id == recording_id)
            .values(updated_at=datetime.now(UTC) - timedelta(minutes=10))
        )
    queue = ArqJobQueue(redis_server, queue_name=f"test:{uuid.uuid4().hex}")
    register_all(queue, _settings(sqlite_db, media_root))  # what `tongke worker` registers
    worker_settings = arq_worker_settings(queue, poll_delay=0.02, handle_signals=False)
    (sweep,) = [c for c in worker_settings["cron_jobs"] if c.name == f"cron:{SWEEP_JOB}"]
    assert sweep.run_at_startup and sweep.unique and sweep.minute == set(range(0, 60, 5))
    try:
        async with running_arq_worker(Worker(**worker_settings)):
            await eventually(lambda: _finished(_row(sqlite_db, recording_id)), timeout=90)
    finally:
        await queue.close()
    resumed = _row(sqlite_db, recording_id).job_id
    assert resumed == resume_job_id(
        job=PROCESS_JOB, recording_id=recording_id, lost=f"recording-{recording_id}-31"
    )
