"""The bandwidth ladder (streaming/sfu/bandwidth.py): steps down on a falling estimate, with
hysteresis, and probes back up with a doubling hold. A fake clock, no network."""

from __future__ import annotations

from typing import Any

import pytest

from streaming.sfu.bandwidth import BandwidthPolicy, BandwidthProtection
from streaming.sfu.protection import AUDIO_ONLY, BASE_LAYER_ONLY, FULL, PRIMARY_VIDEO_ONLY

# video bits/s per level: both videos, the main one, its base layer, none
NEEDS = (1_000_000.0, 600_000.0, 300_000.0, 0.0)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


def ladder(clock: Clock, *, layers: bool = True, **policy: Any) -> BandwidthProtection:
    return BandwidthProtection(BandwidthPolicy(**policy), clock=clock, has_layers=lambda: layers)


def feed(protection: BandwidthProtection, clock: Clock, *estimates: float) -> list[int | None]:
    changes = []
    for estimate in estimates:
        clock.now += 0.5
        changes.append(protection.on_estimate(estimate, NEEDS))
    return changes


def test_a_falling_estimate_steps_down_to_the_level_that_fits(clock: Clock) -> None:
    protection = ladder(clock)
    assert feed(protection, clock, 1_200_000, 1_100_000) == [None, None]  # above the need
    # under 75 % of what full media needs, for a second
    assert feed(protection, clock, 700_000, 700_000, 700_000) == [None, None, PRIMARY_VIDEO_ONLY]
    assert protection.level == PRIMARY_VIDEO_ONLY


def test_a_deep_fall_skips_levels_and_the_base_layer_without_layers(clock: Clock) -> None:
    with_layers = ladder(clock)
    assert feed(with_layers, clock, 1_200_000, 400_000, 400_000, 400_000)[-1] == BASE_LAYER_ONLY
    without = ladder(clock, layers=False)
    assert feed(without, clock, 1_200_000, 400_000, 400_000, 400_000)[-1] == AUDIO_ONLY


def test_an_estimate_wobbling_around_the_need_or_climbing_below_it_keeps_the_level(
    clock: Clock,
) -> None:
    wobbling = ladder(clock)
    # within the hysteresis band: what an AIMD's false overuse gives (0.85 x what arrives)
    assert feed(wobbling, clock, *[800_000, 1_050_000] * 10) == [None] * 20
    # and a lone dip under it, not confirmed a second later
    assert feed(wobbling, clock, *[700_000, 1_000_000] * 10) == [None] * 20
    climbing = ladder(clock)
    # a receiver's estimate climbing (or holding) after a join says nothing against the level
    assert feed(climbing, clock, 300_000, 330_000, 360_000, 400_000, 400_000) == [None] * 5
    assert wobbling.level == climbing.level == FULL


def test_no_second_step_before_the_step_interval(clock: Clock) -> None:
    protection = ladder(clock, step_interval_s=2.0, drain_max_s=1.0)
    assert feed(protection, clock, 1_200_000, 700_000, 700_000, 700_000)[-1] == PRIMARY_VIDEO_ONLY
    # falling estimates within 2 s are not acted on
    assert feed(protection, clock, 500_000, 250_000, 250_000) == [None, None, None]
    clock.now += 2.0
    assert feed(protection, clock, 240_000) == [AUDIO_ONLY]


def test_the_estimate_falling_while_the_queue_drains_does_not_step_again(clock: Clock) -> None:
    """After a step down the old level's queue drains through the link and the receiver's
    estimate follows what arrives: it falls (here for 2.5 s, under 75 % of the new level's
    need) and then holds; the new level fits, so no second step (issue 5: behind a 1 s queue
    the ladder went on to audio only although the base layer fit)."""
    protection = ladder(clock)
    step_down(protection, clock)
    draining = (600_000, 500_000, 420_000, 380_000, 350_000)
    assert feed(protection, clock, *draining) == [None] * 5
    assert feed(protection, clock, 350_000, 350_000, 350_000, 350_000) == [None] * 4
    # the queue is empty: the estimate climbs again
    assert feed(protection, clock, 400_000, 450_000, 500_000, 550_000) == [None] * 4
    assert protection.level == PRIMARY_VIDEO_ONLY
    assert protection.drain_waits == [pytest.approx(4.0)]


def test_after_the_drain_a_fresh_fall_steps_again(clock: Clock) -> None:
    protection = ladder(clock)
    step_down(protection, clock)
    assert feed(protection, clock, 500_000, 400_000, 400_000, 400_000, 400_000) == [None] * 5
    # settled; then the receiver sees overuse at the new level: under its need for a second
    assert feed(protection, clock, 340_000, 330_000, 320_000) == [None, None, BASE_LAYER_ONLY]


def test_an_estimate_still_falling_at_the_drain_cap_steps_again(clock: Clock) -> None:
    """Not a drain but a link narrower than the new level: the next step follows once the
    drain wait reaches its cap."""
    protection = ladder(clock, drain_max_s=6.0)
    step_down(protection, clock)
    falling = [500_000 - 20_000 * i for i in range(11)]  # a new low every 0.5 s for 5.5 s
    assert feed(protection, clock, *falling) == [None] * 11
    assert feed(protection, clock, 270_000) == [AUDIO_ONLY]  # 6 s: the base layer is over


def step_down(protection: BandwidthProtection, clock: Clock) -> None:
    feed(protection, clock, 1_200_000, 700_000, 700_000, 700_000)
    assert protection.level == PRIMARY_VIDEO_ONLY


def test_a_probe_after_the_hold_is_kept_when_the_estimate_holds(clock: Clock) -> None:
    protection = ladder(clock, hold_s=8.0, trial_s=5.0)
    step_down(protection, clock)
    clock.now += 7.0
    assert protection.tick(FULL) is None  # still holding
    clock.now += 1.5
    assert protection.tick(FULL) == FULL and protection.probing
    # the receiver's estimate climbs towards the tried level's need: the trial goes on
    assert feed(protection, clock, *range(650_000, 1_000_000, 50_000)) == [None] * 7
    clock.now += 5.0
    assert protection.tick(FULL) is None
    assert protection.level == FULL and not protection.probing
    assert protection.hold_s == 8.0


def test_a_failed_probe_goes_back_and_doubles_the_hold_up_to_its_cap(clock: Clock) -> None:
    protection = ladder(clock, hold_s=8.0, max_hold_s=20.0, trial_grace_s=1.0)
    step_down(protection, clock)
    holds = []
    for _ in range(3):
        clock.now += protection.hold_s
        assert protection.tick(FULL) == FULL
        clock.now += 1.0  # past the grace
        # the link is still narrow: the estimate falls under what full media needs
        assert feed(protection, clock, 800_000, 700_000) == [None, PRIMARY_VIDEO_ONLY]
        holds.append(protection.hold_s)
    assert holds == [16.0, 20.0, 20.0]
    assert protection.probes == 3 and protection.probes_failed == 3
    # a hold is a hold: no probe before it is over
    clock.now += 19.0
    assert protection.tick(FULL) is None


def test_estimates_in_a_probes_first_moments_are_ignored(clock: Clock) -> None:
    protection = ladder(clock, trial_grace_s=1.5)
    step_down(protection, clock)
    clock.now += protection.hold_s
    assert protection.tick(FULL) == FULL
    # a resumed stream's estimator restarts: its first values jump about (yet stay above
    # 90 % of the estimate before the probe, 700 kbit/s)
    assert feed(protection, clock, 900_000, 650_000) == [None, None]
    assert protection.level == FULL


def test_a_fall_under_the_estimate_before_the_probe_ends_it_within_its_grace(
    clock: Clock,
) -> None:
    """A probe that overfills the link must end before the link's queue overflows (its tail
    drop takes audio too): the receiver's first overuse, an estimate under what it was before
    the probe, ends it at once, grace or not."""
    protection = ladder(clock, trial_grace_s=1.5)
    step_down(protection, clock)
    clock.now += protection.hold_s
    assert protection.tick(FULL) == FULL
    assert feed(protection, clock, 720_000, 600_000) == [None, PRIMARY_VIDEO_ONLY]
    assert protection.probes_failed == 1 and protection.hold_s == 16.0


def test_the_queue_of_a_failed_probe_drains_without_a_step_down(clock: Clock) -> None:
    protection = ladder(clock, trial_grace_s=1.0)
    step_down(protection, clock)
    clock.now += protection.hold_s
    assert protection.tick(FULL) == FULL
    clock.now += 1.0
    assert feed(protection, clock, 700_000, 650_000) == [None, PRIMARY_VIDEO_ONLY]
    # the probe's queue drains: the estimate falls under the main video's need, then holds
    assert feed(protection, clock, 500_000, 420_000, 400_000, 380_000) == [None] * 4
    assert feed(protection, clock, 380_000, 380_000, 380_000, 400_000) == [None] * 4
    assert protection.level == PRIMARY_VIDEO_ONLY


def test_loss_during_a_probe_fails_it(clock: Clock) -> None:
    protection = ladder(clock)
    step_down(protection, clock)
    clock.now += protection.hold_s
    assert protection.tick(FULL) == FULL
    clock.now += 1.0
    assert protection.tick(PRIMARY_VIDEO_ONLY) == PRIMARY_VIDEO_ONLY  # the loss ladder stepped
    assert protection.probes_failed == 1 and protection.hold_s == 16.0


def test_a_probe_whose_packets_are_lost_ends_at_the_next_tick(clock: Clock) -> None:
    """A receiver whose estimate sits under what the link carries does not lower it when a
    probe overfills the link; the tail drop shows as NACKs, which the trial watches itself
    (before the loss ladder's smoothed step), beyond the loss there was before it."""
    protection = ladder(clock)
    step_down(protection, clock)
    clock.now += protection.hold_s
    assert protection.tick(FULL, loss=0.02, sent=1000, nacked=20) == FULL
    clock.now += 1.0
    # 2 % of the probe's packets lost: within the 2 % before + 5 %
    assert protection.tick(FULL, loss=0.02, sent=1050, nacked=21) is None
    clock.now += 1.0
    # 10 % of the last second's packets (6 % of the probe's so far): the overfill has begun
    assert protection.tick(FULL, loss=0.02, sent=1100, nacked=26) == PRIMARY_VIDEO_ONLY
    assert protection.probes_failed == 1


def test_a_failed_probe_tells_the_loss_before_it(clock: Clock) -> None:
    failed: list[float] = []
    protection = BandwidthProtection(clock=clock, on_probe_failed=failed.append)
    step_down(protection, clock)
    clock.now += protection.hold_s
    assert protection.tick(FULL, loss=0.03) == FULL
    clock.now += 1.0
    assert protection.tick(PRIMARY_VIDEO_ONLY, loss=0.3) == PRIMARY_VIDEO_ONLY
    assert failed == [0.03]


def test_no_probe_while_the_loss_ladder_holds_the_level(clock: Clock) -> None:
    protection = ladder(clock)
    step_down(protection, clock)
    clock.now += protection.hold_s
    assert protection.tick(PRIMARY_VIDEO_ONLY) is None
    assert not protection.probing


def test_probes_climb_one_level_at_a_time_skipping_the_base_layer_without_layers(
    clock: Clock,
) -> None:
    protection = ladder(clock, layers=False)
    feed(protection, clock, 1_200_000, 100_000, 100_000, 100_000)
    assert protection.level == AUDIO_ONLY
    clock.now += protection.hold_s
    assert protection.tick(FULL) == PRIMARY_VIDEO_ONLY
    clock.now += protection.policy.trial_s
    assert protection.tick(FULL) is None  # kept
    clock.now += protection.hold_s
    assert protection.tick(FULL) == FULL


def test_a_lossy_link_that_is_wide_enough_is_not_taken_for_a_narrow_one(clock: Clock) -> None:
    """16 % loss: the receiver's estimate after a false overuse is 0.85 x what arrives,
    0.71 of what is sent; with the needs discounted by the loss the level holds, while the
    same estimates on a clean link step down."""
    lossy, clean = ladder(clock), ladder(clock)
    estimates = (1_100_000, 714_000, 714_000, 714_000, 714_000)
    changes = []
    for estimate in estimates:
        clock.now += 0.5
        changes.append(lossy.on_estimate(estimate, NEEDS, delivered=0.84))
    assert changes == [None] * len(estimates) and lossy.level == FULL
    assert PRIMARY_VIDEO_ONLY in feed(clean, clock, *estimates)
