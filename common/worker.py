"""The background job worker process (`tongke worker`) and the jobs every deployment has."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import timedelta
from functools import partial

import redis
from arq.worker import Worker
from sqlalchemy import delete, or_

from common.accounts.models import AuthToken
from common.db import get_engine, session_scope, utcnow
from common.jobs import ArqJobQueue, JobContext, JobQueue, arq_worker_settings
from common.logging import configure_logging, get_logger
from common.settings import Settings

log = get_logger(__name__)

TOKEN_RETENTION = timedelta(days=30)


def purge_tokens(database_url: str) -> int:
    """Delete tokens that expired or were revoked more than 30 days ago; returns how many."""
    cutoff = utcnow() - TOKEN_RETENTION
    with session_scope(get_engine(database_url)) as session:
        result = session.execute(
            delete(AuthToken).where(
                or_(
                    AuthToken.expires_at < cutoff,
                    (AuthToken.revoked.is_(True)) & (AuthToken.created_at < cutoff),
                )
            )
        )
        return int(getattr(result, "rowcount", 0) or 0)


def register_jobs(queue: JobQueue, settings: Settings) -> None:
    """Register the jobs of every domain package on `queue` (web and worker call this alike)."""

    async def purge_tokens_job(ctx: JobContext) -> dict[str, int]:
        await ctx.report(0.0, "清理过期登录令牌")
        removed = await asyncio.to_thread(partial(purge_tokens, settings.database_url))
        await ctx.report(1.0, f"已清理 {removed} 个令牌")
        return {"removed": removed}

    queue.register("purge_tokens", purge_tokens_job)


def run_worker(
    settings: Settings,
    *,
    register: Callable[[JobQueue, Settings], None] = register_jobs,
    check: bool = False,
) -> int:
    """Run an arq worker for the jobs `register` adds, until stopped; `check` only pings Redis."""
    assert settings.redis_url, "the worker needs TONGKE_REDIS_URL"
    configure_logging(level=settings.log_level, json=settings.log_json)
    if check:
        try:
            redis.Redis.from_url(settings.redis_url, socket_timeout=3).ping()
        except redis.RedisError as exc:
            log.error("redis unreachable", error=str(exc))
            return 1
        return 0
    queue = ArqJobQueue(settings.redis_url)
    register(queue, settings)
    log.info(
        "worker starting",
        queue=queue.queue_name,
        daily=[f"{job.name}@{job.hour:02d}:{job.minute:02d}" for job in queue.daily_jobs],
    )
    Worker(**arq_worker_settings(queue)).run()
    return 0
