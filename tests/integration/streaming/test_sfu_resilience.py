"""A stalled subscriber never slows the others; a publisher that reconnects is back at once."""

from __future__ import annotations

import asyncio
import time

import pytest

from streaming.bots import ClassroomBot, LocalChannel

pytestmark = pytest.mark.timeout(90)


class StallingChannel(LocalChannel):
    """A socket whose client stops reading: the SFU's sends to it hang once ``stall()``ed."""

    def __init__(self) -> None:
        super().__init__()
        self.reading = asyncio.Event()
        self.reading.set()

    async def server_send(self, message):
        await self.reading.wait()
        await super().server_send(message)


def pause_media_reading(bot: ClassroomBot) -> None:
    """Stop reading the bot's UDP socket, like a frozen terminal: the kernel drops for it."""
    assert bot.pc is not None
    connection = bot.pc.getTransceivers()[0].receiver.transport.transport._connection
    for protocol in connection._protocols:
        protocol.transport.pause_reading()  # type: ignore[attr-defined]


async def test_stalled_subscriber_does_not_slow_the_others(
    rooms, classrooms, eventually, make_identity
):
    lead = classrooms.start("lead", "lead", fps=15)
    healthy = classrooms.start("remote-a", "remote")
    talker = classrooms.start("remote-b", "remote")

    channel = StallingChannel()
    stalled = classrooms.attach(ClassroomBot(make_identity("remote-c", "remote")), channel)
    for bot in (healthy, stalled):
        await eventually(lambda b=bot: "lead_camera" in b.stats)
        await eventually(lambda b=bot: b.slot("lead_camera").frames > 10, timeout=15)

    pause_media_reading(stalled)
    channel.reading.clear()
    room = await rooms.get("lesson-1")
    before = healthy.slot("lead_camera").frames
    started = time.monotonic()
    # flood the room with participant-list updates while remote-c reads nothing
    for _ in range(160):
        await talker.raise_hand()
        await talker.send({"type": "lower_hand"})
        await asyncio.sleep(0.01)
    await eventually(lambda: time.monotonic() - started > 4.0, timeout=10)
    elapsed = time.monotonic() - started
    received = healthy.slot("lead_camera").frames - before

    assert received >= 0.7 * 15 * elapsed, f"{received} frames in {elapsed:.1f} s"
    # the stalled client's signaling queue overflowed: the SFU let it go, the room went on
    await eventually(lambda: "remote-c" not in room.participants, timeout=10)
    assert {"lead", "remote-a", "remote-b"} <= set(room.participants)
    await talker.raise_hand()
    await eventually(
        lambda: any(p["id"] == "remote-b" and p["hand"] == "raised" for p in lead.participants)
    )


async def test_publisher_reconnect_viewers_recover_without_rejoining(rooms, classrooms, eventually):
    first = classrooms.start("lead", "lead")
    viewer = classrooms.start("remote-a", "remote")
    await eventually(lambda: "lead_camera" in viewer.stats)
    await eventually(lambda: viewer.slot("lead_camera").frames > 15, timeout=15)
    room = await rooms.get("lesson-1")
    downlink = room.participants["remote-a"].downlinks["lead_camera"]
    ssrc = downlink.ssrc

    recoveries = []
    # 1) the lead terminal reconnects while its old connection is still up
    frames = viewer.slot("lead_camera").frames
    started = time.monotonic()
    second = classrooms.start("lead", "lead")
    await eventually(lambda: first.done.is_set(), timeout=5)
    assert any(m.get("code") == "replaced" for m in first.messages)
    await eventually(lambda: viewer.slot("lead_camera").frames > frames + 10, timeout=10)
    recoveries.append(time.monotonic() - started)

    # 2) the lead leaves, then comes back
    await classrooms.stop(second)
    await asyncio.sleep(0.5)
    frames = viewer.slot("lead_camera").frames
    started = time.monotonic()
    classrooms.start("lead", "lead")
    await eventually(lambda: viewer.slot("lead_camera").frames > frames + 10, timeout=10)
    recoveries.append(time.monotonic() - started)

    print("recovery after publisher reconnect (s):", [round(r, 2) for r in recoveries])
    assert all(r < 3.0 for r in recoveries)
    assert [m["type"] for m in viewer.messages].count("joined") == 1
    assert room.participants["remote-a"].downlinks["lead_camera"] is downlink
    assert downlink.ssrc == ssrc
    assert viewer.errors == []
