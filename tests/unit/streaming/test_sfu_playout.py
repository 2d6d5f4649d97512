"""The playout delay a subscriber is told (streaming/sfu/playout.py): how it is sized from
the path's repairs, how it moves, the bytes a Downlink writes for it, and the upstream repair
times a published track measures."""

from __future__ import annotations

import asyncio

from aiortc import RTCPeerConnection
from aiortc.rtcrtpparameters import RTCRtpCodecParameters
from aiortc.rtp import RtpPacket, unpack_header_extensions

from streaming.sfu.downlink import PLAYOUT_RESET_S, Downlink
from streaming.sfu.playout import (
    PLAYOUT_DELAY_MAX_UNITS,
    PlayoutDelay,
    PlayoutPolicy,
    RepairTimes,
)
from streaming.sfu.track import PublishedTrack
from tests.integration.streaming.test_sfu_logic import FakeSink
from tests.unit.streaming.test_sfu_downlink_bandwidth import (
    ABS_SEND_TIME_ID,
    KEYFRAME,
    downlink_with_source,
    extensions_map,
)

PLAYOUT_DELAY_ID = 6
# margin 30 ms, cap 500 ms, 10 s memory; up at most every second, down every 3 s
POLICY = PlayoutPolicy()


def lossy(
    delay: PlayoutDelay, now: float, repaired: int, *, repair_ms: int | None, rtt_ms: float
) -> int | None:
    return delay.update(
        now,
        repaired_upstream=repaired,
        lost_downstream=0,
        upstream_repair_ms=repair_ms,
        rtt_ms=rtt_ms,
    )


def test_a_clean_path_keeps_no_playout_delay() -> None:
    delay = PlayoutDelay(POLICY)
    for second in range(30):
        assert delay.update(
            float(second), repaired_upstream=0, lost_downstream=0, upstream_repair_ms=None,
            rtt_ms=170.0,
        ) is None  # fmt: skip
    assert delay.min_ms == 0


def test_repairs_upstream_ask_for_their_time_plus_the_subscriber_round_trip_at_once() -> None:
    delay = PlayoutDelay(POLICY)
    assert lossy(delay, 0.0, 0, repair_ms=None, rtt_ms=170.0) is None  # the baseline
    # 210 ms upstream repair + 171 ms round trip + 30 ms margin, up to the next 10 ms unit
    assert lossy(delay, 1.0, 3, repair_ms=210, rtt_ms=171.0) == 420
    assert delay.min_ms == 420


def test_loss_on_the_subscriber_leg_alone_asks_for_its_round_trip() -> None:
    delay = PlayoutDelay(POLICY)
    delay.update(0.0, repaired_upstream=0, lost_downstream=0, upstream_repair_ms=None, rtt_ms=170)
    changed = delay.update(
        1.0, repaired_upstream=0, lost_downstream=2, upstream_repair_ms=None, rtt_ms=170.0
    )
    assert changed == 200


def test_the_delay_is_capped() -> None:
    delay = PlayoutDelay(POLICY)
    lossy(delay, 0.0, 0, repair_ms=None, rtt_ms=300.0)
    assert lossy(delay, 1.0, 5, repair_ms=900, rtt_ms=300.0) == 500
    assert delay.target_ms == 500


def test_it_drops_back_to_zero_once_the_path_is_clean_for_a_while() -> None:
    delay = PlayoutDelay(POLICY)
    lossy(delay, 0.0, 0, repair_ms=None, rtt_ms=170.0)
    assert lossy(delay, 1.0, 4, repair_ms=200, rtt_ms=170.0) == 400
    # no new repair after t=1: its time stays the recent figure for the window (10 s), the
    # delay stays for the loss memory (10 s) and then goes back to 0
    for second in range(2, 12):
        recent = 200 if second <= 11 else None
        assert lossy(delay, float(second), 4, repair_ms=recent, rtt_ms=170.0) is None
        assert delay.min_ms == 400
    assert lossy(delay, 12.0, 4, repair_ms=None, rtt_ms=170.0) == 0
    assert delay.min_ms == 0


def test_it_moves_gently_while_repairs_go_on() -> None:
    delay = PlayoutDelay(POLICY)
    lossy(delay, 0.0, 0, repair_ms=None, rtt_ms=170.0)
    assert lossy(delay, 1.0, 1, repair_ms=200, rtt_ms=170.0) == 400
    # a wobble of the figures inside the dead band: no change
    assert lossy(delay, 5.0, 2, repair_ms=215, rtt_ms=170.0) is None
    # a real rise, but half a second after the last change: wait; a second after, rise
    delay2 = PlayoutDelay(POLICY)
    lossy(delay2, 0.0, 0, repair_ms=None, rtt_ms=170.0)
    lossy(delay2, 1.0, 1, repair_ms=200, rtt_ms=170.0)
    assert lossy(delay2, 1.5, 2, repair_ms=260, rtt_ms=170.0) is None
    assert lossy(delay2, 2.0, 3, repair_ms=260, rtt_ms=170.0) == 460
    # and down again when the repairs get faster, more gently: 3 s after the last change
    assert lossy(delay2, 4.0, 4, repair_ms=100, rtt_ms=170.0) is None
    assert lossy(delay2, 5.0, 5, repair_ms=100, rtt_ms=170.0) == 300


def test_nothing_is_judged_before_the_subscribers_first_receiver_report() -> None:
    delay = PlayoutDelay(POLICY)
    # a joining subscriber NACKs what came before its first picture, before any report
    for second, lost in ((0.0, 0), (1.0, 3)):
        changed = delay.update(
            second, repaired_upstream=0, lost_downstream=lost, upstream_repair_ms=None,
            rtt_ms=None,
        )  # fmt: skip
        assert changed is None
    assert lossy(delay, 2.0, 0, repair_ms=None, rtt_ms=2.0) is None  # the baseline is now
    assert delay.min_ms == 0


def test_another_source_with_its_own_repair_count_is_no_news_of_loss() -> None:
    delay = PlayoutDelay(POLICY)
    lossy(delay, 0.0, 0, repair_ms=None, rtt_ms=20.0)
    delay.new_source()  # a meeting's next speaker, whose track repaired 37 packets long ago
    assert lossy(delay, 1.0, 37, repair_ms=None, rtt_ms=20.0) is None
    assert lossy(delay, 2.0, 38, repair_ms=40, rtt_ms=20.0) == 90  # a repair since: news


def test_repair_times_quantile_covers_the_recent_window_only() -> None:
    times = RepairTimes()
    assert times.percentile(10_000, window_ms=10_000) is None
    for index in range(10):
        times.add(1_000 + index, 100 + 10 * index)  # 100 ... 190 ms, long ago
    for index in range(10):
        times.add(20_000 + index, 200 + 10 * index)  # 200 ... 290 ms, just now
    assert times.percentile(21_000, window_ms=10_000) == 290
    assert times.percentile(21_000, window_ms=10_000, share=0.5) == 250
    assert times.percentile(40_000, window_ms=10_000) is None


def playout_elements(data: bytes) -> tuple[dict[int, bytes], bytes]:
    """The header extension elements of an RTP packet (id -> value) and its payload."""
    assert data[0] & 0x10, "the X bit is set"
    profile = int.from_bytes(data[12:14], "big")
    words = int.from_bytes(data[14:16], "big")
    elements = dict(unpack_header_extensions(profile, data[16 : 16 + 4 * words]))
    parsed = RtpPacket.parse(data, extensions_map())
    return elements, parsed.payload


def delay_value(value: bytes) -> tuple[int, int]:
    raw = int.from_bytes(value, "big")
    return (raw >> 12) * 10, raw & 0xFFF


async def lossy_downlink(
    abs_send_time_id: int | None,
) -> tuple[Downlink, FakeSink, RTCPeerConnection, PublishedTrack]:
    downlink, sink, pc, track = await downlink_with_source(
        abs_send_time_id=abs_send_time_id, playout_delay_id=PLAYOUT_DELAY_ID
    )
    downlink.rtt_ms = 170.0  # as from the subscriber's receiver reports
    assert downlink.update_playout_delay(0.0, 0) is None  # the baseline: nothing repaired yet
    track.repair_times.add(900, 240)
    track.nack_repaired += 1
    assert downlink.update_playout_delay(1.0, 1_000) == 440  # 240 + 170 + 30
    return downlink, sink, pc, track


async def test_forwarded_video_tells_the_playout_delay_next_to_abs_send_time() -> None:
    downlink, sink, pc, _track = await lossy_downlink(ABS_SEND_TIME_ID)
    downlink.forward(RtpPacket(payload_type=96, sequence_number=10, payload=KEYFRAME), True, 0)
    await pc.close()
    elements, payload = playout_elements(sink.sent[0])
    assert set(elements) == {ABS_SEND_TIME_ID, PLAYOUT_DELAY_ID}
    assert len(elements[ABS_SEND_TIME_ID]) == 3
    assert delay_value(elements[PLAYOUT_DELAY_ID]) == (440, PLAYOUT_DELAY_MAX_UNITS)
    assert payload == KEYFRAME
    parsed = RtpPacket.parse(sink.sent[0], extensions_map())
    assert parsed.extensions.abs_send_time is not None and parsed.ssrc == 4242


async def test_forwarded_video_tells_the_playout_delay_alone() -> None:
    downlink, sink, pc, _track = await lossy_downlink(None)
    downlink.forward(RtpPacket(payload_type=96, sequence_number=10, payload=KEYFRAME), True, 0)
    await pc.close()
    elements, payload = playout_elements(sink.sent[0])
    assert set(elements) == {PLAYOUT_DELAY_ID}
    assert delay_value(elements[PLAYOUT_DELAY_ID]) == (440, PLAYOUT_DELAY_MAX_UNITS)
    assert payload == KEYFRAME


async def test_back_on_a_clean_path_the_packets_say_zero_then_leave_the_extension_out() -> None:
    fresh, fresh_sink, fresh_pc, _fresh_track = await downlink_with_source(
        abs_send_time_id=None, playout_delay_id=PLAYOUT_DELAY_ID
    )
    packet = RtpPacket(payload_type=96, sequence_number=10, payload=KEYFRAME)
    fresh.forward(packet, True, 0)
    await fresh_pc.close()
    assert fresh_sink.sent[-1][0] == 0x80, "nothing to say before any repair"
    downlink, sink, pc, _track = await lossy_downlink(None)
    downlink.forward(packet, True, 0)
    clean_at = 1.0 + POLICY.loss_memory_s + 1  # nothing repaired since t=1
    assert downlink.update_playout_delay(clean_at, 20_000) == 0
    downlink.forward(packet, False, 0)
    elements, _payload = playout_elements(sink.sent[-1])
    # the receiver keeps what it was told last: min 0 and its default max, for a while
    assert delay_value(elements[PLAYOUT_DELAY_ID]) == (0, PLAYOUT_DELAY_MAX_UNITS)
    downlink.update_playout_delay(clean_at + PLAYOUT_RESET_S, 25_000)
    downlink.forward(packet, False, 0)
    await pc.close()
    assert sink.sent[-1][0] == 0x80


async def test_audio_and_unnegotiated_video_have_no_playout_delay() -> None:
    audio, _sink, pc, _track = await downlink_with_source(
        kind="audio", playout_delay_id=PLAYOUT_DELAY_ID
    )
    video, _sink2, pc2, _track2 = await downlink_with_source(playout_delay_id=None)
    await pc.close()
    await pc2.close()
    assert audio.playout is None and video.playout is None
    assert audio.update_playout_delay(1.0, 1_000) is None and video.playout_delay_ms == 0


async def test_a_published_track_times_its_upstream_repairs() -> None:
    _downlink, _sink, pc, track = await downlink_with_source()
    track._receiver.codecs[96] = RTCRtpCodecParameters(
        mimeType="video/VP8", clockRate=90000, payloadType=96
    )
    for seq, at in ((1, 1_000), (2, 1_050), (5, 1_100), (6, 1_150), (3, 1_300), (4, 1_420)):
        track._on_rtp(
            RtpPacket(payload_type=96, sequence_number=seq, ssrc=9, payload=b"\x90\x80" + bytes(8)),
            at,
        )
    await asyncio.sleep(0)  # the NACK to the (unconnected) publisher goes nowhere
    await pc.close()
    # 3 and 4 were found missing at 1 100 ms (when 5 came) and arrived 200 and 320 ms later
    assert track.nack_repaired == 2
    assert track.upstream_repair_ms(1_500, 10_000) == 320
    assert track.repair_times.percentile(1_500, window_ms=10_000, share=0.0) == 200
    assert track.upstream_repair_ms(30_000, 10_000) is None
