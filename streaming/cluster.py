"""SFU workers and their rooms, in Redis: who is alive, how loaded, which worker hosts a room.

Keys (under ``prefix``, default ``tongke:sfu:``):

- ``worker:{id}``: JSON ``{id, url, rooms, participants}``, written by the worker's heartbeat
  with a lease (PX); a worker that stops beating drops out after ``lease_seconds``.
- ``workers``: the set of worker ids, pruned of the ones whose registration has expired.
- ``room:{room_id}``: the id of the worker hosting the room, claimed with ``SET NX PX`` and
  renewed by that worker only (compare-and-expire). When the worker dies the claim runs out
  and another worker may claim the room.

Placement (``preferred``): the live worker with the fewest rooms, then the fewest
participants, ties broken by rendezvous hashing on the room id so every process that looks at
the same directory picks the same worker.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from typing import Any, cast

import redis.asyncio as aioredis

from common.logging import get_logger

log = get_logger(__name__)

DEFAULT_PREFIX = "tongke:sfu:"

# Renew / release a claim only while this worker still holds it.
_RENEW = """
if redis.call('get', KEYS[1]) == ARGV[1] then
  return redis.call('pexpire', KEYS[1], ARGV[2])
end
return 0
"""
_RELEASE = """
if redis.call('get', KEYS[1]) == ARGV[1] then
  return redis.call('del', KEYS[1])
end
return 0
"""


@dataclass(frozen=True)
class WorkerInfo:
    """One SFU worker as its last heartbeat described it."""

    worker_id: str
    url: str  # http://host:port the web process reaches it on
    rooms: int = 0
    participants: int = 0


def _rendezvous(room_id: str, worker_id: str) -> int:
    digest = hashlib.blake2b(f"{room_id}\0{worker_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def preferred(workers: list[WorkerInfo], room_id: str) -> WorkerInfo | None:
    """Where a room that nobody hosts yet should go."""
    if not workers:
        return None
    return min(workers, key=lambda w: (w.rooms, w.participants, -_rendezvous(room_id, w.worker_id)))


class SfuCluster:
    """The Redis directory of SFU workers and room claims (one connection pool)."""

    def __init__(
        self, redis_url: str, *, lease_seconds: float = 10.0, prefix: str = DEFAULT_PREFIX
    ) -> None:
        self.lease_seconds = lease_seconds
        self._lease_ms = max(int(lease_seconds * 1000), 1)
        self._prefix = prefix
        self._redis: aioredis.Redis = aioredis.Redis.from_url(redis_url, decode_responses=True)
        self._renew = self._redis.register_script(_RENEW)
        self._release = self._redis.register_script(_RELEASE)

    async def close(self) -> None:
        await self._redis.aclose()

    async def ping(self) -> bool:
        return bool(await self._redis.ping())

    def _worker_key(self, worker_id: str) -> str:
        return f"{self._prefix}worker:{worker_id}"

    def _room_key(self, room_id: str) -> str:
        return f"{self._prefix}room:{room_id}"

    # -- workers ----------------------------------------------------------------------

    async def heartbeat(self, worker: WorkerInfo) -> None:
        """Register ``worker`` (or renew its registration) for one lease."""
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.set(
                self._worker_key(worker.worker_id), json.dumps(asdict(worker)), px=self._lease_ms
            )
            pipe.sadd(f"{self._prefix}workers", worker.worker_id)
            await pipe.execute()

    async def deregister(self, worker_id: str) -> None:
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.delete(self._worker_key(worker_id))
            pipe.srem(f"{self._prefix}workers", worker_id)
            await pipe.execute()

    async def workers(self) -> list[WorkerInfo]:
        """The live workers (registration not expired), by id."""
        ids = sorted(await self._redis.smembers(f"{self._prefix}workers"))  # type: ignore[misc]
        if not ids:
            return []
        values = await self._redis.mget([self._worker_key(i) for i in ids])
        live: list[WorkerInfo] = []
        for worker_id, value in zip(ids, values, strict=True):
            if value is None:
                await self._redis.srem(f"{self._prefix}workers", worker_id)  # type: ignore[misc]
                continue
            live.append(WorkerInfo(**json.loads(value)))
        return live

    async def worker(self, worker_id: str) -> WorkerInfo | None:
        value = await self._redis.get(self._worker_key(worker_id))
        return None if value is None else WorkerInfo(**json.loads(value))

    # -- rooms ------------------------------------------------------------------------

    async def claim(self, room_id: str, worker_id: str) -> str | None:
        """Claim ``room_id`` for ``worker_id``; the owner afterwards (None: nobody, retry)."""
        key = self._room_key(room_id)
        if await self._redis.set(key, worker_id, nx=True, px=self._lease_ms):
            return worker_id
        owner = cast(str | None, await self._redis.get(key))
        if owner == worker_id:
            await self.renew(room_id, worker_id)
        return owner

    async def renew(self, room_id: str, worker_id: str) -> bool:
        """Extend the claim by one lease; False when ``worker_id`` no longer holds it."""
        renewed: Any = await self._renew(
            keys=[self._room_key(room_id)], args=[worker_id, self._lease_ms]
        )
        return bool(renewed)

    async def release(self, room_id: str, worker_id: str) -> bool:
        released: Any = await self._release(keys=[self._room_key(room_id)], args=[worker_id])
        return bool(released)

    async def owner(self, room_id: str) -> str | None:
        return cast(str | None, await self._redis.get(self._room_key(room_id)))

    async def placement(self, room_id: str) -> tuple[WorkerInfo | None, str | None]:
        """The worker a join for ``room_id`` goes to, and the room's current owner.

        The owner when it is alive; nobody while a dead owner's claim has not run out yet;
        otherwise the preferred live worker (which claims the room when the join arrives).
        """
        owner = await self.owner(room_id)
        workers = await self.workers()
        if owner is not None:
            return next((w for w in workers if w.worker_id == owner), None), owner
        return preferred(workers, room_id), None

    async def may_host(self, room_id: str, worker_id: str) -> bool:
        """Whether ``worker_id`` should open ``room_id`` (the timetable scheduler asks):
        it hosts it already, or nobody does and it is the preferred live worker."""
        worker, owner = await self.placement(room_id)
        if owner is not None:
            return owner == worker_id
        return worker is not None and worker.worker_id == worker_id
