"""RTCP sender reports from the SFU (``aiortc_hooks.share_sender_report_timer``): every slot
that carries a stream reports it about once a second, from one shared timer; a slot with
nothing forwarded sends none."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

pytestmark = pytest.mark.timeout(60)


async def _reported(viewer: Any) -> dict[str, int]:
    """Per receive slot of ``viewer``, the packet count of the last sender report it got."""
    reported: dict[str, int] = {}
    for line, transceiver in zip(viewer.media, viewer.pc.getTransceivers(), strict=True):
        if line["direction"] != "recv":
            continue
        report = await transceiver.receiver.getStats()
        for stats in report.values():
            if stats.type == "remote-outbound-rtp":
                reported[line["name"]] = stats.packetsSent
    return reported


async def test_slots_carrying_a_stream_report_it_and_idle_slots_stay_silent(
    rooms, classrooms, eventually
):
    classrooms.start("lead", "lead")
    viewer = classrooms.start("remote-a", "remote")
    await eventually(lambda: "lead_camera" in viewer.stats)
    await eventually(lambda: viewer.slot("lead_camera").frames > 15, timeout=15)
    first: dict[str, int] = {}

    async def both_reported() -> bool:
        first.update(await _reported(viewer))
        return {"lead_camera", "lead_audio"} <= set(first)

    for _ in range(40):
        if await both_reported():
            break
        await asyncio.sleep(0.1)
    assert {"lead_camera", "lead_audio"} <= set(first)
    await asyncio.sleep(2.0)  # the reports keep coming, with the counts going up
    later = await _reported(viewer)
    assert later["lead_camera"] > first["lead_camera"] > 0
    assert later["lead_audio"] > first["lead_audio"] > 0
    # the board and the hand slots carry nothing: no report for them
    assert set(later) == {"lead_camera", "lead_audio"}
    room = await rooms.get("lesson-1")
    downlink = room.participants["remote-a"].downlinks["lead_camera"]
    assert later["lead_camera"] <= downlink.packets
