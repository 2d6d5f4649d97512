"""Temporal-layer thinning of VP8 (streaming/sfu/temporal.py) through a real Downlink: what a
weak subscriber receives must stay a whole stream (no gaps in sequence numbers or picture IDs),
and NACKs must still be answered with the numbers it was sent.

(Pure: no network. The Chromium case is in tests/e2e/test_webrtc_lesson.py.)
"""

from __future__ import annotations

import itertools
from types import SimpleNamespace
from typing import Any

from aiortc.rtp import RtpPacket

from streaming.sfu.cache import PacketCache
from streaming.sfu.downlink import Downlink
from streaming.sfu.packets import vp8_has_temporal_layers, vp8_temporal_layer
from streaming.sfu.protection import (
    BASE_LAYER_ONLY,
    FULL,
    PRIMARY_VIDEO_ONLY,
    LossProtection,
)
from streaming.sfu.temporal import ALL_LAYERS, BASE_LAYER, TemporalFilter, shift_picture_id
from tests.integration.streaming.test_sfu_logic import FakeSink, FakeTrack, header

# L1T3 as libvpx/Chromium send it: layers 0, 2, 1, 2 repeating
PATTERN = (0, 2, 1, 2)
PACKETS_PER_FRAME = 2
FRAME_TICKS = 3000  # 30 fps on the 90 kHz clock


def vp8(picture_id: int, layer: int, *, start: bool, keyframe: bool, sync: bool) -> bytes:
    """A VP8 RTP payload (RFC 7741) with X, I (15-bit picture ID), L and T set."""
    first = 0x80 | (0x10 if start else 0)
    descriptor = bytes(
        [
            first,
            0xE0,  # I, L, T
            0x80 | (picture_id >> 8) & 0x7F,
            picture_id & 0xFF,
            7,  # TL0PICIDX (unused by the filter)
            (layer << 6) | (0x20 if sync else 0),
        ]
    )
    vp8_header = bytes([0x00 if keyframe else 0x01]) if start else b"\x00"
    return descriptor + vp8_header + b"\x00" * 40


class Stream:
    """A publisher's L1T3 stream: ``frame()`` returns the packets of its next frame."""

    def __init__(self, seq: int = 65500, picture_id: int = 32760, ts: int = 1000) -> None:
        self.seq, self.picture_id, self.ts, self.index = seq, picture_id, ts, 0

    def frame(self, *, keyframe: bool = False, sync: bool = False) -> list[RtpPacket]:
        layer = 0 if keyframe else PATTERN[self.index % len(PATTERN)]
        packets = []
        for part in range(PACKETS_PER_FRAME):
            packets.append(
                RtpPacket(
                    payload_type=96,
                    marker=int(part == PACKETS_PER_FRAME - 1),
                    sequence_number=self.seq & 0xFFFF,
                    timestamp=self.ts & 0xFFFFFFFF,
                    ssrc=1234,
                    payload=vp8(
                        self.picture_id & 0x7FFF,
                        layer,
                        start=part == 0,
                        keyframe=keyframe,
                        sync=sync,
                    ),
                )
            )
            self.seq += 1
        self.picture_id += 1
        self.ts += FRAME_TICKS
        self.index += 1
        return packets


def consecutive(values: list[int], mask: int) -> bool:
    """Each value one more than the one before, modulo ``mask + 1``."""
    return all((b - a) & mask == 1 for a, b in itertools.pairwise(values))


def assert_whole_stream(sink: FakeSink) -> None:
    """What the subscriber got has no gaps: in sequence numbers (it would NACK what was
    dropped on purpose) nor in picture IDs (Chromium waits on a gap before decoding)."""
    seqs = [header(data)[1] for data in sink.sent]
    assert consecutive(seqs, 0xFFFF), seqs
    ids = [picture_id(data[12:]) for data in sink.sent[::PACKETS_PER_FRAME]]
    assert consecutive(ids, 0x7FFF), ids


def picture_id(payload: bytes) -> int:
    return ((payload[2] & 0x7F) << 8) | payload[3]


def subscriber() -> tuple[Downlink, FakeSink, FakeTrack]:
    sender: Any = SimpleNamespace(_ssrc=900)
    downlink = Downlink(kind="video", slot="lead_camera", sender=sender, on_report=print)
    sink = FakeSink()
    track = FakeTrack()
    track.cache = PacketCache(1024)
    downlink.assign(track)  # type: ignore[arg-type]
    downlink.connect(sink=sink, payload_type=97)  # type: ignore[arg-type]
    return downlink, sink, track


def send(downlink: Downlink, track: FakeTrack, packets: list[RtpPacket], now: int = 0) -> None:
    for index, rtp in enumerate(packets):
        track.cache.put(rtp)
        keyframe = index == 0 and not rtp.payload[6] & 0x01
        downlink.forward(rtp, keyframe, now)


def test_vp8_layer_parsing():
    payload = vp8(300, 2, start=True, keyframe=False, sync=True)
    assert vp8_temporal_layer(payload) == (2, True)
    assert vp8_has_temporal_layers(payload)
    assert vp8_temporal_layer(bytes([0x90, 0x80, 0x05, 0x10])) == (-1, False)  # no T
    assert vp8_temporal_layer(b"\x80") == (-1, False)
    assert vp8_temporal_layer(bytes([0x80, 0x20])) == (-1, False)  # truncated
    assert picture_id(shift_picture_id(payload, 301)) == 0x7FFF  # wraps in 15 bits
    short = bytes([0x90, 0x80, 0x03, 0x10])  # 7-bit picture ID
    assert shift_picture_id(short, 5)[2] == (3 - 5) & 0x7F


def thinned(frames: int) -> tuple[Downlink, FakeSink, FakeTrack, Stream]:
    """A subscriber limited to layer 0 right after a keyframe, then sent ``frames`` frames."""
    downlink, sink, track = subscriber()
    stream = Stream()
    send(downlink, track, stream.frame(keyframe=True))
    downlink.set_temporal_target(BASE_LAYER)
    for _ in range(frames):
        send(downlink, track, stream.frame())
    return downlink, sink, track, stream


def test_base_layer_only_is_a_whole_stream():
    downlink, sink, _, _ = thinned(40)
    sent = [header(data) for data in sink.sent]
    layers = [vp8_temporal_layer(data[12:])[0] for data in sink.sent]
    assert set(layers[PACKETS_PER_FRAME * 4 :]) == {0}, "only layer 0 once the switch is done"
    assert_whole_stream(sink)
    assert downlink.frames_thinned >= 28
    # timestamps keep their real spacing (4 frames apart now)
    stamps = [ts for _, _, ts, _ in sent[PACKETS_PER_FRAME * 4 :: PACKETS_PER_FRAME]]
    assert {(b - a) & 0xFFFFFFFF for a, b in itertools.pairwise(stamps)} == {4 * FRAME_TICKS}


def test_nacks_and_late_retransmissions_keep_their_numbers():
    downlink, sink, track = subscriber()
    stream = Stream()
    send(downlink, track, stream.frame(keyframe=True))
    downlink.set_temporal_target(BASE_LAYER)
    frames = [stream.frame() for _ in range(12)]
    late = frames[3][1]  # second packet of a layer-0 frame, "lost" upstream for now
    for packets in frames:
        send(downlink, track, [p for p in packets if p is not late])
    before = len(sink.sent)
    sent_seqs = [header(data)[1] for data in sink.sent]
    # the publisher's retransmission arrives after later frames were dropped
    send(downlink, track, [late])
    assert len(sink.sent) == before + 1
    _, late_seq, _, _ = header(sink.sent[-1])
    assert late_seq not in sent_seqs, "the late packet takes the number left free for it"
    first_half = sink.sent[sent_seqs.index((late_seq - 1) & 0xFFFF)]
    assert picture_id(sink.sent[-1][12:]) == picture_id(first_half[12:]), "same frame"
    # the hole is exactly one number between its frame's first packet and the next frame
    ordered = sorted({*sent_seqs, late_seq})
    assert consecutive(ordered, 0xFFFF)
    # a NACK for a thinned packet resends it under the same number and picture ID
    target = sink.sent[5]
    assert downlink._resend(header(target)[1])
    assert sink.sent[-1][2:4] == target[2:4] and sink.sent[-1][12:] == target[12:]


def test_layers_come_back_only_where_the_subscriber_can_decode():
    downlink, sink, track, stream = thinned(8)
    downlink.set_temporal_target(ALL_LAYERS)
    count = len(sink.sent)
    for _ in range(4):
        send(downlink, track, stream.frame())  # no sync frame: still layer 0 only
    assert {vp8_temporal_layer(d[12:])[0] for d in sink.sent[count:]} == {0}
    count = len(sink.sent)
    send(downlink, track, stream.frame(keyframe=True))
    for _ in range(4):
        send(downlink, track, stream.frame())
    assert {vp8_temporal_layer(d[12:])[0] for d in sink.sent[count:]} == {0, 1, 2}
    assert_whole_stream(sink)


def test_a_layer_sync_frame_lets_a_layer_back_in():
    layers = TemporalFilter(BASE_LAYER)
    stream = Stream()
    admitted = [layers.admit(p, False) for p in stream.frame(keyframe=True)]
    layers.target = ALL_LAYERS
    for _ in range(3):
        admitted += [layers.admit(p, False) for p in stream.frame()]
    assert layers.active == BASE_LAYER
    stream.index = 2  # next frame is layer 1, marked layer-sync
    assert all(layers.admit(p, False) for p in stream.frame(sync=True))
    assert layers.active == 1


def test_loss_protection_thins_the_main_video_only_under_heavier_loss():
    now = [0.0]
    layered = [True]
    protection = LossProtection(clock=lambda: now[0], has_layers=lambda: layered[0])
    moderate, heavy = int(0.15 * 256), int(0.4 * 256)
    assert protection.on_report(moderate) is None  # one report is half the evidence
    assert protection.on_report(moderate) == PRIMARY_VIDEO_ONLY
    for _ in range(5):
        now[0] += 2.5
        assert protection.on_report(moderate) is None, "15 %: the main video stays whole"
    assert protection.on_report(heavy) == BASE_LAYER_ONLY
    now[0] += 2.5
    assert protection.on_report(heavy) is None, "40 %: thinned, not paused"
    levels = []
    for _ in range(40):
        now[0] += 1
        levels.append(protection.on_report(0))
    assert [level for level in levels if level is not None] == [PRIMARY_VIDEO_ONLY, FULL]
    layered[0] = False  # no layers to thin: heavy loss stops at the secondary videos
    assert protection.on_report(heavy) == PRIMARY_VIDEO_ONLY
    for _ in range(5):
        now[0] += 2.5
        assert protection.on_report(heavy) is None
