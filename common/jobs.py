"""Background jobs: enqueue by name, poll progress, cancel.

A job is ``async def f(ctx: JobContext, **kwargs) -> result`` registered under a name. The
web process enqueues it and polls ``status()``; ``InProcessJobQueue`` runs it as an asyncio
task of the same process, ``ArqJobQueue`` hands it to arq workers through redis and keeps the
status in the redis hash ``tongke:job:{id}`` so any process can read it. Results must be
JSON-serialisable. Failures are retried ``max_retries`` times with exponential backoff.

A registered job may also run daily at a local (school) time (``register_daily``): arq cron in
``tongke worker`` with Redis, ``DailySchedule`` in the web process when embedded. Both record in
a ``DailyLedger`` (Redis, or a file beside the media) which scheduled time each daily job last ran
for, claiming it atomically, so several processes run a day once; on start each catches up the
latest scheduled time that passed while no process was running.
"""

from __future__ import annotations

import asyncio
import fcntl
import json
import os
import time
import uuid
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Concatenate, Literal, TypeVar, cast

from arq.connections import ArqRedis, RedisSettings, create_pool
from arq.cron import CronJob, cron
from arq.jobs import Job
from arq.jobs import JobStatus as ArqState
from arq.typing import WorkerCoroutine
from arq.worker import Function, Retry, func
from pydantic import BaseModel, Field, JsonValue
from redis.exceptions import WatchError

from common.errors import NotFoundError
from common.logging import get_logger
from common.settings import Settings

log = get_logger(__name__)

_T = TypeVar("_T")

JobState = Literal["queued", "running", "complete", "failed", "cancelled"]
FINISHED_STATES: frozenset[JobState] = frozenset({"complete", "failed", "cancelled"})
STATUS_KEY_PREFIX = "tongke:job:"
MAX_BACKOFF_S = 300.0
# Daily jobs run by the schools' clock (China has one time zone and no daylight saving).
SCHOOL_TIME = timezone(timedelta(hours=8), "Asia/Shanghai")
CRON_PREFIX = "cron:"


class JobStatus(BaseModel):
    """What a poller sees of one job."""

    id: str
    name: str
    state: JobState
    progress: float = Field(default=0.0, ge=0.0, le=1.0)
    message: str = ""
    result: JsonValue = None
    error: str | None = None
    attempts: int = 0
    enqueued_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    eta_seconds: float | None = None

    @property
    def finished(self) -> bool:
        """Whether the job has reached a final state."""
        return self.state in FINISHED_STATES


def estimate_eta(*, progress: float, started_at: datetime | None, now: datetime) -> float | None:
    """Seconds left at the progress rate observed since the current attempt started."""
    if started_at is None or not 0.0 < progress < 1.0:
        return None
    elapsed = (now - started_at).total_seconds()
    if elapsed <= 0:
        return None
    return elapsed * (1.0 - progress) / progress


class JobContext(ABC):
    """Handed to a running job: report progress, and check whether cancellation was asked for.

    A cancelled job is also interrupted at its next ``await``; ``cancelled`` is for loops
    that run long stretches without awaiting (or in a thread).
    """

    def __init__(self, *, job_id: str, attempt: int) -> None:
        self.job_id = job_id
        self.attempt = attempt

    @property
    @abstractmethod
    def cancelled(self) -> bool:
        """Whether someone has asked to cancel this job."""

    @abstractmethod
    async def report(self, progress: float, message: str = "") -> None:
        """Record progress (0..1, clamped) and a short human-readable message."""


JobFunc = Callable[Concatenate[JobContext, ...], Awaitable[Any]]


@dataclass(frozen=True)
class _Registration:
    func: JobFunc
    max_retries: int


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _clamp(progress: float) -> float:
    return min(max(progress, 0.0), 1.0)


def _resolved(value: Awaitable[_T] | _T) -> Awaitable[_T]:
    # redis-py types each command for its sync and async clients at once; ours is async.
    return cast(Awaitable[_T], value)


def _text(value: str | bytes) -> str:
    # arq's pool returns bytes; redis-py's annotations assume decoded strings.
    return value.decode() if isinstance(value, bytes) else value


def _utc(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, tz=UTC)


@dataclass(frozen=True)
class DailyJob:
    """A registered job that runs once a day at ``hour:minute`` school time."""

    name: str
    hour: int
    minute: int = 0

    def next_run(self, after: datetime) -> datetime:
        """The first run time strictly after ``after`` (an aware datetime)."""
        local = after.astimezone(SCHOOL_TIME)
        at = local.replace(hour=self.hour, minute=self.minute, second=0, microsecond=0)
        return at if at > local else at + timedelta(days=1)

    def last_due(self, now: datetime) -> datetime:
        """The latest run time at or before ``now`` (an aware datetime)."""
        local = now.astimezone(SCHOOL_TIME)
        at = local.replace(hour=self.hour, minute=self.minute, second=0, microsecond=0)
        return at if at <= local else at - timedelta(days=1)

    def job_id(self, slot: datetime) -> str:
        """The id of the run for the scheduled time ``slot``: one a day, whoever enqueues it."""
        return f"daily:{self.name}:{slot.astimezone(SCHOOL_TIME).date().isoformat()}"


# --- daily schedule ------------------------------------------------------------------------


class DailyLedger(ABC):
    """Which scheduled time each daily job last ran for, shared by every process that may run it.

    ``claim`` is the only write and is atomic: of several processes claiming the same scheduled
    time, exactly one gets True and runs the job."""

    @abstractmethod
    async def last_slot(self, name: str) -> datetime | None:
        """The latest scheduled time claimed for job ``name``; None if never."""

    @abstractmethod
    async def claim(self, name: str, slot: datetime) -> bool:
        """Record ``slot`` for ``name`` and return True, unless ``slot`` or a later one is
        already recorded."""


@dataclass(frozen=True, slots=True)
class _Lease:
    slot: datetime
    until: float  # Unix time the lease runs out unless renewed
    owner: str


class LeasedDailyLedger(DailyLedger):
    """A ledger whose claims can also be leases, for a queue that loses its jobs with its process
    (``InProcessJobQueue``): the day is claimed for ``lease_s`` and renewed while the job runs,
    and recorded as run (``finish``) only once it completed. A process killed mid-job stops
    renewing; once the lease runs out the next start catches the day up. Leases and records
    are read and written in one locked step (``_update``)."""

    def __init__(self, *, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock

    @abstractmethod
    async def _update(
        self, name: str, change: Callable[[datetime | None, _Lease | None], _Change]
    ) -> _Change:
        """Under the ledger's lock, call ``change(done, lease)`` with the record and lease of
        ``name`` (a run-out lease is None) and store what it returns."""

    def _live(self, lease: _Lease | None) -> _Lease | None:
        return lease if lease is not None and lease.until > self._clock() else None

    async def last_slot(self, name: str) -> datetime | None:
        """The latest scheduled time recorded as run or under a live lease."""
        change = await self._update(name, lambda done, lease: _Change(done, lease))
        return _later(change.done, change.lease.slot if change.lease else None)

    async def claim(self, name: str, slot: datetime) -> bool:
        def change(done: datetime | None, lease: _Lease | None) -> _Change:
            latest = _later(done, lease.slot if lease else None)
            if latest is not None and latest >= slot:
                return _Change(done, lease, claimed=False)
            return _Change(slot, lease, claimed=True)

        return (await self._update(name, change)).claimed

    async def lease(self, name: str, slot: datetime, *, owner: str, lease_s: float) -> bool:
        """Claim ``slot`` for ``lease_s`` seconds, or renew the lease ``owner`` holds on it.
        False if it is recorded as run, or another owner's live lease covers it."""
        until = self._clock() + lease_s

        def change(done: datetime | None, lease: _Lease | None) -> _Change:
            if done is not None and done >= slot:
                return _Change(done, lease, claimed=False)
            if lease is not None and lease.slot >= slot and lease.owner != owner:
                return _Change(done, lease, claimed=False)
            return _Change(done, _Lease(slot, until, owner), claimed=True)

        return (await self._update(name, change)).claimed

    async def finish(self, name: str, slot: datetime, *, owner: str) -> None:
        """Record ``slot`` as run and drop ``owner``'s lease."""

        def change(done: datetime | None, lease: _Lease | None) -> _Change:
            kept = lease if lease is not None and lease.owner != owner else None
            return _Change(_later(done, slot), kept)

        await self._update(name, change)

    async def release(self, name: str, *, owner: str) -> None:
        """Drop ``owner``'s lease without recording a run (the job failed: the next start
        tries the day again)."""

        def change(done: datetime | None, lease: _Lease | None) -> _Change:
            return _Change(done, lease if lease is not None and lease.owner != owner else None)

        await self._update(name, change)


@dataclass(frozen=True, slots=True)
class _Change:
    done: datetime | None
    lease: _Lease | None
    claimed: bool = False


def _later(a: datetime | None, b: datetime | None) -> datetime | None:
    if a is None or b is None:
        return a or b
    return max(a, b)


class MemoryDailyLedger(LeasedDailyLedger):
    """A ledger of this process only (tests, and a schedule nobody else shares)."""

    def __init__(self, *, clock: Callable[[], float] = time.time) -> None:
        super().__init__(clock=clock)
        self._slots: dict[str, datetime] = {}
        self._leases: dict[str, _Lease] = {}

    async def _update(
        self, name: str, change: Callable[[datetime | None, _Lease | None], _Change]
    ) -> _Change:
        result = change(self._slots.get(name), self._live(self._leases.get(name)))
        if result.done is not None:
            self._slots[name] = result.done
        if result.lease is None:
            self._leases.pop(name, None)
        else:
            self._leases[name] = result.lease
        return result


class FileDailyLedger(LeasedDailyLedger):
    """The embedded deployment's ledger: a small JSON file (``{name: ISO time}``, and live
    leases under ``LEASES_KEY``), read and written under an exclusive ``flock`` so that
    several web processes of the host agree."""

    LEASES_KEY = "~leases"

    def __init__(self, path: Path, *, clock: Callable[[], float] = time.time) -> None:
        super().__init__(clock=clock)
        self.path = path

    def _read(self) -> dict[str, Any]:
        try:
            loaded = json.loads(self.path.read_text("utf-8"))
        except FileNotFoundError:
            return {}
        except ValueError:
            log.warning("job.daily_ledger_unreadable", path=str(self.path))
            return {}
        return loaded if isinstance(loaded, dict) else {}

    def _locked(self) -> Any:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(self.path.with_name(self.path.name + ".lock"), "a")  # noqa: SIM115
        fcntl.flock(handle, fcntl.LOCK_EX)  # released when the handle closes
        return handle

    def _lease_of(self, raw: Any) -> _Lease | None:
        try:
            lease = _Lease(
                datetime.fromisoformat(raw["slot"]), float(raw["until"]), str(raw["owner"])
            )
        except (TypeError, KeyError, ValueError):
            return None
        return self._live(lease)

    def _update_now(
        self, name: str, change: Callable[[datetime | None, _Lease | None], _Change]
    ) -> _Change:
        with self._locked():
            data = self._read()
            done_text = data.get(name)
            done = datetime.fromisoformat(done_text) if isinstance(done_text, str) else None
            leases = data.get(self.LEASES_KEY)
            leases = leases if isinstance(leases, dict) else {}
            lease = self._lease_of(leases.get(name))
            result = change(done, lease)
            if result.done == done and result.lease == lease:
                return result
            if result.done is not None:
                data[name] = result.done.isoformat()
            if result.lease is None:
                leases.pop(name, None)
            else:
                leases[name] = {
                    "slot": result.lease.slot.isoformat(),
                    "until": result.lease.until,
                    "owner": result.lease.owner,
                }
            data[self.LEASES_KEY] = leases
            partial = self.path.with_name(self.path.name + ".partial")
            partial.write_text(json.dumps(data, ensure_ascii=False), "utf-8")
            os.replace(partial, self.path)
        return result

    async def _update(
        self, name: str, change: Callable[[datetime | None, _Lease | None], _Change]
    ) -> _Change:
        return await asyncio.to_thread(self._update_now, name, change)


DAILY_KEY_PREFIX = "tongke:daily:"
# The embedded deployment keeps its ledger beside the media (`FileDailyLedger`).
DAILY_LEDGER_NAME = ".daily-jobs.json"
# Compare-and-set in one step on the Redis server: a later slot replaces an earlier one.
_CLAIM_SCRIPT = """
local last = redis.call('GET', KEYS[1])
if last and tonumber(last) >= tonumber(ARGV[1]) then return 0 end
redis.call('SET', KEYS[1], ARGV[1])
return 1
"""


class RedisDailyLedger(DailyLedger):
    """The ledger of deployments with Redis (key ``tongke:daily:{name}``, the slot's Unix
    time), shared by every ``tongke worker``."""

    def __init__(self, redis: ArqRedis) -> None:
        self.redis = redis

    async def last_slot(self, name: str) -> datetime | None:
        value = await _resolved(self.redis.get(DAILY_KEY_PREFIX + name))
        return _utc(float(_text(value))) if value is not None else None

    async def claim(self, name: str, slot: datetime) -> bool:
        claimed = await _resolved(
            self.redis.eval(_CLAIM_SCRIPT, 1, DAILY_KEY_PREFIX + name, str(slot.timestamp()))
        )
        return bool(claimed)


class JobQueue(ABC):
    """Register job functions by name, enqueue them, poll and cancel them."""

    def __init__(
        self, *, max_retries: int = 2, retry_backoff: float = 1.0, job_timeout: float = 3600.0
    ) -> None:
        self.max_retries = max_retries
        self.retry_backoff = retry_backoff
        self.job_timeout = job_timeout
        self._registry: dict[str, _Registration] = {}
        self._daily: dict[str, DailyJob] = {}
        self._periodic: dict[str, int] = {}

    def register(self, name: str, func: JobFunc, *, max_retries: int | None = None) -> None:
        """Make ``func`` runnable as job ``name``; ``max_retries`` overrides the queue default."""
        if name in self._registry:
            raise ValueError(f"job {name!r} is already registered")
        retries = self.max_retries if max_retries is None else max_retries
        self._registry[name] = _Registration(func=func, max_retries=retries)

    def register_daily(self, name: str, *, hour: int, minute: int = 0) -> None:
        """Run the registered job ``name`` every day at ``hour:minute`` school time."""
        self._registration(name)
        if not (0 <= hour < 24 and 0 <= minute < 60):
            raise ValueError(f"not a time of day: {hour}:{minute}")
        self._daily[name] = DailyJob(name=name, hour=hour, minute=minute)

    def register_periodic(self, name: str, *, every_minutes: int) -> None:
        """Run the registered job ``name`` every ``every_minutes`` (a divisor of 60) in
        ``tongke worker``, and once when a worker starts (arq cron, ``unique``: one run per
        time however many workers). The embedded web process has no such schedule: whoever
        registers one runs what it needs at the process's start."""
        self._registration(name)
        if every_minutes < 1 or 60 % every_minutes:
            raise ValueError(f"not a divisor of an hour: {every_minutes}")
        self._periodic[name] = every_minutes

    @property
    def daily_jobs(self) -> list[DailyJob]:
        return list(self._daily.values())

    def _registration(self, name: str) -> _Registration:
        try:
            return self._registry[name]
        except KeyError:
            raise ValueError(f"no job registered under {name!r}") from None

    def _backoff(self, attempt: int) -> float:
        return float(min(self.retry_backoff * 2 ** (attempt - 1), MAX_BACKOFF_S))

    @abstractmethod
    async def enqueue(self, name: str, *, job_id: str | None = None, **kwargs: Any) -> str:
        """Queue job ``name`` with ``kwargs``; the same ``job_id`` twice runs only once."""

    @abstractmethod
    async def status(self, job_id: str) -> JobStatus:
        """The job's current status; ``NotFoundError`` for an unknown id."""

    @abstractmethod
    async def cancel(self, job_id: str) -> bool:
        """Ask the job to stop; False when it had already finished."""

    async def live(self, job_id: str) -> bool:
        """Whether the job is queued or running: something will still run it. False for an
        unknown id (a job lost with the process that held it) and a finished one."""
        try:
            return not (await self.status(job_id)).finished
        except NotFoundError:
            return False

    async def wait(
        self, job_id: str, *, timeout: float = 60.0, poll_interval: float = 0.05
    ) -> JobStatus:
        """Poll until the job finishes; ``TimeoutError`` after ``timeout`` seconds."""
        async with asyncio.timeout(timeout):
            while True:
                status = await self.status(job_id)
                if status.finished:
                    return status
                await asyncio.sleep(poll_interval)

    @abstractmethod
    async def close(self) -> None:
        """Release connections and stop jobs this object runs itself."""


def _job_not_found(job_id: str) -> NotFoundError:
    return NotFoundError("任务不存在", detail={"job_id": job_id})


def _as_json(result: Any) -> JsonValue:
    # Round-trip so both queues hand back the same shapes (tuples become lists, and so on).
    decoded: JsonValue = json.loads(json.dumps(result, ensure_ascii=False))
    return decoded


# --- in-process ----------------------------------------------------------------------------


class _InProcessJob:
    def __init__(self, status: JobStatus) -> None:
        self.status = status
        self.cancel_requested = False
        self.task: asyncio.Task[None] | None = None


class _InProcessContext(JobContext):
    def __init__(self, job: _InProcessJob, *, attempt: int) -> None:
        super().__init__(job_id=job.status.id, attempt=attempt)
        self._job = job

    @property
    def cancelled(self) -> bool:
        return self._job.cancel_requested

    async def report(self, progress: float, message: str = "") -> None:
        self._job.status.progress = _clamp(progress)
        self._job.status.message = message


class InProcessJobQueue(JobQueue):
    """Jobs run as asyncio tasks of this process, at most ``max_jobs`` at a time."""

    def __init__(
        self,
        *,
        max_jobs: int = 4,
        max_retries: int = 2,
        retry_backoff: float = 1.0,
        job_timeout: float = 3600.0,
    ) -> None:
        super().__init__(
            max_retries=max_retries, retry_backoff=retry_backoff, job_timeout=job_timeout
        )
        self._slots = asyncio.Semaphore(max_jobs)
        self._jobs: dict[str, _InProcessJob] = {}

    async def enqueue(self, name: str, *, job_id: str | None = None, **kwargs: Any) -> str:
        """Start job ``name`` in a task of this process; a known ``job_id`` is not run again."""
        registration = self._registration(name)
        job_id = job_id or uuid.uuid4().hex
        if job_id in self._jobs:
            return job_id
        job = _InProcessJob(
            JobStatus(id=job_id, name=name, state="queued", enqueued_at=datetime.now(UTC))
        )
        self._jobs[job_id] = job
        job.task = asyncio.create_task(self._run(job, registration, kwargs), name=f"job:{job_id}")
        job.task.add_done_callback(lambda task: self._on_task_done(job, task))
        log.info("job.enqueued", job_id=job_id, job=name)
        return job_id

    async def _run(
        self, job: _InProcessJob, registration: _Registration, kwargs: dict[str, Any]
    ) -> None:
        status = job.status
        attempt = 0
        while True:
            attempt += 1
            async with self._slots:
                status.state = "running"
                status.attempts = attempt
                status.started_at = datetime.now(UTC)
                status.progress = 0.0
                status.message = ""
                context = _InProcessContext(job, attempt=attempt)
                try:
                    async with asyncio.timeout(self.job_timeout):
                        result = await registration.func(context, **kwargs)
                except Exception as exc:
                    status.error = _describe(exc)
                    if attempt > registration.max_retries:
                        log.exception("job.failed", job_id=status.id, job=status.name)
                        self._finish(status, "failed")
                        return
                    status.state = "queued"
                    log.warning(
                        "job.retrying", job_id=status.id, job=status.name, error=status.error
                    )
                else:
                    self._complete(status, result)
                    return
            await asyncio.sleep(self._backoff(attempt))

    def _complete(self, status: JobStatus, result: Any) -> None:
        try:
            status.result = _as_json(result)
        except (TypeError, ValueError) as exc:
            status.error = f"result is not JSON-serialisable: {exc}"
            log.error("job.failed", job_id=status.id, job=status.name, error=status.error)
            self._finish(status, "failed")
            return
        status.error = None
        status.progress = 1.0
        self._finish(status, "complete")
        log.info("job.complete", job_id=status.id, job=status.name)

    @staticmethod
    def _finish(status: JobStatus, state: JobState) -> None:
        status.state = state
        status.finished_at = datetime.now(UTC)

    def _on_task_done(self, job: _InProcessJob, task: asyncio.Task[None]) -> None:
        # Also covers a task cancelled before its first step, when `_run` never executes.
        if job.status.finished:
            return
        if task.cancelled():
            self._finish(job.status, "cancelled")
            log.info("job.cancelled", job_id=job.status.id, job=job.status.name)
            return
        exc = task.exception()
        job.status.error = _describe(exc) if exc is not None else "job stopped unexpectedly"
        self._finish(job.status, "failed")
        log.error("job.crashed", job_id=job.status.id, job=job.status.name, error=job.status.error)

    def _get(self, job_id: str) -> _InProcessJob:
        try:
            return self._jobs[job_id]
        except KeyError:
            raise _job_not_found(job_id) from None

    async def status(self, job_id: str) -> JobStatus:
        """A snapshot of the job's status."""
        status = self._get(job_id).status
        eta = estimate_eta(
            progress=status.progress, started_at=status.started_at, now=datetime.now(UTC)
        )
        return status.model_copy(update={"eta_seconds": eta}, deep=True)

    async def cancel(self, job_id: str) -> bool:
        """Cancel the job's task and wait briefly for it to stop."""
        job = self._get(job_id)
        if job.status.finished or job.task is None:
            return False
        job.cancel_requested = True
        job.task.cancel()
        # `asyncio.wait` rather than `await task`: it never raises the task's CancelledError.
        await asyncio.wait({job.task}, timeout=5.0)
        return True

    async def close(self) -> None:
        """Cancel every unfinished job."""
        tasks = [job.task for job in self._jobs.values() if job.task and not job.task.done()]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks)


# --- arq / redis ---------------------------------------------------------------------------


def _status_key(job_id: str) -> str:
    return STATUS_KEY_PREFIX + job_id


class _ArqContext(JobContext):
    def __init__(self, redis: ArqRedis, *, job_id: str, attempt: int) -> None:
        super().__init__(job_id=job_id, attempt=attempt)
        self._redis = redis
        self._cancelled = False

    @property
    def cancelled(self) -> bool:
        # Refreshed by every `report()`: one round trip serves both.
        return self._cancelled

    async def report(self, progress: float, message: str = "") -> None:
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hset(
                _status_key(self.job_id), mapping={"progress": _clamp(progress), "message": message}
            )
            pipe.hget(_status_key(self.job_id), "cancel_requested")
            _, cancel_requested = await pipe.execute()
        self._cancelled = bool(cancel_requested)


class ArqJobQueue(JobQueue):
    """Jobs run by arq workers (see ``arq_worker_settings``); status lives in redis.

    Register the same functions in the web process and in the worker: the web process
    needs the names to validate ``enqueue``, the worker needs the functions to run them.
    """

    def __init__(
        self,
        redis_url: str,
        *,
        queue_name: str = "tongke:queue",
        max_retries: int = 2,
        retry_backoff: float = 1.0,
        job_timeout: float = 3600.0,
        status_ttl: int = 7 * 24 * 3600,
    ) -> None:
        super().__init__(
            max_retries=max_retries, retry_backoff=retry_backoff, job_timeout=job_timeout
        )
        self.redis_settings = RedisSettings.from_dsn(redis_url)
        self.queue_name = queue_name
        self.status_ttl = status_ttl
        self._pool: ArqRedis | None = None
        self._pool_lock = asyncio.Lock()

    async def _redis(self) -> ArqRedis:
        async with self._pool_lock:
            if self._pool is None:
                self._pool = await create_pool(
                    self.redis_settings, default_queue_name=self.queue_name
                )
            return self._pool

    async def enqueue(self, name: str, *, job_id: str | None = None, **kwargs: Any) -> str:
        """Hand job ``name`` to the arq workers; a known ``job_id`` is not queued again."""
        self._registration(name)
        job_id = job_id or uuid.uuid4().hex
        redis = await self._redis()
        if not await self._claim(redis, job_id=job_id, name=name):
            return job_id
        try:
            await redis.enqueue_job(name, _job_id=job_id, _queue_name=self.queue_name, **kwargs)
        except BaseException:
            # Leave no status behind that claims a job is queued when it is not.
            await redis.delete(_status_key(job_id))
            raise
        log.info("job.enqueued", job_id=job_id, job=name)
        return job_id

    async def _claim(self, redis: ArqRedis, *, job_id: str, name: str) -> bool:
        key = _status_key(job_id)
        async with redis.pipeline(transaction=True) as pipe:
            await pipe.watch(key)
            if await pipe.exists(key):
                return False
            pipe.multi()  # type: ignore[no-untyped-call]
            pipe.hset(
                key,
                mapping={
                    "name": name,
                    "state": "queued",
                    "progress": 0.0,
                    "attempts": 0,
                    "enqueued_at": time.time(),
                },
            )
            pipe.expire(key, self.status_ttl)
            try:
                await pipe.execute()
            except WatchError:
                return False
        return True

    async def status(self, job_id: str) -> JobStatus:
        """The job's status as last written by the worker."""
        redis = await self._redis()
        raw = await _resolved(redis.hgetall(_status_key(job_id)))
        if not raw:
            raise _job_not_found(job_id)
        fields = {_text(k): _text(v) for k, v in raw.items()}
        status = JobStatus.model_validate(
            {
                "id": job_id,
                "name": fields.get("name", ""),
                "state": fields.get("state", "queued"),
                "progress": float(fields.get("progress", 0.0)),
                "message": fields.get("message", ""),
                "result": json.loads(fields["result"]) if "result" in fields else None,
                "error": fields.get("error") or None,
                "attempts": int(fields.get("attempts", 0)),
                "enqueued_at": _utc(float(fields.get("enqueued_at", 0.0))),
                "started_at": _utc(float(fields["started_at"])) if "started_at" in fields else None,
                "finished_at": (
                    _utc(float(fields["finished_at"])) if "finished_at" in fields else None
                ),
            }
        )
        status.eta_seconds = estimate_eta(
            progress=status.progress, started_at=status.started_at, now=datetime.now(UTC)
        )
        return status

    async def live(self, job_id: str) -> bool:
        """Queued or running by our status and by arq's own: a worker killed while it ran the
        job leaves our status "running", and once arq gave up on it (past its tries) or its
        data was lost, arq no longer holds it."""
        if not await super().live(job_id):
            return False
        redis = await self._redis()
        state = await Job(job_id, redis, _queue_name=self.queue_name).status()
        return state in (ArqState.queued, ArqState.deferred, ArqState.in_progress)

    async def cancel(self, job_id: str) -> bool:
        """Flag the job cancelled and abort it through arq; a queued job never starts."""
        redis = await self._redis()
        key = _status_key(job_id)
        state = await _resolved(redis.hget(key, "state"))
        if state is None:
            raise _job_not_found(job_id)
        if _text(state) in FINISHED_STATES:
            return False
        # The worker sets "running" and reads this flag in one transaction, so either it sees
        # the flag and stops, or we see "running" and leave the final state to the worker.
        async with redis.pipeline(transaction=True) as pipe:
            pipe.hset(key, "cancel_requested", "1")
            pipe.hget(key, "state")
            _, state = await pipe.execute()
        if _text(state) == "queued":
            await self._write_final(redis, key, "cancelled")
        try:
            await Job(job_id, redis, _queue_name=self.queue_name).abort(timeout=0, poll_delay=0.05)
        except TimeoutError:
            pass  # the worker cancels the task on its next poll
        except Exception as exc:  # abort re-raises the job's own error if it just finished
            log.info("job.abort_raced_finish", job_id=job_id, error=_describe(exc))
        log.info("job.cancel_requested", job_id=job_id)
        return True

    async def close(self) -> None:
        """Close the redis connection pool."""
        if self._pool is not None:
            await self._pool.aclose()
            self._pool = None

    async def _write_final(
        self, redis: ArqRedis, key: str, state: JobState, **fields: str | float
    ) -> None:
        async with redis.pipeline(transaction=True) as pipe:
            pipe.hset(key, mapping={"state": state, "finished_at": time.time(), **fields})
            pipe.expire(key, self.status_ttl)
            await pipe.execute()

    async def _run_in_worker(self, ctx: dict[Any, Any], name: str, kwargs: dict[str, Any]) -> Any:
        registration = self._registration(name)
        redis: ArqRedis = ctx["redis"]
        job_id: str = ctx["job_id"]
        attempt: int = ctx["job_try"]
        key = _status_key(job_id)
        async with redis.pipeline(transaction=True) as pipe:
            pipe.hset(
                key,
                mapping={
                    "name": name,
                    "state": "running",
                    "attempts": attempt,
                    "started_at": time.time(),
                    "progress": 0.0,
                    "message": "",
                },
            )
            pipe.hsetnx(key, "enqueued_at", ctx["enqueue_time"].timestamp())
            pipe.expire(key, self.status_ttl)
            pipe.hget(key, "cancel_requested")
            *_, cancel_requested = await pipe.execute()
        if cancel_requested:
            await self._write_final(redis, key, "cancelled")
            return None

        context = _ArqContext(redis, job_id=job_id, attempt=attempt)
        try:
            async with asyncio.timeout(self.job_timeout):
                result = await registration.func(context, **kwargs)
        except asyncio.CancelledError:
            if await _resolved(redis.hget(key, "cancel_requested")):
                await self._write_final(redis, key, "cancelled")
                log.info("job.cancelled", job_id=job_id, job=name)
            else:
                # The worker is shutting down; arq runs the job again on the next worker.
                await _resolved(redis.hset(key, mapping={"state": "queued", "message": ""}))
            raise
        except Exception as exc:
            error = _describe(exc)
            if attempt <= registration.max_retries:
                await _resolved(redis.hset(key, mapping={"state": "queued", "error": error}))
                log.warning("job.retrying", job_id=job_id, job=name, error=error)
                raise Retry(defer=self._backoff(attempt)) from exc
            await self._write_final(redis, key, "failed", error=error)
            log.error("job.failed", job_id=job_id, job=name, error=error)
            raise

        try:
            encoded = json.dumps(result, ensure_ascii=False)
        except (TypeError, ValueError) as exc:
            error = f"result is not JSON-serialisable: {exc}"
            await self._write_final(redis, key, "failed", error=error)
            log.error("job.failed", job_id=job_id, job=name, error=error)
            raise
        await self._write_final(redis, key, "complete", result=encoded, progress=1.0, error="")
        log.info("job.complete", job_id=job_id, job=name)
        return result

    def worker_functions(self) -> list[Function]:
        """One arq function per registered job, each running through the queue."""
        return [self._worker_function(name) for name in self._registry]

    def cron_jobs(self) -> list[CronJob]:
        """One arq cron job per daily job; ``unique`` so several workers still run it once, and
        claimed in the ``RedisDailyLedger`` so that a day a worker caught up on start is not
        run again by the cron. Then one per periodic job (``register_periodic``)."""
        jobs = []
        for daily in self._daily.values():
            function = self._worker_function(daily.name)
            jobs.append(
                cron(
                    self._cron_coroutine(daily),
                    name=CRON_PREFIX + daily.name,
                    hour=daily.hour,
                    minute=daily.minute,
                    unique=True,
                    timeout=function.timeout_s,
                    max_tries=function.max_tries,
                )
            )
        for name, every in self._periodic.items():
            function = self._worker_function(name)
            jobs.append(
                cron(
                    function.coroutine,
                    name=CRON_PREFIX + name,
                    minute=set(range(0, 60, every)),
                    run_at_startup=True,
                    unique=True,
                    timeout=function.timeout_s,
                    max_tries=function.max_tries,
                )
            )
        return jobs

    def _cron_coroutine(self, daily: DailyJob) -> WorkerCoroutine:
        async def run(ctx: dict[Any, Any], **kwargs: Any) -> Any:
            # Only the first try claims: a retry of the same run must not find its own claim.
            if ctx["job_try"] == 1:
                # a unique cron job's id ends with the time arq fired it, in Unix milliseconds
                fired = _utc(int(str(ctx["job_id"]).rsplit(":", 1)[1]) / 1000)
                slot = daily.last_due(fired)
                if not await RedisDailyLedger(ctx["redis"]).claim(daily.name, slot):
                    log.info("job.daily_already_ran", job=daily.name, slot=slot.isoformat())
                    return None
            return await self._run_in_worker(ctx, daily.name, kwargs)

        return run

    def _worker_function(self, name: str) -> Function:
        async def run(ctx: dict[Any, Any], **kwargs: Any) -> Any:
            return await self._run_in_worker(ctx, name, kwargs)

        registration = self._registry[name]
        return func(
            run,
            name=name,
            # Slack beyond our own retries: arq also re-runs jobs interrupted by a worker
            # shutdown, and past max_tries it fails them without calling `run` at all.
            max_tries=registration.max_retries + 4,
            # Our own timeout inside `_run_in_worker` fires first and records the failure.
            timeout=self.job_timeout + 60,
        )


def arq_worker_settings(
    queue: ArqJobQueue,
    *,
    clock: Callable[[], datetime] = lambda: datetime.now(SCHOOL_TIME),
    **overrides: Any,
) -> dict[str, Any]:
    """Keyword arguments for ``arq.worker.Worker`` running ``queue``'s registered jobs; on
    start the worker catches up a daily run missed while no worker ran (``DailySchedule``,
    at ``clock``'s time).

    In a worker module: ``WorkerSettings = arq_worker_settings(queue)``, then
    ``arq module.WorkerSettings``. Register every job before calling this.
    """

    async def catch_up_daily(ctx: dict[Any, Any]) -> None:
        schedule = DailySchedule(queue, ledger=RedisDailyLedger(ctx["redis"]), clock=clock)
        try:
            await schedule.catch_up()
        except Exception as exc:  # the worker still starts; the next start tries again
            log.error("job.daily_catch_up_failed", error=_describe(exc))

    settings: dict[str, Any] = {
        "functions": queue.worker_functions(),
        "cron_jobs": queue.cron_jobs(),
        "on_startup": catch_up_daily,
        "timezone": SCHOOL_TIME,
        "queue_name": queue.queue_name,
        "redis_settings": queue.redis_settings,
        "allow_abort_jobs": True,
        "job_timeout": queue.job_timeout + 60,
    }
    settings.update(overrides)
    return settings


def make_job_queue(settings: Settings) -> JobQueue:
    """The queue for this deployment: arq when ``redis_url`` is configured, else in-process."""
    if settings.redis_url:
        return ArqJobQueue(settings.redis_url)
    return InProcessJobQueue()


class DailySchedule:
    """Runs a queue's daily jobs from this process (the embedded web app, which has no arq
    worker; ``tongke worker`` uses it only to catch up on start). Each scheduled time is
    claimed in the ``ledger`` before its job is enqueued (under an id naming the day), so of
    several processes one runs it. ``clock`` is injectable so tests decide what time it is.

    A job of an ``InProcessJobQueue`` dies with its process, so there the day is only leased
    (``LeasedDailyLedger.lease``, renewed every third of ``lease_seconds`` while the job runs)
    and recorded as run when the job completes; killed mid-job, the lease runs out and the next
    start runs the day again. arq keeps its jobs in Redis, so there the claim is final."""

    def __init__(
        self,
        queue: JobQueue,
        *,
        ledger: DailyLedger | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(SCHOOL_TIME),
        poll_seconds: float = 60.0,
        lease_seconds: float = 600.0,
    ) -> None:
        self.queue = queue
        self.ledger = ledger or MemoryDailyLedger()
        self.clock = clock
        self.poll_seconds = poll_seconds
        self.lease_seconds = lease_seconds
        started = clock()
        self._due = {job.name: job.next_run(started) for job in queue.daily_jobs}
        self._task: asyncio.Task[None] | None = None
        self._owner = f"{os.getpid()}:{uuid.uuid4().hex}"
        # each lease held while its job runs: (ledger, job, slot, job id)
        self._watchers: dict[
            asyncio.Task[None], tuple[LeasedDailyLedger, DailyJob, datetime, str]
        ] = {}

    @property
    def _leased(self) -> LeasedDailyLedger | None:
        durable = not isinstance(self.queue, InProcessJobQueue)
        return None if durable or not isinstance(self.ledger, LeasedDailyLedger) else self.ledger

    def next_runs(self) -> dict[str, datetime]:
        return dict(self._due)

    async def _enqueue(self, job: DailyJob, slot: datetime) -> str | None:
        leased = self._leased
        if leased is not None:
            claimed = await leased.lease(
                job.name, slot, owner=self._owner, lease_s=self.lease_seconds
            )
        else:
            claimed = await self.ledger.claim(job.name, slot)
        if not claimed:
            log.info("job.daily_already_ran", job=job.name, slot=slot.isoformat())
            return None
        job_id = job.job_id(slot)
        try:
            await self.queue.enqueue(job.name, job_id=job_id)
        except BaseException:
            if leased is not None:
                await leased.release(job.name, owner=self._owner)
            raise
        log.info("job.daily_enqueued", job=job.name, job_id=job_id)
        if leased is not None:
            watcher = asyncio.create_task(
                self._hold_lease(leased, job, slot, job_id), name=f"daily-lease:{job_id}"
            )
            self._watchers[watcher] = (leased, job, slot, job_id)
            watcher.add_done_callback(lambda task: self._watchers.pop(task, None))
        return job_id

    async def _hold_lease(
        self, ledger: LeasedDailyLedger, job: DailyJob, slot: datetime, job_id: str
    ) -> None:
        """Renew the lease while the job runs; record the day once it completed."""
        while True:
            try:
                status = await self.queue.wait(job_id, timeout=self.lease_seconds / 3)
                break
            except TimeoutError:
                await ledger.lease(job.name, slot, owner=self._owner, lease_s=self.lease_seconds)
        await self._settle(ledger, job, slot, status)

    async def _settle(
        self, ledger: LeasedDailyLedger, job: DailyJob, slot: datetime, status: JobStatus
    ) -> None:
        if status.state == "complete":
            await ledger.finish(job.name, slot, owner=self._owner)
            log.info("job.daily_recorded", job=job.name, slot=slot.isoformat())
        else:
            await ledger.release(job.name, owner=self._owner)
            log.warning(
                "job.daily_not_recorded", job=job.name, slot=slot.isoformat(), state=status.state
            )

    async def catch_up(self) -> list[str]:
        """On start: enqueue, once, each daily job whose latest scheduled time passed after the
        run the ledger records (only that latest day: a daily job does the whole backlog).
        With no record yet (a new deployment) the day before that time is recorded as run and
        nothing runs now, so a first start neither runs the job at once nor takes the time
        from a cron that fires at that moment; a deployment never up at the hour still gets
        its run at the next day's start. Returns the job ids enqueued."""
        now = self.clock()
        enqueued = []
        for job in self.queue.daily_jobs:
            slot = job.last_due(now)
            last = await self.ledger.last_slot(job.name)
            if last is None:
                await self.ledger.claim(job.name, slot - timedelta(days=1))
                continue
            if last >= slot:
                continue
            log.info("job.daily_missed", job=job.name, last=last.isoformat(), slot=slot.isoformat())
            job_id = await self._enqueue(job, slot)
            if job_id is not None:
                enqueued.append(job_id)
        return enqueued

    async def run_due(self) -> list[str]:
        """Enqueue every daily job whose time has come; returns the job ids enqueued."""
        now = self.clock()
        enqueued = []
        for job in self.queue.daily_jobs:
            due = self._due.setdefault(job.name, job.next_run(now))
            if now < due:
                continue
            self._due[job.name] = job.next_run(now)
            job_id = await self._enqueue(job, job.last_due(now))
            if job_id is not None:
                enqueued.append(job_id)
        return enqueued

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._loop(), name="daily-jobs")

    async def _loop(self) -> None:
        try:
            await self.catch_up()
        except Exception as exc:  # a failed catch-up must not end the schedule
            log.error("job.daily_catch_up_failed", error=_describe(exc))
        while True:
            try:
                await self.run_due()
            except Exception as exc:  # a failed enqueue must not end the schedule
                log.error("job.daily_failed", error=_describe(exc))
            await asyncio.sleep(self.poll_seconds)

    async def stop(self) -> None:
        """Stop the schedule. A job still running keeps its lease until it runs out, so the
        next start runs that day again unless this one finishes it first."""
        held = list(self._watchers.values())
        tasks = [*self._watchers, *([self._task] if self._task is not None else [])]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._task = None
        for ledger, job, slot, job_id in held:  # a job that ended just now is still recorded
            status = await self.queue.status(job_id)
            if status.finished:
                await self._settle(ledger, job, slot, status)
