"""One timer for the periodic work of a whole SFU worker.

At small fan-out the worker's CPU per forwarded packet is mostly wake-ups, not forwarding:
every timer that wakes an otherwise idle event loop costs the process 35-115 µs of CPU on
this kind of machine (``benchmarks/loop_wakeups.py``), against about 11 µs to forward a
packet. The periodic work (each room's speaker detection and once-a-second bandwidth,
loss and sender-report counters, the RTCP sender reports of every subscriber slot, the
loop-lag sampler) therefore runs from one timer per event loop: ``shared_ticker()`` ticks
every ``TICK_S``, and each piece of work asks to be called every so many seconds
(``Ticker.every``), a whole number of ticks.

``set_shared_ticks(False)`` (the worker setting ``TONGKE_SFU_SHARED_TICK``) gives each user a
ticker of its own at its own period instead, as each had its own timer before, so a benchmark
can compare both in one run.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Callable

from common.logging import get_logger

log = get_logger(__name__)

TICK_S = 0.25

Unsubscribe = Callable[[], None]


class Ticker:
    """Calls its subscribers' callbacks on a fixed grid of ticks, ``interval`` s apart.

    The timer runs only while someone is subscribed. A callback is a plain function run on the
    event loop (it must not block); one that raises is logged and the others still run.
    ``late_s`` is how late the current tick fired: what a packet arriving at that moment
    would have waited for the loop (``streaming.runtime.LoopLag``).
    """

    def __init__(self, interval: float = TICK_S) -> None:
        self.interval = interval
        self.ticks = 0
        self.late_s = 0.0
        # subscription id -> (period in ticks, callback); the id keeps the order of subscribing
        self._subscribers: dict[int, tuple[int, Callable[[], None]]] = {}
        self._next_id = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._due = 0.0

    def every(self, period_s: float, callback: Callable[[], None]) -> Unsubscribe:
        """Call ``callback`` every ``period_s`` seconds from the next tick on (``period_s`` a
        whole number of ticks, at least one); returns the function that stops it."""
        period = round(period_s / self.interval)
        if period < 1 or abs(period * self.interval - period_s) > 1e-6:
            raise ValueError(f"{period_s} s is not a whole number of {self.interval} s ticks")
        key = self._next_id
        self._next_id += 1
        self._subscribers[key] = (period, callback)
        self._start()

        def unsubscribe() -> None:
            self._subscribers.pop(key, None)
            if not self._subscribers:
                self._stop()

        return unsubscribe

    @property
    def running(self) -> bool:
        """Whether the timer is set (someone is subscribed)."""
        return self._timer is not None

    @property
    def due(self) -> float:
        """When the next tick is due, on the event loop's clock."""
        return self._due

    def tick(self) -> None:
        """One tick: every callback whose period divides the tick count runs (the timer
        calls this; a test can too, without a loop)."""
        self.ticks += 1
        ticks = self.ticks
        subscribers = self._subscribers
        for key, (period, callback) in list(subscribers.items()):
            # one stopped by an earlier callback of this tick does not run
            if ticks % period == 0 and key in subscribers:
                try:
                    callback()
                except Exception:
                    log.exception("sfu_tick_failed", callback=repr(callback))

    def _start(self) -> None:
        if self._timer is not None:
            return
        self._loop = asyncio.get_running_loop()
        self._due = self._loop.time() + self.interval
        self._timer = self._loop.call_at(self._due, self._fire)

    def _stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _fire(self) -> None:
        loop = self._loop
        assert loop is not None
        now = loop.time()
        self.late_s = max(now - self._due, 0.0)
        # on the grid, so a slow tick does not push every later one back; after a stall
        # longer than a tick, the next is one interval away (the missed ones are not run)
        self._due += self.interval
        if self._due <= now:
            self._due = now + self.interval
        self._timer = loop.call_at(self._due, self._fire)
        self.tick()


_shared = True
_tickers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Ticker] = weakref.WeakKeyDictionary()


def set_shared_ticks(enabled: bool) -> None:
    """Whether ``ticker_for`` hands out the loop's shared ticker (the default) or a ticker of
    the caller's own; applies to what subscribes afterwards."""
    global _shared
    _shared = enabled


def shared_ticker() -> Ticker:
    """The running event loop's shared ticker (``TICK_S``)."""
    loop = asyncio.get_running_loop()
    ticker = _tickers.get(loop)
    if ticker is None:
        ticker = _tickers[loop] = Ticker(TICK_S)
    return ticker


def ticker_for(period_s: float) -> Ticker:
    """The ticker for work due every ``period_s`` seconds: the loop's shared one, or, with
    shared ticks switched off, one of its own ticking at that period."""
    if _shared and period_s >= TICK_S:
        return shared_ticker()
    return Ticker(period_s)
