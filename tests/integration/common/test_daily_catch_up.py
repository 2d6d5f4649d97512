"""A daily job missed while no process ran is caught up once on start: the embedded schedule
with its file ledger (several schedulers of one host) and ``tongke worker`` with Redis (several
arq workers, and the cron of the same day). The clock is injected: "the app was down at 03:00"
is a ledger entry older than the last 03:00, not hours of waiting."""

from __future__ import annotations

import asyncio
import json
import sys
import uuid
from collections import Counter
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from arq.worker import Worker

from common.jobs import (
    SCHOOL_TIME,
    ArqJobQueue,
    DailyJob,
    DailySchedule,
    FileDailyLedger,
    InProcessJobQueue,
    JobContext,
    JobQueue,
    RedisDailyLedger,
    arq_worker_settings,
)

# arq's Worker.close() still calls redis-py's deprecated close(); not ours to fix.
pytestmark = pytest.mark.filterwarnings("ignore:Call to deprecated close:DeprecationWarning")

DAILY = "sweep"
# 10:00 on 8 December: the last 03:00 was this morning's.
NOW = datetime(2026, 12, 8, 10, 0, tzinfo=SCHOOL_TIME)
THIS_MORNING = datetime(2026, 12, 8, 3, 0, tzinfo=SCHOOL_TIME)
YESTERDAY = THIS_MORNING - timedelta(days=1)

runs: Counter[str] = Counter()


def _daily_queue(queue: JobQueue, token: str) -> JobQueue:
    async def sweep(ctx: JobContext) -> str:
        runs[token] += 1
        return token

    queue.register(DAILY, sweep)
    queue.register_daily(DAILY, hour=3)
    return queue


async def _finish(queue: JobQueue, job_ids: list[str]) -> None:
    for job_id in job_ids:
        assert (await queue.wait(job_id, timeout=30)).state == "complete"


async def test_a_missed_day_runs_once_on_start_and_not_again_the_same_day(tmp_path: Path) -> None:
    token = uuid.uuid4().hex
    ledger_path = tmp_path / "media" / ".daily-jobs.json"
    assert await FileDailyLedger(ledger_path).claim(DAILY, YESTERDAY)  # the last run: yesterday
    queue = _daily_queue(InProcessJobQueue(), token)
    try:
        schedule = DailySchedule(queue, ledger=FileDailyLedger(ledger_path), clock=lambda: NOW)
        caught_up = await schedule.catch_up()
        assert caught_up == ["daily:sweep:2026-12-08"]
        await _finish(queue, caught_up)
        assert runs[token] == 1
        assert await FileDailyLedger(ledger_path).last_slot(DAILY) == THIS_MORNING
        # the same day: neither a second start nor the loop runs it again
        assert await schedule.catch_up() == []
        assert await schedule.run_due() == []
        # the next morning runs as usual
        tomorrow = DailySchedule(
            queue,
            ledger=FileDailyLedger(ledger_path),
            clock=lambda: THIS_MORNING + timedelta(days=1, minutes=1),
        )
        assert await tomorrow.catch_up() == ["daily:sweep:2026-12-09"]
        await _finish(queue, ["daily:sweep:2026-12-09"])
        assert runs[token] == 2
    finally:
        await queue.close()


async def test_a_new_deployment_runs_nothing_at_first_and_no_missed_day_runs_nothing(
    tmp_path: Path,
) -> None:
    token = uuid.uuid4().hex
    ledger_path = tmp_path / ".daily-jobs.json"
    queue = _daily_queue(InProcessJobQueue(), token)

    def schedule_at(now: datetime) -> DailySchedule:
        return DailySchedule(queue, ledger=FileDailyLedger(ledger_path), clock=lambda: now)

    try:
        # a new deployment: no record, so it cannot tell whether an older version ran this
        # morning's; it records the day before as run and runs nothing now
        clock = [NOW]
        up = DailySchedule(queue, ledger=FileDailyLedger(ledger_path), clock=lambda: clock[0])
        assert await up.catch_up() == [] and await up.run_due() == []
        assert await FileDailyLedger(ledger_path).last_slot(DAILY) == YESTERDAY
        # it stays up: the next 03:00 runs as usual; restarted after it, nothing was missed
        clock[0] = THIS_MORNING + timedelta(days=1, seconds=30)
        assert await up.run_due() == ["daily:sweep:2026-12-09"]
        await _finish(queue, ["daily:sweep:2026-12-09"])
        assert await schedule_at(THIS_MORNING + timedelta(days=1, hours=8)).catch_up() == []
        # restarted at 02:30 the morning after: no 03:00 was missed
        before_three = THIS_MORNING + timedelta(days=2, hours=-0.5)
        assert await schedule_at(before_three).catch_up() == []
        # switched off over that night, started at 07:00: the missed 03:00 runs, once
        seven = THIS_MORNING + timedelta(days=2, hours=4)
        assert await schedule_at(seven).catch_up() == ["daily:sweep:2026-12-10"]
        await _finish(queue, ["daily:sweep:2026-12-10"])
        assert await schedule_at(seven + timedelta(minutes=5)).catch_up() == []
        assert runs[token] == 2
    finally:
        await queue.close()


async def test_several_web_processes_catch_up_a_missed_day_once(tmp_path: Path) -> None:
    """Each embedded process has its own queue (in-process ids do not dedupe across them);
    the file ledger's lock lets one claim the day."""
    token = uuid.uuid4().hex
    ledger_path = tmp_path / ".daily-jobs.json"
    assert await FileDailyLedger(ledger_path).claim(DAILY, YESTERDAY)
    queues = [_daily_queue(InProcessJobQueue(), token) for _ in range(4)]
    try:
        schedules = [
            DailySchedule(queue, ledger=FileDailyLedger(ledger_path), clock=lambda: NOW)
            for queue in queues
        ]
        results = await asyncio.gather(*(schedule.catch_up() for schedule in schedules))
        assert sorted(len(job_ids) for job_ids in results) == [0, 0, 0, 1]
        for queue, job_ids in zip(queues, results, strict=True):
            await _finish(queue, job_ids)
        assert runs[token] == 1
    finally:
        for queue in queues:
            await queue.close()


async def test_a_ledger_slot_is_claimed_once_whatever_the_order(tmp_path: Path) -> None:
    ledger = FileDailyLedger(tmp_path / "ledger.json")
    assert await ledger.last_slot(DAILY) is None
    assert await ledger.claim(DAILY, THIS_MORNING)
    assert not await ledger.claim(DAILY, THIS_MORNING)
    assert not await ledger.claim(DAILY, YESTERDAY)  # an older day never replaces a newer one
    assert await ledger.last_slot(DAILY) == THIS_MORNING
    assert await ledger.last_slot("other") is None


# A web process whose daily job is still running when it is killed (kill -9): it leased the day
# for LEASE_S and renews the lease while the job runs.
LEASE_S = 3.0  # renewed every second
_KILLED_PROCESS = f"""
import asyncio, sys
from datetime import datetime
from pathlib import Path
from common.jobs import SCHOOL_TIME, DailySchedule, FileDailyLedger, InProcessJobQueue

async def main():
    queue = InProcessJobQueue()
    async def sweep(ctx):
        print("running", flush=True)
        await asyncio.sleep(3600)
    queue.register("{DAILY}", sweep)
    queue.register_daily("{DAILY}", hour=3)
    now = datetime.fromisoformat("{NOW.isoformat()}")
    schedule = DailySchedule(
        queue, ledger=FileDailyLedger(Path(sys.argv[1])), clock=lambda: now, lease_seconds={LEASE_S}
    )
    await schedule.catch_up()
    await asyncio.sleep(3600)

asyncio.run(main())
"""


async def test_a_process_killed_mid_job_leaves_the_day_to_the_next_start(tmp_path: Path) -> None:
    """The in-process queue loses its jobs with its process: the day is only leased while its
    job runs and recorded once the job completed, so a kill -9 mid-job is caught up later."""
    token = uuid.uuid4().hex
    ledger_path = tmp_path / ".daily-jobs.json"
    assert await FileDailyLedger(ledger_path).claim(DAILY, YESTERDAY)
    killed = await asyncio.create_subprocess_exec(
        sys.executable, "-c", _KILLED_PROCESS, str(ledger_path), stdout=asyncio.subprocess.PIPE
    )
    assert killed.stdout is not None
    try:
        async with asyncio.timeout(30):  # its log lines, then the job's
            while (line := await killed.stdout.readline()).strip() != b"running":
                assert line, "the process ended before its job ran"
        # while it runs (renewing its lease) a second process leaves the day to it
        queue = _daily_queue(InProcessJobQueue(), token)
        try:
            await asyncio.sleep(LEASE_S)  # past the first lease: renewed since
            schedule = DailySchedule(queue, ledger=FileDailyLedger(ledger_path), clock=lambda: NOW)
            assert await schedule.catch_up() == []
            assert await FileDailyLedger(ledger_path).last_slot(DAILY) == THIS_MORNING
            killed.kill()
            await killed.wait()
            # the lease runs out unrenewed: the day was not run, and the next start runs it
            await asyncio.sleep(LEASE_S + 0.2)
            assert await FileDailyLedger(ledger_path).last_slot(DAILY) == YESTERDAY
            restarted = DailySchedule(queue, ledger=FileDailyLedger(ledger_path), clock=lambda: NOW)
            assert await restarted.catch_up() == ["daily:sweep:2026-12-08"]
            await _finish(queue, ["daily:sweep:2026-12-08"])
            await restarted.stop()
            assert runs[token] == 1
            ledger = json.loads(ledger_path.read_text("utf-8"))
            assert datetime.fromisoformat(ledger[DAILY]) == THIS_MORNING
            assert ledger[FileDailyLedger.LEASES_KEY] == {}
        finally:
            await queue.close()
    finally:
        if killed.returncode is None:
            killed.kill()
            await killed.wait()


async def test_a_failed_daily_job_is_not_recorded_and_runs_again_at_the_next_start(
    tmp_path: Path,
) -> None:
    ledger_path = tmp_path / ".daily-jobs.json"
    assert await FileDailyLedger(ledger_path).claim(DAILY, YESTERDAY)
    attempts: list[int] = []

    async def sweep(ctx: JobContext) -> None:
        attempts.append(ctx.attempt)
        if len(attempts) == 1:
            raise RuntimeError("disk unreadable")

    queue = InProcessJobQueue(max_retries=0)
    queue.register(DAILY, sweep)
    queue.register_daily(DAILY, hour=3)
    try:
        first = DailySchedule(queue, ledger=FileDailyLedger(ledger_path), clock=lambda: NOW)
        [job_id] = await first.catch_up()
        assert (await queue.wait(job_id, timeout=30)).state == "failed"
        await first.stop()  # records what the job came to, even if the watcher had not yet
        assert await FileDailyLedger(ledger_path).last_slot(DAILY) == YESTERDAY
        second_queue = InProcessJobQueue(max_retries=0)  # the next start: a new process
        second_queue.register(DAILY, sweep)
        second_queue.register_daily(DAILY, hour=3)
        try:
            second = DailySchedule(
                second_queue, ledger=FileDailyLedger(ledger_path), clock=lambda: NOW
            )
            [again] = await second.catch_up()
            assert (await second_queue.wait(again, timeout=30)).state == "complete"
            await second.stop()
            assert await FileDailyLedger(ledger_path).last_slot(DAILY) == THIS_MORNING
            assert len(attempts) == 2
        finally:
            await second_queue.close()
    finally:
        await queue.close()


async def test_a_lease_is_held_by_one_owner_and_runs_out_unless_renewed(tmp_path: Path) -> None:
    clock = [1000.0]
    ledger = FileDailyLedger(tmp_path / "ledger.json", clock=lambda: clock[0])
    assert await ledger.claim(DAILY, YESTERDAY)
    assert await ledger.lease(DAILY, THIS_MORNING, owner="a", lease_s=10)
    assert not await ledger.lease(DAILY, THIS_MORNING, owner="b", lease_s=10)
    assert not await ledger.claim(DAILY, THIS_MORNING)  # a live lease is a claim too
    assert await ledger.last_slot(DAILY) == THIS_MORNING
    clock[0] += 9
    assert await ledger.lease(DAILY, THIS_MORNING, owner="a", lease_s=10)  # renewed
    clock[0] += 9
    assert not await ledger.lease(DAILY, THIS_MORNING, owner="b", lease_s=10)
    clock[0] += 2  # a's lease ran out
    assert await ledger.last_slot(DAILY) == YESTERDAY
    assert await ledger.lease(DAILY, THIS_MORNING, owner="b", lease_s=10)
    await ledger.finish(DAILY, THIS_MORNING, owner="a")  # a late finish still records the run
    assert await ledger.last_slot(DAILY) == THIS_MORNING
    assert not await ledger.lease(DAILY, THIS_MORNING, owner="c", lease_s=10)
    clock[0] += 60
    assert not await ledger.lease(DAILY, THIS_MORNING, owner="c", lease_s=10)  # recorded: final
    assert await ledger.lease(DAILY, THIS_MORNING + timedelta(days=1), owner="c", lease_s=10)


@pytest.mark.redis
async def test_tongke_workers_catch_up_a_missed_day_once_and_the_cron_skips_it(
    redis_server: str,
) -> None:
    token = uuid.uuid4().hex
    queue_name = f"tongke:test-catch-up:{token}"
    queues = [_daily_queue(ArqJobQueue(redis_server, queue_name=queue_name), token) for _ in "ab"]
    first = queues[0]
    assert isinstance(first, ArqJobQueue)
    pool = await first._redis()
    await pool.delete(f"tongke:daily:{DAILY}")
    assert await RedisDailyLedger(pool).claim(DAILY, YESTERDAY)  # the last run: yesterday
    workers = []
    try:
        for queue in queues:
            assert isinstance(queue, ArqJobQueue)
            settings = arq_worker_settings(
                queue, clock=lambda: NOW, burst=True, poll_delay=0.02, handle_signals=False
            )
            workers.append(Worker(**settings, redis_pool=await queue._redis()))
        # both workers start (on_startup catches up), then run what is queued
        await asyncio.wait_for(
            asyncio.gather(*(worker.async_run() for worker in workers)), timeout=60
        )
        assert runs[token] == 1
        assert sum(worker.jobs_complete for worker in workers) == 1
        assert await RedisDailyLedger(pool).last_slot(DAILY) == THIS_MORNING

        # A worker that was up at 03:00 runs arq's cron for it; when another worker already
        # caught that day up, the cron steps aside (arq's cron only fires in real time, so the
        # day here is the real last 03:00).
        last = DailyJob(DAILY, hour=3).last_due(datetime.now(SCHOOL_TIME))
        await pool.delete(f"tongke:daily:{DAILY}")
        assert await RedisDailyLedger(pool).claim(DAILY, last)  # the catch-up's claim
        assert isinstance(queues[0], ArqJobQueue)
        late = Worker(
            **arq_worker_settings(queues[0], burst=True, poll_delay=0.02, handle_signals=False),
            redis_pool=pool,
        )
        workers.append(late)
        await late.run_cron(last - timedelta(seconds=1), delay=0.5)  # arms it for `last`
        await late.run_cron(last, delay=0.5)  # due: enqueued
        await asyncio.wait_for(late.async_run(), timeout=60)
        assert late.jobs_complete == 1  # the cron job ran, and stepped aside
        assert runs[token] == 1
    finally:
        for worker in workers:
            await worker.close()
        await pool.delete(f"tongke:daily:{DAILY}")
        for queue in queues:
            await queue.close()
