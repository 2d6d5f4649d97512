"""What the SFU worker's process runs with: GC tuning and the pause/lag monitors, real
collections and a real event loop (``streaming.runtime``)."""

from __future__ import annotations

import asyncio
import gc
import time

from prometheus_client import CollectorRegistry

from streaming.runtime import GcPauses, GcTuning, LoopLag, tune_gc, untune_gc
from streaming.sfu.ticker import shared_ticker


def _count(registry: CollectorRegistry, name: str, **labels: str) -> float:
    value = registry.get_sample_value(f"{name}_count", labels)
    return value or 0.0


def test_gc_tuning_freezes_start_up_objects_and_raises_the_threshold_then_undoes_it() -> None:
    before = gc.get_threshold()
    previous = tune_gc(GcTuning(freeze=True, threshold0=50_000))
    try:
        assert gc.get_threshold() == (50_000, before[1], before[2])
        assert gc.get_freeze_count() > 1000, "the modules' objects are out of collections"
    finally:
        untune_gc(previous)
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0


def test_gc_tuning_can_leave_the_collector_alone() -> None:
    before = gc.get_threshold()
    untune_gc(tune_gc(GcTuning(freeze=False, threshold0=None)))
    assert gc.get_threshold() == before and gc.get_freeze_count() == 0


def test_every_collection_is_timed_by_generation() -> None:
    registry = CollectorRegistry()
    pauses = GcPauses(registry)
    pauses.install()
    try:
        gc.collect(2)
        gc.collect(0)
    finally:
        pauses.remove()
    assert _count(registry, "tongke_sfu_gc_pause_seconds", generation="2") >= 1
    assert _count(registry, "tongke_sfu_gc_pause_seconds", generation="0") >= 1
    assert pauses.longest_s > 0
    counted = _count(registry, "tongke_sfu_gc_pause_seconds", generation="2")
    gc.collect(2)
    assert _count(registry, "tongke_sfu_gc_pause_seconds", generation="2") == counted, "removed"


def _shows_a_stall_of_its_own(lag: LoopLag, registry: CollectorRegistry) -> None:
    """A 0.3 s stall of the loop's own work, as both histograms show it."""
    assert lag.longest_s >= 0.25
    own = registry.get_sample_value("tongke_sfu_loop_lag_own_seconds_sum") or 0.0
    assert own >= 0.15
    assert (registry.get_sample_value("tongke_sfu_loop_lag_seconds_bucket", {"le": "0.1"}) or 0) < (
        registry.get_sample_value("tongke_sfu_loop_lag_seconds_count") or 0
    ), "the stall lands above the 100 ms bucket"


async def test_a_blocked_loop_shows_as_lag_of_its_own() -> None:
    """A callback that holds the loop for 0.3 s delays the sampler's timer by at least the
    rest of that time, and it is the process's own work, not waiting for a CPU."""
    registry = CollectorRegistry()
    lag = LoopLag(registry, interval=0.02)
    lag.start()
    try:
        await asyncio.sleep(0.05)
        time.sleep(0.3)  # the stall under test: blocks the event loop on purpose
        await asyncio.sleep(0.05)
    finally:
        await lag.stop()
    assert lag.samples >= 2
    _shows_a_stall_of_its_own(lag, registry)


async def test_a_stall_shows_on_the_shared_tick() -> None:
    """Sampled on the worker's shared 250 ms tick instead of 20 timers a second: a 300 ms
    stall that starts 20 ms before a tick is due delays that tick by about 280 ms."""
    registry = CollectorRegistry()
    lag = LoopLag(registry)
    lag.start()
    ticker = shared_ticker()
    try:
        assert lag.interval == ticker.interval == 0.25
        while lag.samples < 1:
            await asyncio.sleep(0.01)
        stalled = asyncio.Event()

        def stall() -> None:
            time.sleep(0.3)  # the stall under test: blocks the event loop on purpose
            stalled.set()

        # timers run in order of their due time, so even a late wake-up runs this first
        asyncio.get_running_loop().call_at(ticker.due - 0.02, stall)
        await stalled.wait()
        samples = lag.samples
        while lag.samples == samples:
            await asyncio.sleep(0.01)
    finally:
        await lag.stop()
    assert not ticker.running, "the sampler leaves no timer behind"
    _shows_a_stall_of_its_own(lag, registry)
