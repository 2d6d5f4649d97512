"""A meeting recorder on a real meeting room with aiortc bots (in process, loopback): each
teacher's own files, a screen share in a file of its own, a teacher who drops and rejoins
carries on in the same file with the gap noted, and the composition follows the timeline."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from recordings.composition import compose_meeting
from recordings.meeting_capture import TIMELINE_NAME, MeetingRecorder
from recordings.processing import probe_media
from streaming.bots import ClassroomBot, LocalSession, start_local
from streaming.sfu import InProcessRoomRegistry, ParticipantIdentity

pytestmark = pytest.mark.timeout(240)

ROOM = "research-1"


def teacher(pid: str, *, host: bool = False) -> ParticipantIdentity:
    return ParticipantIdentity(
        participant_id=pid,
        display_name=f"{pid}老师",
        role="meeting",
        room_id=ROOM,
        room_kind="meeting",
        host=host,
    )


async def test_a_rejoin_and_a_screen_share_in_the_meeting_files(
    rooms: InProcessRoomRegistry, tmp_path: Path, eventually: Callable[..., Any]
) -> None:
    sessions: list[LocalSession] = []

    def join(pid: str, **options: Any) -> ClassroomBot:
        bot = ClassroomBot(teacher(pid, host=pid == "wang"), fps=10, **options)
        sessions.append(start_local(bot, rooms))
        return bot

    try:
        host = join("wang", amplitude=0.3)
        sharer = join("li", amplitude=0.0, board=True)
        await eventually(lambda: host.connected.is_set() and sharer.connected.is_set())
        room = await rooms.get(ROOM)
        assert room is not None
        recorder = MeetingRecorder(room, tmp_path / "rec")
        recorder.start()
        await asyncio.sleep(1.5)
        room.share_screen(room.participants["li"], True)
        await asyncio.sleep(2.0)
        await sessions[1].stop()  # li drops...
        await eventually(lambda: "li" not in room.participants)
        await asyncio.sleep(1.0)
        again = join("li", amplitude=0.0, board=True)  # ...and comes back
        await eventually(again.connected.is_set)
        await asyncio.sleep(2.0)
        await recorder.stop()
    finally:
        await asyncio.gather(*(session.stop() for session in sessions))

    folder = tmp_path / "rec"
    timeline = recorder.timeline
    assert set(timeline.participants) == {"wang", "li"}
    li = timeline.participants["li"]
    assert li.name == "li老师" and li.screen is not None
    kinds = [(e["kind"], e["participant"]) for e in timeline.events]
    assert kinds.index(("participant_left", "li")) < len(kinds) - 1
    assert ("screen_share_changed", "li") in kinds
    # one camera file for li across both connections, the gap noted in its sidecar
    sidecar = json.loads((folder / li.camera).with_suffix(".events.json").read_text("utf-8"))
    assert sidecar["summary"]["tracks"]["video"]["ssrcs"] == 2
    assert any(gap["reason"] == "publisher_reconnected" for gap in sidecar["gaps"])
    assert probe_media(folder / li.screen).has_video

    composed = await compose_meeting(folder, raw_name="raw.webm")
    assert timeline.duration_s is not None
    facts = probe_media(folder / "raw.webm", trust_header=True)
    assert abs(facts.duration_s - timeline.duration_s) <= 0.5
    assert facts.has_video and facts.has_audio
    shown = [segment["source"] for segment in composed["segments"]]
    assert "li:screen" in shown and shown[0] == "wang:camera"
    chapters = json.loads((folder / "events.json").read_text("utf-8"))["events"]
    assert "li老师共享屏幕" in [chapter["title"] for chapter in chapters]

    # the recording process died before stopping: composed as far as the files go
    document = json.loads((folder / TIMELINE_NAME).read_text("utf-8"))
    document["stopped_at"] = document["duration_s"] = None
    (folder / TIMELINE_NAME).write_text(json.dumps(document), "utf-8")
    recovered = await compose_meeting(folder, raw_name="raw.webm")
    assert abs(recovered["composed_duration_s"] - timeline.duration_s) <= 1.0


async def test_the_recording_stops_when_the_room_closes(
    rooms: InProcessRoomRegistry, tmp_path: Path, eventually: Callable[..., Any]
) -> None:
    bot = ClassroomBot(teacher("wang", host=True), fps=10, amplitude=0.3)
    session = start_local(bot, rooms)
    try:
        await eventually(bot.connected.is_set)
        room = await rooms.get(ROOM)
        assert room is not None
        recorder = MeetingRecorder(room, tmp_path / "rec")
        stopped: list[MeetingRecorder] = []
        recorder.on_stopped.append(stopped.append)
        recorder.start()
        await asyncio.sleep(1.5)
        await room.close()  # the meeting ends with the recording still running
    finally:
        await session.stop()
    assert stopped == [recorder] and not recorder.running
    assert recorder.timeline.duration_s is not None and recorder.timeline.duration_s >= 1.5
    written = json.loads((tmp_path / "rec" / TIMELINE_NAME).read_text("utf-8"))
    assert written["stopped_at"] == recorder.timeline.stopped_at
    [camera] = recorder.recorders.values()
    assert camera.summary is not None and camera.summary.bytes > 0
