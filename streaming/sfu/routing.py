"""Who receives what: a pure function from the room's state to every subscriber's slots."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from streaming.sfu.identity import Role

TrackKey = tuple[str, str]  # (participant_id, source)
Assignment = dict[str, TrackKey | None]  # slot -> track
LEAD_SOURCES = {"lead_audio": "mic", "lead_camera": "camera", "lead_board": "board"}


@dataclass(frozen=True, slots=True)
class ParticipantView:
    participant_id: str
    role: Role
    sources: frozenset[str]  # what it publishes right now
    receive_slots: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class RoomView:
    participants: Sequence[ParticipantView]  # in join order
    accepted_hands: Sequence[str]  # in order of acceptance
    speaker_order: Sequence[str]  # most recent speaker first
    inspect_requests: Mapping[str, str]  # inspector -> remote classroom
    # research meetings: whose audio the host (or they themselves) muted, the spotlit
    # participant (their camera gets a video slot whoever speaks), who shares a screen
    muted: frozenset[str] = frozenset()
    spotlight: str | None = None
    screen_sharer: str | None = None


def _fill_stable(
    slots: Sequence[str], wanted: Sequence[TrackKey], previous: Assignment
) -> Assignment:
    """Put the first ``len(slots)`` of ``wanted`` into ``slots``, keeping a track in the slot
    it already had (a subscriber's tiles do not reshuffle when a new speaker comes in)."""
    wanted = wanted[: len(slots)]
    assignment: Assignment = dict.fromkeys(slots)
    wanted_set = set(wanted)
    for slot in slots:
        track = previous.get(slot)
        if track in wanted_set:
            assignment[slot] = track
    placed = {track for track in assignment.values() if track is not None}
    free = [slot for slot in slots if assignment[slot] is None]
    for track in wanted:
        if not free:
            break
        if track not in placed:
            assignment[free.pop(0)] = track
    return assignment


def assign_slots(view: RoomView, previous: Mapping[str, Assignment]) -> dict[str, Assignment]:
    """The wanted slot → track mapping of every participant."""
    by_id = {participant.participant_id: participant for participant in view.participants}
    lead = next((p for p in view.participants if p.role == "lead"), None)

    def published(participant_id: str, source: str) -> TrackKey | None:
        participant = by_id.get(participant_id)
        if participant is None or source not in participant.sources:
            return None
        return (participant_id, source)

    def wanted_from(order: Sequence[str], source: str, exclude: str) -> list[TrackKey]:
        keys = [published(pid, source) for pid in order if pid != exclude]
        return [key for key in keys if key is not None]

    result: dict[str, Assignment] = {}
    remotes = [p.participant_id for p in view.participants if p.role == "remote"]
    publishers = [p.participant_id for p in view.participants if p.sources]
    speakers = [pid for pid in view.speaker_order if pid in by_id]
    speakers += [pid for pid in publishers if pid not in speakers]
    audible = [pid for pid in speakers if pid not in view.muted]
    if view.spotlight in by_id:
        speakers = [view.spotlight, *(pid for pid in speakers if pid != view.spotlight)]

    for participant in view.participants:
        own = participant.participant_id
        before = previous.get(own, {})
        slots = participant.receive_slots
        assignment: Assignment = dict.fromkeys(slots)
        groups: dict[str, tuple[list[str], list[TrackKey]]] = {
            "hand_audio": ([], wanted_from(view.accepted_hands, "mic", own)),
            "remote_video": ([], wanted_from(remotes, "camera", own)),
            "speaker_audio": ([], wanted_from(audible, "mic", own)),
            "speaker_video": ([], wanted_from(speakers, "camera", own)),
        }
        for slot in slots:
            prefix = slot.rsplit("_", 1)[0]
            if prefix in groups:
                groups[prefix][0].append(slot)
            elif slot.startswith("lead_") and lead is not None:
                assignment[slot] = published(lead.participant_id, LEAD_SOURCES[slot])
            elif slot == "screen_share" and view.screen_sharer not in (None, own):
                assert view.screen_sharer is not None
                assignment[slot] = published(view.screen_sharer, "screen")
            elif slot.startswith("inspect_") and own in view.inspect_requests:
                wanted_source = "mic" if slot == "inspect_audio" else "camera"
                assignment[slot] = published(view.inspect_requests[own], wanted_source)
        for group_slots, wanted in groups.values():
            if group_slots:
                assignment.update(_fill_stable(group_slots, wanted, before))
        result[own] = assignment
    return result
