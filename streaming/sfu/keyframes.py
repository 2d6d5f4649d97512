"""Rate-limited keyframe requests towards one publisher track."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

DEFAULT_MIN_INTERVAL_S = 1.0


class KeyframeRequester:
    """Sends at most one keyframe request per interval; a request inside the interval is
    deferred to the interval's end rather than dropped, so a joining subscriber is never
    left waiting for a keyframe nobody asked for."""

    def __init__(
        self,
        send_request: Callable[[], None],
        *,
        min_interval_s: float = DEFAULT_MIN_INTERVAL_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._send_request = send_request
        self._min_interval_s = min_interval_s
        self._clock = clock
        self._last_sent: float | None = None
        self._deferred: asyncio.TimerHandle | None = None
        self.sent = 0
        self.deferred = 0

    def request(self) -> None:
        if self._deferred is not None:
            return
        now = self._clock()
        if self._last_sent is None or now - self._last_sent >= self._min_interval_s:
            self._fire()
            return
        delay = self._min_interval_s - (now - self._last_sent)
        self.deferred += 1
        self._deferred = asyncio.get_running_loop().call_later(delay, self._fire_deferred)

    def cancel(self) -> None:
        if self._deferred is not None:
            self._deferred.cancel()
            self._deferred = None

    def _fire_deferred(self) -> None:
        self._deferred = None
        self._fire()

    def _fire(self) -> None:
        self._last_sent = self._clock()
        self.sent += 1
        self._send_request()
