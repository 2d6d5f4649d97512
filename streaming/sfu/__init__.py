"""A selective forwarding unit on aiortc: raw RTP in, rewritten RTP out, nothing decoded.

Names are imported lazily: the web process imports `streaming.sfu.identity` for access
checks without loading aiortc and PyAV until a lesson room is actually opened.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from streaming.sfu.events import RoomEvent
    from streaming.sfu.identity import ParticipantIdentity, Role, RoomKind
    from streaming.sfu.layout import MediaLine, RoomLimits, media_layout
    from streaming.sfu.registry import InProcessRoomRegistry, RoomRegistry
    from streaming.sfu.room import Room

_HOMES = {
    "RoomEvent": "streaming.sfu.events",
    "ParticipantIdentity": "streaming.sfu.identity",
    "Role": "streaming.sfu.identity",
    "RoomKind": "streaming.sfu.identity",
    "MediaLine": "streaming.sfu.layout",
    "RoomLimits": "streaming.sfu.layout",
    "media_layout": "streaming.sfu.layout",
    "InProcessRoomRegistry": "streaming.sfu.registry",
    "RoomRegistry": "streaming.sfu.registry",
    "Room": "streaming.sfu.room",
}

__all__ = [
    "InProcessRoomRegistry",
    "MediaLine",
    "ParticipantIdentity",
    "Role",
    "Room",
    "RoomEvent",
    "RoomKind",
    "RoomLimits",
    "RoomRegistry",
    "media_layout",
]


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(name)
    return getattr(importlib.import_module(_HOMES[name]), name)
