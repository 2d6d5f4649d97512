"""A selective forwarding unit on aiortc: raw RTP in, rewritten RTP out, nothing decoded."""

from streaming.sfu.events import RoomEvent
from streaming.sfu.identity import ParticipantIdentity, Role, RoomKind
from streaming.sfu.layout import MediaLine, RoomLimits, media_layout
from streaming.sfu.registry import InProcessRoomRegistry, RoomRegistry
from streaming.sfu.room import Room

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
