"""How an SFU worker process runs: CPython's cyclic garbage collector kept off the forwarding
path, and what shows when something else is on it.

A packet waits in the SFU for as long as whatever runs before it on the event loop, so the
tail of the added delay is the tail of the loop's stalls. Two things are measured for that,
as Prometheus histograms on the worker's ``/metrics``:

- ``tongke_sfu_gc_pause_seconds{generation}``: every collection's pause (``gc.callbacks``);
- ``tongke_sfu_loop_lag_seconds``: how late a timer of the loop fires, sampled a few times a
  second: what a packet arriving at a random moment waits for the loop;
- ``tongke_sfu_loop_lag_own_seconds``: the same less the time the loop's thread spent
  runnable but waiting for a CPU meanwhile (Linux ``schedstat``): the part of a stall that is
  this process's own work, not other processes on a busy machine.

On a busy machine most of a stall is the loop's thread waiting for a CPU (the bench reports
both), which only the kernel's scheduler can shorten: ``set_priority`` gives the worker a
lower nice value than the web app, the jobs and their ffmpeg runs.

``tune_gc`` is applied once the worker has started: everything allocated until then (modules,
the app, settings) is frozen out of every future collection, and the young-generation
threshold is raised so full collections over the rooms' long-lived aiortc objects come
rarely (they are what pauses for tens of ms with many subscribers).
"""

from __future__ import annotations

import asyncio
import gc
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

import uvicorn
from prometheus_client import CollectorRegistry, Gauge, Histogram

from common.logging import get_logger
from streaming.sfu.ticker import TICK_S, Ticker, shared_ticker

log = get_logger(__name__)

PAUSE_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 1.0)
LOOP_LAG_INTERVAL_S = 0.05


@dataclass(frozen=True, slots=True)
class GcTuning:
    """``threshold0`` None keeps CPython's (700); ``freeze`` moves every object alive at
    start-up to the permanent generation (``gc.freeze``)."""

    freeze: bool = True
    threshold0: int | None = None


def tune_gc(tuning: GcTuning) -> tuple[int, int, int]:
    """Apply ``tuning`` to this process; returns the thresholds it replaced, for
    ``untune_gc``."""
    previous = gc.get_threshold()
    if tuning.threshold0 is not None:
        gc.set_threshold(tuning.threshold0, previous[1], previous[2])
    if tuning.freeze:
        gc.collect()  # what is garbage now must not be frozen with the rest
        gc.freeze()
    log.info("sfu_gc_tuned", threshold=gc.get_threshold(), frozen=gc.get_freeze_count())
    return previous


AUTOGROUP = Path("/proc/self/autogroup")


def set_priority(nice: int) -> int:
    """Give this process (and the threads it starts from now on) the nice value ``nice``;
    returns the value in force, which stays as it was when the system refuses.

    Where Linux groups processes by session for scheduling (autogroup), the CPU is shared
    between sessions first and a nice value only counts inside one: the worker then starts
    its own session and gives that group the same nice value.
    """
    try:
        os.setpriority(os.PRIO_PROCESS, 0, nice)
    except PermissionError:
        log.warning("sfu_priority_refused", nice=nice, hint="needs CAP_SYS_NICE")
    if AUTOGROUP.exists():
        try:
            if os.getsid(0) != os.getpid():
                os.setsid()
            AUTOGROUP.write_text(str(nice))
        except OSError as exc:  # a session leader already, or no CAP_SYS_NICE
            log.warning("sfu_autogroup_unchanged", nice=nice, error=str(exc))
    return os.getpriority(os.PRIO_PROCESS, 0)


def gc_gauges(registry: CollectorRegistry) -> None:
    """What the collector runs with, so a deployment can check its tuning took effect."""
    Gauge(
        "tongke_sfu_gc_frozen_objects", "Objects frozen out of collections", registry=registry
    ).set_function(gc.get_freeze_count)
    Gauge(
        "tongke_sfu_gc_threshold0", "Young-generation collection threshold", registry=registry
    ).set_function(lambda: gc.get_threshold()[0])
    Gauge("tongke_sfu_nice", "The worker's nice value", registry=registry).set_function(
        lambda: os.getpriority(os.PRIO_PROCESS, 0)
    )


def untune_gc(previous: tuple[int, int, int]) -> None:
    """Undo ``tune_gc`` (a worker app stopped inside a longer-lived process, as in tests)."""
    gc.unfreeze()
    gc.set_threshold(*previous)


class GcPauses:
    """Times every collection of this process into a histogram by generation."""

    def __init__(self, registry: CollectorRegistry | None) -> None:
        self.histogram = Histogram(
            "tongke_sfu_gc_pause_seconds",
            "Pause of each cyclic garbage collection, by generation",
            ["generation"],
            buckets=PAUSE_BUCKETS,
            registry=registry,
        )
        self._by_generation = [self.histogram.labels(str(g)) for g in range(3)]
        self._started = 0.0
        self.longest_s = 0.0

    def _on_gc(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
            return
        pause = time.perf_counter() - self._started
        self.longest_s = max(self.longest_s, pause)
        self._by_generation[info["generation"]].observe(pause)

    def install(self) -> None:
        if self._on_gc not in gc.callbacks:
            gc.callbacks.append(self._on_gc)

    def remove(self) -> None:
        if self._on_gc in gc.callbacks:
            gc.callbacks.remove(self._on_gc)


def _runqueue_wait_at(fd: int | None) -> float | None:
    """``runqueue_wait_s`` of an open ``schedstat`` file, read again from its start."""
    if fd is None:
        return None
    try:
        return int(os.pread(fd, 256, 0).split()[1]) / 1e9
    except (OSError, IndexError, ValueError):
        return None


def runqueue_wait_s(schedstat: Path) -> float | None:
    """Seconds a thread (or process) has spent runnable but waiting for a CPU, from its
    ``/proc/.../schedstat``; None where the kernel does not keep it."""
    try:
        return int(schedstat.read_text().split()[1]) / 1e9
    except (OSError, IndexError, ValueError):
        return None


class LoopLag:
    """Records how late a timer of the loop fires, and how much of that its thread was
    waiting for a CPU. ``interval`` None samples on the loop's shared tick
    (``streaming.sfu.ticker``, every 250 ms), a timer that wakes the loop anyway for the
    rooms' periodic work; a number, on a timer of its own firing that often. Owned by
    whoever calls ``start``; ``stop`` ends it."""

    def __init__(
        self, registry: CollectorRegistry | None, *, interval: float | None = None
    ) -> None:
        self.interval = TICK_S if interval is None else interval
        self.shared = interval is None
        self.histogram = Histogram(
            "tongke_sfu_loop_lag_seconds",
            f"How late the event loop ran a timer, sampled every {int(self.interval * 1000)} ms",
            buckets=PAUSE_BUCKETS,
            registry=registry,
        )
        self.own = Histogram(
            "tongke_sfu_loop_lag_own_seconds",
            "Loop lag less the time the loop's thread waited for a CPU meanwhile",
            buckets=PAUSE_BUCKETS,
            registry=registry,
        )
        self.samples = 0
        self.longest_s = 0.0
        self._ticker: Ticker | None = None
        self._unsubscribe: Callable[[], None] | None = None
        self._schedstat: int | None = None
        self._waited: float | None = None

    def start(self) -> None:
        if self._unsubscribe is not None:
            return
        schedstat = Path(f"/proc/self/task/{threading.get_native_id()}/schedstat")
        # kept open and re-read in place: opening it 20 times a second cost as much CPU as
        # the timer's own wake-ups (about 0.1 ms each on a 2-core VM)
        try:
            self._schedstat = os.open(schedstat, os.O_RDONLY)
        except OSError:
            self._schedstat = None
        self._waited = _runqueue_wait_at(self._schedstat)
        self._ticker = shared_ticker() if self.shared else Ticker(self.interval)
        self._unsubscribe = self._ticker.every(self._ticker.interval, self._sample)

    async def stop(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        if self._schedstat is not None:
            os.close(self._schedstat)
            self._schedstat = None

    def _sample(self) -> None:
        lag = self._ticker.late_s  # type: ignore[union-attr]
        waited_before = self._waited
        self._waited = waited = _runqueue_wait_at(self._schedstat)
        starved = waited - waited_before if waited is not None and waited_before else 0.0
        self.samples += 1
        self.longest_s = max(self.longest_s, lag)
        self.histogram.observe(lag)
        self.own.observe(max(lag - starved, 0.0))


SERVER_TICK_S = 1.0


class TickingServer(uvicorn.Server):
    """uvicorn's server, its housekeeping on the worker's shared ticker.

    uvicorn's ``main_loop`` sleeps 0.1 s at a time to refresh its ``Date`` header once a
    second and to notice an exit signal: ten wake-ups a second, of an idle worker's 14. Here
    it runs once a second from the shared tick (``streaming.sfu.ticker``), and a signal
    wakes it at once (uvicorn 0.3x: ``main_loop``, ``on_tick`` and ``handle_exit``)."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Future[None] | None = None

    async def main_loop(self) -> None:
        self._loop = loop = asyncio.get_running_loop()
        stop_ticking = shared_ticker().every(SERVER_TICK_S, self._wake_up)
        try:
            counter = 0
            should_exit = await self.on_tick(counter)
            while not should_exit:
                counter = (counter + 10) % 864000  # a second is ten of uvicorn's ticks
                self._wake = loop.create_future()
                if not self.should_exit:  # a signal between two ticks
                    await self._wake
                should_exit = await self.on_tick(counter)
        finally:
            stop_ticking()

    def _wake_up(self) -> None:
        wake = self._wake
        if wake is not None and not wake.done():
            wake.set_result(None)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        super().handle_exit(sig, frame)
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._wake_up)


def serve(app: Any, *, host: str, port: int, shared_tick: bool) -> None:
    """Run the worker's ASGI ``app`` as ``uvicorn.run`` does, without an access log (the
    heartbeat probes are noise); with ``shared_tick``, on ``TickingServer``."""
    config = uvicorn.Config(app, host=host, port=port, log_config=None, access_log=False)
    server = TickingServer(config) if shared_tick else uvicorn.Server(config)
    server.run()
