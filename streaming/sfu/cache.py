"""A per-publisher ring buffer of recent RTP packets, so subscriber NACKs are answered locally."""

from __future__ import annotations

from aiortc.rtp import RtpPacket

DEFAULT_CACHE_SIZE = 512  # about 5 s of 1 Mbit/s video


class PacketCache:
    """Recent packets by sequence number; slots are preallocated and overwritten in place."""

    __slots__ = ("_mask", "_packets", "_sequence_numbers")

    def __init__(self, size: int = DEFAULT_CACHE_SIZE) -> None:
        if size <= 0 or size & (size - 1):
            raise ValueError("cache size must be a power of two")
        self._mask = size - 1
        self._packets: list[RtpPacket | None] = [None] * size
        self._sequence_numbers: list[int] = [-1] * size

    def put(self, packet: RtpPacket) -> None:
        index = packet.sequence_number & self._mask
        self._packets[index] = packet
        self._sequence_numbers[index] = packet.sequence_number

    def get(self, sequence_number: int) -> RtpPacket | None:
        index = sequence_number & self._mask
        if self._sequence_numbers[index] != sequence_number:
            return None
        return self._packets[index]

    def clear(self) -> None:
        for index in range(len(self._packets)):
            self._packets[index] = None
            self._sequence_numbers[index] = -1
