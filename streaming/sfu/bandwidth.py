"""Protecting a subscriber from its own bandwidth, before its link loses packets.

A narrow link with a queue first shows rising delay; the subscriber's receive-side estimator
(Chromium's, or aiortc's in our bots) sees it in the abs-send-time the SFU writes on each
video packet and answers with a lower REMB. This ladder steps down on that estimate, to the
same levels as the loss ladder (streaming/sfu/protection.py): it takes the lowest level whose
measured send rate fits the estimate. Hysteresis: it steps down only when the estimate falls
(the receiver saw overuse) to under ``down_below`` of what the current level needs and stays
there for ``confirm_s`` without climbing back (``climb_cancels_fall``: one delay spike on a
wide link), at most every ``step_interval_s``, and never steps up on the estimate alone.

After a step down the estimate goes on falling for a while although the new level fits: the
queue built at the old level drains through the link, and the receiver's estimate follows
what arrives (measured behind a 1 s queue: 91 kbit/s at the step to the base layer, 44 kbit/s
4 s later, which took the view to audio only). So a step down starts a drain wait: no further
step until the estimate has made no new low for ``drain_quiet_s`` (the receiver's estimator
holds while the delay falls), capped at ``drain_max_s`` (an estimate still falling then is
a link narrower than the new level, and the next step follows at once). It leans on the
receiver's AIMD (libwebrtc's, and aiortc's copy of it): on underuse, while the queue drains,
it holds its estimate, so a drain ends in an estimate that stops falling.

Stepping back up needs a probe: once the SFU sends less, the estimate is capped near what
arrives (1.5 x the incoming rate in Chromium's and aiortc's AIMD), so it can never show the
headroom by itself. After ``hold_s`` the next level up is tried; it is kept if, for
``trial_s``, the estimate does not fall and the loss ladder stays below it. A failed trial
goes back down and doubles the hold (up to ``max_hold_s``); a kept one resets it. A trial
that overfills the link should end soon, since the queue it builds delays audio as well
(and its tail drop loses it): an estimate falling under ``abort_below`` of the one the trial
started from ends it even within its grace (``trial_grace_s``, while a resumed stream's first
picture arrives as a burst). But the AIMD lowers its estimate only to 0.85 x what arrives,
and never raises it that way: behind a link wider than that the estimate does not move at
all. So the trial also watches the share of its video packets the subscriber NACKs, each
second, and ends at more than ``trial_loss_above`` over the loss before it (LiveKit's
StreamAllocator likewise judges a probe by the NACK ratio, 4 %); the loss ladder is told
that loss was the probe's (``on_probe_failed``). Probing by
the media itself (rather than padding) costs nothing when the link is fine and needs no
padding packets the SFU would have to make up per subscriber (README: "bandwidth estimates").
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from common.logging import get_logger
from streaming.sfu.protection import AUDIO_ONLY, BASE_LAYER_ONLY, FULL, PRIMARY_VIDEO_ONLY

log = get_logger(__name__)

# bits/s each level needs, indexed by level (FULL .. AUDIO_ONLY)
LevelNeeds = Sequence[float]


@dataclass(frozen=True, slots=True)
class BandwidthPolicy:
    # step down when the estimate falls under this share of the need: on overuse the AIMD of
    # Chromium and aiortc sets it to 0.85 x the incoming rate, so a link that delivers what
    # is sent (5 % loss, some jitter) stays above; a narrow link caps the incoming rate
    down_below: float = 0.75
    confirm_s: float = 1.0  # ... and stays under it this long (one false overuse is not a link)
    # ... without climbing back more than this over the first estimate under the bar: a
    # receiver whose estimate climbs sees no queue growing (its AIMD increases only on
    # "normal"), while behind a narrow link the queue grows until the SFU sends less, and the
    # estimate falls or holds. One delay spike on a wide lossy link (5 % + 80 ms on a loaded
    # host) gives one fall, then a climb. Measured from the first estimate under the bar, not
    # from the low: aiortc's estimate (the sum of one REMB per stream) wobbles by a few % while
    # it falls. 0: off (a fall under the bar for ``confirm_s`` steps down)
    climb_cancels_fall: float = 0.03
    step_interval_s: float = 2.0  # after a change, for the queue to drain and estimates to follow
    hold_s: float = 8.0  # first wait after a step down before trying the level above
    max_hold_s: float = 60.0
    trial_s: float = 5.0  # how long a tried level must stay fine to be kept
    # estimates in a trial's first moments are ignored: resumed streams restart their
    # receiver's estimate and their first picture comes as a burst
    trial_grace_s: float = 1.5
    # ... except a fall under this share of the estimate the trial started from: overuse
    abort_below: float = 0.9
    # ... or the video packets it sends are lost (NACKed) this much more than before it: a
    # receiver whose estimate sits under what the link carries does not lower it on overuse
    # (AIMD takes the smaller of it and 0.85 x what arrives), so the queue shows as loss
    trial_loss_above: float = 0.05
    trial_loss_min_packets: int = 20
    # after a step down: the estimate that falls while the old level's queue drains
    drain_quiet_s: float = 1.5  # no new low for this long: it has settled
    drain_max_s: float = 6.0  # still falling after this long: the link is narrower


@dataclass(slots=True)
class _Trial:
    started: float
    back_to: int
    estimate_before: float | None  # the estimate with the level below (None: audio only)
    loss_before: float  # the loss ladder's smoothed loss when it began
    sent: int  # the video packets sent and NACKed (first time) so far, at the last tick
    nacked: int


@dataclass(slots=True)
class _Drain:
    started: float
    low: float  # the lowest estimate since the step
    low_at: float


class BandwidthProtection:
    """Per-subscriber ladder on the receiver's bandwidth estimate, with probing back up."""

    def __init__(
        self,
        policy: BandwidthPolicy | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        has_layers: Callable[[], bool] = lambda: False,
        subject: str = "",
        on_probe_failed: Callable[[float], None] | None = None,
    ) -> None:
        self.policy = policy or BandwidthPolicy()
        self.level = FULL
        self.estimate_bps: float | None = None
        self.hold_s = self.policy.hold_s
        self.probes = 0
        self.probes_failed = 0
        self._clock = clock
        self._has_layers = has_layers
        self._held_since: float | None = None  # when the hold before the next probe began
        self._changed_at = -float("inf")
        self._previous: float | None = None  # the estimate before, for its trend
        self._short_since: float | None = None
        self._fall_from = 0.0  # the estimate that went under the bar at ``_short_since``
        self._trial: _Trial | None = None
        self._drain: _Drain | None = None
        self.drain_waits: list[float] = []  # how long each drain wait lasted (s)
        self._subject = subject  # who the log lines are about
        # told the loss before a failed trial: the loss its overfill caused is not the link's
        self._on_probe_failed = on_probe_failed

    @property
    def probing(self) -> bool:
        return self._trial is not None

    def on_estimate(
        self,
        estimate_bps: float,
        needs: LevelNeeds,
        *,
        delivered: float = 1.0,
    ) -> int | None:
        """Feed the subscriber's whole estimate; return the new level if it changed.

        ``delivered`` is the share of what is sent that the subscriber's link delivers (1 −
        its measured loss): the receiver estimates from what arrives, so on a lossy link that
        is wide enough its estimate sits that much lower. Loss is the loss ladder's to judge;
        here the needs are scaled by it so a lossy link is not also taken for a narrow one."""
        now = self._clock()
        needs = [need * delivered for need in needs]
        self.estimate_bps = estimate_bps
        trial = self._trial
        previous, self._previous = self._previous, estimate_bps
        # the receiver lowers its estimate when it sees the queue grow (overuse); while it
        # climbs or holds (after a join, a step up, or a pause its estimator has not caught up
        # with) the estimate says nothing against the level
        falling = previous is not None and estimate_bps < previous
        under = estimate_bps < self.policy.down_below * needs[self.level]
        if trial is not None:
            if now - trial.started < self.policy.trial_grace_s:
                before = trial.estimate_before
                overuse = before is not None and estimate_bps < self.policy.abort_below * before
            else:
                overuse = falling
            return self._fail(now) if overuse and under else None
        climb = self.policy.climb_cancels_fall
        if not under or (
            climb and self._short_since is not None and estimate_bps > self._fall_from * (1 + climb)
        ):
            self._short_since = None
        elif falling and self._short_since is None:
            self._short_since, self._fall_from = now, estimate_bps
        if self._drain is not None and not self._drained(estimate_bps, now):
            return None
        if (
            self.level < AUDIO_ONLY
            and self._short_since is not None
            and now - self._short_since >= self.policy.confirm_s
            and now - self._changed_at >= self.policy.step_interval_s
        ):
            level = self.level + 1
            while level < AUDIO_ONLY and (
                needs[level] > estimate_bps or (level == BASE_LAYER_ONLY and not self._has_layers())
            ):
                level += 1
            self._set(level, now)
            self._held_since = now
            self._start_drain(now)
            return level
        return None

    def _start_drain(self, now: float) -> None:
        low = self.estimate_bps if self.estimate_bps is not None else float("inf")
        self._drain = _Drain(started=now, low=low, low_at=now)

    def _drained(self, estimate_bps: float, now: float) -> bool:
        """Whether the drain wait after a step down is over (it ends here)."""
        drain = self._drain
        assert drain is not None
        if estimate_bps < drain.low:
            drain.low, drain.low_at = estimate_bps, now
        settled = now - drain.low_at >= self.policy.drain_quiet_s
        if not settled and now - drain.started < self.policy.drain_max_s:
            return False
        self._drain = None
        self.drain_waits.append(now - drain.started)
        log.info(
            "bandwidth_drain_over",
            subject=self._subject,
            waited_s=round(now - drain.started, 1),
            settled=settled,
            low_kbps=round(drain.low / 1000),
            estimate_kbps=round(estimate_bps / 1000),
        )
        if settled:
            # the falls so far were the drain: the new level is judged on a fresh fall
            self._short_since = None
        return True

    def tick(
        self, loss_level: int, *, loss: float = 0.0, sent: int = 0, nacked: int = 0
    ) -> int | None:
        """Called about once a second: judge a running trial, or start one when the hold is
        over. ``loss_level`` and ``loss`` are the loss ladder's level and smoothed loss;
        ``sent`` and ``nacked`` count the subscriber's video packets sent and first NACKed
        (cumulative), which a trial watches itself rather than wait for the loss ladder's
        smoothed step. Return the new level if it changed."""
        now = self._clock()
        trial = self._trial
        if trial is not None:
            if loss_level > self.level:
                return self._fail(now)
            # the loss since the last tick (not since the trial began, which dilutes it)
            trial_sent = sent - trial.sent
            if trial_sent >= self.policy.trial_loss_min_packets:
                lost = (nacked - trial.nacked) / trial_sent
                if lost > trial.loss_before + self.policy.trial_loss_above:
                    return self._fail(now)
                trial.sent, trial.nacked = sent, nacked
            if now - trial.started >= self.policy.trial_s:
                self._trial = None
                self.hold_s = self.policy.hold_s
                self._held_since = now if self.level > FULL else None
            return None
        if self.level == FULL or self._held_since is None:
            return None
        if now - self._held_since < self.hold_s:
            return None
        if loss_level >= self.level:
            self._held_since = now  # the loss ladder holds this level anyway: nothing to learn
            return None
        level = self.level - 1
        if level == BASE_LAYER_ONLY and not self._has_layers():
            level = PRIMARY_VIDEO_ONLY
        before = self.estimate_bps if self.level < AUDIO_ONLY else None
        self._trial = _Trial(
            started=now,
            back_to=self.level,
            estimate_before=before,
            loss_before=loss,
            sent=sent,
            nacked=nacked,
        )
        self.probes += 1
        self._set(level, now)
        return level

    def _fail(self, now: float) -> int:
        trial = self._trial
        assert trial is not None
        self._trial = None
        self.probes_failed += 1
        self.hold_s = min(self.hold_s * 2, self.policy.max_hold_s)
        self._held_since = now
        self._set(trial.back_to, now)
        self._start_drain(now)  # the trial's queue drains as a step down's does
        if self._on_probe_failed is not None:
            self._on_probe_failed(trial.loss_before)
        return self.level

    def _set(self, level: int, now: float) -> None:
        self.level = level
        self._drain = None
        self._changed_at = now
        self._previous = None  # a new level: the estimate's trend starts again
        self._short_since = None
