"""Protecting a weak subscriber from its own loss: pause the secondary videos, then thin the
main one to its base temporal layer, then pause it; never audio."""

from __future__ import annotations

import time
from collections.abc import Callable

FULL = 0
PRIMARY_VIDEO_ONLY = 1  # the secondary videos (remote tiles, the board) paused
BASE_LAYER_ONLY = 2  # ... and the main video thinned to its base temporal layer (if it has one)
AUDIO_ONLY = 3


class LossProtection:
    """A per-subscriber ladder driven by the loss of its own leg: full media; above
    ``degrade_above`` only the primary video (the lead's camera); above ``thin_above`` that
    video at its base temporal layer, a quarter of the frames (skipped when the stream has no
    layers); above ``audio_only_above`` audio only. One step at a time (at most every
    ``step_interval_s``), one step back up after ``recover_after_s`` of low loss. Audio is
    never paused: it is what a class most needs to keep. Below ``audio_only_above`` NACK
    still repairs the primary picture in time (30 % random loss on every leg keeps it moving,
    tests/e2e/test_webrtc_loss.py)."""

    def __init__(
        self,
        *,
        degrade_above: float = 0.10,
        thin_above: float = 0.20,
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
        self._thin_above = thin_above
        self._audio_only_above = audio_only_above
        self._recover_below = recover_below
        self._recover_after_s = recover_after_s
        self._step_interval_s = step_interval_s
        self._clock = clock
        self._has_layers = has_layers
        self._last_step = -float("inf")
        self._good_since: float | None = None
        self._video_excused_until = -float("inf")

    @property
    def loss(self) -> float:
        """Smoothed loss of the worse media kind (a report covers one stream)."""
        return max(self._loss_by_kind.values())

    def excuse_video_loss(self, seconds: float, *, loss: float) -> None:
        """The SFU's own probe overfilled the subscriber's link (streaming/sfu/bandwidth.py):
        the video loss it caused, reported up to ``seconds`` from now (NACKs come a queue's
        delay late), is not the link's. Video loss goes back to ``loss``, what it was before."""
        self._video_excused_until = self._clock() + seconds
        self._loss_by_kind["video"] = min(self._loss_by_kind["video"], loss)

    def on_report(self, fraction_lost: int, kind: str = "video") -> int | None:
        """Feed one report's 8-bit fraction lost; return the new level if it changed."""
        now = self._clock()
        if kind == "video" and now < self._video_excused_until:
            return None
        previous = self._loss_by_kind.get(kind, 0.0)
        self._loss_by_kind[kind] = 0.5 * previous + 0.5 * (fraction_lost / 256)
        if self.loss > self._degrade_above:
            self._good_since = None
            worst = PRIMARY_VIDEO_ONLY
            if self.loss > self._audio_only_above:
                worst = AUDIO_ONLY
            elif self.loss > self._thin_above and self._has_layers():
                worst = BASE_LAYER_ONLY
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
            level = AUDIO_ONLY if self.level < level else PRIMARY_VIDEO_ONLY
        self.level = level
        self._last_step = now
        if level == AUDIO_ONLY:
            # no video is sent, so its loss is no longer measured: audio's judges the way back
            # (kept, a last bad video sample held the level at audio only for good)
            self._loss_by_kind["video"] = 0.0
        return level
