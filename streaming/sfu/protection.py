"""Protecting a weak subscriber from its own receiver reports: thin video, then pause video,
never audio."""

from __future__ import annotations

import time
from collections.abc import Callable

FULL = 0
BASE_LAYER_ONLY = 1  # video thinned to its lowest temporal layer (when it has layers)
PRIMARY_VIDEO_ONLY = 2
AUDIO_ONLY = 3


class LossProtection:
    """A per-subscriber ladder driven by RTCP fraction lost: full media, then video thinned to
    its base temporal layer (skipped when no stream it receives has layers), then only the
    primary video, then audio only. Steps down at once under heavy loss (at most every
    ``step_interval_s``), steps back up after ``recover_after_s`` of low loss. Audio is never
    paused: it is what a class most needs to keep. The primary video (the lead's camera) is
    paused only above ``audio_only_above``: below it NACK still repairs the picture in time
    (30 % random loss on every leg keeps it moving, tests/e2e/test_webrtc_loss.py)."""

    def __init__(
        self,
        *,
        degrade_above: float = 0.10,
        audio_only_above: float = 0.50,
        recover_below: float = 0.03,
        recover_after_s: float = 5.0,
        step_interval_s: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
        has_layers: Callable[[], bool] = lambda: False,
    ) -> None:
        self.level = FULL
        self._loss_by_kind = {"audio": 0.0, "video": 0.0}
        self._degrade_above = degrade_above
        self._audio_only_above = audio_only_above
        self._recover_below = recover_below
        self._recover_after_s = recover_after_s
        self._step_interval_s = step_interval_s
        self._clock = clock
        self._has_layers = has_layers
        self._last_step = -float("inf")
        self._good_since: float | None = None

    @property
    def loss(self) -> float:
        """Smoothed loss of the worse media kind (a report covers one stream)."""
        return max(self._loss_by_kind.values())

    def on_report(self, fraction_lost: int, kind: str = "video") -> int | None:
        """Feed one report's 8-bit fraction lost; return the new level if it changed."""
        now = self._clock()
        previous = self._loss_by_kind.get(kind, 0.0)
        self._loss_by_kind[kind] = 0.5 * previous + 0.5 * (fraction_lost / 256)
        if self.loss > self._degrade_above:
            self._good_since = None
            worst = AUDIO_ONLY if self.loss > self._audio_only_above else PRIMARY_VIDEO_ONLY
            if self.level < worst and now - self._last_step >= self._step_interval_s:
                return self._step(self.level + 1, now)
            return None
        if self.loss < self._recover_below and self.level > FULL:
            if self._good_since is None:
                self._good_since = now
            elif now - self._good_since >= self._recover_after_s:
                self._good_since = now
                return self._step(self.level - 1, now)
        else:
            self._good_since = None
        return None

    def _step(self, level: int, now: float) -> int:
        if level == BASE_LAYER_ONLY and not self._has_layers():
            level = PRIMARY_VIDEO_ONLY if self.level < level else FULL
        self.level = level
        self._last_step = now
        return level
