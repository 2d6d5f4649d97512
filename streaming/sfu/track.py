"""One published track (a participant's mic, camera or board) fanned out without decoding."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from aiortc import RTCRtpReceiver
from aiortc.rtcrtpreceiver import StreamStatistics
from aiortc.rtp import RtpPacket

from common.logging import get_logger
from streaming.sfu.aiortc_hooks import PublisherReceiver, audio_level, nack_generator
from streaming.sfu.cache import PacketCache
from streaming.sfu.keyframes import KeyframeRequester
from streaming.sfu.layout import MediaKind
from streaming.sfu.packets import (
    HALF_SEQ,
    SEQ_MASK,
    vp8_has_temporal_layers,
    vp8_keyframe_start,
    vp8_temporal_layer,
)
from streaming.sfu.playout import RepairTimes
from streaming.sfu.speakers import level_from_opus_size

if TYPE_CHECKING:
    from streaming.sfu.downlink import Downlink

log = get_logger(__name__)

PacketTap = Callable[["PublishedTrack", RtpPacket], None]
AudioLevelSink = Callable[[str, int], None]


@dataclass(frozen=True, slots=True)
class GopLimits:
    """How much of the current group of pictures a late joiner may be sent as a burst.

    The packets themselves stay in the NACK cache's preallocated ring, so ``max_packets``
    must leave that ring room; beyond any bound the joiner falls back to a keyframe request.
    """

    max_packets: int = 384
    max_bytes: int = 384 * 1024
    max_age_ms: int = 3000


DEFAULT_GOP_LIMITS = GopLimits()
UPSTREAM_LOSS_WINDOW_S = 1.0
# Longer than a weak link's round trip (2 x 80 ms and the publisher's pacing); the missing set
# itself forgets packets older than aiortc's NACK window (128 packets).
NACK_RETRY_MS = 250


class PublishedTrack:
    """Receives a publisher's RTP, keeps a cache for NACKs, and hands each packet to the
    downlinks currently assigned to it and to raw-packet taps (the recorder)."""

    def __init__(
        self,
        *,
        participant_id: str,
        source: str,
        kind: MediaKind,
        receiver: RTCRtpReceiver,
        on_audio_level: AudioLevelSink | None = None,
        gop_limits: GopLimits | None = None,
    ) -> None:
        self.participant_id = participant_id
        self.source = source
        self.kind: MediaKind = kind
        self.clock_rate = 90000 if kind == "video" else 48000
        self.downlinks: list[Downlink] = []
        self.taps: list[PacketTap] = []
        self.cache = PacketCache() if kind == "video" else None
        # the current GOP inside ``cache``: from its keyframe's first packet to the newest
        self.gop_limits = gop_limits or DEFAULT_GOP_LIMITS
        self.gop_start_seq: int | None = None
        self.gop_start_ms = 0
        self.gop_packets = 0
        self.gop_bytes = 0
        self.keyframes = KeyframeRequester(self._send_keyframe_request)
        self.ssrc: int | None = None
        self.newest_seq: int | None = None  # video: the newest packet in ``cache``
        self.last_arrival_ms = 0
        self.packets = 0
        self.rejected = 0
        # whether the publisher sends temporal layers (a browser with scalabilityMode L1T3),
        # and the payload octets of its layer 0, counted once here for every subscriber's
        # bandwidth ladder (Downlink.sample_rates)
        self.temporal_layers = False
        self.base_octets = 0
        self.nacks_sent = 0  # NACKs to the publisher (each names every packet still missing)
        self.nack_repaired = 0  # packets that arrived after we had found them missing
        # how long those repairs took: from finding each packet missing to its arrival
        self.repair_times = RepairTimes()
        self._missing_since: dict[int, int] = {}
        self._nacked_at_ms = 0
        self._rtp_receiver = receiver
        self._receiver = PublisherReceiver(receiver, self._on_rtp)
        self._statistics: StreamStatistics | None = None
        # upstream loss over the last window: (statistics, expected, received, at, loss)
        self._loss_window: tuple[StreamStatistics | None, int, int, float, float] = (
            None, 0, 0, 0.0, 0.0,
        )  # fmt: skip
        self._nack = nack_generator() if kind == "video" else None
        self._on_audio_level = on_audio_level
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False

    @property
    def rtp_receiver(self) -> RTCRtpReceiver:
        return self._rtp_receiver

    @property
    def key(self) -> tuple[str, str]:
        return (self.participant_id, self.source)

    @property
    def codec_name(self) -> str | None:
        codec = next(iter(self._receiver.codecs.values()), None)
        return codec.name if codec is not None else None

    def _on_rtp(self, packet: RtpPacket, arrival_time_ms: int) -> None:
        codec = self._receiver.codecs.get(packet.payload_type)
        if codec is None or self._closed:
            self.rejected += 1
            return
        if packet.ssrc != self.ssrc:
            self.ssrc = packet.ssrc
            self._statistics = self._receiver.statistics_for(packet.ssrc, self.clock_rate)
            self._nack = nack_generator() if self.kind == "video" else None
            self._missing_since.clear()
            self.gop_start_seq = self.newest_seq = None
        self._statistics.add(packet)  # type: ignore[union-attr]
        self.last_arrival_ms = arrival_time_ms
        self.packets += 1
        payload = packet.payload
        if self.cache is not None:
            self.cache.put(packet)
            newest = self.newest_seq
            if newest is None or ((packet.sequence_number - newest) & SEQ_MASK) < HALF_SEQ:
                self.newest_seq = packet.sequence_number
            keyframe = vp8_keyframe_start(payload)
            if keyframe:
                self.gop_start_seq = packet.sequence_number
                self.gop_start_ms = arrival_time_ms
                self.gop_packets = self.gop_bytes = 0
                self.temporal_layers = vp8_has_temporal_layers(payload)
            self.gop_packets += 1
            self.gop_bytes += len(payload)
            if self.temporal_layers and vp8_temporal_layer(payload)[0] <= 0:
                self.base_octets += len(payload)
            nack = self._nack
            if nack is not None:
                if nack.missing and packet.sequence_number in nack.missing:
                    self.nack_repaired += 1
                    found_at = self._missing_since.pop(packet.sequence_number, None)
                    if found_at is not None:
                        self.repair_times.add(arrival_time_ms, arrival_time_ms - found_at)
                missed = nack.add(packet)
                if missed:
                    self._note_missing(nack.missing, arrival_time_ms)
                # a retransmission can be lost too: ask again for what is still missing
                if missed or (
                    nack.missing and arrival_time_ms - self._nacked_at_ms >= NACK_RETRY_MS
                ):
                    self._nacked_at_ms = arrival_time_ms
                    self.nacks_sent += 1
                    self._spawn(self._receiver.send_nack(packet.ssrc, sorted(nack.missing)))
        else:
            keyframe = True
            if self._on_audio_level is not None:
                level = audio_level(packet)
                self._on_audio_level(
                    self.participant_id,
                    level[1] if level is not None else level_from_opus_size(len(payload)),
                )
        if not payload:  # padding-only probe
            return
        for downlink in self.downlinks:
            downlink.forward(packet, keyframe, arrival_time_ms)
        for tap in self.taps:
            try:
                tap(self, packet)
            except Exception:
                log.exception("packet_tap_failed", participant=self.participant_id)

    def _note_missing(self, missing: set[int], arrival_time_ms: int) -> None:
        """Remember when each newly missing packet was found missing (a packet is dropped
        from the record once the NACK window has forgotten it)."""
        since = self._missing_since
        if len(since) > 2 * len(missing) + 64:
            self._missing_since = since = {seq: since[seq] for seq in missing if seq in since}
        for seq in missing:
            since.setdefault(seq, arrival_time_ms)

    def upstream_repair_ms(self, now_ms: int, window_ms: int) -> int | None:
        """How long the upstream repairs of the last ``window_ms`` took (their 90th
        percentile, ms); None when nothing was repaired in that time."""
        return self.repair_times.percentile(now_ms, window_ms=window_ms)

    def upstream_loss(self) -> float:
        """Share of this track's packets lost between the publisher and us over the last
        second or so (a packet repaired by retransmission counts as received): a subscriber's
        report covers the whole path, and what we never got is not its link's fault."""
        statistics = self._statistics
        if statistics is None:
            return 0.0
        seen, expected, received, at, loss = self._loss_window
        now = time.monotonic()
        if seen is statistics and now - at < UPSTREAM_LOSS_WINDOW_S:
            return loss
        if seen is statistics:
            expected_now = statistics.packets_expected - expected
            lost = expected_now - (statistics.packets_received - received)
            loss = max(lost, 0) / expected_now if expected_now > 0 else 0.0
        self._loss_window = (
            statistics,
            statistics.packets_expected,
            statistics.packets_received,
            now,
            loss,
        )
        return loss

    def gop_fresh(self) -> bool:
        """Whether the cached GOP is young enough (within half its bounds) to still serve a
        subscriber that is only now connecting; else it is better to ask for a new one."""
        limits = self.gop_limits
        return (
            self.gop_start_seq is not None
            and self.gop_packets * 2 <= limits.max_packets
            and self.gop_bytes * 2 <= limits.max_bytes
            and (self.last_arrival_ms - self.gop_start_ms) * 2 <= limits.max_age_ms
        )

    def gop_span(self, sequence_number: int) -> int | None:
        """Packets from the cached GOP's keyframe up to (not including) ``sequence_number``,
        or None when a joiner cannot start from the cache: no keyframe yet, the GOP outgrew
        the cache's bounds, or it is too old to replay."""
        start = self.gop_start_seq
        limits = self.gop_limits
        if (
            start is None
            or self.gop_packets > limits.max_packets
            or self.gop_bytes > limits.max_bytes
            or self.last_arrival_ms - self.gop_start_ms > limits.max_age_ms
        ):
            return None
        span = (sequence_number - start) & SEQ_MASK
        if span >= HALF_SEQ or span > limits.max_packets:
            return None  # a late retransmission from before the keyframe
        return span

    def request_keyframe(self) -> None:
        if self.kind == "video" and not self._closed:
            self.keyframes.request()

    def _send_keyframe_request(self) -> None:
        if self.ssrc is None:
            return
        self._spawn(self._receiver.send_pli(self.ssrc))

    def _spawn(self, request: Coroutine[Any, Any, None]) -> None:
        """Send RTCP to the publisher without holding up the packet that asked for it."""
        task = asyncio.ensure_future(request)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def close(self) -> None:
        self._closed = True
        self.keyframes.cancel()
        for downlink in list(self.downlinks):
            downlink.assign(None)
        self.taps.clear()
