"""The shared clock of the SFU's RTCP sender reports (``aiortc_hooks._ReportClock``): a slot
that sent something is woken on its phase's tick to report it; an idle slot is never woken."""

from __future__ import annotations

import asyncio

from streaming.sfu.aiortc_hooks import REPORT_PHASES, _ReportClock
from streaming.sfu.ticker import shared_ticker


class CountingSender:
    """What the clock reads of an aiortc 1.16 ``RTCRtpSender``: its packet count."""

    def __init__(self) -> None:
        self._RTCRtpSender__packet_count = 0


async def _ticks(count: int) -> None:
    ticker = shared_ticker()
    until = ticker.ticks + count
    while ticker.ticks < until:
        await asyncio.sleep(0.02)


async def test_only_a_slot_that_sent_is_woken_and_the_clock_stops_when_nobody_waits() -> None:
    clock = _ReportClock()
    active, idle = CountingSender(), CountingSender()
    phase = clock.phase()
    active._RTCRtpSender__packet_count = 10
    woken = asyncio.ensure_future(clock.wait(phase, active, 0))  # type: ignore[arg-type]
    waiting = asyncio.ensure_future(clock.wait(phase, idle, 0))  # type: ignore[arg-type]
    await asyncio.wait_for(woken, timeout=10)
    await _ticks(2 * REPORT_PHASES)  # its phase came round twice more
    assert not waiting.done(), "a slot with nothing sent since its last report sleeps on"
    # once it reported 10 packets, the active slot sleeps too until it sends more
    again = asyncio.ensure_future(clock.wait(phase, active, 10))  # type: ignore[arg-type]
    await _ticks(2 * REPORT_PHASES)
    assert not again.done()
    idle._RTCRtpSender__packet_count = 1
    active._RTCRtpSender__packet_count = 11
    await asyncio.wait_for(asyncio.gather(waiting, again), timeout=10)
    assert not any(clock._waiting)
    await _ticks(1)
    assert clock._unsubscribe is None and not shared_ticker().running


async def test_a_stopped_sender_leaves_the_clock() -> None:
    clock = _ReportClock()
    sender = CountingSender()
    waiting = asyncio.ensure_future(clock.wait(clock.phase(), sender, 0))  # type: ignore[arg-type]
    await asyncio.sleep(0)
    waiting.cancel()  # what aiortc does to the sender's RTCP task when it stops
    await asyncio.gather(waiting, return_exceptions=True)
    assert not any(clock._waiting)
