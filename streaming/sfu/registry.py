"""Where rooms live: in this process (``InProcessRoomRegistry``), or in this SFU worker with
each room claimed in Redis first (``ClaimedRoomRegistry``, see ``streaming.cluster``)."""

from __future__ import annotations

import asyncio
import contextlib
from abc import ABC, abstractmethod
from typing import TYPE_CHECKING

from aiortc import RTCConfiguration
from redis.exceptions import RedisError

from common.logging import get_logger
from streaming.sfu.errors import RoomOwnedElsewhere
from streaming.sfu.identity import RoomKind
from streaming.sfu.layout import RoomLimits
from streaming.sfu.room import Room

if TYPE_CHECKING:
    from streaming.cluster import SfuCluster

log = get_logger(__name__)


class RoomRegistry(ABC):
    """room_id → Room.

    ``open`` raises ``RoomOwnedElsewhere`` (naming the owner) when another SFU worker hosts
    the room, so the web layer can route the WebSocket there.
    """

    @abstractmethod
    async def open(self, room_id: str, *, kind: RoomKind) -> Room:
        """The room, created if it does not exist yet."""

    @abstractmethod
    async def get(self, room_id: str) -> Room | None: ...

    @abstractmethod
    async def release(self, room: Room) -> None:
        """Called when a participant leaves; closes the room once it is empty."""

    @abstractmethod
    async def close(self, room_id: str) -> None: ...

    @abstractmethod
    async def room_ids(self) -> list[str]: ...

    def keep_open(self, room_id: str) -> None:  # noqa: B027 - optional for a registry
        """Keep ``room_id`` open when its last participant leaves (a timetabled lesson: the
        scheduler closes it at the end); forgotten when the room closes."""

    async def close_all(self) -> None:
        for room_id in await self.room_ids():
            await self.close(room_id)


class InProcessRoomRegistry(RoomRegistry):
    def __init__(
        self,
        *,
        configuration: RTCConfiguration | None = None,
        limits: RoomLimits = RoomLimits(),
        close_when_empty: bool = True,
    ) -> None:
        self._rooms: dict[str, Room] = {}
        self._lock = asyncio.Lock()
        self._configuration = configuration
        self._limits = limits
        self._close_when_empty = close_when_empty
        self._kept: set[str] = set()

    async def open(self, room_id: str, *, kind: RoomKind) -> Room:
        async with self._lock:
            room = self._rooms.get(room_id)
            if room is None or room.closed:
                await self._admit(room_id)
                room = Room(room_id, kind, configuration=self._configuration, limits=self._limits)
                self._rooms[room_id] = room
            return room

    async def _admit(self, room_id: str) -> None:
        """Called before a room is created here; raises when it belongs elsewhere."""

    async def get(self, room_id: str) -> Room | None:
        return self._rooms.get(room_id)

    async def release(self, room: Room) -> None:
        if (
            self._close_when_empty
            and not room.participants
            and room.room_id not in self._kept
            and self._rooms.get(room.room_id) is room
        ):
            await self.close(room.room_id)

    def keep_open(self, room_id: str) -> None:
        if room_id in self._rooms:
            self._kept.add(room_id)

    def rooms(self) -> list[Room]:
        """The open rooms (for health and metrics)."""
        return [room for room in self._rooms.values() if not room.closed]

    async def close(self, room_id: str) -> None:
        async with self._lock:
            room = self._rooms.pop(room_id, None)
            self._kept.discard(room_id)
        if room is not None:
            await room.close()

    async def room_ids(self) -> list[str]:
        return list(self._rooms)


class ClaimedRoomRegistry(InProcessRoomRegistry):
    """One SFU worker's rooms: each is claimed in Redis for this worker before it opens, the
    claims are renewed by ``renew_claims`` (the worker's heartbeat) and released on close."""

    def __init__(
        self,
        cluster: SfuCluster,
        worker_id: str,
        *,
        configuration: RTCConfiguration | None = None,
        limits: RoomLimits = RoomLimits(),
        close_when_empty: bool = True,
    ) -> None:
        super().__init__(
            configuration=configuration, limits=limits, close_when_empty=close_when_empty
        )
        self.cluster = cluster
        self.worker_id = worker_id

    async def _admit(self, room_id: str) -> None:
        try:
            owner = await self.cluster.claim(room_id, self.worker_id)
        except (asyncio.CancelledError, RedisError):
            # Redis may hold the claim already (taken, or found and renewed): with no room here
            # to renew it, it would route the room's joins to this worker until its lease ran out.
            await asyncio.shield(self._release_unopened(room_id))
            raise
        if owner != self.worker_id:
            raise RoomOwnedElsewhere(room_id, owner or "")

    async def close(self, room_id: str) -> None:
        # The claim goes with the room, under the lock: released after the room's close (its
        # peers take a while), it would be an open of the same room in between's claim, and
        # another worker could then open that room too.
        async with self._lock:
            room = self._rooms.pop(room_id, None)
            self._kept.discard(room_id)
            await self._release_unopened(room_id)
        if room is not None:
            await room.close()

    async def _release_unopened(self, room_id: str) -> None:
        with contextlib.suppress(RedisError):
            await self.cluster.release(room_id, self.worker_id)

    async def renew_claims(self) -> list[str]:
        """Extend every room's claim; close the rooms whose claim another worker took (this
        worker was cut off for longer than a lease). Returns the rooms lost."""
        lost: list[str] = []
        for room_id in list(self._rooms):
            if await self.cluster.renew(room_id, self.worker_id):
                continue
            # Expired but free again: take it back; held by another worker: it is theirs.
            if await self.cluster.claim(room_id, self.worker_id) == self.worker_id:
                continue
            log.warning("sfu_room_claim_lost", room=room_id, worker=self.worker_id)
            lost.append(room_id)
            await InProcessRoomRegistry.close(self, room_id)
        return lost
