"""Protecting a subscriber from its own bandwidth, before its link loses packets.

A narrow link with a queue first shows rising delay; the subscriber's receive-side estimator
(Chromium's, or aiortc's in our bots) sees it in the abs-send-time the SFU writes on each
video packet and answers with a lower REMB. This ladder steps down on that estimate, to the
same levels as the loss ladder (streaming/sfu/protection.py): it takes the lowest level whose
measured send rate fits the estimate. Hysteresis: it steps down only when the estimate falls
(the receiver saw overuse) to under ``down_below`` of what the current level needs and stays
there for ``confirm_s``, at most every ``step_interval_s``, and never steps up on the
estimate alone.

Stepping back up needs a probe: once the SFU sends less, the estimate is capped near what
arrives (1.5 x the incoming rate in Chromium's and aiortc's AIMD), so it can never show the
headroom by itself. After ``hold_s`` the next level up is tried; it is kept if, for
``trial_s``, the estimate does not fall and the loss ladder stays below it. A failed trial
goes back down and doubles the hold (up to ``max_hold_s``); a kept one resets it. Probing by
the media itself (rather than padding) costs nothing when the link is fine and needs no
padding packets the SFU would have to make up per subscriber (README: "bandwidth estimates").
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from streaming.sfu.protection import AUDIO_ONLY, BASE_LAYER_ONLY, FULL, PRIMARY_VIDEO_ONLY

# bits/s each level needs, indexed by level (FULL .. AUDIO_ONLY)
LevelNeeds = Sequence[float]


@dataclass(frozen=True, slots=True)
class BandwidthPolicy:
    # step down when the estimate falls under this share of the need: on overuse the AIMD of
    # Chromium and aiortc sets it to 0.85 x the incoming rate, so a link that delivers what
    # is sent (5 % loss, some jitter) stays above; a narrow link caps the incoming rate
    down_below: float = 0.75
    confirm_s: float = 1.0  # ... and stays under it this long (one false overuse is not a link)
    step_interval_s: float = 2.0  # after a change, for the queue to drain and estimates to follow
    hold_s: float = 8.0  # first wait after a step down before trying the level above
    max_hold_s: float = 60.0
    trial_s: float = 5.0  # how long a tried level must stay fine to be kept
    # estimates in a trial's first moments are ignored: resumed streams restart their
    # receiver's estimate and their first picture comes as a burst
    trial_grace_s: float = 1.5


@dataclass(slots=True)
class _Trial:
    started: float
    back_to: int


class BandwidthProtection:
    """Per-subscriber ladder on the receiver's bandwidth estimate, with probing back up."""

    def __init__(
        self,
        policy: BandwidthPolicy | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        has_layers: Callable[[], bool] = lambda: False,
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
        self._trial: _Trial | None = None

    @property
    def probing(self) -> bool:
        return self._trial is not None

    def on_estimate(
        self, estimate_bps: float, needs: LevelNeeds, *, delivered: float = 1.0
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
        if trial is not None and now - trial.started < self.policy.trial_grace_s:
            return None
        previous, self._previous = self._previous, estimate_bps
        # the receiver lowers its estimate when it sees the queue grow (overuse); while it
        # climbs or holds (after a join, a step up, or a pause its estimator has not caught up
        # with) the estimate says nothing against the level
        falling = previous is not None and estimate_bps < previous
        under = estimate_bps < self.policy.down_below * needs[self.level]
        if trial is not None:
            return self._fail(now) if falling and under else None
        if not under:
            self._short_since = None
        elif falling and self._short_since is None:
            self._short_since = now
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
            return level
        return None

    def tick(self, loss_level: int) -> int | None:
        """Called about once a second: judge a running trial, or start one when the hold is
        over. ``loss_level`` is the loss ladder's level; return the new level if it changed."""
        now = self._clock()
        trial = self._trial
        if trial is not None:
            if loss_level > self.level:
                return self._fail(now)
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
        self._trial = _Trial(started=now, back_to=self.level)
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
        return self.level

    def _set(self, level: int, now: float) -> None:
        self.level = level
        self._changed_at = now
        self._previous = None  # a new level: the estimate's trend starts again
        self._short_since = None
