"""Byte-level RTP helpers for the forwarding hot path: no parsing beyond what is needed."""

from __future__ import annotations

import struct

# V=2, no padding, no extension, no CSRC; then M|PT, sequence, timestamp, SSRC.
RTP_HEADER = struct.Struct("!BBHII")
RTP_VERSION_BYTE = 0x80
# The same header with X set and one RFC 8285 one-byte extension element in one 32-bit word:
# ``0xBEDE``, length 1, then (id << 4 | 2) and a 3-byte value (abs-send-time's 6.18 seconds).
RTP_HEADER_ONE_EXTENSION = struct.Struct("!BBHIIHHI")
# ... and with two one-byte elements, two words (abs-send-time, then playout delay)
RTP_HEADER_TWO_EXTENSIONS = struct.Struct("!BBHIIHHII")
RTP_VERSION_EXTENSION_BYTE = 0x90
ONE_BYTE_PROFILE = 0xBEDE
ABS_SEND_TIME_URI = "http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time"
ABS_SEND_TIME_UNITS = 1 << 18  # per second: 6.18 fixed point
ABS_SEND_TIME_MASK = 0xFFFFFF

SEQ_MASK = 0xFFFF
TS_MASK = 0xFFFFFFFF
HALF_SEQ = 0x8000


def seq_newer(a: int, b: int) -> bool:
    """Whether sequence number ``a`` comes after ``b`` (RFC 3550 wrap-around)."""
    return a != b and ((a - b) & SEQ_MASK) < HALF_SEQ


def vp8_keyframe_start(payload: bytes) -> bool:
    """Whether an RTP VP8 payload (RFC 7741) starts a keyframe.

    True for the first packet of partition 0 of a frame whose VP8 header has P=0.
    """
    size = len(payload)
    if size < 2:
        return False
    first = payload[0]
    # S bit set and partition index 0
    if not first & 0x10 or first & 0x07:
        return False
    offset = 1
    if first & 0x80:
        extension = payload[1]
        offset = 2
        if extension & 0x80:  # I: picture id, 7 or 15 bits
            if size <= offset:
                return False
            offset += 2 if payload[offset] & 0x80 else 1
        if extension & 0x40:  # L: TL0PICIDX
            offset += 1
        if extension & 0x30:  # T or K: TID/Y/KEYIDX
            offset += 1
    return size > offset and not payload[offset] & 0x01


def vp8_temporal_layer(payload: bytes) -> tuple[int, bool]:
    """The temporal layer (TID) of an RTP VP8 payload and its layer-sync bit (Y), RFC 7741;
    layer -1 when the descriptor carries no TID (a stream without temporal layers)."""
    size = len(payload)
    if size < 2 or not payload[0] & 0x80:
        return -1, False
    extension = payload[1]
    if not extension & 0x20:  # T: no TID
        return -1, False
    offset = 2
    if extension & 0x80:  # I: picture id, 7 or 15 bits
        if size <= offset:
            return -1, False
        offset += 2 if payload[offset] & 0x80 else 1
    if extension & 0x40:  # L: TL0PICIDX
        offset += 1
    if size <= offset:
        return -1, False
    tid_byte = payload[offset]
    return tid_byte >> 6, bool(tid_byte & 0x20)


def vp8_has_temporal_layers(payload: bytes) -> bool:
    """Whether the VP8 payload descriptor carries a temporal layer index (X and T set)."""
    return len(payload) > 1 and bool(payload[0] & 0x80) and bool(payload[1] & 0x20)


def abs_send_time_word(extension_id: int) -> int:
    """The first byte of an abs-send-time element (id, length 3) placed above its 24 bits."""
    return ((extension_id << 4) | 2) << 24


def ntp_from_ms(ms_since_1900: int) -> int:
    """64-bit NTP timestamp from milliseconds since the NTP epoch (as aiortc's clock gives)."""
    seconds, millis = divmod(ms_since_1900, 1000)
    return (seconds << 32) | ((millis << 32) // 1000)
