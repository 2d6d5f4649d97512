"""Lead classroom → SFU → remote classrooms, on raw RTP: frames decode, the SFU decodes none."""

from __future__ import annotations

import sys
import time
from typing import Any

import aiortc.rtcrtpreceiver
import pytest

import streaming.sfu.track
from streaming.sfu.track import GopLimits

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def decoder_spy(monkeypatch: pytest.MonkeyPatch) -> set[int]:
    """ids of the track queues a decoder was created for (one per decoding receiver)."""
    decoding: set[int] = set()
    original = aiortc.rtcrtpreceiver.get_decoder  # type: ignore[attr-defined]

    def spy(codec):
        decoding.add(id(sys._getframe(1).f_locals["output_q"]))
        return original(codec)

    monkeypatch.setattr(aiortc.rtcrtpreceiver, "get_decoder", spy)
    return decoding


async def test_lead_reaches_two_remote_classrooms_without_decoding(
    rooms, classrooms, eventually, decoder_spy
):
    lead = classrooms.start("lead", "lead", tone_hz=440)
    remotes = [classrooms.start(f"remote-{n}", "remote", tone_hz=660 + 220 * n) for n in range(2)]

    for remote in remotes:
        await eventually(lambda r=remote: "lead_camera" in r.stats)
        await eventually(lambda r=remote: r.slot("lead_camera").frames > 30, timeout=15)
        await eventually(lambda r=remote: r.slot("lead_audio").dominant_hz is not None)
        assert abs(remote.slot("lead_audio").dominant_hz - 440) < 30
        assert remote.slot("lead_camera").delays_ms, "timecode never read back"
    # the lead sees every remote classroom, but hears none of them yet
    await eventually(
        lambda: all(lead.slot(f"remote_video_{n}").frames > 10 for n in range(2)), timeout=15
    )
    assert lead.slot("hand_audio_0").frames == 0

    room = await rooms.get("lesson-1")
    sfu_queues = {id(track.rtp_receiver.track._queue) for track in room.published_tracks()}
    assert len(sfu_queues) == 6  # 3 publishers × (mic, camera)
    assert decoder_spy, "the bots decode, so the spy must have seen decoders"
    assert not decoder_spy & sfu_queues, "the SFU created a decoder"


async def _late_joiner(rooms: Any, classrooms: Any, eventually: Any) -> Any:
    """A lesson with an early viewer decoding, then a late one that has its first frame:
    (the three bots, the room, the lead's camera, its keyframe requests before the late join,
    the late joiner's first frame in ms after joining)."""
    lead = classrooms.start("lead", "lead")
    early = classrooms.start("remote-early", "remote")
    await eventually(lambda: "lead_camera" in early.stats)
    await eventually(lambda: early.slot("lead_camera").frames > 20, timeout=15)
    room = await rooms.get("lesson-1")
    camera = room.participants["lead"].published["camera"]
    requests_before = camera.keyframes.sent
    late = classrooms.start("remote-late", "remote")
    await eventually(lambda: "lead_camera" in late.stats)
    await eventually(lambda: late.slot("lead_camera").frames > 0, timeout=5)
    first_frame_ms = (late.slot("lead_camera").first_frame_at - late.joined_at) * 1000
    return (lead, early, late), room, camera, requests_before, first_frame_ms


async def test_late_joiner_starts_from_the_cached_gop_without_a_new_keyframe(
    rooms, classrooms, eventually, monkeypatch
):
    """aiortc's encoder makes a keyframe every 3000 frames only: the late joiner can decode
    only if the SFU replays the GOP since the publisher's last keyframe."""
    monkeypatch.setattr(
        streaming.sfu.track,
        "DEFAULT_GOP_LIMITS",
        GopLimits(max_packets=500, max_bytes=4 << 20, max_age_ms=30_000),
    )
    bots, room, camera, requests_before, first_frame_ms = await _late_joiner(
        rooms, classrooms, eventually
    )
    late = bots[2]
    print(f"late joiner from the GOP cache: first frame {first_frame_ms:.0f} ms after join")
    # the burst and then the live stream decode on: no gap, no request, no new keyframe
    frames_then = late.slot("lead_camera").frames
    await eventually(lambda: late.slot("lead_camera").frames > frames_then + 15, timeout=5)
    downlink = room.participants["remote-late"].downlinks["lead_camera"]
    assert downlink.gop_bursts == 1
    assert downlink.started_at_connect, "replayed as DTLS came up, not at the next packet"
    assert downlink.nacks_missed == 0
    assert downlink.keyframe_requests == 0
    assert camera.keyframes.sent == requests_before
    assert all(bot.errors == [] for bot in bots)


async def test_late_joiner_asks_for_a_keyframe_when_the_gop_outgrew_the_cache(
    rooms, classrooms, eventually, monkeypatch
):
    monkeypatch.setattr(streaming.sfu.track, "DEFAULT_GOP_LIMITS", GopLimits(max_packets=0))
    bots, room, camera, requests_before, first_frame_ms = await _late_joiner(
        rooms, classrooms, eventually
    )
    print(f"late joiner on a keyframe request: first frame {first_frame_ms:.0f} ms after join")
    assert camera.keyframes.sent > requests_before
    assert room.participants["remote-late"].downlinks["lead_camera"].gop_bursts == 0
    assert first_frame_ms < 2000
    assert all(bot.errors == [] for bot in bots)


async def test_forwarded_stream_is_continuous_for_each_subscriber(rooms, classrooms, eventually):
    """Each subscriber sees its own SSRC and a gap-free sequence (no NACK-worthy holes)."""
    classrooms.start("lead", "lead")
    viewer = classrooms.start("remote-1", "remote")
    await eventually(lambda: "lead_camera" in viewer.stats)
    await eventually(lambda: viewer.slot("lead_camera").frames > 20, timeout=15)
    room = await rooms.get("lesson-1")
    downlink = room.participants["remote-1"].downlinks["lead_camera"]
    started = time.monotonic()
    packets_before = downlink.packets
    await eventually(lambda: time.monotonic() - started > 1.0)
    assert downlink.packets > packets_before
    assert downlink.ssrc != room.participants["lead"].published["camera"].ssrc
    assert downlink.nacks_missed == 0
