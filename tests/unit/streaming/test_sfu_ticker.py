"""The worker's shared ticker (``streaming.sfu.ticker``): one timer, and each piece of periodic
work still runs at its own rate."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator

import pytest

from streaming.sfu import ticker as ticks
from streaming.sfu.identity import ParticipantIdentity
from streaming.sfu.room import SENDER_REPORT_INTERVAL_S, SPEAKER_WINDOW_S, Room
from streaming.sfu.ticker import Ticker, shared_ticker, ticker_for


def _counter() -> tuple[list[int], Callable[[], None]]:
    calls = [0]

    def count() -> None:
        calls[0] += 1

    return calls, count


async def test_each_subscriber_runs_at_its_own_period() -> None:
    """Driven tick by tick (no await in between, so the real timer cannot fire meanwhile)."""
    ticker = Ticker(0.25)
    every_tick, quarter = _counter()
    half_seconds, half = _counter()
    seconds, second = _counter()
    stops = [ticker.every(0.25, quarter), ticker.every(0.5, half), ticker.every(1.0, second)]
    assert ticker.running
    for _ in range(12):  # 3 s
        ticker.tick()
    assert (every_tick[0], half_seconds[0], seconds[0]) == (12, 6, 3)
    stops[1]()
    for _ in range(4):
        ticker.tick()
    assert (every_tick[0], half_seconds[0], seconds[0]) == (16, 6, 4)
    for stop in stops:
        stop()
    assert not ticker.running, "the timer stops with its last subscriber"


async def test_a_period_must_be_whole_ticks() -> None:
    ticker = Ticker(0.25)
    with pytest.raises(ValueError):
        ticker.every(0.3, lambda: None)
    with pytest.raises(ValueError):
        ticker.every(0.1, lambda: None)
    assert not ticker.running


async def test_a_failing_callback_neither_stops_the_others_nor_the_timer() -> None:
    ticker = Ticker(0.25)
    calls, count = _counter()

    def fail() -> None:
        raise RuntimeError("a room's housekeeping broke")

    stop_failing = ticker.every(0.25, fail)
    stop_counting = ticker.every(0.25, count)
    ticker.tick()
    ticker.tick()
    assert calls[0] == 2 and ticker.running
    stop_failing()
    stop_counting()


async def test_a_callback_stopped_during_a_tick_does_not_run_in_it() -> None:
    ticker = Ticker(0.25)
    calls, count = _counter()
    stops: list[Callable[[], None]] = []
    stops.append(ticker.every(0.25, lambda: stops[1]()))
    stops.append(ticker.every(0.25, count))
    ticker.tick()
    assert calls[0] == 0
    stops[0]()


async def test_the_timer_fires_on_the_loop_and_says_how_late() -> None:
    ticker = Ticker(0.01)
    done = asyncio.Event()
    lates: list[float] = []

    def note() -> None:
        lates.append(ticker.late_s)
        if len(lates) == 5:
            done.set()

    stop = ticker.every(0.01, note)
    await asyncio.wait_for(done.wait(), timeout=10)
    stop()
    assert ticker.ticks == 5 and len(lates) == 5
    assert all(late >= 0 for late in lates)
    assert not ticker.running


@pytest.fixture
def own_timers() -> Iterator[None]:
    ticks.set_shared_ticks(False)
    yield
    ticks.set_shared_ticks(True)


async def test_work_gets_the_shared_ticker_or_its_own() -> None:
    assert ticker_for(SPEAKER_WINDOW_S) is shared_ticker()
    assert ticker_for(0.25) is shared_ticker()
    assert ticker_for(0.05) is not shared_ticker(), "faster than the tick: its own"


async def test_switched_off_each_gets_a_timer_of_its_own(own_timers: None) -> None:
    first, second = ticker_for(SPEAKER_WINDOW_S), ticker_for(SPEAKER_WINDOW_S)
    assert first is not second and first is not shared_ticker()
    assert first.interval == SPEAKER_WINDOW_S


async def test_rooms_share_one_timer_at_their_own_rates() -> None:
    """Two rooms' housekeeping on the loop's one ticker: each runs every speaker window
    (every second tick), the once-a-second work every second such run."""
    assert SPEAKER_WINDOW_S == 2 * ticks.TICK_S and SENDER_REPORT_INTERVAL_S == 1.0
    ticker = shared_ticker()
    rooms = [Room("lesson-a", "lesson"), Room("lesson-b", "lesson")]
    try:
        for room in rooms:
            identity = ParticipantIdentity("lead", "主讲教室", "lead", room.room_id)
            await room.join(identity, notify=lambda message: None)
        assert ticker.running
        start = ticker.ticks
        before = [room._housekeeping_ticks for room in rooms]
        while ticker.ticks < start + 6:
            await asyncio.sleep(0.05)
        end = ticker.ticks
        expected = end // 2 - start // 2
        assert expected >= 3
        assert [room._housekeeping_ticks - b for room, b in zip(rooms, before, strict=True)] == [
            expected,
            expected,
        ]
    finally:
        for room in rooms:
            await room.close()
    assert not ticker.running, "closed rooms leave no timer behind"
