"""Every use of aiortc internals lives here, so an aiortc upgrade breaks one module only.

aiortc has no SFU API. Measured on aiortc 1.16, the leanest hooks are:

* publisher side: replace ``RTCRtpReceiver._handle_rtp_packet`` on the instance, so parsed
  RTP packets reach the SFU instead of the jitter buffer and decoder (the decoder thread is
  stopped as soon as the receiver starts; nothing is ever decoded);
* subscriber side: the ``RTCRtpSender`` keeps a track that never yields a frame (its RTP loop
  parks on ``recv()`` and no encoder is ever created); the SFU writes rewritten RTP straight
  to the DTLS transport's SRTP session and the selected ICE pair's UDP socket, and replaces
  ``RTCRtpSender._handle_rtcp_packet`` on the instance to see NACK, PLI/FIR and receiver
  reports. The sender's own RTCP loop keeps sending sender reports, fed from our counters.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

import aioice.ice
from aioice.ice import StunProtocol
from aiortc import RTCRtpReceiver, RTCRtpSender, RTCRtpTransceiver
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from aiortc.rtcdtlstransport import RTCDtlsTransport, State
from aiortc.rtcrtpparameters import RTCRtpCodecParameters, RTCRtpReceiveParameters
from aiortc.rtcrtpreceiver import StreamStatistics
from aiortc.rtp import AnyRtcpPacket, RtpPacket

from common.logging import get_logger
from streaming.sfu.packets import ABS_SEND_TIME_URI

log = get_logger(__name__)

RtpHandler = Callable[[RtpPacket, int], Coroutine[Any, Any, None]]
RtcpHandler = Callable[[AnyRtcpPacket], Coroutine[Any, Any, None]]

# Drop rather than queue in user space when a subscriber's socket stops draining.
MAX_WRITE_BUFFER_BYTES = 256 * 1024

_aioice_host_addresses = aioice.ice.get_host_addresses


def _host_addresses_or_loopback(use_ipv4: bool, use_ipv6: bool) -> list[str]:
    """aioice never offers loopback, so a server with no other interface (the demo on an
    offline laptop, a CI network namespace with only ``lo``) answered browsers with no ICE
    candidate at all; offer loopback then, which is what a browser on the same host can use."""
    addresses = _aioice_host_addresses(use_ipv4, use_ipv6)
    if addresses:
        return addresses
    return ["127.0.0.1"] if use_ipv4 else ["::1"] if use_ipv6 else []


aioice.ice.get_host_addresses = _host_addresses_or_loopback


class HeldTrack(MediaStreamTrack):
    """A track that never produces a frame: the sender's encode loop waits on it forever."""

    def __init__(self, kind: str) -> None:
        super().__init__()
        self.kind = kind
        self._ended = asyncio.Event()

    async def recv(self) -> Any:
        await self._ended.wait()
        raise MediaStreamError

    def stop(self) -> None:
        super().stop()
        self._ended.set()


class PublisherReceiver:
    """The SFU's grip on one incoming RTP stream: raw packets in, RTCP feedback out."""

    def __init__(self, receiver: RTCRtpReceiver, on_rtp: RtpHandler) -> None:
        self._receiver = receiver
        self.codecs: dict[int, RTCRtpCodecParameters] = {}
        self.started = asyncio.Event()
        # aiortc's RTCP loop builds receiver reports from this dict; we feed it.
        streams = receiver._RTCRtpReceiver__remote_streams  # type: ignore[attr-defined]
        self._remote_streams: dict[int, StreamStatistics] = streams
        receiver._handle_rtp_packet = on_rtp  # type: ignore[method-assign, assignment]
        original_receive = receiver.receive

        async def receive(parameters: RTCRtpReceiveParameters) -> None:
            await original_receive(parameters)
            receiver._RTCRtpReceiver__stop_decoder()  # type: ignore[attr-defined]
            for codec in parameters.codecs:
                if codec.payloadType is not None:
                    self.codecs[codec.payloadType] = codec
            self.started.set()

        receiver.receive = receive  # type: ignore[method-assign]

    def statistics_for(self, ssrc: int, clock_rate: int) -> StreamStatistics:
        statistics = self._remote_streams.get(ssrc)
        if statistics is None:
            statistics = self._remote_streams[ssrc] = StreamStatistics(clock_rate)
        return statistics

    async def send_pli(self, media_ssrc: int) -> None:
        await self._receiver._send_rtcp_pli(media_ssrc)

    async def send_nack(self, media_ssrc: int, lost: list[int]) -> None:
        await self._receiver._send_rtcp_nack(media_ssrc, lost)


def set_answer_codec_parameters(
    transceiver: RTCRtpTransceiver, parameters: dict[str, str | int | None]
) -> None:
    """Add fmtp ``parameters`` to the codecs negotiated from a remote offer, before the
    answer is made (aiortc answers with its own codec parameters, and its
    ``setCodecPreferences`` accepts only capabilities as they are)."""
    for codec in transceiver._codecs:
        codec.parameters = {**codec.parameters, **parameters}


def abs_send_time_id(transceiver: RTCRtpTransceiver) -> int | None:
    """The id negotiated for the abs-send-time header extension on ``transceiver``, if any."""
    for extension in transceiver._headerExtensions:
        if extension.uri == ABS_SEND_TIME_URI:
            return int(extension.id)
    return None


def attach_subscriber_rtcp(sender: RTCRtpSender, on_rtcp: RtcpHandler) -> None:
    """Route the RTCP a subscriber sends about this sender's stream to ``on_rtcp``."""
    sender._handle_rtcp_packet = on_rtcp  # type: ignore[method-assign, assignment]


def update_sender_report(
    sender: RTCRtpSender, *, ntp_timestamp: int, rtp_timestamp: int, packets: int, octets: int
) -> None:
    """Feed the counters aiortc's sender puts in its next RTCP sender report."""
    sender._RTCRtpSender__ntp_timestamp = ntp_timestamp  # type: ignore[attr-defined]
    sender._RTCRtpSender__rtp_timestamp = rtp_timestamp  # type: ignore[attr-defined]
    sender._RTCRtpSender__packet_count = packets  # type: ignore[attr-defined]
    sender._RTCRtpSender__octet_count = octets  # type: ignore[attr-defined]


def _nothing_buffered() -> int:
    return 0


class RtpSink:
    """Sends RTP to one subscriber's bundled transport: SRTP-protect, then UDP ``sendto``.

    The selected ICE pair is looked up once and re-checked per packet (a dict lookup); a
    TURN pair, whose send is asynchronous, falls back to aiortc's own path.
    """

    __slots__ = (
        "_addr",
        "_buffered",
        "_connection",
        "_dtls",
        "_pair",
        "_pending",
        "_protect",
        "_transport",
        "dropped",
    )

    def __init__(self, dtls: RTCDtlsTransport) -> None:
        self._dtls = dtls
        self._connection = dtls.transport._connection
        self._pair: Any = None
        self._transport: asyncio.DatagramTransport | None = None
        self._addr: Any = None
        self._protect: Callable[[bytes], bytes] | None = None
        self._buffered: Callable[[], int] = _nothing_buffered
        self.dropped = 0
        self._pending: set[asyncio.Future[None]] = set()

    def send(self, data: bytes) -> None:
        pair = self._connection._nominated.get(1)
        if (
            pair is not self._pair or self._dtls._state is not State.CONNECTED
        ) and not self._resolve(pair):
            self.dropped += 1
            return
        transport = self._transport
        if transport is None:
            task = asyncio.ensure_future(self._send_slow(data))
            self._pending.add(task)
            task.add_done_callback(self._pending.discard)
            return
        if self._buffered() > MAX_WRITE_BUFFER_BYTES:
            self.dropped += 1
            return
        transport.sendto(self._protect(data), self._addr)  # type: ignore[misc]

    def when_ready(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` once, when DTLS is up (ICE nominated before it)."""
        dtls = self._dtls
        if dtls._state is State.CONNECTED:
            callback()
            return

        def on_state() -> None:
            if dtls._state is State.CONNECTED:
                dtls.remove_listener("statechange", on_state)
                callback()

        dtls.on("statechange", on_state)

    def ready(self) -> bool:
        """Whether a packet sent now would leave (ICE nominated and DTLS connected)."""
        return (
            self._connection._nominated.get(1) is not None and self._dtls._state is State.CONNECTED
        )

    def _resolve(self, pair: Any) -> bool:
        self._pair = None
        self._transport = None
        if pair is None or self._dtls._state is not State.CONNECTED:
            return False
        self._pair = pair
        self._addr = pair.remote_addr
        self._protect = self._dtls._tx_srtp.protect
        if isinstance(pair.protocol, StunProtocol) and pair.protocol.transport is not None:
            self._transport = pair.protocol.transport
            # asyncio queues datagrams in user space when the socket is full
            self._buffered = getattr(self._transport, "get_write_buffer_size", _nothing_buffered)
        return True

    async def _send_slow(self, data: bytes) -> None:
        try:
            await self._dtls._send_rtp(data)
        except ConnectionError:
            self.dropped += 1
