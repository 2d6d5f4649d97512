"""One participant's connection to the SFU: its peer connection, published tracks, downlinks."""

from __future__ import annotations

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
from aiortc.sdp import candidate_from_sdp

from streaming.sfu.aiortc_hooks import (
    HeldTrack,
    RtpSink,
    install_fast_receive,
    set_answer_codec_parameters,
    share_sender_report_timer,
)
from streaming.sfu.downlink import Downlink, ReportSink
from streaming.sfu.errors import NegotiationError
from streaming.sfu.identity import ParticipantIdentity
from streaming.sfu.layout import MediaLine
from streaming.sfu.protection import (
    AUDIO_ONLY,
    BASE_LAYER_ONLY,
    PRIMARY_VIDEO_ONLY,
    LossProtection,
)
from streaming.sfu.temporal import ALL_LAYERS, BASE_LAYER
from streaming.sfu.track import AudioLevelSink, PublishedTrack

HandState = Literal["none", "raised", "accepted"]
VideoQuality = Literal["auto", "low"]

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
    ) -> None:
        self.identity = identity
        self.layout = layout
        self.notify = notify
        self.hand: HandState = "none"
        self.negotiated = False
        self.replacement: Participant | None = None  # set when a failed offer reset us
        self.protection = LossProtection(has_layers=self._receives_layers)
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
                    kind=line.kind, slot=line.name, sender=transceiver.sender, on_report=on_report
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
        for line, transceiver in zip(self.layout, self._transceivers, strict=True):
            if line.kind == "audio":
                set_answer_codec_parameters(transceiver, OPUS_PARAMETERS)
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
            self.downlinks[line.name].connect(sink=sink, payload_type=payload_type)
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
        self.apply_protection_level(self.protection.level, primary_video)

    async def close(self) -> None:
        for track in self.published.values():
            track.close()
        for downlink in self.downlinks.values():
            downlink.close()
        await self.pc.close()
