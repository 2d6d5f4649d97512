"""A failed offer makes the Room replace the participant's connection (``Room._reset``): what
the subscriber chose stays with the replacement. Real aiortc objects, no network."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from aiortc import RTCConfiguration, RTCPeerConnection

from streaming.sfu.errors import NegotiationError
from streaming.sfu.identity import ParticipantIdentity
from streaming.sfu.layout import primary_video_slot
from streaming.sfu.room import Room
from streaming.sfu.temporal import ALL_LAYERS, BASE_LAYER

ROOM = "lesson-9"


@pytest.fixture
async def room() -> AsyncIterator[Room]:
    lesson = Room(ROOM, "lesson")
    yield lesson
    await lesson.close()


async def audio_only_offer() -> str:
    """A valid SDP whose lines do not match any classroom's layout."""
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    pc.addTransceiver("audio", direction="sendrecv")
    await pc.setLocalDescription(await pc.createOffer())
    sdp = pc.localDescription.sdp
    await pc.close()
    return sdp


@pytest.mark.parametrize(("quality", "target"), [("low", BASE_LAYER), ("auto", ALL_LAYERS)])
async def test_the_video_quality_choice_survives_a_failed_offer(
    room: Room, quality: str, target: int
) -> None:
    identity = ParticipantIdentity("remote-a", "远端一校", "remote", ROOM)
    participant = await room.join(identity, notify=lambda message: None)
    participant.set_quality(quality, primary_video_slot(participant.layout))  # type: ignore[arg-type]
    with pytest.raises(NegotiationError):
        await room.negotiate(participant, await audio_only_offer())
    fresh = room.participants["remote-a"]
    assert fresh is not participant and participant.replacement is fresh
    assert fresh.quality == quality
    # and it is applied: the replacement's video slots are thinned as the choice says
    videos = [d for d in fresh.downlinks.values() if d.kind == "video"]
    assert videos and all(d.temporal_target == target for d in videos)
