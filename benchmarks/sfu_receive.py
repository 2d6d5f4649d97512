"""Micro-benchmark of the SFU's receive path: CPU µs per *published* packet, by stage.

``benchmarks/sfu.py`` measures the fan-out (per forwarded packet); this measures what every
packet a publisher sends costs before any of it: SRTP unprotect, parsing, the audio level,
and the whole fast path (``aiortc_hooks`` ``datagram_received``: unprotect, parse, route,
``PublishedTrack._on_rtp`` with its statistics, NACK generator and packet cache) with no
subscriber. Packets are as aiortc's sender makes them (mid and abs-send-time elements; audio
also its level), AES-256-GCM as aiortc negotiates between its own peers.

    .venv/bin/python benchmarks/sfu_receive.py [--packets 20000] [--json PATH]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

from aiortc import RTCPeerConnection
from aiortc.rtcdtlstransport import State
from aiortc.rtcrtpparameters import (
    RTCRtpCodecParameters,
    RTCRtpHeaderExtensionParameters,
    RTCRtpParameters,
)
from aiortc.rtp import HeaderExtensionsMap, RtpPacket
from pylibsrtp import Policy, Session

from streaming.sfu import aiortc_hooks
from streaming.sfu.aiortc_hooks import audio_level, parse_rtp, srtp_unprotector
from streaming.sfu.track import PublishedTrack

KEY = os.urandom(44)
PROFILE = Policy.SRTP_PROFILE_AEAD_AES_256_GCM
URIS = {
    1: "urn:ietf:params:rtp-hdrext:sdes:mid",
    2: "http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time",
    3: "urn:ietf:params:rtp-hdrext:ssrc-audio-level",
}


def _extensions_map() -> HeaderExtensionsMap:
    extensions_map = HeaderExtensionsMap()
    extensions_map.configure(
        RTCRtpParameters(
            headerExtensions=[
                RTCRtpHeaderExtensionParameters(id=i, uri=uri) for i, uri in URIS.items()
            ]
        )
    )
    return extensions_map


def _session(direction: int) -> Session:
    return Session(Policy(key=KEY, ssrc_type=direction, srtp_profile=PROFILE))


def _stream(kind: str, count: int, extensions_map: HeaderExtensionsMap) -> list[bytes]:
    """Serialized RTP as aiortc's sender writes it: video 1100-byte VP8, audio 80-byte Opus."""
    packets = []
    for n in range(count):
        if kind == "video":
            payload = bytes([0x90, 0x80, 0x05, 0x10 if n % 300 == 0 else 0x11])
            packet = RtpPacket(96, sequence_number=n & 0xFFFF, timestamp=n // 10 * 3000, ssrc=42)
            packet.payload = payload + os.urandom(1096)
        else:
            packet = RtpPacket(111, sequence_number=n & 0xFFFF, timestamp=n * 960, ssrc=43)
            packet.payload = os.urandom(80)
            packet.extensions.audio_level = (False, 30)
        packet.extensions.mid = "0"
        packet.extensions.abs_send_time = n & 0xFFFFFF
        packets.append(packet.serialize(extensions_map))
    return packets


def _timed(function: Callable[[Any], Any], items: list[Any]) -> float:
    started = time.process_time()
    for item in items:
        function(item)
    return round((time.process_time() - started) / len(items) * 1e6, 2)


async def _fast_path(kind: str, protected: list[bytes], extensions_map: Any) -> float:
    """µs per packet through the fast receive path into a ``PublishedTrack`` (no downlink)."""
    pc = RTCPeerConnection()
    receiver = pc.addTransceiver(kind, direction="recvonly").receiver
    track = PublishedTrack(
        participant_id="lead",
        source="camera" if kind == "video" else "mic",
        kind=kind,  # type: ignore[arg-type]
        receiver=receiver,
        on_audio_level=lambda participant, level: None,
    )
    payload_type = 96 if kind == "video" else 111
    track._receiver.codecs[payload_type] = RTCRtpCodecParameters(
        mimeType="video/VP8" if kind == "video" else "audio/opus",
        clockRate=90000 if kind == "video" else 48000,
        payloadType=payload_type,
    )
    ssrc = 42 if kind == "video" else 43
    dtls = SimpleNamespace(
        _state=State.CONNECTED, _RTCDtlsTransport__rx_bytes=0, _RTCDtlsTransport__rx_packets=0
    )
    router = SimpleNamespace(
        ssrc_table={ssrc: receiver},
        payload_type_table={payload_type: {receiver}},
        route_rtp=lambda packet: None,
    )
    received = aiortc_hooks._fast_datagram_received(
        dtls,  # type: ignore[arg-type]
        lambda data, addr: None,
        srtp_unprotector(_session(Policy.SSRC_ANY_INBOUND)),
        extensions_map,
        router,
        None,
    )
    addr = ("127.0.0.1", 5000)
    result = _timed(lambda data: received(data, addr), protected)
    assert track.packets == len(protected), track.packets
    await pc.close()
    return result


def measure(count: int) -> list[dict[str, Any]]:
    extensions_map = _extensions_map()
    runs = []
    for kind in ("video", "audio"):
        plain = _stream(kind, count, extensions_map)
        protect = _session(Policy.SSRC_ANY_OUTBOUND).protect
        protected = [protect(data) for data in plain]
        unprotect = srtp_unprotector(_session(Policy.SSRC_ANY_INBOUND))
        runs.append(
            {
                "kind": kind,
                "unprotect": _timed(unprotect, protected),
                "aiortc_parse": _timed(lambda d: RtpPacket.parse(d, extensions_map), plain),
                "parse_rtp": _timed(lambda d: parse_rtp(d, extensions_map), plain),
                "aiortc_parse+level": _timed(
                    lambda d: RtpPacket.parse(d, extensions_map).extensions.audio_level, plain
                ),
                "parse_rtp+level": _timed(
                    lambda d: audio_level(parse_rtp(d, extensions_map)), plain
                ),
                "fast_path": asyncio.run(_fast_path(kind, protected, extensions_map)),
            }
        )
    return runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--packets", type=int, default=20000)
    parser.add_argument("--json", dest="json_path")
    args = parser.parse_args()
    runs = measure(args.packets)
    stages = [key for key in runs[0] if key != "kind"]
    print(f"{'µs/packet':>20} " + " ".join(f"{run['kind']:>8}" for run in runs))
    for stage in stages:
        print(f"{stage:>20} " + " ".join(f"{run[stage]:>8}" for run in runs))
    if args.json_path:
        with open(args.json_path, "w") as out:
            json.dump({"runs": runs}, out, indent=2)


if __name__ == "__main__":
    main()
