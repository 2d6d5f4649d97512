"""One participant's connection to the SFU: its peer connection, published tracks, downlinks."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, Literal

from aiortc import (
    RTCBundlePolicy,
    RTCConfiguration,
    RTCPeerConnection,
    RTCRtpSender,
    RTCRtpTransceiver,
    RTCSessionDescription,
)
from aiortc.rtcrtpparameters import RTCRtpCodecCapability
from aiortc.sdp import SessionDescription, candidate_from_sdp

from common.logging import get_logger
from streaming.sfu.aiortc_hooks import (
    HeldTrack,
    RtpSink,
    abs_send_time_id,
    accept_header_extension,
    install_fast_receive,
    set_answer_codec_parameters,
    share_sender_report_timer,
)
from streaming.sfu.bandwidth import BandwidthPolicy, BandwidthProtection
from streaming.sfu.downlink import Downlink, ReportSink
from streaming.sfu.errors import NegotiationError
from streaming.sfu.identity import ParticipantIdentity
from streaming.sfu.layout import MediaLine, primary_video_slot
from streaming.sfu.playout import PLAYOUT_DELAY_URI
from streaming.sfu.protection import (
    AUDIO_ONLY,
    BASE_LAYER_ONLY,
    PRIMARY_VIDEO_ONLY,
    LossProtection,
)
from streaming.sfu.temporal import ALL_LAYERS, BASE_LAYER
from streaming.sfu.track import AudioLevelSink, PublishedTrack

log = get_logger(__name__)

HandState = Literal["none", "raised", "accepted"]
VideoQuality = Literal["auto", "low"]

# A REMB not renewed within this long no longer counts (its stream was paused or ended).
ESTIMATE_MAX_AGE_S = 3.0
# after a failed bandwidth probe, the video loss reported this long is the probe's own
# (NACKs for its tail drop come a queue's delay late), not the link's: measured behind a 1 s
# queue, samples of 61-78 % came 1 and 6 s after the probe ended and took the loss ladder to
# audio only
PROBE_LOSS_EXCUSE_S = 8.0
# a lossy link delivers less than is sent: up to this much loss discounts the bandwidth needs
MAX_LOSS_DISCOUNT = 0.5

# The SFU forwards what it receives, so every peer must use the same codecs: VP8 and Opus.
FORWARDED_CODECS = {"video": "video/VP8", "audio": "audio/opus"}


# Opus in-band FEC, in the answer to every peer: a publisher's encoder adds it once our
# receiver reports show loss (browsers turn it on only when the answer says useinbandfec=1),
# and we forward the packets untouched, so a subscriber's decoder rebuilds a lost frame from
# the next packet.
OPUS_PARAMETERS: dict[str, str | int | None] = {"minptime": 10, "useinbandfec": 1}


def _codec_preferences(kind: str) -> list[RTCRtpCodecCapability]:
    wanted = FORWARDED_CODECS[kind].lower()
    return [
        codec
        for codec in RTCRtpSender.getCapabilities(kind).codecs
        if codec.mimeType.lower() == wanted
    ]


class Participant:
    """Owns its ``RTCPeerConnection``; transceivers are created up front in layout order so the
    client's offer maps onto them line by line."""

    def __init__(
        self,
        identity: ParticipantIdentity,
        layout: tuple[MediaLine, ...],
        *,
        configuration: RTCConfiguration,
        notify: Callable[[dict[str, Any]], None],
        on_audio_level: AudioLevelSink,
        on_report: ReportSink,
        bandwidth_policy: BandwidthPolicy | None = None,
    ) -> None:
        self.identity = identity
        self.layout = layout
        self.notify = notify
        self.hand: HandState = "none"
        self.negotiated = False
        self.replacement: Participant | None = None  # set when a failed offer reset us
        self.protection = LossProtection(has_layers=self._receives_layers)
        self.bandwidth = BandwidthProtection(
            bandwidth_policy,
            has_layers=self._receives_layers,
            subject=identity.participant_id,
            on_probe_failed=lambda loss: self.protection.excuse_video_loss(
                PROBE_LOSS_EXCUSE_S, loss=loss
            ),
        )
        # the newest REMB per set of SSRCs it covers: (bits/s, monotonic time)
        self._estimates: dict[tuple[int, ...], tuple[int, float]] = {}
        self.quality: VideoQuality = "auto"
        self.published: dict[str, PublishedTrack] = {}
        self.downlinks: dict[str, Downlink] = {}
        # One transport for every m-line: aiortc's "balanced" policy leaves the second line of
        # a kind on a transport that BUNDLE then stops.
        self.pc = RTCPeerConnection(
            RTCConfiguration(
                iceServers=configuration.iceServers, bundlePolicy=RTCBundlePolicy.MAX_BUNDLE
            )
        )
        self._transceivers: list[RTCRtpTransceiver] = []
        for line in layout:
            if line.direction == "send":
                transceiver = self.pc.addTransceiver(line.kind, direction="recvonly")
                self.published[line.name] = PublishedTrack(
                    participant_id=identity.participant_id,
                    source=line.name,
                    kind=line.kind,
                    receiver=transceiver.receiver,
                    on_audio_level=on_audio_level if line.kind == "audio" else None,
                )
            else:
                transceiver = self.pc.addTransceiver(HeldTrack(line.kind), direction="sendonly")
                share_sender_report_timer(transceiver.sender)
                self.downlinks[line.name] = Downlink(
                    kind=line.kind,
                    slot=line.name,
                    sender=transceiver.sender,
                    on_report=on_report,
                    on_estimate=self._on_estimate,
                )
            transceiver.setCodecPreferences(_codec_preferences(line.kind))
            self._transceivers.append(transceiver)

    @property
    def participant_id(self) -> str:
        return self.identity.participant_id

    @property
    def role(self) -> str:
        return self.identity.role

    def published_sources(self) -> frozenset[str]:
        if not self.negotiated:
            return frozenset()
        return frozenset(self.published)

    async def negotiate(self, offer_sdp: str) -> str:
        """Apply the client's offer and return the SFU's answer (with all its candidates)."""
        if self.negotiated or self.pc.signalingState != "stable":
            raise NegotiationError(
                "连接已建立，暂不支持重新协商，请重新加入", code="renegotiation_unsupported"
            )
        try:
            await self.pc.setRemoteDescription(RTCSessionDescription(offer_sdp, "offer"))
        except Exception as exc:  # aiortc raises ValueError, OperationError, InternalError...
            raise NegotiationError(
                "媒体协商失败：SDP 无法接受", code="sdp_rejected", detail=repr(exc)
            ) from exc
        self._check_offer_matches_layout()
        offer = SessionDescription.parse(offer_sdp)  # aiortc accepted it just now
        playout_delay_ids: dict[str, int | None] = {}
        for line, transceiver in zip(self.layout, self._transceivers, strict=True):
            if line.kind == "audio":
                set_answer_codec_parameters(transceiver, OPUS_PARAMETERS)
            elif line.direction == "recv":
                # what a subscriber waits for a repaired frame is ours to say (playout.py)
                playout_delay_ids[line.name] = accept_header_extension(
                    transceiver, offer, PLAYOUT_DELAY_URI
                )
        answer = await self.pc.createAnswer()
        await self.pc.setLocalDescription(answer)
        sinks: dict[int, RtpSink] = {}
        # one bundled transport; a subscriber-only peer's too (its fast path drops garbage)
        transports = {id(t.receiver.transport): t.receiver.transport for t in self._transceivers}
        for dtls in transports.values():
            install_fast_receive(dtls)
        for line, transceiver in zip(self.layout, self._transceivers, strict=True):
            if line.direction != "recv":
                continue
            transport = transceiver.sender.transport
            sink = sinks.get(id(transport))
            if sink is None:
                sink = sinks[id(transport)] = RtpSink(transport)
                sink.when_ready(self._transport_ready)
            payload_type = transceiver._codecs[0].payloadType
            assert payload_type is not None  # set by negotiation
            self.downlinks[line.name].connect(
                sink=sink,
                payload_type=payload_type,
                abs_send_time_id=abs_send_time_id(transceiver),
                playout_delay_id=playout_delay_ids.get(line.name),
            )
        self.negotiated = True
        return self.pc.localDescription.sdp

    def _transport_ready(self) -> None:
        for downlink in self.downlinks.values():
            downlink.transport_ready()

    def _check_offer_matches_layout(self) -> None:
        transceivers = self.pc.getTransceivers()
        if len(transceivers) != len(self.layout):
            raise NegotiationError(
                f"媒体行数量不符：应为 {len(self.layout)} 条",
                code="offer_mismatch",
                detail={"expected": len(self.layout), "got": len(transceivers)},
            )
        for index, (line, transceiver) in enumerate(
            zip(self.layout, self._transceivers, strict=True)
        ):
            # _offerDirection is the remote offer's direction seen from the SFU's side
            offered = transceiver._offerDirection or "inactive"
            wanted = ("recvonly", "sendrecv")
            if line.direction == "recv":
                wanted = ("sendonly", "sendrecv")
            codecs = transceiver._codecs
            if (
                transceiver.mid is None
                or offered not in wanted
                or not codecs
                or codecs[0].mimeType.lower() != FORWARDED_CODECS[line.kind].lower()
            ):
                raise NegotiationError(
                    f"第 {index + 1} 条媒体行与约定不符（{line.kind} {line.name}）",
                    code="offer_mismatch",
                    detail={"index": index, "direction": offered, "line": line.as_message()},
                )

    async def add_ice_candidate(self, candidate: str, sdp_mid: str | None) -> None:
        try:
            parsed = candidate_from_sdp(candidate.removeprefix("candidate:"))
        except (ValueError, IndexError) as exc:
            raise NegotiationError("ICE 候选地址格式错误", code="bad_candidate") from exc
        parsed.sdpMid = sdp_mid
        await self.pc.addIceCandidate(parsed)

    def _receives_layers(self) -> bool:
        return any(
            downlink.source is not None and downlink.source.temporal_layers
            for downlink in self.downlinks.values()
        )

    @property
    def protection_level(self) -> int:
        """What this subscriber receives: the worse of the loss and the bandwidth ladders."""
        return max(self.protection.level, self.bandwidth.level)

    @property
    def playout_delay_ms(self) -> int:
        """The longest minimum playout delay this subscriber's video slots are told."""
        return max((d.playout_delay_ms for d in self.downlinks.values()), default=0)

    @property
    def estimate_bps(self) -> int | None:
        """The subscriber's bandwidth estimate for the video it is sent: its fresh REMBs for
        the streams now sent, summed (one per transport from a browser, one per video stream
        from aiortc); None while none is fresh."""
        sending = self._sending_video()
        now = time.monotonic()
        fresh = [
            bps
            for ssrcs, (bps, at) in self._estimates.items()
            if now - at <= ESTIMATE_MAX_AGE_S and not sending.isdisjoint(ssrcs)
        ]
        return sum(fresh) if fresh else None

    def _sending_video(self) -> set[int]:
        return {
            d.ssrc
            for d in self.downlinks.values()
            if d.kind == "video" and d.source is not None and d.started and not d.paused
        }

    def bandwidth_needs(self) -> tuple[float, float, float, float]:
        """Video bits/s each protection level sends (measured rates of the slots in use):
        every video; the main video; its base layer; none. Audio is left out on both sides:
        it carries no abs-send-time, so the subscriber's estimate covers video only."""
        videos = [d for d in self.downlinks.values() if d.kind == "video" and d.source]
        main = self.downlinks.get(primary_video_slot(self.layout) or "")
        if main is None or main.source is None:
            return (sum(d.rate_bps for d in videos), 0.0, 0.0, 0.0)
        return (sum(d.rate_bps for d in videos), main.rate_bps, main.base_rate_bps, 0.0)

    def _on_estimate(self, bitrate: int, ssrcs: tuple[int, ...]) -> None:
        now = time.monotonic()
        self._estimates[ssrcs] = (bitrate, now)
        covered: set[int] = set()
        for key, (_bps, at) in list(self._estimates.items()):
            if now - at > ESTIMATE_MAX_AGE_S:
                del self._estimates[key]
            else:
                covered.update(key)
        estimate = self.estimate_bps
        if estimate is None or not self._sending_video() <= covered:
            return  # aiortc: one stream's estimate alone is not the link's
        delivered = 1.0 - min(self.protection.loss, MAX_LOSS_DISCOUNT)
        self._bandwidth_changed(
            self.bandwidth.on_estimate(estimate, self.bandwidth_needs(), delivered=delivered)
        )

    @property
    def queue_delay_ms(self) -> float | None:
        """The queue on the way to this subscriber: its round trip over the path's floor, the
        longest its video slots measure (None before their receiver reports). Logged with each
        bandwidth step; not yet used to judge one (README: "bandwidth estimates")."""
        queues = [
            d.queue_delay_ms
            for d in self.downlinks.values()
            if d.kind == "video" and d.queue_delay_ms is not None
        ]
        return max(queues) if queues else None

    def bandwidth_tick(self, now: float) -> None:
        """Once a second (the room's housekeeping): sample the slots' send rates, and let
        the bandwidth ladder judge or start a probe."""
        for downlink in self.downlinks.values():
            downlink.sample_rates(now)
        videos = [d for d in self.downlinks.values() if d.kind == "video"]
        self._bandwidth_changed(
            self.bandwidth.tick(
                self.protection.level,
                loss=self.protection.loss,
                sent=sum(d.packets for d in videos),
                nacked=sum(d.lost_downstream for d in videos),
            )
        )

    def _bandwidth_changed(self, level: int | None) -> None:
        if level is None:
            return
        estimate = self.bandwidth.estimate_bps
        log.info(
            "bandwidth_protection",
            room=self.identity.room_id,
            participant=self.participant_id,
            protection_level=level,
            playout_delay_ms=self.playout_delay_ms,
            probing=self.bandwidth.probing,
            estimate_kbps=None if estimate is None else round(estimate / 1000),
            queue_delay_ms=None if self.queue_delay_ms is None else round(self.queue_delay_ms),
            needs_kbps=[round(need / 1000) for need in self.bandwidth_needs()],
            hold_s=self.bandwidth.hold_s,
        )
        self.apply_protection_level(self.protection_level, primary_video_slot(self.layout))

    def apply_protection_level(self, level: int, primary_video: str | None) -> None:
        thin = level >= BASE_LAYER_ONLY or self.quality == "low"
        for slot, downlink in self.downlinks.items():
            if downlink.kind != "video":
                continue
            downlink.set_temporal_target(BASE_LAYER if thin else ALL_LAYERS)
            downlink.set_paused(
                level >= AUDIO_ONLY or (level >= PRIMARY_VIDEO_ONLY and slot != primary_video)
            )

    def set_quality(self, quality: VideoQuality, primary_video: str | None) -> None:
        """The subscriber's own choice: ``low`` keeps video at its base temporal layer (fewer
        frames and bits for a weak link or a small tile), ``auto`` leaves it to the loss
        protection."""
        self.quality = quality
        self.apply_protection_level(self.protection_level, primary_video)

    async def close(self) -> None:
        for track in self.published.values():
            track.close()
        for downlink in self.downlinks.values():
            downlink.close()
        await self.pc.close()
