"""The worker's jobs run through a real arq worker on a real redis-server."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path

from arq.worker import Worker
from sqlalchemy import func, select

from common.accounts.models import AuthToken
from common.accounts.service import issue_token
from common.db import make_engine, session_scope, utcnow
from common.jobs import ArqJobQueue, arq_worker_settings
from common.settings import Settings
from common.worker import register_jobs
from tests.conftest import DemoDatabase
from tests.fixtures.jobs import running_arq_worker


async def test_purge_tokens_job_removes_only_long_dead_tokens(
    sqlite_db: DemoDatabase, redis_server: str, tmp_path: Path
) -> None:
    engine = make_engine(sqlite_db.url)

    def issue_two_tokens() -> tuple[int, int]:
        with session_scope(engine) as session:
            from common.accounts.models import Account

            account = session.scalars(select(Account).where(Account.username == "bureau")).one()
            _, live = issue_token(
                session, account=account, kind="session", lifetime=timedelta(hours=1)
            )
            _, old = issue_token(session, account=account, kind="api", lifetime=timedelta(hours=1))
            old.expires_at = utcnow() - timedelta(days=45)
            return live.id, old.id

    live_id, old_id = await asyncio.to_thread(issue_two_tokens)
    settings = Settings(
        environment="test", database_url=sqlite_db.url, redis_url=redis_server, media_root=tmp_path
    )
    queue = ArqJobQueue(redis_server, queue_name="tongke:test-worker")
    register_jobs(queue, settings)
    worker = Worker(
        **arq_worker_settings(queue, burst=False, poll_delay=0.02, handle_signals=False)
    )
    try:
        async with running_arq_worker(worker):
            job_id = await queue.enqueue("purge_tokens")
            status = await queue.wait(job_id, timeout=30)
            assert status.state == "complete", status
            assert status.result == {"removed": 1}
            assert status.progress == 1.0 and "已清理 1 个令牌" in status.message
    finally:
        await queue.close()
    with session_scope(engine) as session:
        remaining = set(session.scalars(select(AuthToken.id)))
        assert live_id in remaining and old_id not in remaining
        assert session.scalar(select(func.count()).select_from(AuthToken)) == len(remaining)
    engine.dispose()
