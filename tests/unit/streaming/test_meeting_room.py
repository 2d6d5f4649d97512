"""Research meeting host controls in the Room and in the slot routing (no network)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from streaming.sfu.errors import RoomError
from streaming.sfu.identity import ParticipantIdentity, Role
from streaming.sfu.participant import Participant
from streaming.sfu.room import Room
from streaming.sfu.routing import Assignment, ParticipantView, RoomView, assign_slots
from streaming.signaling import SignalingError, parse_message

ROOM = "research-7"


def who(pid: str, *, host: bool = False, role: Role = "meeting") -> ParticipantIdentity:
    return ParticipantIdentity(
        participant_id=pid,
        display_name=pid,
        role=role,
        room_id=ROOM,
        room_kind="meeting",
        host=host,
    )


class Inbox:
    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []

    def __call__(self, message: dict[str, Any]) -> None:
        self.messages.append(message)

    def last(self, kind: str) -> dict[str, Any]:
        return next(m for m in reversed(self.messages) if m["type"] == kind)


@pytest.fixture
async def room() -> AsyncIterator[Room]:
    meeting = Room(ROOM, "meeting")
    yield meeting
    await meeting.close()


async def join(room: Room, identity: ParticipantIdentity) -> tuple[Participant, Inbox]:
    inbox = Inbox()
    return await room.join(identity, notify=inbox), inbox


def listed(inbox: Inbox) -> dict[str, dict[str, Any]]:
    return {p["id"]: p for p in inbox.last("participants")["participants"]}


async def test_mute_all_holds_everyones_audio_but_the_hosts_until_they_unmute(room: Room) -> None:
    host, host_inbox = await join(room, who("teacher-1", host=True))
    a, _ = await join(room, who("teacher-2"))
    _b, b_inbox = await join(room, who("teacher-3"))

    room.mute_all(host)
    assert room.muted == {"teacher-2", "teacher-3"}
    assert room.speakers.ignored == {"teacher-2", "teacher-3"}
    seen = listed(host_inbox)
    assert (seen["teacher-1"]["muted"], seen["teacher-2"]["muted"]) == (False, True)
    assert seen["teacher-1"]["host"] is True

    room.unmute(a)  # not locked: each may unmute themselves
    assert room.muted == {"teacher-3"}
    assert listed(b_inbox)["teacher-2"]["muted"] is False

    room.mute(a)  # and mute themselves again
    assert room.muted == {"teacher-2", "teacher-3"}


async def test_a_locked_mute_lasts_until_the_host_lets_someone_speak(room: Room) -> None:
    host, _ = await join(room, who("teacher-1", host=True))
    a, a_inbox = await join(room, who("teacher-2"))
    room.mute_all(host, lock=True)
    assert a_inbox.last("meeting")["audio_locked"] is True
    with pytest.raises(RoomError) as refused:
        room.unmute(a)
    assert refused.value.code == "audio_locked"
    assert "举手" in refused.value.message

    room.raise_hand(a)
    assert listed(a_inbox)["teacher-2"]["hand"] == "raised"
    room.unmute(host, "teacher-2")  # the host lets them speak: unmuted, hand down
    assert "teacher-2" not in room.muted
    assert listed(a_inbox)["teacher-2"]["hand"] == "none"

    # Rejoining does not escape a locked mute.
    late, _ = await join(room, who("teacher-4"))
    assert "teacher-4" in room.muted
    room.unlock_audio(host)
    room.unmute(late)
    assert "teacher-4" not in room.muted


async def test_only_the_host_may_use_the_controls(room: Room) -> None:
    await join(room, who("teacher-1", host=True))
    a, _ = await join(room, who("teacher-2"))
    _b, _ = await join(room, who("teacher-3"))
    inspector, _ = await join(room, who("account-9", role="inspector"))
    attempts: list[Callable[[], None]] = [
        lambda: room.mute_all(a),
        lambda: room.set_spotlight(a, "teacher-3"),
        lambda: room.mute(a, "teacher-3"),
        lambda: room.unmute(a, "teacher-3"),
        lambda: room.lower_hand(a, "teacher-3"),
        lambda: room.unlock_audio(inspector),
    ]
    for attempt in attempts:
        with pytest.raises(RoomError) as refused:
            attempt()
        assert refused.value.code == "not_host"
    assert room.muted == set() and room.spotlight is None
    with pytest.raises(RoomError):
        room.raise_hand(inspector)


async def test_hands_in_a_meeting_and_the_host_lowers_one(room: Room) -> None:
    host, host_inbox = await join(room, who("teacher-1", host=True))
    a, _ = await join(room, who("teacher-2"))
    b, _ = await join(room, who("teacher-3"))
    room.raise_hand(a)
    room.raise_hand(b)
    room.raise_hand(host)  # the host may raise a hand too
    assert {p: e["hand"] for p, e in listed(host_inbox).items()} == {
        "teacher-1": "raised",
        "teacher-2": "raised",
        "teacher-3": "raised",
    }
    room.lower_hand(b)
    room.lower_hand(host, "teacher-2")
    hands = {p: e["hand"] for p, e in listed(host_inbox).items()}
    assert hands == {"teacher-1": "raised", "teacher-2": "none", "teacher-3": "none"}
    lowered = [e for e in room.events.history if e.kind == "hand_lowered"]
    assert [(e.participant_id, e.detail["by"]) for e in lowered] == [
        ("teacher-3", "teacher-3"),
        ("teacher-2", "teacher-1"),
    ]
    with pytest.raises(RoomError) as unknown:
        room.lower_hand(host, "teacher-99")
    assert unknown.value.code == "unknown_participant"


async def test_spotlight_is_announced_and_cleared_when_the_participant_leaves(room: Room) -> None:
    host, host_inbox = await join(room, who("teacher-1", host=True))
    a, _ = await join(room, who("teacher-2"))
    room.set_spotlight(host, "teacher-2")
    assert host_inbox.last("meeting")["spotlight"] == "teacher-2"
    assert [e.kind for e in room.events.history][-1] == "spotlight_changed"
    await room.leave(a)
    assert room.spotlight is None
    assert host_inbox.last("meeting")["spotlight"] is None
    with pytest.raises(RoomError):
        room.set_spotlight(host, "account-9")  # nobody by that id


async def test_screen_share_needs_the_screen_line_and_replaces_the_previous_sharer(
    room: Room,
) -> None:
    a = await room.join(who("teacher-1"), notify=Inbox(), board=True)
    b = await room.join(who("teacher-2"), notify=Inbox(), board=True)
    c, _ = await join(room, who("teacher-3"))  # joined without the screen line
    room.share_screen(a, True)
    assert room.screen_sharer == "teacher-1"
    room.share_screen(b, True)
    assert room.screen_sharer == "teacher-2"
    room.share_screen(a, False)  # not sharing any more: nothing changes
    assert room.screen_sharer == "teacher-2"
    with pytest.raises(RoomError):
        room.share_screen(c, True)
    room.share_screen(b, False)
    assert room.screen_sharer is None


async def test_lesson_rooms_have_no_meeting_controls() -> None:
    lesson = Room("sync-1", "lesson")
    lead = await lesson.join(
        ParticipantIdentity("terminal-1", "lead", "lead", "sync-1", host=True), notify=Inbox()
    )
    try:
        with pytest.raises(RoomError):
            lesson.mute_all(lead)
        with pytest.raises(RoomError):
            lesson.mute(lead)
    finally:
        await lesson.close()


# -- routing ----------------------------------------------------------------------------------


def meeting_view(**state: Any) -> RoomView:
    slots = ("speaker_audio_0", "speaker_audio_1", "speaker_video_0", "screen_share")
    return RoomView(
        participants=[
            ParticipantView(pid, "meeting", frozenset({"mic", "camera", "screen"}), slots)
            for pid in ("a", "b", "c", "d")
        ],
        accepted_hands=[],
        speaker_order=["b", "c", "d", "a"],
        inspect_requests={},
        **state,
    )


def test_muted_participants_are_not_forwarded_to_anyone() -> None:
    heard = assign_slots(meeting_view(), {})
    assert heard["a"]["speaker_audio_0"] == ("b", "mic")
    muted = assign_slots(meeting_view(muted=frozenset({"b", "c"})), {})
    for pid, assignment in muted.items():
        audio = {assignment["speaker_audio_0"], assignment["speaker_audio_1"]}
        assert ("b", "mic") not in audio and ("c", "mic") not in audio, pid
    assert {muted["a"]["speaker_audio_0"], muted["a"]["speaker_audio_1"]} == {("d", "mic"), None}


def test_the_spotlit_camera_reaches_everyone_whoever_speaks() -> None:
    previous: dict[str, Assignment] = assign_slots(meeting_view(), {})
    assert previous["a"]["speaker_video_0"] == ("b", "camera")
    spot = assign_slots(meeting_view(spotlight="a"), previous)
    assert {pid: spot[pid]["speaker_video_0"] for pid in "bcd"} == {
        pid: ("a", "camera") for pid in "bcd"
    }
    assert spot["a"]["speaker_video_0"] == ("b", "camera")  # nobody is sent their own


def test_the_screen_share_slot_carries_the_sharers_screen_to_the_others() -> None:
    shared = assign_slots(meeting_view(screen_sharer="c"), {})
    assert shared["a"]["screen_share"] == ("c", "screen")
    assert shared["c"]["screen_share"] is None
    assert assign_slots(meeting_view(), {})["a"]["screen_share"] is None


# -- signaling --------------------------------------------------------------------------------


def test_the_meeting_messages_are_validated() -> None:
    assert parse_message({"v": 1, "type": "mute_all", "lock": True}).type == "mute_all"
    assert parse_message({"v": 1, "type": "spotlight", "participant": None}).type == "spotlight"
    assert parse_message({"v": 1, "type": "lower_hand", "participant": "teacher-2"})
    for bad in (
        {"v": 1, "type": "mute_all", "lock": "ja"},
        {"v": 1, "type": "share_screen"},
        {"v": 1, "type": "spotlight", "participant": "x" * 201},
        {"v": 1, "type": "unmute", "everyone": True},
    ):
        with pytest.raises(SignalingError) as refused:
            parse_message(bad)
        assert refused.value.code == "invalid_message"


# -- recording --------------------------------------------------------------------------------


class RecordingLog:
    """Recording hooks that note what the room asked for (the real ones: recordings.meetings)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str | None]] = []

    async def start(self, room: Room, by: ParticipantIdentity) -> None:
        self.calls.append(("start", by.participant_id))

    async def stop(self, room: Room) -> None:
        self.calls.append(("stop", None))


async def test_only_the_host_records_and_everyone_is_told(room: Room) -> None:
    host, host_inbox = await join(room, who("teacher-1", host=True))
    member, member_inbox = await join(room, who("teacher-2"))
    with pytest.raises(RoomError) as refused:
        await room.start_recording(host)
    assert refused.value.code == "recording_unavailable"  # nothing records this room

    hooks = room.recording_hooks = RecordingLog()
    with pytest.raises(RoomError) as refused:
        await room.start_recording(member)
    assert refused.value.code == "not_host"
    with pytest.raises(RoomError) as refused:
        await room.stop_recording(host)
    assert refused.value.code == "not_recording"
    assert hooks.calls == [] and room.recording is False

    await room.start_recording(host)
    assert hooks.calls == [("start", "teacher-1")]
    assert member_inbox.last("meeting")["recording"] is True
    with pytest.raises(RoomError) as refused:
        await room.start_recording(host)
    assert refused.value.code == "already_recording"
    with pytest.raises(RoomError) as refused:
        await room.stop_recording(member)
    assert refused.value.code == "not_host"

    await room.stop_recording(host)
    assert hooks.calls[-1] == ("stop", None)
    assert host_inbox.last("meeting")["recording"] is False
    kinds = [e.kind for e in room.events.history]
    assert kinds.index("recording_started") < kinds.index("recording_stopped")


async def test_a_failed_start_leaves_the_meeting_unrecorded(room: Room) -> None:
    host, inbox = await join(room, who("teacher-1", host=True))

    class Broken(RecordingLog):
        async def start(self, room: Room, by: ParticipantIdentity) -> None:
            raise RoomError("录像存储不可用", code="storage_unavailable")

    room.recording_hooks = Broken()
    with pytest.raises(RoomError):
        await room.start_recording(host)
    assert room.recording is False
    assert all(not m.get("recording") for m in inbox.messages if m["type"] == "meeting")


async def test_closing_the_room_ends_its_recording(room: Room) -> None:
    host, _ = await join(room, who("teacher-1", host=True))
    room.recording_hooks = RecordingLog()
    await room.start_recording(host)
    await room.close()
    assert room.recording is False
    assert room.events.history[-1].kind == "room_closed"


def test_the_recording_messages_are_validated() -> None:
    assert parse_message({"v": 1, "type": "start_recording"}).type == "start_recording"
    assert parse_message({"v": 1, "type": "stop_recording"}).type == "stop_recording"
    with pytest.raises(SignalingError):
        parse_message({"v": 1, "type": "start_recording", "room": "research-8"})
