"""Room → worker routing in a real redis-server: registrations, claims, leases, placement."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from streaming.cluster import SfuCluster, WorkerInfo, preferred
from streaming.sfu.errors import RoomOwnedElsewhere
from streaming.sfu.registry import ClaimedRoomRegistry, InProcessRoomRegistry
from streaming.sfu.room import Room

# solo: renewals and claims 0.18 s apart under a 0.6 s lease
pytestmark = [pytest.mark.redis, pytest.mark.solo]

LEASE = 0.6


@pytest.fixture
async def make_cluster(redis_server: str) -> AsyncIterator[Callable[..., SfuCluster]]:
    """Clusters sharing one fresh key prefix (one per process they stand for)."""
    prefix = f"test:{uuid.uuid4().hex}:"
    made: list[SfuCluster] = []

    def make(lease_seconds: float = LEASE) -> SfuCluster:
        cluster = SfuCluster(redis_server, lease_seconds=lease_seconds, prefix=prefix)
        made.append(cluster)
        return cluster

    yield make
    for cluster in made:
        await cluster.close()


async def test_one_worker_claims_a_room_and_only_it_renews_or_releases_it(
    make_cluster: Callable[..., SfuCluster],
) -> None:
    cluster = make_cluster()

    assert await cluster.claim("sync-1", "w1") == "w1"
    assert await cluster.claim("sync-1", "w2") == "w1"
    assert not await cluster.renew("sync-1", "w2")
    assert not await cluster.release("sync-1", "w2")
    assert await cluster.owner("sync-1") == "w1"
    assert await cluster.renew("sync-1", "w1")
    assert await cluster.release("sync-1", "w1")
    assert await cluster.claim("sync-1", "w2") == "w2"


async def test_a_claim_nobody_renews_runs_out_after_the_lease(
    make_cluster: Callable[..., SfuCluster],
) -> None:
    cluster = make_cluster()
    assert await cluster.claim("sync-1", "w1") == "w1"

    await asyncio.sleep(LEASE / 2)
    assert await cluster.renew("sync-1", "w1")  # renewed: still held a lease from now
    await asyncio.sleep(LEASE * 0.7)
    assert await cluster.claim("sync-1", "w2") == "w1"

    await asyncio.sleep(LEASE * 0.5)  # the owner stopped renewing (it died)
    assert await cluster.claim("sync-1", "w2") == "w2"


async def test_workers_drop_out_of_the_directory_when_their_heartbeat_stops(
    make_cluster: Callable[..., SfuCluster],
) -> None:
    cluster = make_cluster()
    await cluster.heartbeat(WorkerInfo("w1", "http://a:8100", rooms=2, participants=7))
    await cluster.heartbeat(WorkerInfo("w2", "http://b:8100"))

    assert [w.worker_id for w in await cluster.workers()] == ["w1", "w2"]
    assert await cluster.worker("w1") == WorkerInfo("w1", "http://a:8100", 2, 7)

    await asyncio.sleep(LEASE / 2)
    await cluster.heartbeat(WorkerInfo("w2", "http://b:8100"))
    await asyncio.sleep(LEASE * 0.7)
    assert [w.worker_id for w in await cluster.workers()] == ["w2"]

    await cluster.deregister("w2")
    assert await cluster.workers() == []


def test_new_rooms_go_to_the_least_loaded_worker_and_spread_when_loads_tie() -> None:
    busy = WorkerInfo("w1", "http://a", rooms=3, participants=20)
    idle = WorkerInfo("w2", "http://b", rooms=1, participants=2)
    assert preferred([busy, idle], "sync-9") == idle
    assert preferred([], "sync-9") is None

    tied = [WorkerInfo("w1", "http://a"), WorkerInfo("w2", "http://b")]
    chosen = [preferred(tied, f"sync-{n}") for n in range(40)]
    # deterministic for a room, whoever asks; both workers get a share
    assert chosen == [preferred(list(reversed(tied)), f"sync-{n}") for n in range(40)]
    assert 10 <= sum(w is not None and w.worker_id == "w1" for w in chosen) <= 30


async def test_placement_follows_the_owner_and_waits_out_a_dead_owners_lease(
    make_cluster: Callable[..., SfuCluster],
) -> None:
    cluster = make_cluster()
    await cluster.heartbeat(WorkerInfo("w1", "http://a", rooms=0))
    await cluster.heartbeat(WorkerInfo("w2", "http://b", rooms=5))
    worker, owner = await cluster.placement("sync-1")
    assert worker is not None and worker.worker_id == "w1" and owner is None
    assert await cluster.may_host("sync-1", "w1")
    assert not await cluster.may_host("sync-1", "w2")

    await cluster.claim("sync-1", "w2")  # w2 got there first (a join routed before a heartbeat)
    worker, owner = await cluster.placement("sync-1")
    assert worker is not None and worker.worker_id == "w2" and owner == "w2"
    assert await cluster.may_host("sync-1", "w2")
    assert not await cluster.may_host("sync-1", "w1")

    # w2 dies: its registration lapses first, then its claim; w1 keeps beating.
    await asyncio.sleep(LEASE / 2)
    await cluster.heartbeat(WorkerInfo("w1", "http://a"))
    await cluster.renew("sync-1", "w2")  # the last renewal before it died
    await asyncio.sleep(LEASE * 0.6)
    await cluster.heartbeat(WorkerInfo("w1", "http://a"))
    worker, owner = await cluster.placement("sync-1")
    assert worker is None and owner == "w2"  # nobody may take it yet
    await asyncio.sleep(LEASE * 0.5)
    worker, owner = await cluster.placement("sync-1")
    assert worker is not None and worker.worker_id == "w1" and owner is None


async def test_a_workers_registry_refuses_a_room_another_worker_holds(
    make_cluster: Callable[..., SfuCluster],
) -> None:
    first = ClaimedRoomRegistry(make_cluster(), "w1")
    second = ClaimedRoomRegistry(make_cluster(), "w2")
    try:
        room = await first.open("sync-1", kind="lesson")
        assert await first.open("sync-1", kind="lesson") is room
        with pytest.raises(RoomOwnedElsewhere) as refused:
            await second.open("sync-1", kind="lesson")
        assert refused.value.owner == "w1"
        assert await second.room_ids() == []

        await first.close("sync-1")  # closing releases the claim at once
        assert room.closed
        assert await second.open("sync-1", kind="lesson") is not None
        assert await second.cluster.owner("sync-1") == "w2"
    finally:
        await first.close_all()
        await second.close_all()


async def test_a_worker_cut_off_past_its_lease_closes_the_room_another_worker_took(
    make_cluster: Callable[..., SfuCluster],
) -> None:
    first = ClaimedRoomRegistry(make_cluster(), "w1")
    second = ClaimedRoomRegistry(make_cluster(), "w2")
    try:
        stale = await first.open("sync-1", kind="lesson")
        kept = await first.open("sync-2", kind="lesson")
        await asyncio.sleep(LEASE * 1.2)  # w1 missed its renewals
        taken = await second.open("sync-1", kind="lesson")

        assert await first.renew_claims() == ["sync-1"]
        assert stale.closed and not kept.closed and not taken.closed
        assert await first.room_ids() == ["sync-2"]  # sync-2 was free: w1 took it back
        assert await first.cluster.owner("sync-1") == "w2"
        assert await first.cluster.owner("sync-2") == "w1"
    finally:
        await first.close_all()
        await second.close_all()


# -- a room's open cancelled inside it (a lesson scheduler's tick stopped, a join dropped) --


class _Stuck:
    """Holds a coroutine at one await point (``reached`` set) until it is cancelled; with
    ``after_redis`` the Redis command has run first (only its answer is not read)."""

    def __init__(self) -> None:
        self.reached = asyncio.Event()

    def wrap(self, command: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
        async def stuck(*args: Any, **kwargs: Any) -> Any:
            await command(*args, **kwargs)
            self.reached.set()
            await asyncio.Event().wait()

        return stuck


async def _cancelled_when(reached: asyncio.Event, opening: Awaitable[Room]) -> None:
    task = asyncio.ensure_future(opening)
    await asyncio.wait_for(reached.wait(), timeout=10)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


@pytest.mark.parametrize("point", ["claim", "owner", "renew"])
async def test_an_open_cancelled_in_its_claim_leaves_no_claim_behind(
    make_cluster: Callable[..., SfuCluster], point: str
) -> None:
    """Cancelled after Redis took the claim (or after it found this worker's claim left from
    before, at its read or its renewal): no room, and no claim routing the room's joins here
    until its lease runs out; the room opens again here or on another worker."""
    cluster = make_cluster(lease_seconds=30.0)  # a stale claim would outlive the test
    first = ClaimedRoomRegistry(cluster, "w1")
    second = ClaimedRoomRegistry(make_cluster(lease_seconds=30.0), "w2")
    stuck = _Stuck()
    if point == "claim":
        cluster._redis.set = stuck.wrap(cluster._redis.set)  # type: ignore[method-assign]
    else:
        assert await cluster.claim("sync-1", "w1") == "w1"  # w1's, from a room closed here
        if point == "owner":
            cluster._redis.get = stuck.wrap(cluster._redis.get)  # type: ignore[method-assign]
        else:
            cluster._renew = stuck.wrap(cluster._renew)
    try:
        await _cancelled_when(stuck.reached, first.open("sync-1", kind="lesson"))
        assert await first.room_ids() == []
        assert await second.cluster.owner("sync-1") is None

        room = await second.open("sync-1", kind="lesson")
        assert not room.closed and await second.cluster.owner("sync-1") == "w2"
    finally:
        await first.close_all()
        await second.close_all()


async def test_an_open_cancelled_waiting_for_another_open_of_its_room_leaves_that_room(
    make_cluster: Callable[..., SfuCluster],
) -> None:
    """Two opens of a room at once, the second cancelled while the first claims it: the first
    one's room and claim stay, and a later open finds that room."""
    cluster = make_cluster()
    registry = ClaimedRoomRegistry(cluster, "w1")
    claimed, go_on = asyncio.Event(), asyncio.Event()
    set_claim = cluster._redis.set

    async def claim_then_wait(*args: Any, **kwargs: Any) -> Any:
        answer = await set_claim(*args, **kwargs)
        claimed.set()
        await go_on.wait()
        return answer

    cluster._redis.set = claim_then_wait  # type: ignore[method-assign]
    try:
        opening = asyncio.ensure_future(registry.open("sync-1", kind="lesson"))
        await asyncio.wait_for(claimed.wait(), timeout=10)
        waiting = asyncio.ensure_future(registry.open("sync-1", kind="lesson"))
        await asyncio.sleep(0)  # the second open is waiting for the first
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        go_on.set()
        room = await opening
        assert await registry.open("sync-1", kind="lesson") is room
        assert await cluster.owner("sync-1") == "w1"
    finally:
        await registry.close_all()


async def test_a_room_opened_again_while_it_closes_keeps_its_claim(
    make_cluster: Callable[..., SfuCluster],
) -> None:
    """A join reopens a room while its last close still closes the peers: the new room keeps
    the claim, so no other worker opens the same room beside it."""
    cluster = make_cluster(lease_seconds=30.0)
    registry = ClaimedRoomRegistry(cluster, "w1")
    other = ClaimedRoomRegistry(make_cluster(lease_seconds=30.0), "w2")
    old = await registry.open("sync-1", kind="lesson")
    closing, go_on = asyncio.Event(), asyncio.Event()
    close_peers = old.close

    async def slow_close() -> None:
        closing.set()
        await go_on.wait()
        await close_peers()

    old.close = slow_close  # type: ignore[method-assign]
    try:
        close = asyncio.ensure_future(registry.close("sync-1"))
        await asyncio.wait_for(closing.wait(), timeout=10)
        new = await registry.open("sync-1", kind="lesson")
        go_on.set()
        await close
        assert new is not old and not new.closed and old.closed
        assert await cluster.owner("sync-1") == "w1"
        with pytest.raises(RoomOwnedElsewhere):
            await other.open("sync-1", kind="lesson")
    finally:
        go_on.set()
        await registry.close_all()
        await other.close_all()


async def test_an_in_process_open_cancelled_before_its_room_is_made_leaves_nothing() -> None:
    """The web process's registry: cancelled at its admission (the one await before the room
    is made) or waiting for it, no room is left and the next open makes one."""
    admitting, go_on = asyncio.Event(), asyncio.Event()

    class Admitting(InProcessRoomRegistry):
        async def _admit(self, room_id: str) -> None:
            admitting.set()
            await go_on.wait()

    registry = Admitting()
    try:
        first = asyncio.ensure_future(registry.open("sync-1", kind="lesson"))
        await asyncio.wait_for(admitting.wait(), timeout=10)
        second = asyncio.ensure_future(registry.open("sync-1", kind="lesson"))
        await asyncio.sleep(0)
        second.cancel()
        first.cancel()
        for task in (first, second):
            with pytest.raises(asyncio.CancelledError):
                await task
        assert await registry.room_ids() == []

        go_on.set()
        room = await registry.open("sync-1", kind="lesson")
        assert not room.closed and await registry.room_ids() == ["sync-1"]
    finally:
        await registry.close_all()
