"""What a Downlink writes for the subscriber's bandwidth estimator and what it reads back:
abs-send-time on each forwarded video packet (parsed back with aiortc's own parser) and REMB
from the subscriber's RTCP."""

from __future__ import annotations

import itertools
import time
from types import SimpleNamespace
from typing import Any

from aiortc import RTCPeerConnection
from aiortc.rtcrtpparameters import (
    RTCRtpCodecParameters,
    RTCRtpHeaderExtensionParameters,
    RTCRtpParameters,
)
from aiortc.rtp import (
    RTCP_PSFB_APP,
    HeaderExtensionsMap,
    RtcpPsfbPacket,
    RtpPacket,
    pack_remb_fci,
)

from streaming.sfu.downlink import Downlink
from streaming.sfu.layout import MediaKind
from streaming.sfu.packets import ABS_SEND_TIME_URI
from streaming.sfu.track import PublishedTrack
from tests.integration.streaming.test_sfu_logic import FakeSink
from tests.integration.streaming.test_sfu_temporal import Stream

KEYFRAME = bytes([0x10, 0x00, 0x9D, 0x01, 0x2A]) + bytes(200)  # S=1, P=0: a VP8 keyframe
ABS_SEND_TIME_ID = 3


def extensions_map() -> HeaderExtensionsMap:
    extensions = HeaderExtensionsMap()
    extensions.configure(
        RTCRtpParameters(
            headerExtensions=[
                RTCRtpHeaderExtensionParameters(id=ABS_SEND_TIME_ID, uri=ABS_SEND_TIME_URI)
            ]
        )
    )
    return extensions


async def downlink_with_source(
    kind: MediaKind = "video",
    abs_send_time_id: int | None = ABS_SEND_TIME_ID,
    playout_delay_id: int | None = None,
    **options: Any,
) -> tuple[Downlink, FakeSink, RTCPeerConnection, PublishedTrack]:
    pc = RTCPeerConnection()
    transceiver = pc.addTransceiver(kind, direction="recvonly")
    track = PublishedTrack(
        participant_id="lead", source="camera", kind=kind, receiver=transceiver.receiver
    )
    sender: Any = SimpleNamespace(_ssrc=4242)
    downlink = Downlink(kind=kind, slot="lead_camera", sender=sender, on_report=print, **options)
    downlink.assign(track)
    sink = FakeSink()
    downlink.connect(
        sink=sink,  # type: ignore[arg-type]
        payload_type=97,
        abs_send_time_id=abs_send_time_id,
        playout_delay_id=playout_delay_id,
    )
    return downlink, sink, pc, track


async def test_forwarded_video_carries_abs_send_time_that_aiortc_parses() -> None:
    downlink, sink, pc, _track = await downlink_with_source()
    packet = RtpPacket(
        payload_type=96, sequence_number=10, timestamp=9000, ssrc=1, payload=KEYFRAME
    )
    packet.marker = 1
    before = int(time.monotonic() * (1 << 18)) & 0xFFFFFF
    downlink.forward(packet, True, 0)
    after = int(time.monotonic() * (1 << 18)) & 0xFFFFFF
    await pc.close()
    assert len(sink.sent) == 1
    parsed = RtpPacket.parse(sink.sent[0], extensions_map())
    assert parsed.ssrc == 4242 and parsed.payload_type == 97 and parsed.marker == 1
    assert parsed.payload == KEYFRAME  # the extension does not eat into the payload
    assert parsed.extensions.abs_send_time is not None
    assert before <= parsed.extensions.abs_send_time <= after or before > after  # (a wrap)


async def test_without_the_extension_negotiated_the_header_stays_plain() -> None:
    downlink, sink, pc, _track = await downlink_with_source(abs_send_time_id=None)
    downlink.forward(RtpPacket(payload_type=96, sequence_number=1, payload=KEYFRAME), True, 0)
    await pc.close()
    assert sink.sent[0][0] == 0x80  # no X bit
    assert RtpPacket.parse(sink.sent[0], extensions_map()).extensions.abs_send_time is None


async def test_audio_gets_no_abs_send_time() -> None:
    downlink, sink, pc, _track = await downlink_with_source(kind="audio")
    downlink.forward(RtpPacket(payload_type=111, sequence_number=1, payload=b"\xfc" * 40), True, 0)
    await pc.close()
    assert sink.sent[0][0] == 0x80


async def test_remb_from_the_subscriber_reaches_the_estimate_sink() -> None:
    estimates: list[tuple[int, tuple[int, ...]]] = []
    downlink, _sink, pc, _track = await downlink_with_source(
        on_estimate=lambda bps, ssrcs: estimates.append((bps, ssrcs))
    )
    remb = RtcpPsfbPacket(
        fmt=RTCP_PSFB_APP, ssrc=7, media_ssrc=0, fci=pack_remb_fci(480_000, [4343, 4242])
    )
    downlink.handle_rtcp(remb)
    # another application-layer feedback, or garbage: ignored
    downlink.handle_rtcp(RtcpPsfbPacket(fmt=RTCP_PSFB_APP, ssrc=7, media_ssrc=0, fci=b"XY"))
    truncated = b"REMB" + bytes([2, 0x08, 0x00, 0x01]) + bytes(4)  # two SSRCs announced, one sent
    downlink.handle_rtcp(RtcpPsfbPacket(fmt=RTCP_PSFB_APP, ssrc=7, media_ssrc=0, fci=truncated))
    await pc.close()
    assert len(estimates) == 1
    bitrate, ssrcs = estimates[0]
    assert ssrcs == (4242, 4343)
    # REMB's 6-bit exponent and 18-bit mantissa round it down a little
    assert 470_000 <= bitrate <= 480_000 and downlink.estimate_bps == bitrate


async def test_the_base_layer_rate_is_counted_once_at_the_source_for_every_subscriber() -> None:
    """An L1T3 publisher: layer 0 is a quarter of the frames (PATTERN 0, 2, 1, 2). Its octets
    are counted as the track receives them, and each subscriber's ladder reads the rate from
    there (what thinning it to the base layer would send), whatever it is sent now."""
    downlink, _sink, pc, track = await downlink_with_source()
    track._receiver.codecs[96] = RTCRtpCodecParameters(
        mimeType="video/VP8", clockRate=90000, payloadType=96
    )
    stream = Stream()
    frames = [stream.frame(keyframe=True)] + [stream.frame() for _ in range(39)]
    downlink.sample_rates(0.0)
    for packet in itertools.chain.from_iterable(frames):
        track._on_rtp(packet, 0)
    downlink.sample_rates(1.0)
    await pc.close()
    assert track.temporal_layers
    frame_octets = sum(len(packet.payload) for packet in frames[1])
    assert track.base_octets == 10 * frame_octets  # the keyframe and every fourth frame
    assert downlink.rate_bps > 0
    assert 0.2 < downlink.base_rate_bps / downlink.rate_bps < 0.3
