"""One receive slot of a subscriber: a stream rewritten from whichever track feeds the slot."""

from __future__ import annotations

import math
import random
import struct
import time
from collections import deque
from collections.abc import Callable

from aiortc import RTCRtpSender
from aiortc.rtp import (
    RTCP_PSFB_APP,
    RTCP_PSFB_FIR,
    RTCP_PSFB_PLI,
    RTCP_RTPFB_NACK,
    AnyRtcpPacket,
    RtcpPsfbPacket,
    RtcpRrPacket,
    RtcpRtpfbPacket,
    RtcpSrPacket,
    RtpPacket,
    unpack_remb_fci,
)

from streaming.sfu.aiortc_hooks import (
    RtpSink,
    attach_subscriber_rtcp,
    report_round_trip_s,
    update_sender_report,
)
from streaming.sfu.layout import MediaKind
from streaming.sfu.packets import (
    ABS_SEND_TIME_MASK,
    ABS_SEND_TIME_UNITS,
    HALF_SEQ,
    ONE_BYTE_PROFILE,
    RTP_HEADER,
    RTP_HEADER_ONE_EXTENSION,
    RTP_HEADER_TWO_EXTENSIONS,
    RTP_VERSION_BYTE,
    RTP_VERSION_EXTENSION_BYTE,
    SEQ_MASK,
    TS_MASK,
    abs_send_time_word,
    ntp_from_ms,
)
from streaming.sfu.playout import PlayoutDelay, playout_delay_word
from streaming.sfu.temporal import ALL_LAYERS, TemporalFilter
from streaming.sfu.track import PublishedTrack

ReportSink = Callable[["Downlink", int], None]
# a subscriber's receiver-estimated maximum bitrate (REMB): bits/s and the SSRCs it covers
EstimateSink = Callable[[int, tuple[int, ...]], None]
MIN_LOSS_SAMPLE_PACKETS = 50
LOSS_CONFIDENCE_Z = 1.28  # one-sided 90 %
# how many NACKed sequence numbers a downlink remembers to count each lost packet once
MAX_NACKED_SEQS = 1024
RATE_SMOOTHING = 0.5  # weight of the newest send-rate sample
RTT_SMOOTHING = 0.15  # weight of the newest round trip (aiortc's sender uses the same)
# round-trip samples kept for the path's floor (receiver reports come about once a second)
RTT_FLOOR_SAMPLES = 30
# after the playout delay drops back to 0, how long the packets still say so (the receiver
# keeps the last value it was told), before the extension is left out again
PLAYOUT_RESET_S = 5.0
_monotonic = time.monotonic


def loss_lower_bound(lost: int, sent: int, z: float = LOSS_CONFIDENCE_Z) -> float:
    """The loss rate the sample shows with ~90 % confidence (Wilson score lower bound).

    A sample of a few dozen packets is noisy: at 5 % loss, one in eight samples of 50 packets
    shows 16 % or more. Acting on the bound instead of the raw share keeps a link that NACK
    repairs well at full quality, while a lossy link still shows its loss after a sample or
    two."""
    if sent <= 0:
        return 0.0
    share = min(lost / sent, 1.0)
    z2 = z * z
    centre = share + z2 / (2 * sent)
    spread = z * math.sqrt(share * (1 - share) / sent + z2 / (4 * sent * sent))
    return max((centre - spread) / (1 + z2 / sent), 0.0)


class Downlink:
    """Forwards a published track's packets to one subscriber sender.

    Keeps the subscriber's view continuous: its own SSRC, and sequence numbers and timestamps
    that carry on across a change of source (a reconnecting publisher, another speaker), a
    pause, or the start. Video waits for a keyframe after each such change and asks the
    publisher for one.
    """

    __slots__ = (
        "_abs_send_time",
        "_keyframe_asked",
        "_last_arrival_ms",
        "_layers",
        "_layers_from",
        "_nacked_seqs",
        "_on_estimate",
        "_on_report",
        "_playout",
        "_playout_id",
        "_playout_reset_until",
        "_playout_word",
        "_rate_mark",
        "_rebase",
        "_rebase_seq",
        "_report_counts",
        "_rtt_samples",
        "_sampled_nacks",
        "_sampled_packets",
        "_seq_offset",
        "_sink",
        "_ts_offset",
        "base_rate_bps",
        "estimate_bps",
        "forwarded_keyframe_at",
        "gop_bursts",
        "keyframe_requests",
        "kind",
        "last_seq",
        "last_ts",
        "lost_downstream",
        "nacks_answered",
        "nacks_missed",
        "octets",
        "packets",
        "paused",
        "payload_type",
        "rate_bps",
        "rtt_ms",
        "sender",
        "slot",
        "source",
        "ssrc",
        "started",
        "started_at_connect",
    )

    def __init__(
        self,
        *,
        kind: MediaKind,
        slot: str,
        sender: RTCRtpSender,
        on_report: ReportSink,
        on_estimate: EstimateSink | None = None,
    ) -> None:
        self.kind: MediaKind = kind
        self.slot = slot
        self.sender = sender
        self.ssrc: int = sender._ssrc
        self.payload_type: int | None = None
        self.source: PublishedTrack | None = None
        self.paused = False
        self.started = False
        self.last_seq = 0
        self.last_ts = 0
        self.packets = 0
        self.octets = 0
        self.nacks_answered = 0
        self.nacks_missed = 0
        # packets the subscriber lost on its own leg: NACKed, and we had them when first asked
        # (a packet asked for again counts once; one we lacked then was lost upstream)
        self.lost_downstream = 0
        self._nacked_seqs: set[int] = set()
        self._sampled_nacks = 0
        self._sampled_packets = 0
        self.keyframe_requests = 0
        self.gop_bursts = 0
        self.started_at_connect = False  # the last start came from ``transport_ready``
        self.forwarded_keyframe_at: int | None = None
        self._keyframe_asked = False
        self._sink: RtpSink | None = None
        self._on_report = on_report
        self._report_counts: tuple[int, int] | None = None  # (highest seq, lost) last used
        self._rebase = True
        self._rebase_seq = 0
        self._seq_offset = 0
        self._ts_offset = 0
        self._last_arrival_ms = 0
        # temporal-layer thinning (see streaming/sfu/temporal.py): created the first time the
        # subscriber is limited to fewer layers; ``_layers_from`` is the first number it mapped
        self._layers: TemporalFilter | None = None
        self._layers_from = 0
        # bandwidth: the abs-send-time element's id word (0: not negotiated, audio), the
        # subscriber's last REMB, and send rates (bits/s of payload) sampled by the room
        self._abs_send_time = 0
        self._on_estimate = on_estimate
        self.estimate_bps: int | None = None
        self.rate_bps = 0.0
        self.base_rate_bps = 0.0
        # the last sample: (time, octets sent, the source and its layer-0 octets then)
        self._rate_mark: tuple[float, int, PublishedTrack | None, int] | None = None
        # playout delay (streaming/sfu/playout.py): the extension's id (0: not negotiated),
        # its element word in every packet while non-zero, the subscriber leg's round trip
        self._playout: PlayoutDelay | None = None
        self._playout_id = 0
        self._playout_word = 0
        self._playout_reset_until = 0.0
        self.rtt_ms: float | None = None
        self._rtt_samples: deque[float] = deque(maxlen=RTT_FLOOR_SAMPLES)
        attach_subscriber_rtcp(sender, self.handle_rtcp)

    def connect(
        self,
        *,
        sink: RtpSink,
        payload_type: int,
        abs_send_time_id: int | None = None,
        playout_delay_id: int | None = None,
    ) -> None:
        """Called once negotiation has fixed the transport, the payload type and the ids of
        the abs-send-time header extension (what the subscriber's bandwidth estimator reads)
        and of the playout-delay one (video only; None when not negotiated)."""
        self._sink = sink
        self.payload_type = payload_type
        if self.kind == "video" and abs_send_time_id:
            self._abs_send_time = abs_send_time_word(abs_send_time_id)
        if self.kind == "video" and playout_delay_id:
            self._playout_id = playout_delay_id
            self._playout = PlayoutDelay()
        self._need_keyframe()

    def assign(self, track: PublishedTrack | None) -> None:
        if track is self.source:
            return
        if self.source is not None:
            self.source.downlinks.remove(self)
        self.source = track
        if track is not None:
            track.downlinks.append(self)
        if self._playout is not None:
            self._playout.new_source()  # another track's repair count is no news of loss
        self._need_keyframe()

    def set_paused(self, paused: bool) -> None:
        if paused == self.paused:
            return
        self.paused = paused
        if not paused:
            self._need_keyframe()

    def set_temporal_target(self, target: int) -> None:
        """Forward only temporal layers up to ``target`` of a VP8 stream that has them (the
        change takes effect at a frame the subscriber can decode from)."""
        if self.kind != "video":
            return
        layers = self._layers
        if layers is not None:
            raised = target > layers.active
            layers.target = target
            if raised and self.source is not None:
                # a keyframe lets the upper layers back in at once; without it they wait for
                # a layer-sync frame, which not every encoder sends
                self.source.request_keyframe()
        elif target < ALL_LAYERS:
            self._layers = TemporalFilter(target)
            self._layers_from = (self.last_seq + 1) & SEQ_MASK

    @property
    def temporal_target(self) -> int:
        return ALL_LAYERS if self._layers is None else self._layers.target

    @property
    def frames_thinned(self) -> int:
        """Frames of upper temporal layers not sent to this subscriber (since the last
        change of source)."""
        return 0 if self._layers is None else self._layers.frames_dropped

    def _need_keyframe(self) -> None:
        """Wait for a picture the subscriber can decode from: the source's cached GOP if it
        will still be fresh once the subscriber can receive, else a keyframe asked of the
        publisher now (rate-limited there), which starts a fresh GOP meanwhile."""
        self._rebase = True
        self._keyframe_asked = False
        source = self.source
        if source is None or self._sink is None or self.paused:
            return
        if self.kind == "video" and not source.gop_fresh():
            # a GOP whose keyframe arrives before ICE and DTLS finish is replayed in ``_start``
            source.request_keyframe()

    def forward(self, packet: RtpPacket, keyframe: bool, arrival_ms: int) -> None:
        """Hot path: rewrite the header and send. No decode, three small allocations."""
        sink = self._sink
        if sink is None or self.paused:
            return
        if self._rebase and not self._start(sink, packet, keyframe, arrival_ms):
            return
        layers = self._layers
        if layers is None:
            seq = (packet.sequence_number + self._seq_offset) & SEQ_MASK
            payload = packet.payload
        else:
            if not layers.admit(packet, keyframe):
                return
            rewritten = layers.rewrite(packet)
            if rewritten is None:
                return
            payload = rewritten
            seq = (
                packet.sequence_number + self._seq_offset - layers.seq_shift(packet.sequence_number)
            ) & SEQ_MASK
            layers.remember(seq, packet.sequence_number)
        ts = (packet.timestamp + self._ts_offset) & TS_MASK
        sink.send(self._header(packet.marker, seq, ts) + payload)
        if ((seq - self.last_seq) & SEQ_MASK) < HALF_SEQ:
            self.last_seq = seq
            self.last_ts = ts
            self._last_arrival_ms = arrival_ms
        self.packets += 1
        size = len(payload)
        self.octets += size

    def _header(self, marker: int, seq: int, ts: int) -> bytes:
        """The rewritten RTP header; on video with abs-send-time negotiated, the element
        carries the send time (6.18 fixed-point seconds: only differences matter), followed
        by the playout-delay element while there is one to say."""
        second = (marker << 7) | self.payload_type  # type: ignore[operator]
        word = self._abs_send_time
        playout = self._playout_word
        if word:
            word |= int(_monotonic() * ABS_SEND_TIME_UNITS) & ABS_SEND_TIME_MASK
            if playout:
                return RTP_HEADER_TWO_EXTENSIONS.pack(
                    RTP_VERSION_EXTENSION_BYTE, second, seq, ts, self.ssrc,
                    ONE_BYTE_PROFILE, 2, word, playout,
                )  # fmt: skip
        elif playout:
            word = playout
        else:
            return RTP_HEADER.pack(RTP_VERSION_BYTE, second, seq, ts, self.ssrc)
        return RTP_HEADER_ONE_EXTENSION.pack(
            RTP_VERSION_EXTENSION_BYTE, second, seq, ts, self.ssrc, ONE_BYTE_PROFILE, 1, word
        )

    def _rebase_on(self, packet: RtpPacket, arrival_ms: int) -> None:
        if self.started:
            next_seq = (self.last_seq + 1) & SEQ_MASK
            clock_rate = 90000 if self.kind == "video" else 48000
            elapsed_ms = max(arrival_ms - self._last_arrival_ms, 1)
            next_ts = (self.last_ts + elapsed_ms * clock_rate // 1000) & TS_MASK
        else:
            # low half of the range, as aiortc does, to keep SRTP's rollover counter simple
            next_seq = random.randrange(0x8000)
            next_ts = random.getrandbits(32)
            self.started = True
        self._seq_offset = (next_seq - packet.sequence_number) & SEQ_MASK
        self._ts_offset = (next_ts - packet.timestamp) & TS_MASK
        self.last_seq = (next_seq - 1) & SEQ_MASK
        self.last_ts = next_ts
        self._last_arrival_ms = arrival_ms
        self._rebase_seq = next_seq
        self._rebase = False
        if self._layers is not None:
            # a new numbering starts: nothing dropped before it counts any more
            target = self._layers.target
            self._layers = TemporalFilter(target) if target < ALL_LAYERS else None
            self._layers_from = next_seq
        if self.kind == "video":
            self.forwarded_keyframe_at = arrival_ms

    def _start(self, sink: RtpSink, packet: RtpPacket, keyframe: bool, arrival_ms: int) -> bool:
        """Whether ``packet`` can now be forwarded to a subscriber waiting for a picture.

        On a keyframe, yes. Mid-GOP, the cached packets from the last keyframe up to
        ``packet`` are sent first in one burst, rewritten as the live stream that follows
        them will be, so the subscriber needs no new keyframe; when the cache cannot serve,
        a keyframe is asked for (once the subscriber can receive it) and it keeps waiting."""
        if not sink.ready():
            return False  # what is sent before DTLS is up would only be dropped
        if keyframe:
            self._rebase_on(packet, arrival_ms)
            return True
        return self._replay_gop(packet.sequence_number, arrival_ms)

    def transport_ready(self) -> None:
        """The subscriber's DTLS is up: a video slot waiting for a picture starts now from the
        source's cached GOP (up to its newest packet) instead of at the publisher's next
        packet, up to a frame interval later."""
        source, sink = self.source, self._sink
        if (
            self.kind != "video"
            or not self._rebase
            or self.paused
            or sink is None
            or source is None
            or source.newest_seq is None
            or not sink.ready()
        ):
            return
        self.started_at_connect = self._replay_gop(
            (source.newest_seq + 1) & SEQ_MASK, source.last_arrival_ms
        )

    def _replay_gop(self, end_seq: int, arrival_ms: int) -> bool:
        """Send the cached GOP up to (not including) ``end_seq`` and rebase on it; else ask
        for a keyframe (once) and return False."""
        source = self.source
        if source is None or source.cache is None:
            return False
        span = source.gop_span(end_seq)
        first = None if span is None else source.cache.get(source.gop_start_seq)  # type: ignore[arg-type]
        if span is None or first is None:
            if not self._keyframe_asked:
                self._keyframe_asked = True
                source.request_keyframe()
            return False
        self._rebase_on(first, arrival_ms)
        start = first.sequence_number
        for offset in range(span):
            cached = source.cache.get((start + offset) & SEQ_MASK)
            if cached is not None and cached.payload:  # a gap is NACKed and resent like any
                self.forward(cached, False, arrival_ms)
        self.gop_bursts += 1
        return True

    def _resend(self, sequence_number: int) -> bool:
        source, sink = self.source, self._sink
        if source is None or source.cache is None or sink is None or self._rebase:
            return False
        if ((sequence_number - self._rebase_seq) & SEQ_MASK) >= HALF_SEQ:
            return False  # sent before the last change of source
        layers = self._layers
        if layers is not None and ((sequence_number - self._layers_from) & SEQ_MASK) < HALF_SEQ:
            source_seq = layers.source_of(sequence_number)
            original = None if source_seq is None else source.cache.get(source_seq)
            payload = None if original is None else layers.rewrite(original)
        else:
            original = source.cache.get((sequence_number - self._seq_offset) & SEQ_MASK)
            payload = None if original is None else original.payload
        if original is None or payload is None:
            return False
        ts = (original.timestamp + self._ts_offset) & TS_MASK
        sink.send(self._header(original.marker, sequence_number, ts) + payload)
        return True

    def handle_rtcp(self, packet: AnyRtcpPacket) -> None:
        """What the subscriber says about this slot's stream: NACK, PLI/FIR, REMB, reports."""
        if isinstance(packet, RtcpRtpfbPacket) and packet.fmt == RTCP_RTPFB_NACK:
            for sequence_number in packet.lost:
                first = sequence_number not in self._nacked_seqs
                if first:
                    if len(self._nacked_seqs) >= MAX_NACKED_SEQS:
                        self._nacked_seqs.clear()
                    self._nacked_seqs.add(sequence_number)
                if self._resend(sequence_number):
                    self.nacks_answered += 1
                    self.lost_downstream += first
                else:
                    self.nacks_missed += 1
        elif isinstance(packet, RtcpPsfbPacket) and packet.fmt in (RTCP_PSFB_PLI, RTCP_PSFB_FIR):
            self.keyframe_requests += 1
            if self.source is not None:
                self.source.request_keyframe()
        elif isinstance(packet, RtcpPsfbPacket) and packet.fmt == RTCP_PSFB_APP:
            self._on_remb(packet.fci)
        elif isinstance(packet, RtcpRrPacket | RtcpSrPacket):
            for report in packet.reports:
                if report.ssrc == self.ssrc:
                    self._note_round_trip(report.lsr, report.dlsr)
                    sample = self._report_loss_sample(report.highest_sequence, report.packets_lost)
                    if sample is not None:
                        self._on_report(self, sample)

    def _note_round_trip(self, lsr: int, dlsr: int) -> None:
        round_trip = report_round_trip_s(self.sender, lsr, dlsr)
        if round_trip is not None:
            sample = round_trip * 1000
            self._rtt_samples.append(sample)
            previous = self.rtt_ms
            self.rtt_ms = (
                sample if previous is None else (previous + RTT_SMOOTHING * (sample - previous))
            )

    @property
    def queue_delay_ms(self) -> float | None:
        """How much longer the newest round trip is than the path's floor (the shortest of
        the last ~30 s): what a queue on the way adds. None before two reports."""
        samples = self._rtt_samples
        if len(samples) < 2:
            return None
        return samples[-1] - min(samples)

    @property
    def playout(self) -> PlayoutDelay | None:
        """The playout-delay judgement of this slot (None: audio, or not negotiated)."""
        return self._playout

    @property
    def playout_delay_ms(self) -> int:
        """The minimum playout delay this subscriber slot is told now (0: none)."""
        return 0 if self._playout is None else self._playout.min_ms

    def update_playout_delay(self, now: float, now_ms: int) -> int | None:
        """Once a second: re-judge the playout delay from the path's repairs (see
        streaming/sfu/playout.py); return the new minimum (ms) if it changed."""
        playout, source = self._playout, self.source
        if playout is None or source is None:
            return None
        changed = playout.update(
            now,
            repaired_upstream=source.nack_repaired,
            lost_downstream=self.lost_downstream,
            upstream_repair_ms=source.upstream_repair_ms(now_ms, playout.policy.repair_window_ms),
            rtt_ms=self.rtt_ms,
        )
        if changed is not None:
            self._playout_word = playout_delay_word(self._playout_id, changed)
            self._playout_reset_until = now + PLAYOUT_RESET_S
        elif playout.min_ms == 0 and self._playout_word and now >= self._playout_reset_until:
            self._playout_word = 0  # the receiver is back at its defaults
        return changed

    def _report_loss_sample(self, highest_sequence: int, packets_lost: int) -> int | None:
        """Loss between this receiver report and the last one used, as the 90 % lower bound
        (like ``nack_loss_sample``): a report covers a second or so, some 50 audio packets,
        and its own fraction lost is as noisy as that. Reports are gathered until they cover
        ``MIN_LOSS_SAMPLE_PACKETS``."""
        previous = self._report_counts
        if previous is None or highest_sequence < previous[0]:
            self._report_counts = (highest_sequence, packets_lost)
            return None
        expected = highest_sequence - previous[0]
        if expected < MIN_LOSS_SAMPLE_PACKETS:
            return None
        lost = min(max(packets_lost - previous[1], 0), expected)
        self._report_counts = (highest_sequence, packets_lost)
        return min(int(loss_lower_bound(lost, expected) * 256), 255)

    def nack_loss_sample(self) -> int | None:
        """NACKed over sent packets since the last sample, as an 8-bit fraction like RTCP's.

        Receiver reports understate loss here: our retransmissions share the media SSRC, so a
        repaired packet counts as received. What the subscriber NACKs is the raw loss: each
        packet counts once (a receiver names every packet still missing in each NACK), and
        one we did not have when first asked (lost upstream, repaired later) not at all,
        since it says nothing about the subscriber's own link."""
        nacks = self.lost_downstream
        sent = self.packets - self._sampled_packets
        if sent < MIN_LOSS_SAMPLE_PACKETS:
            return None  # keep accumulating: one lost packet of five is noise, not 20 % loss
        lost = nacks - self._sampled_nacks
        self._sampled_nacks, self._sampled_packets = nacks, self.packets
        return min(int(loss_lower_bound(lost, sent) * 256), 255)

    def _on_remb(self, fci: bytes) -> None:
        """A REMB: Chromium sends one per transport naming every SSRC it receives (aiortc
        routes it to each of their senders), aiortc one per video stream."""
        try:
            bitrate, ssrcs = unpack_remb_fci(fci)
        except (ValueError, struct.error):  # another application-layer message, or garbage
            return
        self.estimate_bps = bitrate
        if self._on_estimate is not None:
            self._on_estimate(bitrate, tuple(sorted(ssrcs)) or (self.ssrc,))

    def sample_rates(self, now: float) -> None:
        """Update the send rates (bits/s of payload, smoothed) from the counters since the
        last call. While paused a slot keeps its last rates (what resuming would cost); while
        thinned, its full rate."""
        mark = self._rate_mark
        source = self.source
        self._rate_mark = (now, self.octets, source, source.base_octets if source else 0)
        if mark is None or self.paused or source is None or now <= mark[0]:
            return
        elapsed = now - mark[0]
        full = (self.octets - mark[1]) * 8 / elapsed
        thinned = self._layers is not None and self._layers.active < ALL_LAYERS
        if not thinned:
            self.rate_bps = _smoothed(self.rate_bps, full)
        if not source.temporal_layers:
            self.base_rate_bps = self.rate_bps
        elif mark[2] is source:  # layer 0 as the source received it (what thinning would send)
            base = (source.base_octets - mark[3]) * 8 / elapsed
            self.base_rate_bps = _smoothed(self.base_rate_bps, base)

    def update_sender_report(self, now_ms: int) -> None:
        """Refresh what aiortc's sender reports: an NTP/RTP time pair and counters."""
        if not self.started:
            return
        clock_rate = 90000 if self.kind == "video" else 48000
        elapsed_ms = max(now_ms - self._last_arrival_ms, 0)
        update_sender_report(
            self.sender,
            ntp_timestamp=ntp_from_ms(now_ms),
            rtp_timestamp=(self.last_ts + elapsed_ms * clock_rate // 1000) & TS_MASK,
            packets=self.packets & 0xFFFFFFFF,
            octets=self.octets & 0xFFFFFFFF,
        )

    def close(self) -> None:
        self.assign(None)
        self._sink = None


def _smoothed(previous: float, sample: float) -> float:
    return sample if previous <= 0 else previous + RATE_SMOOTHING * (sample - previous)
