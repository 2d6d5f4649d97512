"""Every use of aiortc internals lives here, so an aiortc upgrade breaks one module only.

aiortc has no SFU API. Measured on aiortc 1.16, the leanest hooks are:

* publisher side: replace ``RTCRtpReceiver._handle_rtp_packet`` on the instance, so parsed
  RTP packets reach the SFU instead of the jitter buffer and decoder (the decoder thread is
  stopped as soon as the receiver starts; nothing is ever decoded);
* subscriber side: the ``RTCRtpSender`` keeps a track that never yields a frame (its RTP loop
  parks on ``recv()`` and no encoder is ever created); the SFU writes rewritten RTP straight
  to the DTLS transport's SRTP session and the selected ICE pair's UDP socket, and replaces
  ``RTCRtpSender._handle_rtcp_packet`` on the instance to see NACK, PLI/FIR and receiver
  reports. The sender's own RTCP loop keeps sending sender reports, fed from our counters;
* receive path (``install_fast_receive``): once DTLS is up, an SRTP or SRTCP datagram is
  unprotected, parsed and handed to the SFU straight from the UDP protocol's
  ``datagram_received``, skipping aioice's STUN parse attempt, its per-datagram
  ``asyncio.Queue`` and the wake-up of aiortc's receive task; STUN and DTLS keep aiortc's
  own path.
"""

from __future__ import annotations

import asyncio
import struct
import time
import weakref
from collections.abc import Callable, Coroutine
from typing import Any

import aioice.ice
import pylibsrtp
from aioice.ice import StunProtocol
from aiortc import RTCRtpReceiver, RTCRtpSender, RTCRtpTransceiver
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from aiortc.rtcdtlstransport import RTCDtlsTransport, State
from aiortc.rtcrtpparameters import RTCRtpCodecParameters, RTCRtpReceiveParameters
from aiortc.rtcrtpreceiver import NackGenerator, StreamStatistics
from aiortc.rtp import (
    AnyRtcpPacket,
    HeaderExtensions,
    HeaderExtensionsMap,
    RtcpByePacket,
    RtcpPacket,
    RtcpSdesPacket,
    RtcpSenderInfo,
    RtcpSourceInfo,
    RtcpSrPacket,
    RtpPacket,
)
from aiortc.sdp import SessionDescription

from common.logging import get_logger
from streaming.sfu.packets import ABS_SEND_TIME_URI
from streaming.sfu.ticker import TICK_S, ticker_for

log = get_logger(__name__)

RtpHandler = Callable[[RtpPacket, int], None]
RtcpHandler = Callable[[AnyRtcpPacket], None]

# Drop rather than queue in user space when a subscriber's socket stops draining.
MAX_WRITE_BUFFER_BYTES = 256 * 1024

# the attribute of a publisher receiver holding the SFU's RTP handler, for the fast path
RTP_HANDLER_ATTRIBUTE = "_sfu_rtp_handler"
# the attribute of a subscriber sender holding the SFU's RTCP handler, for the fast path
RTCP_HANDLER_ATTRIBUTE = "_sfu_rtcp_handler"
_shortcuts = True  # see ``set_aiortc_shortcuts``
_fast_rtcp = True  # see ``set_fast_rtcp``

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
    """The SFU's grip on one incoming RTP stream: raw packets in, RTCP feedback out.

    ``on_rtp`` is called synchronously with each parsed packet and its arrival time (ms on
    aiortc's NTP clock), from aiortc's receive task or, on a transport given
    ``install_fast_receive``, straight from the UDP socket's callback."""

    def __init__(self, receiver: RTCRtpReceiver, on_rtp: RtpHandler) -> None:
        self._receiver = receiver
        self.codecs: dict[int, RTCRtpCodecParameters] = {}
        self.started = asyncio.Event()
        # aiortc's RTCP loop builds receiver reports from this dict; we feed it.
        streams = receiver._RTCRtpReceiver__remote_streams  # type: ignore[attr-defined]
        self._remote_streams: dict[int, StreamStatistics] = streams

        async def handle_rtp_packet(packet: RtpPacket, arrival_time_ms: int) -> None:
            on_rtp(packet, arrival_time_ms)

        receiver._handle_rtp_packet = handle_rtp_packet  # type: ignore[method-assign]
        setattr(receiver, RTP_HANDLER_ATTRIBUTE, on_rtp)
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
            kind = ReceiveStatistics if _shortcuts else StreamStatistics
            statistics = self._remote_streams[ssrc] = kind(clock_rate)
        return statistics

    async def send_pli(self, media_ssrc: int) -> None:
        await self._receiver._send_rtcp_pli(media_ssrc)

    async def send_nack(self, media_ssrc: int, lost: list[int]) -> None:
        await self._receiver._send_rtcp_nack(media_ssrc, lost)


class ReceiveStatistics(StreamStatistics):
    """aiortc 1.16's ``StreamStatistics`` (what its receiver reports say), ``add`` as aiortc's
    with its sequence comparison inlined: it runs for every packet a publisher sends."""

    def add(self, packet: RtpPacket) -> None:
        sequence_number = packet.sequence_number
        max_seq = self.max_seq
        self.packets_received += 1
        if self.base_seq is None:
            self.base_seq = sequence_number
        # aiortc's ``uint16_gt(a, b)``: 0 < (a - b) mod 2^16 < 2^15
        if max_seq is None or 0 < ((sequence_number - max_seq) & 0xFFFF) < 0x8000:
            arrival = int(time.time() * self._clockrate)
            if max_seq is not None and sequence_number < max_seq:
                self.cycles += 1 << 16
            self.max_seq = sequence_number
            timestamp = packet.timestamp
            last_timestamp = self._last_timestamp
            if timestamp != last_timestamp and self.packets_received > 1:
                diff = abs((arrival - self._last_arrival) - (timestamp - last_timestamp))  # type: ignore[operator]
                self._jitter_q4 += diff - ((self._jitter_q4 + 8) >> 4)
            self._last_arrival = arrival
            self._last_timestamp = timestamp


class ReceiveNacks(NackGenerator):
    """aiortc 1.16's ``NackGenerator``, ``add`` as aiortc's with its comparisons inlined and
    the truncation skipped while nothing is missing (it copied the missing set per packet)."""

    def add(self, packet: RtpPacket) -> bool:
        sequence_number = packet.sequence_number
        max_seq = self.max_seq
        if max_seq is None:
            self.max_seq = sequence_number
            return False
        ahead = (sequence_number - max_seq) & 0xFFFF
        if 0 < ahead < 0x8000:
            missing = self.missing
            for step in range(1, ahead):
                missing.add((max_seq + step) & 0xFFFF)
            self.max_seq = sequence_number
        else:
            self.missing.discard(sequence_number)
        if self.missing:
            self.truncate()
        return 1 < ahead < 0x8000


def nack_generator() -> NackGenerator:
    """A publisher stream's NACK generator: ``ReceiveNacks``, aiortc's own with the shortcuts
    off (``set_aiortc_shortcuts``)."""
    return ReceiveNacks() if _shortcuts else NackGenerator()


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


def accept_header_extension(
    transceiver: RTCRtpTransceiver, offer: SessionDescription, uri: str
) -> int | None:
    """Answer the header extension ``uri`` on ``transceiver``'s line with the id the remote
    ``offer`` gave it (aiortc answers only the extensions it knows itself, and an SFU that
    writes the extension's bytes itself needs nothing more from aiortc); None when the offer
    does not have it there. Call after ``setRemoteDescription`` and before the answer."""
    for extension in transceiver._headerExtensions:
        if extension.uri == uri:
            return int(extension.id)
    index = transceiver._get_mline_index()
    if index is None or index >= len(offer.media):
        return None
    for extension in offer.media[index].rtp.headerExtensions:
        if extension.uri == uri:
            transceiver._headerExtensions.append(extension)
            return int(extension.id)
    return None


def report_round_trip_s(sender: RTCRtpSender, lsr: int, dlsr: int) -> float | None:
    """The round trip a receiver report shows (RFC 3550, 6.4.1) when it answers the last
    sender report ``sender`` sent (``share_sender_report_timer`` and aiortc's own loop note
    when): seconds since then, less the receiver's delay; None for an older or no report."""
    try:
        last: int | None = sender._RTCRtpSender__lsr  # type: ignore[attr-defined]
        sent_at: float | None = sender._RTCRtpSender__lsr_time  # type: ignore[attr-defined]
    except AttributeError:
        return None
    if last is None or sent_at is None or lsr != last or not dlsr:
        return None
    round_trip = time.time() - sent_at - dlsr / 65536
    return round_trip if round_trip > 0 else None


def attach_subscriber_rtcp(sender: RTCRtpSender, on_rtcp: RtcpHandler) -> None:
    """Route the RTCP a subscriber sends about this sender's stream to ``on_rtcp``: from
    aiortc's receive task, or, on a transport given ``install_fast_receive``, straight from
    the UDP socket's callback."""

    async def handle_rtcp_packet(packet: AnyRtcpPacket) -> None:
        on_rtcp(packet)

    sender._handle_rtcp_packet = handle_rtcp_packet  # type: ignore[method-assign]
    setattr(sender, RTCP_HANDLER_ATTRIBUTE, on_rtcp)


REPORT_TICK_S = TICK_S
REPORT_PHASES = 4  # each sender reports every REPORT_PHASES ticks, senders spread over them


class _ReportClock:
    """The RTCP sender reports of every SFU sender in this event loop, on one ticker (the
    worker's shared one, ``streaming.sfu.ticker``): on each tick the senders of one phase
    are looked at, and only those that sent something since their last report are woken to
    send one. An idle slot (an inspector has 5 of its 7) costs no timer and no wake-up."""

    def __init__(self) -> None:
        # per phase: each waiting sender's future and the packet count of its last report
        self._waiting: list[dict[RTCRtpSender, tuple[asyncio.Future[None], int]]] = [
            {} for _ in range(REPORT_PHASES)
        ]
        self._unsubscribe: Callable[[], None] | None = None
        self._phase = 0  # the phase the last tick looked at
        self._next_phase = 0

    def phase(self) -> int:
        self._next_phase = (self._next_phase + 1) % REPORT_PHASES
        return self._next_phase

    async def wait(self, phase: int, sender: RTCRtpSender, reported: int) -> None:
        """Until a tick of ``phase`` finds ``sender`` has sent packets beyond ``reported``."""
        wake = asyncio.get_running_loop().create_future()
        waiting = self._waiting[phase]
        waiting[sender] = (wake, reported)
        if self._unsubscribe is None:
            self._unsubscribe = ticker_for(REPORT_TICK_S).every(REPORT_TICK_S, self._tick)
        try:
            await wake
        finally:
            if waiting.get(sender, (None,))[0] is wake:
                del waiting[sender]

    def _tick(self) -> None:
        self._phase = phase = (self._phase + 1) % REPORT_PHASES
        for sender, (wake, reported) in list(self._waiting[phase].items()):
            count = sender._RTCRtpSender__packet_count & 0xFFFFFFFF  # type: ignore[attr-defined]
            if count != reported and not wake.done():
                wake.set_result(None)
        if self._unsubscribe is not None and not any(self._waiting):
            self._unsubscribe()  # nobody waits: stop until somebody does
            self._unsubscribe = None


_report_clocks: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _ReportClock] = (
    weakref.WeakKeyDictionary()
)


def _report_clock() -> _ReportClock:
    loop = asyncio.get_running_loop()
    clock = _report_clocks.get(loop)
    if clock is None:
        clock = _report_clocks[loop] = _ReportClock()
    return clock


def share_sender_report_timer(sender: RTCRtpSender) -> None:
    """Send ``sender``'s RTCP sender reports from one shared timer, and only while it sends.

    aiortc's sender runs its own RTCP task that wakes every 0.5-1.5 s and sends a report and
    an SDES chunk whether or not anything was sent. An SFU has many senders and most of them
    are idle (an inspector has 7 receive slots, 2 of them carrying the lead; a lead has 6 hand
    and remote slots): on this kind of machine each wake-up of an idle process costs about
    0.1 ms of CPU, more than forwarding a packet. Here the reports of every sender in the
    process go out from one clock ticking 4 times a second (each sender on one tick in four,
    about once a second), and a sender that sent nothing since its last report skips it, as
    RFC 3550 (6.4) has a participant that sends nothing send receiver reports only. Measured
    on aiortc 1.16; must be called before aiortc starts the sender (negotiation). BYE still
    goes out when the sender stops.
    """
    if not _shortcuts:
        return
    try:
        started: asyncio.Event = sender._RTCRtpSender__rtcp_started  # type: ignore[attr-defined]
        exited: asyncio.Event = sender._RTCRtpSender__rtcp_exited  # type: ignore[attr-defined]
        sender._RTCRtpSender__packet_count  # type: ignore[attr-defined]  # noqa: B018
    except AttributeError:
        log.warning("sender_reports_unshared", aiortc="internals differ from aiortc 1.16")
        return

    async def run_rtcp() -> None:
        started.set()
        clock = _report_clock()
        phase = clock.phase()
        reported = 0  # packet count in the last report; none before anything is sent
        try:
            while True:
                await clock.wait(phase, sender, reported)
                count = sender._RTCRtpSender__packet_count & 0xFFFFFFFF  # type: ignore[attr-defined]
                if count != reported:
                    reported = count
                    await sender._send_rtcp(_sender_report(sender, count))
        except asyncio.CancelledError:
            pass
        await sender._send_rtcp([RtcpByePacket(sources=[sender._ssrc])])
        exited.set()

    sender._run_rtcp = run_rtcp  # type: ignore[method-assign]


def _sender_report(sender: RTCRtpSender, packet_count: int) -> list[AnyRtcpPacket]:
    """The sender report and SDES chunk aiortc 1.16's ``RTCRtpSender._run_rtcp`` sends."""
    ntp_timestamp: int = sender._RTCRtpSender__ntp_timestamp  # type: ignore[attr-defined]
    packets: list[AnyRtcpPacket] = [
        RtcpSrPacket(
            ssrc=sender._ssrc,
            sender_info=RtcpSenderInfo(
                ntp_timestamp=ntp_timestamp,
                rtp_timestamp=sender._RTCRtpSender__rtp_timestamp,  # type: ignore[attr-defined]
                packet_count=packet_count,
                octet_count=sender._RTCRtpSender__octet_count & 0xFFFFFFFF,  # type: ignore[attr-defined]
            ),
        )
    ]
    sender._RTCRtpSender__lsr = (ntp_timestamp >> 16) & 0xFFFFFFFF  # type: ignore[attr-defined]
    sender._RTCRtpSender__lsr_time = time.time()  # type: ignore[attr-defined]
    cname: str | None = sender._RTCRtpSender__cname  # type: ignore[attr-defined]
    if cname is not None:
        packets.append(
            RtcpSdesPacket(
                chunks=[RtcpSourceInfo(ssrc=sender._ssrc, items=[(1, cname.encode("utf8"))])]
            )
        )
    return packets


def update_sender_report(
    sender: RTCRtpSender, *, ntp_timestamp: int, rtp_timestamp: int, packets: int, octets: int
) -> None:
    """Feed the counters aiortc's sender puts in its next RTCP sender report."""
    sender._RTCRtpSender__ntp_timestamp = ntp_timestamp  # type: ignore[attr-defined]
    sender._RTCRtpSender__rtp_timestamp = rtp_timestamp  # type: ignore[attr-defined]
    sender._RTCRtpSender__packet_count = packets  # type: ignore[attr-defined]
    sender._RTCRtpSender__octet_count = octets  # type: ignore[attr-defined]


def when_dtls_connected(dtls: RTCDtlsTransport, callback: Callable[[], None]) -> None:
    """Call ``callback`` once, when ``dtls`` is connected (at once if it already is)."""
    if dtls._state is State.CONNECTED:
        callback()
        return

    def on_state() -> None:
        if dtls._state is State.CONNECTED:
            dtls.remove_listener("statechange", on_state)
            callback()

    dtls.on("statechange", on_state)


def srtp_protector(session: pylibsrtp.Session) -> Callable[[bytes], bytes]:
    """``session.protect`` without pylibsrtp's per-call ``int *`` allocation and checks
    (pylibsrtp 1.0: 4.2 → 3.3 µs for a 1100-byte packet); falls back to ``session.protect``
    when pylibsrtp's internals are not as expected."""
    return _srtp_call(session, "srtp_protect", pylibsrtp.SRTP_MAX_TRAILER_LEN, session.protect)


def srtp_unprotector(session: pylibsrtp.Session) -> Callable[[bytes], bytes]:
    """``session.unprotect`` the same way (see ``srtp_protector``)."""
    return _srtp_call(session, "srtp_unprotect", 0, session.unprotect)


def srtcp_unprotector(session: pylibsrtp.Session) -> Callable[[bytes], bytes]:
    """``session.unprotect_rtcp`` the same way (see ``srtp_protector``)."""
    return _srtp_call(session, "srtp_unprotect_rtcp", 0, session.unprotect_rtcp)


def _srtp_call(
    session: pylibsrtp.Session, name: str, trailer: int, fallback: Callable[[bytes], bytes]
) -> Callable[[bytes], bytes]:
    if not _shortcuts:
        return fallback
    try:
        from pylibsrtp._binding import ffi, lib  # type: ignore[import-not-found]

        function = getattr(lib, name)
        srtp = session._srtp[0]
        cdata = session._cdata
        buffer = session._buffer
        ok = lib.srtp_err_status_ok
    except (ImportError, AttributeError):
        return fallback
    length = ffi.new("int *")
    limit = len(buffer) - trailer

    def process(data: bytes) -> bytes:
        size = len(data)
        if size > limit:
            return fallback(data)  # raises as pylibsrtp does
        length[0] = size
        buffer[0:size] = data
        status = function(srtp, cdata, length)
        if status != ok:
            raise pylibsrtp.Error(f"{name} failed with status {status}")
        result: bytes = buffer[0 : length[0]]
        return result

    return process


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
        when_dtls_connected(self._dtls, callback)

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
        self._protect = srtp_protector(self._dtls._tx_srtp)
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


# -- the receive path ------------------------------------------------------------------------

# aiortc's clock (``aiortc.clock.current_ms``) counts ms since 1900 through ``datetime``.
NTP_UNIX_OFFSET_MS = 2_208_988_800_000


def set_aiortc_shortcuts(enabled: bool) -> None:
    """Whether this process takes the shortcuts around aiortc measured to save CPU:
    ``install_fast_receive``, ``srtp_protector`` / ``srtp_unprotector`` and
    ``share_sender_report_timer`` (a worker setting, so a benchmark can compare aiortc's own
    paths with these in one run). Applies to transports and senders set up afterwards."""
    global _shortcuts
    _shortcuts = enabled


def set_fast_rtcp(enabled: bool) -> None:
    """Whether ``install_fast_receive`` also takes SRTCP (subscribers' receiver reports,
    NACK, PLI/FIR, REMB) straight from the UDP socket (a worker setting, to compare with
    aiortc's path in one run). Applies to transports connected afterwards."""
    global _fast_rtcp
    _fast_rtcp = enabled


def arrival_ms() -> int:
    """Now on aiortc's clock (ms since 1900, as ``aiortc.clock.current_ms``), without building
    two ``datetime`` objects per packet."""
    return int(time.time() * 1000) + NTP_UNIX_OFFSET_MS


def install_fast_receive(dtls: RTCDtlsTransport) -> None:
    """Once ``dtls`` is connected, deliver its incoming SRTP straight from the UDP socket.

    Measured on aiortc 1.16 / aioice 0.13 (benchmarks/sfu_variants.py, ``SFU_AIORTC_SHORTCUTS``):
    each media datagram otherwise goes through aioice's ``stun.parse_message`` (which fails by
    raising), an ``asyncio.Queue`` put, the wake-up of aiortc's ``__run`` task and its
    ``_recv_next``. Here the UDP protocols of the transport's ICE connection get their own
    ``datagram_received``: SRTP (first byte 128-191, not RTCP) is unprotected, parsed,
    routed as aiortc routes it and given to the receiver's ``PublisherReceiver`` handler at
    once; SRTCP likewise to the subscriber senders' handlers (``attach_subscriber_rtcp``,
    ``set_fast_rtcp``). Anything else (STUN checks and consent, DTLS, a transport no longer
    connected) takes aiortc's path unchanged, except a datagram shorter
    than any valid header, which is dropped: aiortc 1.16's ``_recv_next`` fails on an empty one
    and that ends its receive task, i.e. the connection. Safe fallback: if the aiortc/aioice
    internals are not what this expects, nothing is installed.
    """
    if not _shortcuts:
        return
    when_dtls_connected(dtls, lambda: _install_fast_receive(dtls))


def _install_fast_receive(dtls: RTCDtlsTransport) -> None:
    try:
        protocols = list(dtls.transport._connection._protocols)
        unprotect = srtp_unprotector(dtls._rx_srtp)
        extensions_map = dtls._rtp_header_extensions_map
        router = dtls._rtp_router
        router.ssrc_table, router.payload_type_table  # noqa: B018 - read per packet below
        rtcp = (srtcp_unprotector(dtls._rx_srtp), dtls._rtp_router.route_rtcp)
    except AttributeError:
        log.warning("fast_receive_unavailable", aiortc="internals differ from aiortc 1.16")
        return
    for protocol in protocols:
        # TURN protocols deliver through their own path; a protocol is wrapped once
        if isinstance(protocol, StunProtocol) and "datagram_received" not in vars(protocol):
            protocol.datagram_received = _fast_datagram_received(  # type: ignore[method-assign, assignment]
                dtls,
                protocol.datagram_received,
                unprotect,
                extensions_map,
                router,
                rtcp if _fast_rtcp else None,
            )


def _fast_datagram_received(
    dtls: RTCDtlsTransport,
    fallback: Callable[[bytes, tuple[Any, ...]], None],
    unprotect: Callable[[bytes], bytes],
    extensions_map: Any,
    router: Any,
    rtcp: tuple[Callable[[bytes], bytes], Callable[[AnyRtcpPacket], Any]] | None,
) -> Callable[[bytes, tuple[Any, ...]], None]:
    parse = parse_rtp
    route_rtp = router.route_rtp
    # aiortc's ``RtpRouter.route_rtp`` looked up here as it does first, without the empty set
    # it makes per call (it fills and empties these dicts in place); anything else goes to it
    ssrc_table: dict[int, Any] = router.ssrc_table
    payload_type_table: dict[int, set[Any]] = router.payload_type_table
    no_receivers: frozenset[Any] = frozenset()
    connected = State.CONNECTED
    receive_rtcp = None if rtcp is None else _fast_rtcp_received(dtls, *rtcp)

    def datagram_received(data: bytes, addr: tuple[Any, ...]) -> None:
        if len(data) < 12:
            # nothing valid is this short (headers: RTP 12 bytes, DTLS 13, STUN 20), and
            # aiortc's ``_recv_next`` fails on an empty datagram, which ends its receive task
            return
        # RTP: first byte 128-191 (version 2; STUN starts below 4, DTLS at 20-63); SRTCP has
        # a packet type of 192-208 in the second byte (``aiortc.rtp.is_rtcp``)
        if not 127 < data[0] < 192 or dtls._state is not connected:
            fallback(data, addr)
            return
        if 191 < data[1] < 209:
            if receive_rtcp is None:
                fallback(data, addr)
            else:
                receive_rtcp(data)
            return
        arrival = arrival_ms()
        dtls._RTCDtlsTransport__rx_bytes += len(data)  # type: ignore[attr-defined]
        dtls._RTCDtlsTransport__rx_packets += 1  # type: ignore[attr-defined]
        try:
            packet = parse(unprotect(data), extensions_map)
        except (pylibsrtp.Error, ValueError):
            return  # as aiortc: a datagram that fails authentication or parsing is dropped
        receiver = ssrc_table.get(packet.ssrc)
        if receiver is None or receiver not in payload_type_table.get(
            packet.payload_type, no_receivers
        ):
            receiver = route_rtp(packet)
            if receiver is None:
                return
        handler = getattr(receiver, RTP_HANDLER_ATTRIBUTE, None)
        try:
            if handler is not None:
                handler(packet, arrival)
            else:
                _spawn(receiver._handle_rtp_packet(packet, arrival_time_ms=arrival))
        except Exception:
            # raised into the event loop, it would close the socket (a fatal transport error)
            log.exception("rtp_handler_failed")

    return datagram_received


_RTP_FIXED_HEADER = struct.Struct("!BBHII")
_EXTENSION_HEADER = struct.Struct("!HH")
_NO_EXTENSIONS_MAP = HeaderExtensionsMap()


class ReceivedRtpPacket(RtpPacket):
    """An ``RtpPacket`` as ``parse_rtp`` makes it: the fixed header, CSRCs and payload read
    at once, the header extensions (an SFU reads only audio's level) parsed on first use."""

    def __init__(
        self,
        marker: int,
        payload_type: int,
        sequence_number: int,
        timestamp: int,
        ssrc: int,
        payload: bytes,
        raw_extensions: tuple[HeaderExtensionsMap, int, bytes] | None,
    ) -> None:
        self.version = 2
        self.marker = marker
        self.payload_type = payload_type
        self.sequence_number = sequence_number
        self.timestamp = timestamp
        self.ssrc = ssrc
        self.csrc = []
        self.payload = payload
        self.padding_size = 0
        self._raw_extensions = raw_extensions
        self._extensions: HeaderExtensions | None = None

    @property
    def extensions(self) -> HeaderExtensions:
        parsed = self._extensions
        if parsed is None:
            raw = self._raw_extensions
            try:
                parsed = HeaderExtensions() if raw is None else raw[0].get(raw[1], raw[2])
            except ValueError:
                # a truncated element: read as none (aiortc would have dropped the packet)
                parsed = HeaderExtensions()
            self._extensions = parsed
        return parsed

    @extensions.setter
    def extensions(self, value: HeaderExtensions) -> None:
        self._extensions = value


def audio_level(packet: RtpPacket) -> tuple[bool, int] | None:
    """``packet.extensions.audio_level`` (RFC 6464: voice activity, level in -dBov), read on
    ``parse_rtp``'s packets from that element's byte alone: every audio packet asks, and
    parsing all of its elements took as long as the rest of the packet's header."""
    level: tuple[bool, int] | None
    if type(packet) is not ReceivedRtpPacket or packet._extensions is not None:
        level = packet.extensions.audio_level
        return level
    raw = packet._raw_extensions
    if raw is None:
        return None
    extensions_map, profile, value = raw
    wanted = extensions_map._HeaderExtensionsMap__ids.audio_level  # type: ignore[attr-defined]
    if profile != 0xBEDE or wanted is None:
        level = packet.extensions.audio_level
        return level
    # one-byte elements (RFC 8285): id << 4 | length - 1, then the value; zero bytes pad
    pos, end = 0, len(value)
    while pos < end:
        header = value[pos]
        pos += 1
        if not header:
            continue
        if header >> 4 == wanted:
            if pos + (header & 0x0F) >= end:
                return None  # truncated: read as none, as ``ReceivedRtpPacket.extensions``
            byte = value[pos]
            return (byte & 0x80 == 0x80, byte & 0x7F)
        pos += (header & 0x0F) + 1
    return None


def parse_rtp(
    data: bytes, extensions_map: HeaderExtensionsMap = _NO_EXTENSIONS_MAP
) -> ReceivedRtpPacket:
    """``RtpPacket.parse`` of aiortc 1.16 for the receive path, refusing the same packets
    (``ValueError``) but for a malformed header extension element, which is read as none
    when the extensions are first used.

    aiortc's parse builds every packet's ``HeaderExtensions`` twice and walks its elements
    in Python, 4.3 µs a packet here; the SFU reads the extensions of audio packets only
    (their level), so they are kept as bytes until then."""
    size = len(data)
    if size < 12:
        raise ValueError("RTP packet length is less than 12 bytes")
    first, second, sequence_number, timestamp, ssrc = _RTP_FIXED_HEADER.unpack_from(data)
    if first >> 6 != 2:
        raise ValueError("RTP packet has invalid version")
    pos = 12
    cc = first & 0x0F
    if cc:
        if size < pos + 4 * cc:
            raise ValueError("RTP packet has truncated CSRC")
        csrc = list(struct.unpack_from(f"!{cc}L", data, pos))
        pos += 4 * cc
    raw_extensions = None
    if first & 0x10:
        if size < pos + 4:
            raise ValueError("RTP packet has truncated extension profile / length")
        profile, length = _EXTENSION_HEADER.unpack_from(data, pos)
        pos += 4
        end = pos + 4 * length
        if size < end:
            raise ValueError("RTP packet has truncated extension value")
        raw_extensions = (extensions_map, profile, data[pos:end])
        pos = end
    if first & 0x20:
        padding = data[-1]
        if not padding or padding > size - pos:
            raise ValueError("RTP packet padding length is invalid")
        payload = data[pos:-padding]
    else:
        padding = 0
        payload = data[pos:]
    packet = ReceivedRtpPacket(
        second >> 7, second & 0x7F, sequence_number, timestamp, ssrc, payload, raw_extensions
    )
    if cc:
        packet.csrc = csrc
    if padding:
        packet.padding_size = padding
    return packet


def _fast_rtcp_received(
    dtls: RTCDtlsTransport,
    unprotect: Callable[[bytes], bytes],
    route_rtcp: Callable[[AnyRtcpPacket], Any],
) -> Callable[[bytes], None]:
    """SRTCP as aiortc 1.16's ``_recv_next`` and ``_handle_rtcp_data`` take it: unprotect,
    parse the compound packet, give each packet to every sender or receiver it concerns. A
    subscriber sender's handler (``attach_subscriber_rtcp``) is called at once; aiortc's own
    (a publisher's sender reports to our receivers) runs as a task, as there it is awaited.
    At 8 inspectors the SFU gets about as many RTCP datagrams a second (each aiortc receiver
    reports on its own, idle slots included) as half the published RTP."""
    parse = RtcpPacket.parse

    def receive_rtcp(data: bytes) -> None:
        dtls._RTCDtlsTransport__rx_bytes += len(data)  # type: ignore[attr-defined]
        dtls._RTCDtlsTransport__rx_packets += 1  # type: ignore[attr-defined]
        try:
            packets = parse(unprotect(data))
        except (pylibsrtp.Error, ValueError):
            return  # as aiortc: dropped
        for packet in packets:
            for recipient in route_rtcp(packet):
                handler = getattr(recipient, RTCP_HANDLER_ATTRIBUTE, None)
                try:
                    if handler is not None:
                        handler(packet)
                    else:
                        _spawn(recipient._handle_rtcp_packet(packet))
                except Exception:
                    log.exception("rtcp_handler_failed")

    return receive_rtcp


_spawned: set[asyncio.Future[None]] = set()


def _spawn(coroutine: Coroutine[Any, Any, None]) -> None:
    task = asyncio.ensure_future(coroutine)
    _spawned.add(task)
    task.add_done_callback(_spawned.discard)
