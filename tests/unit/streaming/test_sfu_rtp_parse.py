"""The receive path's RTP parser (``aiortc_hooks.parse_rtp``) reads every packet as aiortc's
``RtpPacket.parse`` does, refusals included; only the header extensions wait until used."""

from __future__ import annotations

import os
import struct

import pytest
from aiortc.rtcrtpparameters import RTCRtpHeaderExtensionParameters, RTCRtpParameters
from aiortc.rtp import HeaderExtensionsMap, RtpPacket

from streaming.sfu.aiortc_hooks import audio_level, parse_rtp

FIELDS = (
    *("version", "marker", "payload_type", "sequence_number", "timestamp", "ssrc"),
    *("csrc", "payload", "padding_size", "extensions"),
)


def _extensions_map() -> HeaderExtensionsMap:
    uris = {
        1: "urn:ietf:params:rtp-hdrext:sdes:mid",
        2: "http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time",
        3: "urn:ietf:params:rtp-hdrext:ssrc-audio-level",
        4: "http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01",
    }
    extensions_map = HeaderExtensionsMap()
    extensions_map.configure(
        RTCRtpParameters(
            headerExtensions=[
                RTCRtpHeaderExtensionParameters(id=i, uri=uri) for i, uri in uris.items()
            ]
        )
    )
    return extensions_map


def _packets(extensions_map: HeaderExtensionsMap) -> list[bytes]:
    """Packets as publishers send them: plain, with CSRCs, one-byte and two-byte header
    extensions (mid, abs-send-time, audio level, transport-cc), padding, a bare header."""
    packets = []
    for n in range(8):
        packet = RtpPacket(
            payload_type=96 + n % 3,
            marker=n % 2,
            sequence_number=65530 + n & 0xFFFF,
            timestamp=(n * 3000) & 0xFFFFFFFF,
            ssrc=0xDEADBEEF - n,
            payload=os.urandom(20 * n),
        )
        if n % 4 == 1:
            packet.csrc = [11, 22, 33][: n % 3 + 1]
        if n % 2:
            packet.extensions.mid = "0"
            packet.extensions.abs_send_time = 0x123456
            packet.extensions.transport_sequence_number = n
        if n in (2, 5):
            packet.extensions.audio_level = (n == 5, 30 + n)
        if n in (3, 6):
            packet.padding_size = 4
        packets.append(packet.serialize(extensions_map))
    # a two-byte-header extension (profile 0x1000) carrying the mid and an unknown id
    two_byte = struct.pack("!BBBB", 1, 1, ord("7"), 0) + struct.pack("!BBH", 9, 2, 0xABCD)
    packets.append(
        struct.pack("!BBHII", 0x90, 111, 7, 8, 9)
        + struct.pack("!HH", 0x1000, len(two_byte) // 4)
        + two_byte
        + b"opus"
    )
    return packets


def _fields(packet: RtpPacket) -> tuple[object, ...]:
    return tuple(getattr(packet, name) for name in FIELDS)


def test_packets_read_as_aiortc_reads_them():
    extensions_map = _extensions_map()
    for data in _packets(extensions_map):
        ours = parse_rtp(data, extensions_map)
        assert isinstance(ours, RtpPacket)
        assert _fields(ours) == _fields(RtpPacket.parse(data, extensions_map))
        assert _fields(parse_rtp(data)) == _fields(RtpPacket.parse(data))


def test_audio_level_reads_as_aiortc_reads_it():
    extensions_map = _extensions_map()
    levels = []
    for data in _packets(extensions_map):
        expected = RtpPacket.parse(data, extensions_map).extensions.audio_level
        assert audio_level(parse_rtp(data, extensions_map)) == expected
        assert audio_level(parse_rtp(data)) is None  # no id negotiated for it
        assert audio_level(RtpPacket.parse(data, extensions_map)) == expected
        levels.append(expected)
    assert (False, 32) in levels and (True, 35) in levels


def test_audio_level_and_mid_are_read_when_used():
    extensions_map = _extensions_map()
    data = _packets(extensions_map)[5]
    packet = parse_rtp(data, extensions_map)
    assert packet.extensions.audio_level == (True, 35)
    assert packet.extensions.mid == "0"
    packet.extensions = RtpPacket().extensions  # assignable, as on aiortc's packets
    assert packet.extensions.audio_level is None


@pytest.mark.parametrize(
    "data",
    [
        b"",
        bytes(11),
        struct.pack("!BBHII", 0x40, 96, 1, 2, 3),  # version 1
        struct.pack("!BBHII", 0x82, 96, 1, 2, 3) + bytes(4),  # two CSRCs, one there
        struct.pack("!BBHII", 0x90, 96, 1, 2, 3) + b"\xbe\xde",  # extension header cut
        struct.pack("!BBHII", 0x90, 96, 1, 2, 3) + struct.pack("!HH", 0xBEDE, 2) + bytes(4),
        struct.pack("!BBHII", 0xA0, 96, 1, 2, 3) + b"abc\x00",  # padding length 0
        struct.pack("!BBHII", 0xA0, 96, 1, 2, 3) + b"ab\x09",  # padding past the header
    ],
)
def test_malformed_packets_are_refused_as_aiortc_refuses_them(data):
    with pytest.raises(ValueError):
        RtpPacket.parse(data)
    with pytest.raises(ValueError):
        parse_rtp(data)


def test_a_truncated_extension_element_reads_as_none():
    # aiortc drops such a packet; here its payload is forwarded and its extensions are empty
    element = bytes([0x3F, 0x01, 0x02, 0x03])  # audio level (id 3) claiming 16 bytes
    data = struct.pack("!BBHII", 0x90, 111, 1, 2, 3) + struct.pack("!HH", 0xBEDE, 1) + element
    with pytest.raises(ValueError):
        RtpPacket.parse(data, _extensions_map())
    packet = parse_rtp(data + b"opus", _extensions_map())
    assert packet.payload == b"opus"
    assert audio_level(packet) is None
    assert packet.extensions.audio_level is None
