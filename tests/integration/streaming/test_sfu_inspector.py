"""巡课: an inspector watches a live lesson without ever appearing to the class."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.timeout(60)


async def test_inspector_joins_and_leaves_unseen(rooms, classrooms, eventually):
    lead = classrooms.start("lead", "lead")
    remote = classrooms.start("remote-a", "remote")
    await eventually(lambda: {p["id"] for p in remote.participants} == {"lead", "remote-a"})

    inspector = classrooms.start("bureau-1", "inspector")
    await eventually(lambda: "lead_camera" in inspector.stats)
    await eventually(lambda: inspector.slot("lead_camera").frames > 10, timeout=15)
    room = await rooms.get("lesson-1")
    assert "bureau-1" in room.participants

    # the inspector may look into a remote classroom too
    await inspector.send({"type": "inspect", "participant": "remote-a"})
    await eventually(lambda: inspector.slot("inspect_video").frames > 5, timeout=15)

    # a hand change makes everyone receive a fresh list while the inspector is present
    await remote.raise_hand()
    await eventually(lambda: any(p["hand"] == "raised" for p in lead.participants))
    await classrooms.stop(inspector)
    await eventually(lambda: "bureau-1" not in room.participants)

    for bot in (lead, remote, inspector):
        for update in bot.participant_updates:
            assert all(p["role"] != "inspector" for p in update), update
            assert all(p["id"] != "bureau-1" for p in update), update
    for bot in (lead, remote):
        for message in bot.messages:
            assert "bureau-1" not in str(message), message
    assert inspector.errors == []
    published = {track.participant_id for track in room.published_tracks()}
    assert "bureau-1" not in published
