"""Who a participant is, as the web layer vouches for it after validating the join token."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Role = Literal["lead", "remote", "inspector", "meeting"]
RoomKind = Literal["lesson", "meeting"]

ROLES_BY_ROOM_KIND: dict[RoomKind, frozenset[Role]] = {
    "lesson": frozenset({"lead", "remote", "inspector"}),
    "meeting": frozenset({"meeting", "inspector"}),
}


@dataclass(frozen=True, slots=True)
class ParticipantIdentity:
    """An authenticated participant: the room it may join and the role it has there.

    ``participant_id`` is stable across reconnects (e.g. the classroom terminal's id), so a
    publisher that rejoins replaces its previous connection instead of appearing twice.
    """

    participant_id: str
    display_name: str
    role: Role
    room_id: str
    room_kind: RoomKind = "lesson"
    campus: str = ""
    host: bool = False  # a research meeting's host controls (mute all, spotlight, hands)
