"""Where rooms live. In process for now; the interface is async so a Redis-backed registry
(room → worker routing, several SFU workers) can implement it later without callers changing."""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod

from aiortc import RTCConfiguration

from streaming.sfu.identity import RoomKind
from streaming.sfu.layout import RoomLimits
from streaming.sfu.room import Room


class RoomRegistry(ABC):
    """room_id → Room.

    A Redis-backed implementation would claim a room for this worker in ``open`` (SET NX
    room → worker with a lease it renews) and raise an error naming the owning worker when
    another worker holds it, so the web layer can route the WebSocket there.
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

    async def open(self, room_id: str, *, kind: RoomKind) -> Room:
        async with self._lock:
            room = self._rooms.get(room_id)
            if room is None or room.closed:
                room = Room(room_id, kind, configuration=self._configuration, limits=self._limits)
                self._rooms[room_id] = room
            return room

    async def get(self, room_id: str) -> Room | None:
        return self._rooms.get(room_id)

    async def release(self, room: Room) -> None:
        if self._close_when_empty and not room.participants:
            await self.close(room.room_id)

    async def close(self, room_id: str) -> None:
        async with self._lock:
            room = self._rooms.pop(room_id, None)
        if room is not None:
            await room.close()

    async def room_ids(self) -> list[str]:
        return list(self._rooms)
