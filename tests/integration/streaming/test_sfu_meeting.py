"""Research meetings: everyone publishes, only the last speakers' video is forwarded."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.timeout(60)


def speaker_video(bot) -> set[str]:
    return {
        slot["participant"]
        for name, slot in bot.slots.items()
        if name.startswith("speaker_video") and slot["participant"]
    }


async def test_active_speaker_takes_a_video_slot(rooms, classrooms, eventually):
    # the rooms fixture limits meetings to 2 speaker video slots
    options = {"room": "meeting-1", "kind": "meeting", "amplitude": 0.0}
    listener = classrooms.start("teacher-a", "meeting", **options)
    classrooms.start("teacher-b", "meeting", **options)
    classrooms.start("teacher-c", "meeting", **options)
    speaker = classrooms.start("teacher-d", "meeting", **options)
    await eventually(lambda: len(speaker_video(listener)) == 2, timeout=15)
    assert "teacher-d" not in speaker_video(listener)  # joined last, silent

    await eventually(lambda: speaker.tone is not None)
    speaker.tone.amplitude = 0.3
    await eventually(lambda: "teacher-d" in speaker_video(listener), timeout=10)
    slot = next(n for n, s in listener.slots.items() if s["participant"] == "teacher-d")
    frames = listener.slot(slot).frames
    await eventually(lambda: listener.slot(slot).frames > frames + 10, timeout=10)

    room = await rooms.get("meeting-1")
    changes = [e.participant_id for e in room.events.history if e.kind == "speaker_changed"]
    assert changes[-1] == "teacher-d"
    assert len(speaker_video(listener)) == 2
