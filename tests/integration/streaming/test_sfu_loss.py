"""A weak link to one subscriber: NACKs answered from the SFU's cache; heavy loss pauses video,
never audio. (No netem in this kernel, so the loss is injected at the SFU's send side.)"""

from __future__ import annotations

import asyncio
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


async def _viewer_with_loss(rooms, classrooms, eventually, nth: int, slots: tuple[str, ...]):
    classrooms.start("lead", "lead")
    viewer = classrooms.start("remote-a", "remote")
    await eventually(lambda: "lead_camera" in viewer.stats)
    await eventually(lambda: viewer.slot("lead_camera").frames > 10, timeout=15)
    room = await rooms.get("lesson-1")
    participant = room.participants["remote-a"]
    for slot in slots:
        downlink = participant.downlinks[slot]
        downlink._sink = LossySink(downlink._sink, nth)
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
