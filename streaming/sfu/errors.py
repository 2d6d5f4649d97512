"""Errors a participant sees; the message is Chinese, ``code`` is machine-readable."""

from __future__ import annotations

from typing import Any

from common.errors import AppError


class StreamingError(AppError):
    code = "streaming_error"

    def __init__(self, message: str, *, code: str | None = None, detail: Any = None) -> None:
        super().__init__(message, detail=detail)
        if code is not None:
            self.code = code


class NegotiationError(StreamingError):
    code = "negotiation_failed"


class RoomError(StreamingError):
    code = "room_error"


class RoomOwnedElsewhere(RoomError):
    """Another SFU worker holds the room's claim: the join belongs there."""

    code = "room_elsewhere"

    def __init__(self, room_id: str, owner: str) -> None:
        super().__init__("课堂在另一台媒体服务器上", detail={"room": room_id, "owner": owner})
        self.room_id = room_id
        self.owner = owner
