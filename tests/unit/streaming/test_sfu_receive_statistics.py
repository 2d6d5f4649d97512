"""The receive path's statistics and NACK generator (``aiortc_hooks.ReceiveStatistics``,
``ReceiveNacks``) count every packet sequence as aiortc's own do: what its receiver reports
and NACKs to the publisher say."""

from __future__ import annotations

import random
import time

from aiortc.rtcrtpreceiver import NackGenerator, StreamStatistics
from aiortc.rtp import RtpPacket

from streaming.sfu.aiortc_hooks import ReceiveNacks, ReceiveStatistics


def _sequence() -> list[RtpPacket]:
    """Packets in order, then lost, reordered, duplicated, late, a big gap, across the wrap."""
    rng = random.Random(5)
    numbers = list(range(65000, 65536)) + list(range(0, 600))
    numbers = [n for n in numbers if rng.random() > 0.05]  # lost
    for _ in range(40):  # reordered and duplicated
        i = rng.randrange(len(numbers) - 3)
        numbers[i], numbers[i + 2] = numbers[i + 2], numbers[i]
        numbers.insert(i + 1, numbers[i])
    numbers += [3000, 2990, 3001, 60000]  # a gap beyond the NACK window, a very late one
    return [
        RtpPacket(payload_type=96, sequence_number=n, timestamp=(n * 3000) & 0xFFFFFFFF, ssrc=1)
        for n in numbers
    ]


def test_statistics_count_as_aiortcs(monkeypatch):
    now = [0.0]
    monkeypatch.setattr(time, "time", lambda: now[0])
    ours, theirs = ReceiveStatistics(90000), StreamStatistics(90000)
    for packet in _sequence():
        now[0] += random.uniform(0.005, 0.05)  # the same arrival for both
        theirs.add(packet)
        ours.add(packet)
        assert vars(ours) == vars(theirs)
    assert ours.cycles == 1 << 16 and ours.jitter > 0 and ours.packets_lost > 0


def test_nacks_name_the_packets_aiortcs_name():
    ours, theirs = ReceiveNacks(), NackGenerator()
    misses = 0
    for packet in _sequence():
        missed = ours.add(packet)
        assert missed == theirs.add(packet)
        assert (ours.max_seq, ours.missing) == (theirs.max_seq, theirs.missing)
        misses += missed
    assert misses > 10 and ours.missing
