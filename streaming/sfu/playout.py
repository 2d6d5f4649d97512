"""How long a subscriber's jitter buffer should wait for a repaired frame (playout delay).

A packet lost between the publisher and the SFU is repaired by our NACK to the publisher, one
upstream round trip later; one lost on the subscriber's leg by its NACK to us. The
subscriber's jitter buffer knows only its own leg, so a frame repaired upstream completes
after it was due and is skipped (a top-layer frame) or freezes the picture until repaired.
The SFU knows both: it tells the subscriber, with the RTP playout-delay header extension
(``PLAYOUT_DELAY_URI``), to wait at least as long as a repair on the path takes, while repairs
happen; on a clean path the minimum goes back to 0, so a clean classroom keeps its latency.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

PLAYOUT_DELAY_URI = "http://www.webrtc.org/experiments/rtp-hdrext/playout-delay"
PLAYOUT_DELAY_UNIT_MS = 10
# the receiver's defaults (no extension): min 0, max 0xFFF units (40.95 s); sending min 0
# with a max of 500 ms or less would switch Chromium to its low-latency renderer instead
PLAYOUT_DELAY_MAX_UNITS = 0xFFF


def playout_delay_word(extension_id: int, min_ms: int) -> int:
    """One RFC 8285 one-byte element (id, length 3) with 12-bit min and max delays in 10 ms
    units; max stays at the receiver's default (no upper limit of ours)."""
    units = min(min_ms // PLAYOUT_DELAY_UNIT_MS, PLAYOUT_DELAY_MAX_UNITS)
    return (((extension_id << 4) | 2) << 24) | (units << 12) | PLAYOUT_DELAY_MAX_UNITS


class RepairTimes:
    """Recent upstream repair times of one published track (ms from finding a packet
    missing to its retransmission arriving), for a robust recent figure."""

    __slots__ = ("_samples",)

    def __init__(self, capacity: int = 128) -> None:
        self._samples: deque[tuple[int, int]] = deque(maxlen=capacity)  # (arrival ms, ms)

    def add(self, arrival_ms: int, repair_ms: int) -> None:
        self._samples.append((arrival_ms, repair_ms))

    def percentile(self, now_ms: int, *, window_ms: int, share: float = 0.9) -> int | None:
        """The ``share`` quantile of the repairs of the last ``window_ms``; None without any."""
        recent = sorted(ms for at, ms in self._samples if now_ms - at <= window_ms)
        if not recent:
            return None
        return recent[min(int(share * len(recent)), len(recent) - 1)]


@dataclass(frozen=True, slots=True)
class PlayoutPolicy:
    """The sizing rules (one instance shared by every subscriber)."""

    margin_ms: int = 30  # decode and render time, and what the quantile leaves out
    cap_ms: int = 500  # a lesson may lag this much behind the lead's room, not more
    loss_memory_s: float = 10.0  # repairs this recent keep the delay up
    # Chromium re-times its buffer on each change: a rise (frames would be late) waits this
    # long after the last change, a fall (only latency to win back) longer
    rise_interval_s: float = 1.0
    change_interval_s: float = 3.0
    deadband_ms: int = 30  # smaller moves of the target are not worth a change
    repair_window_ms: int = 10_000  # upstream repairs the quantile is taken over


DEFAULT_PLAYOUT_POLICY = PlayoutPolicy()


class PlayoutDelay:
    """The minimum playout delay one subscriber slot is told, re-judged once a second:
    upstream repair time (p90 of the last seconds) + the subscriber leg's round trip + a
    margin, capped, while repairs happen on the path (either leg); 0 on a clean path. It
    rises at once when repairs start; after that it moves only by ``deadband_ms`` or more,
    up at most every ``rise_interval_s``, down at most every ``change_interval_s``."""

    __slots__ = (
        "_changed_at",
        "_counts",
        "_loss_at",
        "min_ms",
        "policy",
        "target_ms",
        "upstream_repair_ms",
    )

    def __init__(self, policy: PlayoutPolicy = DEFAULT_PLAYOUT_POLICY) -> None:
        self.policy = policy
        self.min_ms = 0  # what the subscriber is told
        self.target_ms = 0  # what the path needs now
        self.upstream_repair_ms: int | None = None  # as last fed
        # (repaired upstream, lost downstream) at the last update; the first is the baseline
        self._counts: tuple[int, int] | None = None
        self._loss_at: float | None = None
        self._changed_at = -float("inf")

    def new_source(self) -> None:
        """The slot is fed by another track now: its counters start a new baseline."""
        self._counts = None

    def update(
        self,
        now: float,
        *,
        repaired_upstream: int,
        lost_downstream: int,
        upstream_repair_ms: int | None,
        rtt_ms: float | None,
    ) -> int | None:
        """Feed the path's state: packets repaired upstream and lost on the subscriber's leg
        so far (counters), the recent upstream repair time (None without a recent repair) and
        the subscriber's round trip (None before its first receiver report: nothing is judged
        then); return the new minimum in ms if it changed."""
        if rtt_ms is None:
            # no receiver report yet: a subscriber that just joined, whose first NACKs (for
            # what came before its first picture) say nothing about its path
            return None
        policy = self.policy
        self.upstream_repair_ms = upstream_repair_ms
        counts = (repaired_upstream, lost_downstream)
        if self._counts is not None and counts != self._counts:
            self._loss_at = now
        self._counts = counts
        if self._loss_at is None or now - self._loss_at > policy.loss_memory_s:
            self.target_ms = 0
        else:
            needed = (upstream_repair_ms or 0) + rtt_ms + policy.margin_ms
            units = -(-int(needed) // PLAYOUT_DELAY_UNIT_MS)  # round up to the 10 ms unit
            self.target_ms = min(units * PLAYOUT_DELAY_UNIT_MS, policy.cap_ms)
        target = self.target_ms
        if target == self.min_ms:
            return None
        if self.min_ms:  # (from 0, repairs just started: do not let the next frames wait)
            rise = target > self.min_ms
            interval = policy.rise_interval_s if rise else policy.change_interval_s
            if now - self._changed_at < interval:
                return None
            if target and abs(target - self.min_ms) < policy.deadband_ms:
                return None
        self.min_ms = target
        self._changed_at = now
        return target
