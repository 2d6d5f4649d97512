"""The SFU's pure parts: rewriting, caches, keyframe detection, routing, protection, timecode.

(No network; these would sit in tests/unit/streaming once that folder exists.)
"""

from __future__ import annotations

import asyncio
import struct
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from aiortc.rtp import RtpPacket

from streaming.sfu.cache import PacketCache
from streaming.sfu.downlink import Downlink
from streaming.sfu.keyframes import KeyframeRequester
from streaming.sfu.layout import media_layout
from streaming.sfu.packets import vp8_keyframe_start
from streaming.sfu.protection import AUDIO_ONLY, FULL, PRIMARY_VIDEO_ONLY, LossProtection
from streaming.sfu.routing import ParticipantView, RoomView, assign_slots
from streaming.sfu.speakers import SpeakerDetector
from streaming.timecode import draw_timecode, read_timecode

KEYFRAME = bytes([0x90, 0x80, 0x05, 0x10]) + b"\x00" * 20  # X,S; I; picture id 5; P=0
DELTA = bytes([0x90, 0x80, 0x06, 0x11]) + b"\x00" * 20  # P=1
CONTINUATION = bytes([0x80, 0x80, 0x06, 0x10]) + b"\x00" * 20  # S=0


def test_vp8_keyframe_detection():
    assert vp8_keyframe_start(KEYFRAME)
    assert not vp8_keyframe_start(DELTA)
    assert not vp8_keyframe_start(CONTINUATION)
    assert not vp8_keyframe_start(b"")
    assert not vp8_keyframe_start(b"\x90")
    assert vp8_keyframe_start(bytes([0x10, 0x00]))  # no extension


def packet(seq: int, ts: int, payload: bytes = DELTA, marker: int = 0) -> RtpPacket:
    return RtpPacket(
        payload_type=96,
        marker=marker,
        sequence_number=seq,
        timestamp=ts,
        ssrc=1234,
        payload=payload,
    )


def test_packet_cache_overwrites_in_place():
    cache = PacketCache(8)
    for seq in range(65530, 65546):
        cache.put(packet(seq & 0xFFFF, 0))
    assert cache.get(65530) is None  # overwritten
    cached = cache.get(9)
    assert cached is not None and cached.sequence_number == 9
    with pytest.raises(ValueError):
        PacketCache(12)


class FakeSink:
    def __init__(self) -> None:
        self.sent: list[bytes] = []

    def send(self, data: bytes) -> None:
        self.sent.append(data)

    def ready(self) -> bool:
        return True


class FakeTrack:
    """A published track's surface as a downlink sees it; ``gop_start_seq`` set means the
    cache holds a GOP from that keyframe on."""

    def __init__(self, gop_start_seq: int | None = None) -> None:
        self.downlinks: list[Downlink] = []
        self.cache = PacketCache(64)
        self.keyframe_requests = 0
        self.gop_start_seq = gop_start_seq
        self.newest_seq: int | None = None
        self.last_arrival_ms = 0

    def receive(self, packet: RtpPacket, arrival_ms: int) -> None:
        """What ``PublishedTrack`` does with a packet before fanning it out."""
        self.cache.put(packet)
        self.newest_seq, self.last_arrival_ms = packet.sequence_number, arrival_ms

    def request_keyframe(self) -> None:
        self.keyframe_requests += 1

    def gop_fresh(self) -> bool:
        return self.gop_start_seq is not None

    def gop_span(self, sequence_number: int) -> int | None:
        if self.gop_start_seq is None:
            return None
        return (sequence_number - self.gop_start_seq) & 0xFFFF


def header(data: bytes) -> tuple[int, int, int, int]:
    _, pt, seq, ts, ssrc = struct.unpack("!BBHII", data[:12])
    return pt, seq, ts, ssrc


async def test_downlink_gates_on_keyframes_and_stays_continuous_across_sources():
    sender: Any = SimpleNamespace(_ssrc=777)
    downlink = Downlink(kind="video", slot="lead_camera", sender=sender, on_report=print)
    sink = FakeSink()
    first, second = FakeTrack(), FakeTrack()
    downlink.assign(first)  # type: ignore[arg-type]
    downlink.connect(sink=sink, payload_type=97)  # type: ignore[arg-type]
    assert first.keyframe_requests == 1

    downlink.forward(packet(100, 9000), False, 1000)
    assert sink.sent == [], "video waits for a keyframe"
    downlink.forward(packet(101, 12000, KEYFRAME), True, 1033)
    downlink.forward(packet(102, 12000, CONTINUATION, marker=1), False, 1033)
    (pt, s1, t1, ssrc), (_, s2, t2, _) = map(header, sink.sent)
    assert (pt, ssrc, s2, t2) == (97, 777, (s1 + 1) & 0xFFFF, t1)

    # the publisher reconnects with a new SSRC and fresh numbering
    downlink.assign(second)  # type: ignore[arg-type]
    assert second.keyframe_requests == 1
    downlink.forward(packet(5000, 1, DELTA), False, 1500)
    downlink.forward(packet(5001, 3001, KEYFRAME), True, 1533)
    _, s3, t3, ssrc3 = header(sink.sent[-1])
    assert ssrc3 == 777
    assert s3 == (s2 + 1) & 0xFFFF
    assert t3 == (t2 + 500 * 90) & 0xFFFFFFFF  # 500 ms later on the 90 kHz clock

    # NACK answered from the track's cache, with the subscriber's numbering
    second.cache.put(packet(5001, 3001, KEYFRAME))
    assert downlink._resend(s3)
    assert header(sink.sent[-1])[1:3] == (s3, t3)
    assert not downlink._resend(s2), "sent before the switch: not resendable"


def test_late_downlink_replays_the_cached_gop_then_continues_live():
    sender: Any = SimpleNamespace(_ssrc=778)
    downlink = Downlink(kind="video", slot="lead_camera", sender=sender, on_report=print)
    sink = FakeSink()
    track = FakeTrack(gop_start_seq=200)
    track.cache.put(packet(200, 3000, KEYFRAME))
    track.cache.put(packet(201, 3000, CONTINUATION, marker=1))
    track.cache.put(packet(203, 6000, DELTA, marker=1))  # 202 never arrived
    track.cache.put(packet(204, 9000, DELTA, marker=1))
    downlink.assign(track)  # type: ignore[arg-type]
    downlink.connect(sink=sink, payload_type=97)  # type: ignore[arg-type]

    downlink.forward(packet(204, 9000, DELTA, marker=1), False, 2000)
    downlink.forward(packet(205, 12000, DELTA, marker=1), False, 2033)
    headers = [header(data) for data in sink.sent]
    assert track.keyframe_requests == 0 and downlink.gop_bursts == 1
    assert [data[12:] for data in sink.sent[:2]] == [KEYFRAME, CONTINUATION]
    first_seq, first_ts = headers[0][1], headers[0][2]
    # 200, 201, 203, 204 from the cache, 205 live: one numbering, the hole where 202 was
    assert [(seq - first_seq) & 0xFFFF for _, seq, _, _ in headers] == [0, 1, 3, 4, 5]
    assert [(ts - first_ts) & 0xFFFFFFFF for _, _, ts, _ in headers] == [0, 0, 3000, 6000, 9000]
    assert {ssrc for *_, ssrc in headers} == {778}
    track.cache.put(packet(202, 6000, DELTA))  # the publisher's retransmission
    assert downlink._resend((first_seq + 2) & 0xFFFF), "the hole is NACKed and resent"


class LateSink(FakeSink):
    """A subscriber whose ICE and DTLS are not up yet."""

    def __init__(self) -> None:
        super().__init__()
        self.up = False

    def ready(self) -> bool:
        return self.up


def _video_downlink(ssrc: int, track: FakeTrack, sink: FakeSink) -> Downlink:
    sender: Any = SimpleNamespace(_ssrc=ssrc)
    downlink = Downlink(kind="video", slot="lead_camera", sender=sender, on_report=print)
    downlink.assign(track)  # type: ignore[arg-type]
    downlink.connect(sink=sink, payload_type=97)  # type: ignore[arg-type]
    return downlink


def test_a_joiner_gets_the_cached_gop_as_soon_as_its_dtls_is_up():
    """Without waiting for the publisher's next packet (up to a frame interval later), and
    the live packets that follow carry on the same numbering."""
    sink = LateSink()
    track = FakeTrack(gop_start_seq=400)
    downlink = _video_downlink(780, track, sink)
    for seq, ts, payload in ((400, 3000, KEYFRAME), (401, 3000, CONTINUATION), (402, 6000, DELTA)):
        track.receive(packet(seq, ts, payload, marker=1), 1000)
        downlink.forward(packet(seq, ts, payload, marker=1), payload is KEYFRAME, 1000)
    downlink.transport_ready()
    assert sink.sent == [], "nothing leaves before DTLS is up"

    sink.up = True
    downlink.transport_ready()
    assert [data[12:] for data in sink.sent] == [KEYFRAME, CONTINUATION, DELTA]
    assert downlink.gop_bursts == 1 and track.keyframe_requests == 0
    assert downlink.started_at_connect
    downlink.transport_ready()
    assert len(sink.sent) == 3, "started once: a second signal replays nothing"
    downlink.forward(packet(403, 9000, DELTA, marker=1), False, 1033)
    seqs = [header(data)[1] for data in sink.sent]
    assert [(seq - seqs[0]) & 0xFFFF for seq in seqs] == [0, 1, 2, 3]


def test_a_joiner_whose_dtls_is_up_asks_for_a_keyframe_when_nothing_is_cached():
    sink = FakeSink()
    track = FakeTrack()  # no keyframe seen yet
    downlink = _video_downlink(781, track, sink)
    track.receive(packet(500, 1, DELTA), 1000)
    downlink.transport_ready()
    assert sink.sent == [] and track.keyframe_requests == 2, "asked on connect and once ready"


def test_downlink_asks_for_a_keyframe_when_there_is_no_cached_gop():
    sender: Any = SimpleNamespace(_ssrc=779)
    downlink = Downlink(kind="video", slot="lead_camera", sender=sender, on_report=print)
    sink = FakeSink()
    track = FakeTrack()
    downlink.assign(track)  # type: ignore[arg-type]
    downlink.connect(sink=sink, payload_type=97)  # type: ignore[arg-type]
    assert track.keyframe_requests == 1, "asked early, while ICE and DTLS finish"
    downlink.forward(packet(300, 1, DELTA), False, 1000)
    downlink.forward(packet(301, 1, DELTA), False, 1010)
    assert sink.sent == [] and track.keyframe_requests == 2, "asked once more, once ready"


async def test_keyframe_requests_are_rate_limited_but_not_lost():
    now = [0.0]
    sent: list[float] = []
    requester = KeyframeRequester(
        lambda: sent.append(now[0]), min_interval_s=0.2, clock=lambda: now[0]
    )
    requester.request()
    requester.request()
    requester.request()
    assert len(sent) == 1
    await asyncio.sleep(0.3)
    now[0] = 0.3
    assert len(sent) == 2, "the deferred request fires at the end of the interval"
    requester.cancel()


def test_loss_protection_pauses_video_before_audio_and_recovers():
    now = [0.0]
    protection = LossProtection(clock=lambda: now[0])
    heavy, severe = int(0.3 * 256), int(0.9 * 256)
    steady = LossProtection(clock=lambda: now[0])
    assert steady.on_report(heavy) == PRIMARY_VIDEO_ONLY
    for _ in range(5):
        now[0] += 2
        assert steady.on_report(heavy) is None  # NACK still repairs the main picture
    assert protection.on_report(severe) == PRIMARY_VIDEO_ONLY
    now[0] += 1
    assert protection.on_report(severe) is None  # one step per interval
    now[0] += 2
    assert protection.on_report(severe) == AUDIO_ONLY
    now[0] += 2
    assert protection.on_report(severe) is None  # audio is never paused
    levels = []
    for _ in range(30):
        now[0] += 1
        levels.append(protection.on_report(0))
    assert [level for level in levels if level is not None] == [PRIMARY_VIDEO_ONLY, FULL]


def test_loss_protection_at_audio_only_recovers_on_audio_reports_alone():
    """At audio only no video is sent, so no video loss is measured: its last bad sample
    must not hold the level for good (an overfilled link's tail drop had held one there)."""
    now = [0.0]
    protection = LossProtection(clock=lambda: now[0])
    severe = int(0.8 * 256)
    assert protection.on_report(severe, "video") == PRIMARY_VIDEO_ONLY
    now[0] += 2
    assert protection.on_report(severe, "video") == AUDIO_ONLY
    levels = []
    for _ in range(10):
        now[0] += 1
        levels.append(protection.on_report(0, "audio"))
    assert [level for level in levels if level is not None] == [PRIMARY_VIDEO_ONLY]


def test_video_loss_caused_by_a_failed_probe_is_excused_for_a_while():
    now = [0.0]
    protection = LossProtection(clock=lambda: now[0])
    severe = int(0.7 * 256)
    assert protection.on_report(severe, "video") == PRIMARY_VIDEO_ONLY
    protection.excuse_video_loss(8.0, loss=0.02)
    assert protection.loss == 0.02
    for _ in range(3):  # the probe's late NACKs
        now[0] += 2.5
        assert protection.on_report(severe, "video") is None
    assert protection.level == PRIMARY_VIDEO_ONLY and protection.loss == 0.02
    now[0] += 1  # 8.5 s: the excuse is over, loss is the link's again
    protection.on_report(severe, "video")
    assert protection.loss > 0.3


def view(*participants: tuple[str, str, set[str]], hands=(), speakers=(), inspect=None):
    return RoomView(
        participants=[
            ParticipantView(
                pid,
                role,  # type: ignore[arg-type]
                frozenset(sources),
                tuple(
                    line.name
                    for line in media_layout(
                        role,  # type: ignore[arg-type]
                        room_kind="meeting" if role == "meeting" else "lesson",
                    )
                    if line.direction == "recv"
                ),
            )
            for pid, role, sources in participants
        ],
        accepted_hands=list(hands),
        speaker_order=list(speakers),
        inspect_requests=inspect or {},
    )


def test_routing_follows_roles_and_hands():
    both = {"mic", "camera"}
    lesson = [
        ("lead", "lead", both),
        ("a", "remote", both),
        ("b", "remote", both),
        ("boss", "inspector", set()),
    ]
    held = assign_slots(view(*lesson), {})
    assert held["a"]["lead_camera"] == ("lead", "camera")
    assert held["lead"]["remote_video_0"] == ("a", "camera")
    assert held["lead"]["remote_video_1"] == ("b", "camera")
    assert held["lead"]["hand_audio_0"] is None, "remote audio is held back"
    assert held["boss"]["lead_audio"] == ("lead", "mic")
    assert all(key is None or key[0] != "boss" for a in held.values() for key in a.values())

    accepted = assign_slots(view(*lesson, hands=["a"], inspect={"boss": "b"}), held)
    assert accepted["lead"]["hand_audio_0"] == ("a", "mic")
    assert accepted["b"]["hand_audio_0"] == ("a", "mic")
    assert accepted["a"]["hand_audio_0"] is None, "no echo of one's own voice"
    assert accepted["boss"]["inspect_video"] == ("b", "camera")


def test_meeting_slots_follow_speakers_and_stay_put():
    both = {"mic", "camera"}
    people = [(name, "meeting", both) for name in "abcdef"]
    first = assign_slots(view(*people, speakers=["b", "c"]), {})
    tiles = {slot: key for slot, key in first["a"].items() if slot.startswith("speaker_video")}
    assert set(tiles.values()) == {
        ("b", "camera"),
        ("c", "camera"),
        ("d", "camera"),
        ("e", "camera"),
    }
    later = assign_slots(view(*people, speakers=["f", "b", "c"]), first)
    moved = {slot: key for slot, key in later["a"].items() if slot.startswith("speaker_video")}
    assert ("f", "camera") in moved.values()
    for slot, key in moved.items():
        assert key == tiles[slot] or key == ("f", "camera")


def test_speaker_detection_needs_a_clear_margin():
    detector = SpeakerDetector()
    for pid in "ab":
        detector.add_participant(pid)
    for _ in range(25):
        detector.add_level("a", 10)
        detector.add_level("b", 127)
    assert detector.evaluate() == "a"
    for _ in range(25):
        detector.add_level("a", 10)
        detector.add_level("b", 10)
    assert detector.evaluate() is None, "a tie keeps the current speaker"
    for _ in range(25):
        detector.add_level("a", 127)
        detector.add_level("b", 20)
    assert detector.evaluate() == "b"
    assert detector.order == ["b", "a"]


def test_timecode_survives_mild_noise_and_rejects_garbage():
    luma = np.full((180, 320), 100, dtype=np.uint8)
    draw_timecode(luma, 1_763_900_000_123)
    noisy = np.clip(
        luma.astype(np.int16) + np.random.default_rng(1).integers(-30, 30, luma.shape), 0, 255
    ).astype(np.uint8)
    assert read_timecode(noisy) == 1_763_900_000_123
    assert read_timecode(np.full((180, 320), 100, dtype=np.uint8)) is None


def test_loss_samples_are_judged_by_what_they_show_with_confidence():
    from streaming.sfu.downlink import loss_lower_bound

    # 5 % loss: even an unlucky 50-packet sample (8 lost) stays near the 10 % threshold
    assert loss_lower_bound(5, 50) < 0.07
    assert loss_lower_bound(8, 50) < 0.11
    # 30 % loss shows as more than 20 % from one sample; no loss is no loss
    assert loss_lower_bound(15, 50) > 0.2
    assert loss_lower_bound(0, 50) == 0.0
    assert loss_lower_bound(0, 0) == 0.0
    # more packets, tighter bound
    assert loss_lower_bound(50, 500) > loss_lower_bound(5, 50)


def test_receiver_reports_are_sampled_over_enough_packets():
    sender: Any = SimpleNamespace(_ssrc=780)
    downlink = Downlink(kind="audio", slot="lead_audio", sender=sender, on_report=print)
    assert downlink._report_loss_sample(1000, 0) is None  # the first report sets the base
    assert downlink._report_loss_sample(1030, 4) is None  # 30 packets: too few to judge
    # 60 packets with 6 lost (10 %): judged by what that shows with confidence, not 10 %
    sample = downlink._report_loss_sample(1060, 6)
    assert sample is not None and sample < 0.07 * 256
    # 100 more with 30 lost: clearly a lossy leg
    sample = downlink._report_loss_sample(1160, 36)
    assert sample is not None and sample > 0.2 * 256
