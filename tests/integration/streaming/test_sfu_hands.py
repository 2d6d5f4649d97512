"""Raise hand: a remote classroom is heard only once the lead accepts, until it revokes."""

from __future__ import annotations

import asyncio
from functools import partial

import pytest

from tests.fixtures.classrooms import falls_silent

pytestmark = pytest.mark.timeout(60)


def hand_of(bot, participant_id: str) -> str | None:
    return next((p["hand"] for p in bot.participants if p["id"] == participant_id), None)


async def test_remote_audio_reaches_everyone_only_after_the_lead_accepts(
    rooms, classrooms, eventually
):
    lead = classrooms.start("lead", "lead", tone_hz=440)
    asker = classrooms.start("remote-a", "remote", tone_hz=660)
    other = classrooms.start("remote-b", "remote", tone_hz=990)
    await eventually(lambda: "lead_camera" in other.stats and "hand_audio_0" in lead.stats)
    await eventually(lambda: other.slot("lead_camera").frames > 15, timeout=15)
    await asyncio.sleep(1.0)
    # held back: neither the lead nor the other classroom hears remote-a
    assert lead.slot("hand_audio_0").frames == 0
    assert other.slot("hand_audio_0").frames == 0

    await asker.raise_hand()
    await eventually(lambda: hand_of(lead, "remote-a") == "raised")
    await asyncio.sleep(0.5)
    assert lead.slot("hand_audio_0").frames == 0, "a raised hand alone must not be heard"

    await lead.accept_hand("remote-a")
    await eventually(lambda: hand_of(other, "remote-a") == "accepted")
    for listener in (lead, other):
        await eventually(lambda li=listener: li.slot("hand_audio_0").dominant_hz is not None)
        assert abs(listener.slot("hand_audio_0").dominant_hz - 660) < 30
    assert asker.slot("hand_audio_0").frames == 0, "the speaker does not hear itself"

    await lead.revoke_hand("remote-a")
    await eventually(lambda: hand_of(lead, "remote-a") == "none")
    # Frames already queued still arrive (seconds under load); then nothing more, for the lead
    # and the other classroom alike, while the remote's microphone keeps sending.
    for slot in (lead.slot("hand_audio_0"), other.slot("hand_audio_0")):
        await falls_silent(partial(getattr, slot, "frames"), quiet_for=1.5)

    room = await rooms.get("lesson-1")
    kinds = [event.kind for event in room.events.history]
    assert kinds.index("hand_raised") < kinds.index("hand_accepted") < kinds.index("hand_revoked")
    assert "lesson_started" in kinds


async def test_only_the_lead_manages_hands(rooms, classrooms, eventually):
    classrooms.start("lead", "lead")
    asker = classrooms.start("remote-a", "remote")
    other = classrooms.start("remote-b", "remote")
    await eventually(lambda: len(other.participants) == 3)
    await asker.raise_hand()
    await eventually(lambda: hand_of(other, "remote-a") == "raised")
    await other.accept_hand("remote-a")
    await eventually(lambda: bool(other.errors))
    assert other.errors[0]["code"] == "not_allowed"
    assert other.errors[0]["message"] == "只有主讲教室可以管理发言"
    assert hand_of(other, "remote-a") == "raised"
