"""The job queue, run in-process and through a real arq worker on a real redis-server."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import pytest
from arq.worker import Worker

from common.errors import NotFoundError
from common.jobs import (
    ArqJobQueue,
    InProcessJobQueue,
    JobContext,
    JobQueue,
    JobStatus,
    arq_worker_settings,
    make_job_queue,
)
from common.settings import Settings
from tests.fixtures.jobs import running_arq_worker

# arq's Worker.close() still calls redis-py's deprecated close(); not ours to fix.
pytestmark = pytest.mark.filterwarnings("ignore:Call to deprecated close:DeprecationWarning")

MAX_RETRIES = 2
WAIT_TIMEOUT_S = 20.0

# Runs per token; tokens are unique per test, so both queue flavours can share these.
runs: Counter[str] = Counter()


async def count_steps(ctx: JobContext, *, steps: int, delay: float) -> dict[str, int]:
    for done in range(1, steps + 1):
        await asyncio.sleep(delay)
        await ctx.report(done / steps, f"第 {done}/{steps} 步")
    return {"steps": steps}


async def record_run(ctx: JobContext, *, token: str) -> int:
    runs[token] += 1
    return runs[token]


async def fail_then_succeed(ctx: JobContext, *, token: str, failures: int) -> list[Any]:
    runs[token] += 1
    if runs[token] <= failures:
        raise ConnectionError(f"第 {runs[token]} 次尝试失败")
    return ["ok", ctx.attempt]


async def always_fail(ctx: JobContext) -> None:
    raise ValueError("课表冲突：无可行解")


async def run_until_cancelled(ctx: JobContext) -> None:
    for step in range(10_000):
        await ctx.report(step / 10_000, "排课中")
        await asyncio.sleep(0.02)


def register_test_jobs(queue: JobQueue) -> None:
    queue.register("count_steps", count_steps)
    queue.register("record_run", record_run)
    queue.register("fail_then_succeed", fail_then_succeed)
    queue.register("always_fail", always_fail)
    queue.register("run_until_cancelled", run_until_cancelled)


def _worker(queue: ArqJobQueue) -> Worker:
    return Worker(
        **arq_worker_settings(queue, poll_delay=0.02, handle_signals=False, keep_result=60)
    )


@pytest.fixture(params=["inprocess", pytest.param("redis", marks=pytest.mark.redis)])
async def job_queue(request: pytest.FixtureRequest) -> AsyncIterator[JobQueue]:
    if request.param == "inprocess":
        local = InProcessJobQueue(max_retries=MAX_RETRIES, retry_backoff=0.01)
        register_test_jobs(local)
        yield local
        await local.close()
        return

    shared = ArqJobQueue(
        request.getfixturevalue("redis_server"),
        queue_name=f"test:{uuid.uuid4().hex}",
        max_retries=MAX_RETRIES,
        retry_backoff=0.01,
    )
    register_test_jobs(shared)
    async with running_arq_worker(_worker(shared)):
        yield shared
    await shared.close()


async def wait_for_progress(queue: JobQueue, job_id: str) -> JobStatus:
    async with asyncio.timeout(WAIT_TIMEOUT_S):
        while True:
            status = await queue.status(job_id)
            if status.state == "running" and status.progress > 0:
                return status
            await asyncio.sleep(0.02)


def new_token() -> str:
    return uuid.uuid4().hex


async def test_job_runs_and_reports_progress(job_queue: JobQueue) -> None:
    job_id = await job_queue.enqueue("count_steps", steps=20, delay=0.05)

    running = await wait_for_progress(job_queue, job_id)
    assert running.name == "count_steps"
    assert running.message.startswith("第 ")
    assert running.started_at is not None
    assert running.eta_seconds is not None and running.eta_seconds > 0

    done = await job_queue.wait(job_id, timeout=WAIT_TIMEOUT_S)
    assert done.state == "complete"
    assert done.progress == 1.0
    assert done.result == {"steps": 20}
    assert done.error is None
    assert done.finished_at is not None and done.finished_at >= running.started_at


async def test_same_job_id_runs_once(job_queue: JobQueue) -> None:
    token, job_id = new_token(), f"nightly-{new_token()}"

    first = await job_queue.enqueue("record_run", job_id=job_id, token=token)
    second = await job_queue.enqueue("record_run", job_id=job_id, token=token)
    done = await job_queue.wait(first, timeout=WAIT_TIMEOUT_S)
    again = await job_queue.enqueue("record_run", job_id=job_id, token=token)
    await asyncio.sleep(0.2)

    assert first == second == again == job_id
    assert done.state == "complete"
    assert runs[token] == 1


async def test_failed_attempts_are_retried_until_success(job_queue: JobQueue) -> None:
    token = new_token()

    job_id = await job_queue.enqueue("fail_then_succeed", token=token, failures=MAX_RETRIES)
    done = await job_queue.wait(job_id, timeout=WAIT_TIMEOUT_S)

    assert done.state == "complete"
    assert done.result == ["ok", MAX_RETRIES + 1]
    assert done.attempts == MAX_RETRIES + 1
    assert done.error is None


async def test_permanent_failure_is_reported_with_its_message(job_queue: JobQueue) -> None:
    job_id = await job_queue.enqueue("always_fail")
    done = await job_queue.wait(job_id, timeout=WAIT_TIMEOUT_S)

    assert done.state == "failed"
    assert done.error is not None and "课表冲突：无可行解" in done.error
    assert done.attempts == MAX_RETRIES + 1
    assert done.finished_at is not None


async def test_cancel_stops_a_long_job(job_queue: JobQueue) -> None:
    job_id = await job_queue.enqueue("run_until_cancelled")
    running = await wait_for_progress(job_queue, job_id)

    assert await job_queue.cancel(job_id) is True
    done = await job_queue.wait(job_id, timeout=WAIT_TIMEOUT_S)
    await asyncio.sleep(0.1)
    after = await job_queue.status(job_id)

    assert done.state == "cancelled"
    assert after.state == "cancelled"
    assert after.progress < 1.0 and after.progress >= running.progress
    assert await job_queue.cancel(job_id) is False


async def test_unknown_job_is_not_found(job_queue: JobQueue) -> None:
    with pytest.raises(NotFoundError):
        await job_queue.status("no-such-job")
    with pytest.raises(NotFoundError):
        await job_queue.cancel("no-such-job")


async def test_enqueue_of_unregistered_job_is_refused(job_queue: JobQueue) -> None:
    with pytest.raises(ValueError, match="no job registered"):
        await job_queue.enqueue("no_such_job")


@pytest.mark.redis
async def test_other_process_can_poll_arq_job_status(redis_server: str) -> None:
    worker_side = ArqJobQueue(redis_server, queue_name=f"test:{uuid.uuid4().hex}")
    register_test_jobs(worker_side)
    # The web process only polls: it needs neither the functions nor a worker.
    web_side = ArqJobQueue(redis_server, queue_name=worker_side.queue_name)
    try:
        async with running_arq_worker(_worker(worker_side)):
            job_id = await worker_side.enqueue("count_steps", steps=3, delay=0.01)
            done = await web_side.wait(job_id, timeout=WAIT_TIMEOUT_S)
    finally:
        await worker_side.close()
        await web_side.close()

    assert done.state == "complete"
    assert done.result == {"steps": 3}


async def test_make_job_queue_picks_arq_only_when_configured() -> None:
    local = make_job_queue(Settings(redis_url=None))
    shared = make_job_queue(Settings(redis_url="redis://127.0.0.1:1/0"))

    assert isinstance(local, InProcessJobQueue)
    assert isinstance(shared, ArqJobQueue)
    await local.close()
    await shared.close()
