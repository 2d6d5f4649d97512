"""Timetabled rooms with two SFU workers' schedulers sharing a real redis-server: each due room
is opened (and recorded) by exactly one worker, new rooms spread over the workers, and a dead
worker's room is reopened by the other once its lease runs out.

On Monday 2026-09-21 at 14:05 two sync lessons are due: dj-ma-4 (13:30–14:15) and wck-en-5
(14:00–14:40).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import pytest
from sqlalchemy import select

from common.alliance.models import SyncGroup
from common.jobs import InProcessJobQueue, JobContext
from recordings.models import Recording
from recordings.processing import PROCESS_JOB
from recordings.service import ActiveRecordings
from streaming.cluster import SfuCluster, WorkerInfo
from streaming.lifecycle import LOCAL_TIMEZONE, LessonClock, LessonScheduler, RecordingTarget
from streaming.sfu.registry import ClaimedRoomRegistry
from tests.conftest import DemoDatabase
from tests.fixtures.loop_guard import in_process_loop_guard  # noqa: F401 - fixture

pytestmark = [
    pytest.mark.redis,
    pytest.mark.usefixtures("in_process_loop_guard"),  # product code runs on the test's loop
]

LEASE = 0.8
AFTERNOON = datetime(2026, 9, 21, 14, 5, tzinfo=LOCAL_TIMEZONE)


class FixedClock(LessonClock):
    def now(self) -> datetime:
        return AFTERNOON


@dataclass
class Worker:
    worker_id: str
    cluster: SfuCluster
    rooms: ClaimedRoomRegistry
    scheduler: LessonScheduler

    async def heartbeat(self) -> None:
        await self.rooms.renew_claims()
        await self.cluster.heartbeat(
            WorkerInfo(self.worker_id, f"http://{self.worker_id}", rooms=len(self.rooms.rooms()))
        )

    async def hosted(self) -> list[str]:
        return sorted(await self.rooms.room_ids())


@pytest.fixture
async def workers(
    redis_server: str, sqlite_db: DemoDatabase, tmp_path: Path
) -> AsyncIterator[list[Worker]]:
    prefix = f"test:{uuid.uuid4().hex}:"
    jobs = InProcessJobQueue()

    async def process(context: JobContext, *, recording_id: int) -> None:
        pass

    jobs.register(PROCESS_JOB, process)
    started: list[Worker] = []
    for worker_id in ("w1", "w2"):
        cluster = SfuCluster(redis_server, lease_seconds=LEASE, prefix=prefix)
        rooms = ClaimedRoomRegistry(cluster, worker_id)

        async def placement(
            room_id: str, cluster: SfuCluster = cluster, me: str = worker_id
        ) -> bool:
            return await cluster.may_host(room_id, me)

        scheduler = LessonScheduler(
            sessions=sqlite_db.sessions,
            rooms=lambda rooms=rooms: rooms,  # type: ignore[misc]
            clock=FixedClock(),
            recording=RecordingTarget(
                media_root=tmp_path / "media", jobs=jobs, active=ActiveRecordings()
            ),
            placement=placement,
        )
        started.append(Worker(worker_id, cluster, rooms, scheduler))
    for worker in started:
        await worker.heartbeat()
    yield started
    for worker in started:
        await worker.scheduler.stop()
        await worker.rooms.close_all()
        await worker.cluster.close()
    await jobs.close()


def _rooms_due(db: DemoDatabase) -> list[str]:
    with db.sessions() as session:
        ids = session.scalars(
            select(SyncGroup.id).where(SyncGroup.code.in_(["dj-ma-4", "wck-en-5"]))
        )
        return sorted(f"sync-{group_id}" for group_id in ids)


def _recordings(db: DemoDatabase) -> list[Recording]:
    with db.sessions() as session:
        return list(session.scalars(select(Recording).order_by(Recording.id)))


async def test_each_due_room_opens_on_exactly_one_worker_and_rooms_spread(
    workers: list[Worker], sqlite_db: DemoDatabase
) -> None:
    first, second = workers
    for _ in range(3):  # both schedulers tick, repeatedly, heartbeats in between
        for worker in workers:
            await worker.scheduler.tick()
            await worker.heartbeat()

    due = _rooms_due(sqlite_db)
    assert sorted(await first.hosted() + await second.hosted()) == due
    assert await first.hosted() and await second.hosted()  # one room each
    for room_id in due:
        owner = await first.cluster.owner(room_id)
        assert room_id in await {"w1": first, "w2": second}[owner or ""].hosted()
    recordings = _recordings(sqlite_db)
    assert len(recordings) == 2  # one recorder per room, not one per scheduler
    assert {r.status for r in recordings} == {"recording"}


async def test_a_dead_workers_room_is_reopened_by_the_other_after_the_lease(
    workers: list[Worker], sqlite_db: DemoDatabase
) -> None:
    first, second = workers

    async def first_alive() -> None:
        # as a live worker does, all along: a tick slowed by a busy machine (one took 1.4 s
        # under the suite's two workers) must not outlast the first's short test lease
        while True:
            await first.heartbeat()
            await asyncio.sleep(LEASE / 4)

    alive = asyncio.create_task(first_alive())
    try:
        for worker in workers:
            await worker.scheduler.tick()
            await worker.heartbeat()
        lost = await first.hosted()
        assert lost
        assert not set(lost) & set(await second.hosted()), "taken while its worker lived"
    finally:
        alive.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await alive
    await first.heartbeat()
    died_at = time.monotonic()

    # `first` dies: no more heartbeats or ticks. `second` carries on.
    waited = 0.0
    while not set(lost) <= set(await second.hosted()):
        assert waited < LEASE * 3, "the dead worker's room was not taken over"
        await asyncio.sleep(0.1)
        waited += 0.1
        await second.heartbeat()
        await second.scheduler.tick()
    assert time.monotonic() - died_at >= LEASE * 0.5  # not before the lease ran out
    assert sorted(await second.hosted()) == _rooms_due(sqlite_db)
    for room_id in lost:
        assert await second.cluster.owner(room_id) == "w2"
    # the reopened room records afresh
    assert len([r for r in _recordings(sqlite_db) if r.status == "recording"]) >= 3
