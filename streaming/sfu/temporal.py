"""Thinning a VP8 stream to its lower temporal layers for one subscriber, without decoding.

A browser that publishes VP8 with temporal layers (``scalabilityMode: "L1T3"``) marks each
frame with its layer (TID) in the RTP payload descriptor (RFC 7741). Frames of layer 0 refer
only to layer 0, so a weak subscriber can be sent layer 0 alone: a quarter of the frames and
about half the bits of an L1T3 stream. What the subscriber receives must still look like a
whole stream: sequence numbers without gaps (else it NACKs what was dropped on purpose) and
picture IDs without gaps (else Chromium waits for the "missing" frames before decoding the
next layer-0 frame). Both are renumbered by counting the dropped packets and frames that come
before, which also maps a late retransmission to the number its neighbours got (the approach
of mediasoup's ``SeqManager``).

Frames are keyed by RTP timestamp (all packets of a frame share it), so the filter needs no
picture ID to decide; one is rewritten when present.
"""

from __future__ import annotations

from array import array
from bisect import bisect_left

from aiortc.rtp import RtpPacket

from streaming.sfu.packets import SEQ_MASK, vp8_temporal_layer

BASE_LAYER = 0
ALL_LAYERS = 2  # L1T3: layers 0..2
_RING = 1024  # output sequence numbers remembered for retransmissions (the NACK cache's size)
_KEEP_DROPS = 512  # drops remembered for renumbering late packets; older ones are counted


class _Unwrapper:
    """Extends a wrapping counter (16-bit sequence numbers, 32-bit timestamps) to an int."""

    __slots__ = ("_bits", "_half", "_mask", "newest")

    def __init__(self, bits: int) -> None:
        self._bits = bits
        self._mask = (1 << bits) - 1
        self._half = 1 << (bits - 1)
        self.newest: int | None = None

    def peek(self, value: int) -> int:
        newest = self.newest
        if newest is None:
            return value
        delta = (value - newest) & self._mask
        if delta >= self._half:
            delta -= 1 << self._bits
        return newest + delta

    def unwrap(self, value: int) -> int:
        extended = self.peek(value)
        if self.newest is None or extended > self.newest:
            self.newest = extended
        return extended


class _Drops:
    """A sorted, bounded record of dropped positions (extended sequence numbers or frame
    timestamps); drops older than the record are only counted."""

    __slots__ = ("_items", "forgotten")

    def __init__(self) -> None:
        self._items: list[int] = []
        self.forgotten = 0

    def add_newest(self, position: int) -> None:
        self._items.append(position)
        if len(self._items) > 2 * _KEEP_DROPS:
            del self._items[:_KEEP_DROPS]
            self.forgotten += _KEEP_DROPS

    def before(self, position: int) -> int:
        """How many drops come before ``position``."""
        return self.forgotten + bisect_left(self._items, position)

    def contains(self, position: int) -> bool:
        index = bisect_left(self._items, position)
        return index < len(self._items) and self._items[index] == position

    def covers(self, position: int) -> bool:
        """Whether ``position`` is recent enough to be counted exactly."""
        return not self.forgotten or (bool(self._items) and position > self._items[0])


class TemporalFilter:
    """Per-subscriber filter: ``admit`` says whether a packet is forwarded, ``renumber`` gives
    its sequence-number shift and payload. ``target`` is the highest layer wanted; the layer
    actually forwarded goes down at the next frame and up only where the subscriber can
    decode from (a keyframe, or a layer-sync frame of the layer)."""

    __slots__ = (
        "_frame_drops",
        "_newest_frame_dropped",
        "_out_seq",
        "_out_source",
        "_seq_drops",
        "_seqs",
        "_stamps",
        "active",
        "frames_dropped",
        "packets_dropped",
        "target",
    )

    def __init__(self, target: int = ALL_LAYERS) -> None:
        self.target = target
        self.active = target
        self.frames_dropped = 0
        self.packets_dropped = 0
        self._seqs = _Unwrapper(16)
        self._stamps = _Unwrapper(32)
        self._seq_drops = _Drops()
        self._frame_drops = _Drops()
        self._newest_frame_dropped = False
        self._out_seq = array("l", [-1]) * _RING
        self._out_source = array("l", [-1]) * _RING

    def admit(self, packet: RtpPacket, keyframe: bool) -> bool:
        """Whether ``packet`` goes to the subscriber; remembers what is dropped."""
        seq_newest = self._seqs.newest
        extended_seq = self._seqs.unwrap(packet.sequence_number)
        layer, sync = vp8_temporal_layer(packet.payload)
        frames_newest = self._stamps.newest
        stamp = self._stamps.unwrap(packet.timestamp)
        if layer < 0:
            return True  # no temporal layers in this stream (or this packet): forward as is
        if frames_newest is None or stamp > frames_newest:
            # the first packet seen of a newer frame: layer switches happen here
            if self.target < self.active:
                self.active = self.target
            elif self.target > self.active and (keyframe or (sync and layer <= self.target)):
                self.active = self.target if keyframe else max(self.active, layer)
            dropped = layer > self.active
            self._newest_frame_dropped = dropped
            if dropped:
                self._frame_drops.add_newest(stamp)
                self.frames_dropped += 1
        elif stamp == frames_newest:
            dropped = self._newest_frame_dropped
        else:
            dropped = self._frame_drops.contains(stamp)
        if dropped:
            self.packets_dropped += 1
            if seq_newest is None or extended_seq > seq_newest:
                self._seq_drops.add_newest(extended_seq)
            # a late packet of a dropped frame was never counted: its number stays unused
            # (the subscriber's NACK for it is refused), which breaks no frame it decodes
        return not dropped

    def seq_shift(self, sequence_number: int) -> int:
        """How many packets before this one were dropped (subtract from its number)."""
        return self._seq_drops.before(self._seqs.peek(sequence_number))

    def rewrite(self, packet: RtpPacket) -> bytes | None:
        """The payload with its picture ID renumbered, or None if that cannot be done exactly
        any more (a retransmission older than the drops remembered)."""
        payload = packet.payload
        stamp = self._stamps.peek(packet.timestamp)
        if not self._frame_drops.covers(stamp):
            return None
        shift = self._frame_drops.before(stamp)
        if not shift:
            return payload
        return shift_picture_id(payload, shift)

    def remember(self, out_seq: int, source_seq: int) -> None:
        """Which source packet was sent under ``out_seq`` (to answer the subscriber's NACKs)."""
        index = out_seq % _RING
        self._out_seq[index] = out_seq
        self._out_source[index] = source_seq

    def source_of(self, out_seq: int) -> int | None:
        index = out_seq % _RING
        if self._out_seq[index] != out_seq:
            return None
        return self._out_source[index] & SEQ_MASK


def shift_picture_id(payload: bytes, shift: int) -> bytes:
    """``payload`` with its VP8 picture ID (7 or 15 bits) lowered by ``shift``."""
    if len(payload) < 3 or not payload[0] & 0x80 or not payload[1] & 0x80:
        return payload
    rewritten = bytearray(payload)
    if payload[2] & 0x80:
        if len(payload) < 4:
            return payload
        picture_id = (((payload[2] & 0x7F) << 8) | payload[3]) - shift
        rewritten[2] = 0x80 | ((picture_id >> 8) & 0x7F)
        rewritten[3] = picture_id & 0xFF
    else:
        rewritten[2] = (payload[2] - shift) & 0x7F
    return bytes(rewritten)
