"""Micro-benchmark of the SFU hot path: CPU µs per forwarded RTP packet.

Feeds synthetic VP8 packets (1100-byte payloads) straight into a ``PublishedTrack`` and fans
them out to N downlinks whose sink does what the real one does per packet: SRTP-protect and a
non-blocking UDP ``sendto`` (to a local socket nobody reads). ICE, DTLS and the publisher's
own SRTP unprotect/parse are left out: they are per published packet, not per forwarded one.

    .venv/bin/python benchmarks/sfu.py [--packets 20000] [--subscribers 1,8,32,64] [--json P]

Each subscriber count runs three times in the same process: ``plain`` (the RTP header alone,
as for a subscriber that did not negotiate abs-send-time), ``abs-send-time`` (the header
extension every video downlink writes for the subscriber's bandwidth estimator) and
``abs+playout`` (with the playout-delay element too, as while repairs happen on a browser
subscriber's path: streaming/sfu/playout.py).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import time
from types import SimpleNamespace
from typing import Any

from aiortc import RTCPeerConnection
from aiortc.rtcrtpparameters import RTCRtpCodecParameters
from aiortc.rtp import RtpPacket
from pylibsrtp import Policy, Session

from streaming.sfu.downlink import Downlink
from streaming.sfu.packets import RTP_HEADER
from streaming.sfu.track import PublishedTrack

PAYLOAD = bytes([0x90, 0x80, 0x05, 0x11]) + os.urandom(1096)


class UdpSink:
    """SRTP protect + sendto, as ``RtpSink.send`` does on the fast path."""

    def __init__(self, port: int) -> None:
        key = os.urandom(30)
        self._protect = Session(Policy(key=key, ssrc_type=Policy.SSRC_ANY_OUTBOUND)).protect
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._socket.setblocking(False)
        self._addr = ("127.0.0.1", port)

    def send(self, data: bytes) -> None:
        try:  # noqa: SIM105 - cheaper than contextlib.suppress on the measured path
            self._socket.sendto(self._protect(data), self._addr)
        except BlockingIOError:
            pass

    def ready(self) -> bool:
        return True


VARIANTS = {"plain": (None, None), "abs-send-time": (3, None), "abs+playout": (3, 6)}


async def run(subscribers: int, packets: int, port: int, variant: str) -> dict[str, Any]:
    abs_send_time_id, playout_delay_id = VARIANTS[variant]
    pc = RTCPeerConnection()
    transceiver = pc.addTransceiver("video", direction="recvonly")
    track = PublishedTrack(
        participant_id="lead", source="camera", kind="video", receiver=transceiver.receiver
    )
    track._receiver.codecs[96] = RTCRtpCodecParameters(
        mimeType="video/VP8", clockRate=90000, payloadType=96
    )
    for index in range(subscribers):
        sender: Any = SimpleNamespace(_ssrc=1000 + index)
        downlink = Downlink(kind="video", slot=f"s{index}", sender=sender, on_report=print)
        downlink.assign(track)
        downlink.connect(
            sink=UdpSink(port),  # type: ignore[arg-type]
            payload_type=97,
            abs_send_time_id=abs_send_time_id,
            playout_delay_id=playout_delay_id,
        )
        if playout_delay_id:  # a repair seen upstream: every packet now carries the delay
            downlink.rtt_ms = 170.0
            downlink.update_playout_delay(0.0, 0)
            track.nack_repaired += 1
            track.repair_times.add(0, 200)
            downlink.update_playout_delay(1.0, 1)
            assert downlink.playout_delay_ms > 0
    stream = [
        RtpPacket(
            payload_type=96,
            sequence_number=n & 0xFFFF,
            timestamp=(n // 10) * 3000,
            ssrc=42,
            payload=PAYLOAD if n else bytes([0x90, 0x80, 0x05, 0x10]) + PAYLOAD[4:],
        )
        for n in range(packets)
    ]
    handler = track._on_rtp
    started_cpu, started = time.process_time(), time.perf_counter()
    for n, packet in enumerate(stream):
        handler(packet, n)
    cpu = time.process_time() - started_cpu
    wall = time.perf_counter() - started
    await pc.close()
    forwarded = packets * max(subscribers, 1)
    return {
        "variant": variant,
        "subscribers": subscribers,
        "packets_in": packets,
        "us_per_forwarded_packet": round(cpu / forwarded * 1e6, 2),
        "us_per_published_packet": round(cpu / packets * 1e6, 2),
        "wall_s": round(wall, 3),
    }


def bare_baseline(packets: int, port: int) -> float:
    """µs per packet for header pack + protect + sendto alone (no fan-out logic)."""
    sink = UdpSink(port)
    started = time.process_time()
    for n in range(packets):
        sink.send(RTP_HEADER.pack(0x80, 97, n & 0xFFFF, n * 3000, 7) + PAYLOAD)
    return (time.process_time() - started) / packets * 1e6


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--packets", type=int, default=20000)
    parser.add_argument("--subscribers", default="0,1,8,32,64")
    parser.add_argument("--json", dest="json_path")
    args = parser.parse_args()
    drain = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    drain.bind(("127.0.0.1", 0))
    port = drain.getsockname()[1]
    runs = [
        asyncio.run(run(int(n), args.packets, port, variant))
        for n in args.subscribers.split(",")
        if n
        for variant in VARIANTS
    ]
    baseline = round(bare_baseline(args.packets, port), 2)
    print(f"{'variant':>13} {'subscribers':>11} {'µs/forwarded':>13} {'µs/published':>13}")
    for entry in runs:
        print(
            f"{entry['variant']:>13} {entry['subscribers']:>11} "
            f"{entry['us_per_forwarded_packet']:>13} {entry['us_per_published_packet']:>13}"
        )
    print(f"bare pack+protect+sendto: {baseline} µs/packet")
    if args.json_path:
        with open(args.json_path, "w") as out:
            json.dump({"runs": runs, "bare_us_per_packet": baseline}, out, indent=2)


if __name__ == "__main__":
    main()
