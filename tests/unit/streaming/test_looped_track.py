"""The SFU bench's looped publisher: encoded once, sent in a loop, a keyframe on request."""

from __future__ import annotations

import pytest
from aiortc import RTCCertificate, RTCDtlsTransport, RTCIceGatherer, RTCIceTransport
from aiortc.rtcrtpsender import RTCRtpSender
from aiortc.rtp import RTCP_PSFB_PLI, RtcpPsfbPacket

from streaming.bench import FRAME_RATES, camera_track, encoded_loop
from streaming.bots import VIDEO_CLOCK, LoopedEncodedTrack, SyntheticLessonTrack


def is_keyframe(frame: bytes) -> bool:
    return frame[0] & 0x01 == 0  # VP8 frame tag: P bit clear


async def test_the_loop_restarts_at_its_keyframe_when_the_sfu_asks_for_one() -> None:
    frames = encoded_loop("640x360", seconds=0.2)
    assert len(frames) == 6
    assert is_keyframe(frames[0]) and not any(is_keyframe(f) for f in frames[1:])

    track = LoopedEncodedTrack(frames, fps=FRAME_RATES["640x360"])
    # aiortc's own sender, which flags a picture loss for its encoder
    transport = RTCDtlsTransport(
        RTCIceTransport(RTCIceGatherer()), [RTCCertificate.generateCertificate()]
    )
    sender = RTCRtpSender(track, transport)
    track.follow_keyframe_requests(sender)

    sent = [await track.recv() for _ in range(8)]  # round the loop: 0..5, 0, 1
    assert [bytes(p) for p in sent] == [*frames, frames[0], frames[1]]
    assert [p.pts for p in sent] == [n * VIDEO_CLOCK // 30 for n in range(8)]

    await sender._handle_rtcp_packet(
        RtcpPsfbPacket(fmt=RTCP_PSFB_PLI, ssrc=1234, media_ssrc=sender._ssrc)
    )
    after = await track.recv()
    assert bytes(after) == frames[0], "a keyframe request starts the loop again"
    assert after.pts == 8 * VIDEO_CLOCK // 30 and track.restarts == 1
    assert bytes(await track.recv()) == frames[1]
    assert track.restarts == 1, "answered once"
    track.stop()
    await transport.stop()


def test_the_publisher_modes() -> None:
    assert isinstance(camera_track("live")("主讲教室", 640, 360, 15), SyntheticLessonTrack)
    looped = camera_track("looped")("主讲教室", 640, 360, 30)
    assert isinstance(looped, LoopedEncodedTrack) and looped.fps == 30
    with pytest.raises(ValueError, match="no looped stream"):
        camera_track("looped")("主讲教室", 640, 360, 15)
    with pytest.raises(ValueError, match="publisher mode"):
        camera_track("recorded")
