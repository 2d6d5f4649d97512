"""A weak link to one subscriber: NACKs answered from the SFU's cache; heavy loss pauses video,
never audio. (No netem in this kernel, so the loss is injected at the SFU's send side.)"""

from __future__ import annotations

import asyncio
import random
import time

import pytest

from streaming.sfu.protection import AUDIO_ONLY

pytestmark = pytest.mark.timeout(60)


class LossySink:
    """Drops every ``nth`` packet on its way to the subscriber (retransmissions included)."""

    def __init__(self, inner, nth: int) -> None:
        self.inner = inner
        self.nth = nth
        self.count = 0

    def send(self, data: bytes) -> None:
        self.count += 1
        if self.count % self.nth:
            self.inner.send(data)

    def ready(self) -> bool:
        return bool(self.inner.ready())


class ImpairedSink:
    """A rural link in user space: each packet (retransmissions included) is lost with
    probability ``loss`` and the rest arrive ``delay_s`` later, in order."""

    def __init__(self, inner, *, loss: float, delay_s: float, seed: int = 5) -> None:
        self.inner = inner
        self.loss = loss
        self.delay_s = delay_s
        self.random = random.Random(seed)
        self.sent = self.dropped = 0

    def send(self, data: bytes) -> None:
        if self.random.random() < self.loss:
            self.dropped += 1
            return
        self.sent += 1
        asyncio.get_running_loop().call_later(self.delay_s, self.inner.send, data)

    def ready(self) -> bool:
        return bool(self.inner.ready())


async def _viewer_with_loss(
    rooms, classrooms, eventually, nth: int, slots: tuple[str, ...], impair=None
):
    """A viewer decoding the lead, then its ``slots`` sent through ``impair(sink)`` (default:
    every ``nth`` packet lost)."""
    impair = impair or (lambda sink: LossySink(sink, nth))
    classrooms.start("lead", "lead")
    viewer = classrooms.start("remote-a", "remote")
    await eventually(lambda: "lead_camera" in viewer.stats)
    await eventually(lambda: viewer.slot("lead_camera").frames > 10, timeout=15)
    room = await rooms.get("lesson-1")
    participant = room.participants["remote-a"]
    for slot in slots:
        downlink = participant.downlinks[slot]
        downlink._sink = impair(downlink._sink)
    return viewer, participant


async def test_five_percent_loss_is_repaired_from_the_cache(rooms, classrooms, eventually):
    viewer, participant = await _viewer_with_loss(
        rooms, classrooms, eventually, nth=20, slots=("lead_camera", "lead_audio")
    )
    video = viewer.slot("lead_camera")
    audio_frames = viewer.slot("lead_audio").frames
    frames, started = video.frames, time.monotonic()
    video.max_gap_s = 0.0
    await asyncio.sleep(5)
    rate = (video.frames - frames) / (time.monotonic() - started)
    downlink = participant.downlinks["lead_camera"]
    print(
        f"5% loss: {rate:.1f} fps, longest freeze {video.max_gap_s * 1000:.0f} ms, "
        f"NACKed packets answered {downlink.nacks_answered}, missed {downlink.nacks_missed}, "
        f"audio frames {viewer.slot('lead_audio').frames - audio_frames}"
    )
    assert downlink.nacks_answered > 0
    assert video.max_gap_s < 1.0
    assert rate > 10  # of 15 fps
    assert not downlink.paused


async def test_five_percent_random_loss_and_80_ms_delay_never_freeze_a_second(
    rooms, classrooms, eventually
):
    """The issue's weak link (5 % loss, 80 ms one way) on the SFU → viewer leg: every repair
    waits a NACK round trip through the delay, and the picture still never stops for 1 s."""
    sinks: list[ImpairedSink] = []

    def rural_link(sink):
        sinks.append(ImpairedSink(sink, loss=0.05, delay_s=0.080))
        return sinks[-1]

    viewer, participant = await _viewer_with_loss(
        rooms, classrooms, eventually, 0, ("lead_camera", "lead_audio"), impair=rural_link
    )
    video = viewer.slot("lead_camera")
    await asyncio.sleep(1.0)  # the link settles: packets in flight, first repairs
    frames, started = video.frames, time.monotonic()
    video.max_gap_s = 0.0
    await asyncio.sleep(6)
    rate = (video.frames - frames) / (time.monotonic() - started)
    downlink = participant.downlinks["lead_camera"]
    print(
        f"5% loss + 80 ms: {rate:.1f} fps, longest freeze {video.max_gap_s * 1000:.0f} ms, "
        f"dropped {sinks[0].dropped} of {sinks[0].dropped + sinks[0].sent}, "
        f"NACKs answered {downlink.nacks_answered}, missed {downlink.nacks_missed}"
    )
    assert sinks[0].dropped > 0 and downlink.nacks_answered > 0
    assert video.max_gap_s < 1.0
    assert rate > 10  # of 15 fps
    assert not downlink.paused
    assert viewer.errors == []


async def test_heavy_loss_pauses_video_and_keeps_audio(rooms, classrooms, eventually):
    # video only: aiortc's own audio jitter buffer stalls under heavy loss (a browser conceals
    # it with Opus FEC/PLC), which would hide what the SFU does
    viewer, participant = await _viewer_with_loss(
        rooms, classrooms, eventually, nth=3, slots=("lead_camera",)
    )
    await eventually(lambda: participant.protection.level == AUDIO_ONLY, timeout=15)
    assert participant.downlinks["lead_camera"].paused
    assert not participant.downlinks["lead_audio"].paused
    audio = viewer.slot("lead_audio").frames
    await asyncio.sleep(1.0)
    assert viewer.slot("lead_audio").frames - audio > 25  # of 50 per second
