"""A timetabled lesson with a real classroom publishing, under the database loop guard.

The lesson scheduler opens the room and records it, the lead classroom (a real aiortc peer)
publishes, the lesson's run is tracked (research.lesson_runs), and at the end the scheduler
closes the room: the recorder stops and processing is queued. None of it may run a database
statement on the event loop these classrooms are forwarded on (``common.loop_guard``; see
tests/integration/test_db_loop_guard.py for the other flows).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import datetime

import pytest

from common.loop_guard import db_loop_guard
from streaming.lifecycle import LOCAL_TIMEZONE
from streaming.sfu import InProcessRoomRegistry
from tests.conftest import DemoDatabase
from tests.fixtures.classrooms import Classrooms
from tests.integration.recordings.test_recording_event_loop import (
    Recordings,
    recordings,  # noqa: F401 - fixture
)
from tests.integration.streaming.test_lifecycle import MONDAY, FixedClock, group_id
from tests.integration.test_db_loop_guard import product_offences

pytestmark = pytest.mark.timeout(120)


async def test_a_recorded_lesson_with_its_classroom_publishing(
    sqlite_db: DemoDatabase,
    recordings: Recordings,  # noqa: F811
    rooms: InProcessRoomRegistry,
    classrooms: Classrooms,
    eventually: Callable[..., Awaitable[float]],
) -> None:
    english = await asyncio.to_thread(group_id, sqlite_db, "wck-en-3")
    clock = FixedClock(datetime.now(LOCAL_TIMEZONE))
    clock.set(MONDAY, 9, 5)  # wck-en-3's room opens
    scheduler = recordings.scheduler(rooms, clock)
    with db_loop_guard("log") as guard:
        try:
            await scheduler.tick()
            recording_id = recordings.active.recording_of(english)
            assert recording_id is not None
            recorder = recordings.active.by_id[recording_id]
            classrooms.start("lead", "lead", room=f"sync-{english}", width=320, height=180, fps=15)
            await eventually(lambda: recorder.tap_packets > 50, timeout=20)
            clock.set(MONDAY, 23, 0)  # long closed
            await scheduler.tick()
            assert recordings.active.recording_of(english) is None
        finally:
            await scheduler.stop()
        row = await asyncio.to_thread(recordings.row, recording_id)
        assert row.status == "processing" and row.job_id is not None
        await recordings.jobs.wait(row.job_id, timeout=10)
    assert recordings.processed == [recording_id]
    assert product_offences(guard) == []
