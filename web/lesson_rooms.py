"""The web process's live-lesson rooms, created on first use (aiortc loads only then)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from streaming.sfu.registry import RoomRegistry


class LessonRooms:
    def __init__(self, ice_servers: list[dict[str, Any]]) -> None:
        self._ice_servers = ice_servers
        self._registry: RoomRegistry | None = None

    @property
    def started(self) -> bool:
        return self._registry is not None

    def registry(self) -> RoomRegistry:
        if self._registry is None:
            from aiortc import RTCConfiguration, RTCIceServer

            from streaming.sfu.registry import InProcessRoomRegistry

            self._registry = InProcessRoomRegistry(
                configuration=RTCConfiguration(
                    iceServers=[RTCIceServer(**server) for server in self._ice_servers]
                )
            )
        return self._registry

    async def close_all(self) -> None:
        if self._registry is not None:
            await self._registry.close_all()
