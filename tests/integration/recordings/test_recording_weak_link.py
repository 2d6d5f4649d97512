"""A lesson recorded over the issue's weak link: 5 % loss and 80 ms each way on every UDP leg
(kernel rules, tests/fixtures/netimpair.py). The SFU repairs the lead's lost packets by NACK,
a round trip (160 ms here) or more later; the recording must keep the frames it repairs."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from recordings.capture import LessonRecorder
from tests.fixtures.netimpair import impair

pytestmark = [pytest.mark.timeout(90), pytest.mark.solo]


async def test_frames_the_sfu_repairs_are_kept_in_the_recording(
    rooms, classrooms, eventually, tmp_path
):
    room = await rooms.open("sync-1", kind="lesson")
    # the lead's video frames as the SFU got them, repairs included (by RTP timestamp)
    frames_at_sfu: set[int] = set()

    def tap(track: Any, packet: Any) -> None:
        if track.participant_id == "lead" and track.kind == "video":
            frames_at_sfu.add(packet.timestamp)

    room.add_packet_tap(tap)
    recorder = LessonRecorder(room, tmp_path / "raw.webm")
    recorder.start()
    classrooms.start("lead", "lead")
    await eventually(lambda: recorder.tap_packets > 100, timeout=15)
    with impair(loss=0.05, delay_ms=80) as link:
        await asyncio.sleep(12)
    summary = await recorder.stop()
    video = summary.tracks["video"]
    print(
        f"5 % + 80 ms: {video.frames} of {len(frames_at_sfu)} frames the SFU got recorded, "
        f"{video.frames_lost} lost, {video.frames_skipped} skipped for a keyframe, "
        f"{video.late_packets} packets too late; kernel dropped {link.dropped} of "
        f"{link.udp_packets} UDP packets"
    )
    assert link.dropped > 0
    # With the recorder giving up after 150 ms (before 2026-12-06) each repair came after it
    # had dropped the frame and the ones up to the next keyframe: 155 of 203 frames kept, 8
    # lost (25-120 of ~235 with a viewer in the room too); waiting 1 s, 200 of 202, none lost.
    assert video.frames >= 0.9 * len(frames_at_sfu), video
    assert video.frames_lost <= 5, video
