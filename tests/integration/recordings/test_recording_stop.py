"""Stopping never loses the batch a worker thread has not started writing yet."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, cast

import av
from aiortc.rtp import RtpPacket

from recordings.capture import LessonRecorder


class Track:
    def __init__(self, kind: str, codec: str) -> None:
        self.participant_id = "lead"
        self.kind = kind
        self.source = "camera" if kind == "video" else "mic"
        self.codec_name = codec

    def request_keyframe(self) -> None:
        pass


class Events:
    def listen(self, listener: Callable[[Any], Any]) -> Callable[[], None]:
        return lambda: None


class Room:
    """The surface of streaming.sfu.room.Room a recorder uses."""

    room_id = "sync-1"
    kind = "lesson"

    def __init__(self) -> None:
        self.participants: dict[str, Any] = {}
        self.events = Events()
        self.taps: list[Callable[[Any, RtpPacket], None]] = []

    def add_packet_tap(self, tap: Callable[[Any, RtpPacket], None]) -> Callable[[], None]:
        self.taps.append(tap)
        return lambda: self.taps.remove(tap)


def vp8_keyframe(index: int) -> bytes:
    # RTP VP8 descriptor (S=1) + a keyframe header for 320x180 + filler
    header = bytes([0x9D, 0x01, 0x2A]) + (320).to_bytes(2, "little") + (180).to_bytes(2, "little")
    return bytes([0x10]) + bytes([0x00, 0x00, 0x00]) + header + bytes([index]) * 200


async def test_a_batch_queued_behind_a_busy_worker_is_still_written(tmp_path: Path) -> None:
    loop = asyncio.get_running_loop()
    loop.set_default_executor(ThreadPoolExecutor(max_workers=1))
    room = Room()
    recorder = LessonRecorder(
        cast(Any, room), tmp_path / "raw.webm", publisher_id="lead", flush_interval_s=0.01
    )
    recorder.start()
    video, audio = Track("video", "VP8"), Track("audio", "opus")
    for index in range(30):
        for tap in room.taps:
            tap(video, RtpPacket(96, 1, 1000 + index, 3000 * index, 1, vp8_keyframe(index)))
            tap(audio, RtpPacket(111, 0, 5000 + index, 960 * index, 2, b"\xfc" + bytes(40)))
    # the only worker thread is busy: the recorder's next batch waits in the queue...
    busy = loop.run_in_executor(None, time.sleep, 0.5)
    await asyncio.sleep(0.1)
    assert recorder.backlog == 0  # ...taken from the inbox, not yet written
    summary = await recorder.stop()  # stopping cancels the drain loop
    await busy
    assert summary.tracks["video"].frames == 30
    assert summary.tracks["audio"].frames == 30
    with av.open(str(tmp_path / "raw.webm")) as written:
        assert sum(1 for p in written.demux(video=0) if p.size) == 30
