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
