"""Retention runs daily inside the system: an arq cron job in `tongke worker` (real Redis, real
arq worker) and a task of the embedded web process, each triggered here by a controlled clock
instead of waiting for 03:00."""

from __future__ import annotations

import asyncio
import json
from datetime import date, datetime, timedelta
from pathlib import Path

import pytest
from arq.worker import Worker
from fastapi.testclient import TestClient
from sqlalchemy import select

from common.alliance.models import Alliance
from common.errors import NotFoundError
from common.jobs import (
    DAILY_KEY_PREFIX,
    DAILY_LEDGER_NAME,
    SCHOOL_TIME,
    ArqJobQueue,
    DailyJob,
    DailySchedule,
    InProcessJobQueue,
    JobQueue,
    JobStatus,
    RedisDailyLedger,
    arq_worker_settings,
)
from common.settings import Settings
from recordings import service
from recordings.models import Recording, RecordingRetention
from recordings.processing import EXPIRE_JOB
from tests.conftest import DemoDatabase, make_test_app
from web.jobs import register_all

pytestmark = [
    pytest.mark.timeout(120),
    # arq's Worker.close() still calls redis-py's deprecated close(); not ours to fix.
    pytest.mark.filterwarnings("ignore:Call to deprecated close:DeprecationWarning"),
]

WCK_EN_4 = 4


def _old_recording_under_a_30_day_rule(db: DemoDatabase, media_root: Path) -> int:
    with db.sessions() as session:
        wck = session.scalars(
            select(Alliance.id).where(Alliance.name == "王村口老区教育联盟")
        ).one()
        session.add(RecordingRetention(alliance_id=wck, keep_days=30))
        recording = service.new_recording_for_sync_group(session, sync_group_id=WCK_EN_4)
        recording.date = date.today() - timedelta(days=40)
        recording.status = "ready"
        session.commit()
        folder = (media_root / recording.raw_path).parent
    folder.mkdir(parents=True)
    (folder / "raw.webm").write_bytes(b"\x1a\x45\xdf\xa3" + b"\0" * 200)
    return recording.id


def _expired(db: DemoDatabase, recording_id: int) -> bool:
    with db.sessions() as session:
        return session.get_one(Recording, recording_id).media_deleted_at is not None


def _settings(db: DemoDatabase, media_root: Path, redis_url: str | None = None) -> Settings:
    return Settings(
        environment="test", database_url=db.url, redis_url=redis_url, media_root=media_root
    )


async def test_the_embedded_web_process_expires_once_a_day_at_its_hour(
    sqlite_db: DemoDatabase, tmp_path: Path
) -> None:
    media_root = tmp_path / "media"
    old = await asyncio.to_thread(_old_recording_under_a_30_day_rule, sqlite_db, media_root)
    queue = InProcessJobQueue()
    register_all(queue, _settings(sqlite_db, media_root))
    now = datetime(2026, 12, 7, 2, 59, tzinfo=SCHOOL_TIME)
    schedule = DailySchedule(queue, clock=lambda: now)
    try:
        assert schedule.next_runs() == {EXPIRE_JOB: datetime(2026, 12, 7, 3, tzinfo=SCHOOL_TIME)}
        assert await schedule.run_due() == []  # 02:59: not yet
        assert not _expired(sqlite_db, old)

        now = datetime(2026, 12, 7, 3, 0, 30, tzinfo=SCHOOL_TIME)
        (job_id,) = await schedule.run_due()
        assert job_id == "daily:expire_recordings:2026-12-07"
        status = await queue.wait(job_id, timeout=30)
        assert status.state == "complete", status
        assert status.result == {"expired": [old]}
        assert _expired(sqlite_db, old)
        assert not (media_root / f"recordings/{old}").exists()

        now = datetime(2026, 12, 7, 23, 0, tzinfo=SCHOOL_TIME)
        assert await schedule.run_due() == []  # once a day
        now = datetime(2026, 12, 8, 3, 5, tzinfo=SCHOOL_TIME)
        (again,) = await schedule.run_due()
        status = await queue.wait(again, timeout=30)
        assert status.result == {"expired": []}  # idempotent: nothing left to expire
        # a web process restarted the same day does not run the day's job twice
        assert await queue.enqueue(EXPIRE_JOB, job_id=again) == again
    finally:
        await queue.close()


def test_the_embedded_app_starts_the_daily_schedule_and_stops_it(
    sqlite_db: DemoDatabase, tmp_path: Path
) -> None:
    app = make_test_app(sqlite_db, tmp_path)
    with TestClient(app):
        schedule = app.state.daily_jobs
        assert isinstance(schedule, DailySchedule) and schedule.running
        (when,) = schedule.next_runs().values()
        assert when.astimezone(SCHOOL_TIME).hour == 3
        assert timedelta(0) < when - datetime.now(SCHOOL_TIME) <= timedelta(days=1)
    assert not schedule.running


def test_the_embedded_app_catches_up_the_expiry_it_missed_while_down(
    sqlite_db: DemoDatabase, tmp_path: Path
) -> None:
    media_root = tmp_path / "media"
    old = _old_recording_under_a_30_day_rule(sqlite_db, media_root)
    # the ledger says the last expiry ran two days ago: the app was down at least one 03:00
    two_days_ago = datetime.now(SCHOOL_TIME) - timedelta(days=2)
    (media_root / DAILY_LEDGER_NAME).write_text(
        json.dumps({EXPIRE_JOB: two_days_ago.isoformat()}), "utf-8"
    )
    app = make_test_app(sqlite_db, tmp_path)
    slot = DailyJob(EXPIRE_JOB, hour=3).last_due(datetime.now(SCHOOL_TIME))
    job_id = f"daily:{EXPIRE_JOB}:{slot.date().isoformat()}"

    async def finished() -> JobStatus:
        # the schedule's task enqueues it as the app starts
        queue: JobQueue = app.state.jobs
        async with asyncio.timeout(30):
            while True:
                try:
                    return await queue.wait(job_id, timeout=30)
                except NotFoundError:
                    await asyncio.sleep(0.05)

    with TestClient(app) as client:
        assert client.portal is not None
        status = client.portal.call(finished)
    assert status.state == "complete" and status.result == {"expired": [old]}
    assert _expired(sqlite_db, old)
    ledger = json.loads((media_root / DAILY_LEDGER_NAME).read_text("utf-8"))
    assert datetime.fromisoformat(ledger[EXPIRE_JOB]) == slot


@pytest.mark.redis
async def test_tongke_worker_runs_expiry_as_an_arq_cron_job(
    sqlite_db: DemoDatabase, redis_server: str, tmp_path: Path
) -> None:
    media_root = tmp_path / "media"
    old = await asyncio.to_thread(_old_recording_under_a_30_day_rule, sqlite_db, media_root)
    settings = _settings(sqlite_db, media_root, redis_server)
    queue = ArqJobQueue(redis_server, queue_name="tongke:test-daily")
    register_all(queue, settings)  # what `tongke worker` registers
    # Let arq's own cron logic decide the run: the last 03:00 is due, the next one is not.
    now = datetime.now(SCHOOL_TIME)
    last = now.replace(hour=3, minute=0, second=0, microsecond=0)
    if last > now:
        last -= timedelta(days=1)
    # the worker started before that 03:00, after the day before ran: no catch-up on start
    worker_settings = arq_worker_settings(
        queue,
        clock=lambda: last - timedelta(seconds=1),
        burst=True,
        poll_delay=0.02,
        handle_signals=False,
    )
    (cron_job,) = [c for c in worker_settings["cron_jobs"] if c.name == "cron:expire_recordings"]
    assert cron_job.unique
    # the other cron, the recovery sweep's, is tested in test_recording_resume.py
    worker_settings["cron_jobs"] = [cron_job]
    assert (cron_job.hour, cron_job.minute) == (3, 0)
    assert worker_settings["timezone"] == SCHOOL_TIME

    pool = await queue._redis()
    await pool.delete(f"{DAILY_KEY_PREFIX}{EXPIRE_JOB}")  # from an earlier test's worker
    assert await RedisDailyLedger(pool).claim(EXPIRE_JOB, last - timedelta(days=1))
    worker = Worker(**worker_settings, redis_pool=pool)
    try:
        await worker.run_cron(last - timedelta(seconds=1), delay=0.5)  # arms it for `last`
        await worker.run_cron(last, delay=0.5)  # due: enqueued
        assert cron_job.next_run is not None and cron_job.next_run > now
        await asyncio.wait_for(worker.async_run(), timeout=60)  # burst: runs what is queued
        assert worker.jobs_complete == 1 and worker.jobs_failed == 0
    finally:
        await worker.close()
        await queue.close()
    assert _expired(sqlite_db, old)
    assert not (media_root / f"recordings/{old}").exists()
