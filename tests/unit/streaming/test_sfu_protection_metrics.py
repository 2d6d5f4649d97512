"""Per-subscriber protection on the SFU worker's ``/metrics`` (``ProtectionCollector``)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any, cast

from prometheus_client import CollectorRegistry, generate_latest

from streaming.sfu.identity import ParticipantIdentity
from streaming.sfu.protection import PRIMARY_VIDEO_ONLY
from streaming.sfu.room import Room
from streaming.worker import ProtectionCollector


async def test_levels_of_both_ladders_are_exposed_per_subscriber() -> None:
    room = Room("lesson-9", "lesson")
    try:
        remote = await room.join(
            ParticipantIdentity("remote-a", "远端一校", "remote", "lesson-9"), notify=print
        )
        remote.bandwidth.level = PRIMARY_VIDEO_ONLY  # as after a step down on its estimate
        worker = SimpleNamespace(rooms=SimpleNamespace(rooms=lambda: [room]))
        registry = CollectorRegistry()
        registry.register(ProtectionCollector(cast(Any, worker)))
        text = generate_latest(registry).decode()
    finally:
        await room.close()
    labels = 'participant="remote-a",room="lesson-9"'
    level = "tongke_sfu_subscriber_protection_level"
    assert f'{level}{{ladder="applied",{labels}}} 1.0' in text
    assert f'{level}{{ladder="loss",{labels}}} 0.0' in text
    assert f'{level}{{ladder="bandwidth",{labels}}} 1.0' in text
    # no estimate yet (no REMB): no sample rather than a made-up zero
    assert "tongke_sfu_subscriber_estimate_bps{" not in text
    # no repair on its path (nor a negotiated extension): no playout delay asked
    assert f"tongke_sfu_subscriber_playout_delay_ms{{{labels}}} 0.0" in text
