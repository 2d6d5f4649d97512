"""Which media lines each role's connection has: what it publishes and which receive slots.

The SFU never renegotiates: a subscriber gets a fixed set of receive slots and the room maps
published tracks onto them (per-subscriber SSRC/sequence/timestamp rewriting makes a slot's
change of source look like one continuous stream). The client creates its transceivers in
exactly this order.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from streaming.sfu.identity import Role, RoomKind

MediaKind = Literal["audio", "video"]
Source = Literal["mic", "camera", "board", "screen"]


@dataclass(frozen=True, slots=True)
class RoomLimits:
    hand_audio_slots: int = 2
    remote_video_slots: int = 4
    speaker_audio_slots: int = 3
    speaker_video_slots: int = 4


@dataclass(frozen=True, slots=True)
class MediaLine:
    """One m-line, seen from the client: it either sends a source or receives a slot."""

    kind: MediaKind
    direction: Literal["send", "recv"]
    name: str  # a source ("mic", "camera", "board") or a receive slot ("lead_camera", ...)

    def as_message(self) -> dict[str, str]:
        return {"kind": self.kind, "direction": self.direction, "name": self.name}


def _send(kind: MediaKind, source: Source) -> MediaLine:
    return MediaLine(kind, "send", source)


def _recv(kind: MediaKind, slot: str) -> MediaLine:
    return MediaLine(kind, "recv", slot)


def _numbered(kind: MediaKind, prefix: str, count: int) -> list[MediaLine]:
    return [_recv(kind, f"{prefix}_{index}") for index in range(count)]


def media_layout(
    role: Role, *, room_kind: RoomKind, board: bool = False, limits: RoomLimits = RoomLimits()
) -> tuple[MediaLine, ...]:
    """The m-lines for a participant of ``role``; ``board`` adds the lead's second video (in a
    meeting: the participant's screen share, sent only while it shares)."""
    lines: list[MediaLine] = []
    if role in ("lead", "remote", "meeting"):
        lines += [_send("audio", "mic"), _send("video", "camera")]
    if role == "lead" and board:
        lines.append(_send("video", "board"))
    if role == "meeting" and board:
        lines.append(_send("video", "screen"))
    if room_kind == "meeting":
        lines += _numbered("audio", "speaker_audio", limits.speaker_audio_slots)
        lines += _numbered("video", "speaker_video", limits.speaker_video_slots)
        lines.append(_recv("video", "screen_share"))
        return tuple(lines)
    if role == "lead":
        lines += _numbered("audio", "hand_audio", limits.hand_audio_slots)
        lines += _numbered("video", "remote_video", limits.remote_video_slots)
        return tuple(lines)
    lines += [_recv("audio", "lead_audio"), _recv("video", "lead_camera")]
    lines.append(_recv("video", "lead_board"))
    lines += _numbered("audio", "hand_audio", limits.hand_audio_slots)
    if role == "inspector":
        lines += [_recv("audio", "inspect_audio"), _recv("video", "inspect_video")]
    return tuple(lines)


def primary_video_slot(layout: tuple[MediaLine, ...]) -> str | None:
    """The video slot kept longest when a weak link forces video to be paused."""
    for line in layout:
        if line.direction == "recv" and line.kind == "video":
            return line.name
    return None
