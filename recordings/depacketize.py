"""RTP payloads back into encoded frames, without decoding: VP8 (RFC 7741) and Opus (RFC 7587).

Pure and synchronous: the recorder feeds packets in arrival order and gets whole frames out in
presentation order. Sequence numbers and timestamps are unwrapped to 64-bit counters, so a
wrap (every ~22 min of video at 50 packets/s, or of 32-bit timestamps every ~13 h) is just
another increment.
"""

from __future__ import annotations

from dataclasses import dataclass, field


class Unwrapper:
    """Extends a wrapping ``bits``-bit counter (RTP sequence numbers, timestamps) to an int
    that keeps counting, judging each value against the highest seen so far."""

    __slots__ = ("_half", "_highest", "_modulus")

    def __init__(self, bits: int) -> None:
        self._modulus = 1 << bits
        self._half = 1 << (bits - 1)
        self._highest: int | None = None

    @property
    def highest(self) -> int | None:
        """The highest extended value so far; None before the first."""
        return self._highest

    def __call__(self, value: int) -> int:
        highest = self._highest
        if highest is None:
            self._highest = value
            return value
        delta = (value - highest) % self._modulus
        if delta >= self._half:
            delta -= self._modulus  # older than the highest: reordered or late
        extended = highest + delta
        if extended > highest:
            self._highest = extended
        return extended


@dataclass(frozen=True, slots=True)
class EncodedFrame:
    """One frame as the encoder produced it; ``timestamp`` is the unwrapped RTP timestamp."""

    timestamp: int
    data: bytes
    keyframe: bool


def vp8_payload_start(payload: bytes) -> tuple[int, bool] | None:
    """Where the VP8 bitstream starts in an RTP payload, and whether the packet begins a frame
    (S=1 and partition index 0); None for a malformed descriptor."""
    size = len(payload)
    if size < 1:
        return None
    first = payload[0]
    offset = 1
    if first & 0x80:  # X: extension byte follows
        if size < 2:
            return None
        extension = payload[1]
        offset = 2
        if extension & 0x80:  # I: picture id, 7 or 15 bits
            if size <= offset:
                return None
            offset += 2 if payload[offset] & 0x80 else 1
        if extension & 0x40:  # L: TL0PICIDX
            offset += 1
        if extension & 0x30:  # T or K: TID/Y/KEYIDX
            offset += 1
    if offset > size:
        return None
    return offset, bool(first & 0x10) and not first & 0x07


def vp8_frame_size(frame: bytes) -> tuple[int, int] | None:
    """Width and height from a VP8 keyframe header (RFC 6386 §9.1), None for other frames."""
    if len(frame) < 10 or frame[0] & 0x01 or frame[3:6] != b"\x9d\x01\x2a":
        return None
    width = int.from_bytes(frame[6:8], "little") & 0x3FFF
    height = int.from_bytes(frame[8:10], "little") & 0x3FFF
    return width, height


@dataclass(slots=True)
class _PartialFrame:
    first_arrival: float
    parts: dict[int, bytes] = field(default_factory=dict)
    start_seq: int | None = None
    end_seq: int | None = None
    keyframe: bool = False

    def complete(self) -> bool:
        if self.start_seq is None or self.end_seq is None or self.end_seq < self.start_seq:
            return False
        return len(self.parts) == self.end_seq - self.start_seq + 1

    def assemble(self) -> bytes:
        assert self.start_seq is not None and self.end_seq is not None
        return b"".join(self.parts[seq] for seq in range(self.start_seq, self.end_seq + 1))


@dataclass
class DepacketizerStats:
    packets: int = 0
    frames: int = 0
    keyframes: int = 0
    frames_lost: int = 0  # incomplete when given up on: a packet sent while tapping never came
    frames_cut: int = 0  # incomplete only because the tap started or the stream ended mid-frame
    frames_skipped: int = 0  # complete, but waiting for a keyframe after a loss
    late_packets: int = 0  # for a frame already written or given up on
    duplicates: int = 0
    malformed: int = 0


# How long a frame missing a packet waits for the SFU's repair. The SFU NACKs a gap at once
# and again every 250 ms, so the packet comes back a round trip later, or one more attempt
# later if the NACK or its answer was lost too; a rural school's uplink has 100-300 ms round
# trips. A recording may lag: waiting costs nothing a viewer sees, while giving up drops the
# frame and every frame after it until the next keyframe.
REORDER_WINDOW_S = 1.0


class Vp8Depacketizer:
    """Collects a frame's packets (same timestamp, from the S bit to the marker bit) and emits
    complete frames in timestamp order.

    A frame still incomplete ``reorder_window_s`` after its first packet, with a newer frame
    waiting behind it (or ``max_pending`` frames), is given up on: it is dropped, and so is
    every frame until the next keyframe (``needs_keyframe`` tells the owner to ask the
    publisher for one). It counts as lost when it misses a packet sent while the stream was
    tapped, and as cut when what it misses went by before the first packet pushed (a recorder
    started mid-frame, a late packet of an earlier frame) or, at ``flush``, after the last.
    """

    def __init__(
        self, *, reorder_window_s: float = REORDER_WINDOW_S, max_pending: int = 60
    ) -> None:
        self.reorder_window_s = reorder_window_s
        self.max_pending = max_pending
        self.stats = DepacketizerStats()
        self.needs_keyframe = True
        self._seq = Unwrapper(16)
        self._ts = Unwrapper(32)
        self._pending: dict[int, _PartialFrame] = {}
        self._seen: set[int] = set()
        self._done_before = -1  # timestamps at or below this are written or given up on
        self._first: tuple[int, int] | None = None  # the first packet's (seq, ts), unwrapped

    def push(
        self, *, sequence_number: int, timestamp: int, marker: bool, payload: bytes, arrival: float
    ) -> list[EncodedFrame]:
        self.stats.packets += 1
        seq = self._seq(sequence_number)
        ts = self._ts(timestamp)
        if self._first is None:
            self._first = (seq, ts)
        if ts <= self._done_before:
            self.stats.late_packets += 1
            return []
        if seq in self._seen:
            self.stats.duplicates += 1
            return []
        located = vp8_payload_start(payload)
        if located is None:
            self.stats.malformed += 1
            return []
        offset, starts = located
        frame = self._pending.get(ts)
        if frame is None:
            frame = self._pending[ts] = _PartialFrame(first_arrival=arrival)
        self._seen.add(seq)
        frame.parts[seq] = payload[offset:]
        if starts:
            frame.start_seq = seq
            frame.keyframe = len(payload) > offset and not payload[offset] & 0x01
        if marker:
            frame.end_seq = seq
        return self._drain(arrival, final=False)

    def flush(self) -> list[EncodedFrame]:
        """Every complete frame still held; incomplete ones are given up on (end of the
        stream): the newest one missing only its tail is cut, the others are lost."""
        return self._drain(float("inf"), final=True)

    def _drain(self, now: float, *, final: bool) -> list[EncodedFrame]:
        out: list[EncodedFrame] = []
        while self._pending:
            ts = min(self._pending)
            frame = self._pending[ts]
            if not frame.complete():
                newer_waiting = len(self._pending) > 1
                expired = now - frame.first_arrival > self.reorder_window_s
                if not (
                    final or len(self._pending) > self.max_pending or (newer_waiting and expired)
                ):
                    break
                if self._cut_by_tap(ts, frame, final=final):
                    self.stats.frames_cut += 1
                else:
                    self.stats.frames_lost += 1
                self.needs_keyframe = True
                self._finish(ts, frame)
                continue
            self._finish(ts, frame)
            if self.needs_keyframe and not frame.keyframe:
                self.stats.frames_skipped += 1
                continue
            self.needs_keyframe = False
            self.stats.frames += 1
            self.stats.keyframes += frame.keyframe
            out.append(EncodedFrame(ts, frame.assemble(), frame.keyframe))
        return out

    def _cut_by_tap(self, ts: int, frame: _PartialFrame, *, final: bool) -> bool:
        """Whether every packet ``frame`` misses went by outside the tapped span: before the
        first packet pushed or, at the end of the stream, after the newest."""
        assert self._first is not None  # a frame is pending, so a packet was pushed
        first_seq, first_ts = self._first
        if ts < first_ts:
            return True  # sent before the first frame tapped: only its stragglers came
        low = frame.start_seq if frame.start_seq is not None else min(frame.parts)
        high = frame.end_seq if frame.end_seq is not None else max(frame.parts)
        if high - low + 1 != len(frame.parts):
            return False  # a gap between packets the tap had
        if frame.start_seq is None and low > first_seq:
            return False  # its first packet was sent while tapping
        return frame.end_seq is not None or (final and high == self._seq.highest)

    def _finish(self, ts: int, frame: _PartialFrame) -> None:
        del self._pending[ts]
        self._done_before = ts
        self._seen.difference_update(frame.parts)


class OpusDepacketizer:
    """One RTP packet is one Opus frame: reorder a few packets, drop duplicates and late ones."""

    def __init__(self, *, reorder_packets: int = 4) -> None:
        self.reorder_packets = reorder_packets
        self.stats = DepacketizerStats()
        self.needs_keyframe = False
        self._ts = Unwrapper(32)
        self._held: dict[int, bytes] = {}
        self._done_before = -1

    def push(
        self, *, sequence_number: int, timestamp: int, marker: bool, payload: bytes, arrival: float
    ) -> list[EncodedFrame]:
        self.stats.packets += 1
        ts = self._ts(timestamp)
        if ts <= self._done_before:
            self.stats.late_packets += 1
            return []
        if ts in self._held:
            self.stats.duplicates += 1
            return []
        if not payload:
            self.stats.malformed += 1
            return []
        self._held[ts] = payload
        return self._drain(keep=self.reorder_packets)

    def flush(self) -> list[EncodedFrame]:
        return self._drain(keep=0)

    def _drain(self, *, keep: int) -> list[EncodedFrame]:
        out: list[EncodedFrame] = []
        while len(self._held) > keep:
            ts = min(self._held)
            out.append(EncodedFrame(ts, self._held.pop(ts), True))
            self._done_before = ts
            self.stats.frames += 1
        return out
