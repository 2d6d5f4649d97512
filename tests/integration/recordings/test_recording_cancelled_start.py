"""A recording start cancelled while its row is written is cleaned up at once.

The lesson scheduler (or an SFU worker's start route) is stopped while a recording's row is
being written in a thread, e.g. the process shutting down during a tick while another
transaction holds SQLite's write lock: the write goes on in its thread, and used to leave the
row "recording" with no recorder, until a sweep failed it ``PENDING_START_S`` (30 s) later.
Now the cancelled task waits for the write, fails the row with a clear message and releases
the group, before its cancellation completes. SQLite, a real cancellation of the task.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime

import pytest

from recordings import service
from streaming.lifecycle import LOCAL_TIMEZONE
from streaming.sfu import InProcessRoomRegistry
from tests.conftest import DemoDatabase
from tests.fixtures.recordings import WCK_EN_4
from tests.integration.recordings.test_recording_event_loop import (
    Recordings,
    database_locked,
    recordings,  # noqa: F401 - fixture
)
from tests.integration.streaming.test_lifecycle import MONDAY, FixedClock, group_id

pytestmark = pytest.mark.timeout(120)


async def until(condition: Callable[[], bool], what: str) -> None:
    for _ in range(500):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(what)


async def test_a_scheduler_stopped_while_the_row_is_written_fails_it_at_once(
    sqlite_db: DemoDatabase,
    recordings: Recordings,  # noqa: F811
) -> None:
    rooms = InProcessRoomRegistry()
    english = await asyncio.to_thread(group_id, sqlite_db, "wck-en-3")
    clock = FixedClock(datetime.now(LOCAL_TIMEZONE))
    clock.set(MONDAY, 9, 5)  # wck-en-3's room opens: its recording starts
    scheduler = recordings.scheduler(rooms, clock)
    try:
        async with database_locked(sqlite_db):
            scheduler.start()  # its first tick at once
            await until(lambda: english in recordings.active.starting, "the start began")
            await asyncio.sleep(0.2)  # its row's INSERT waits for the lock, in a thread
            stopping = asyncio.ensure_future(scheduler.stop())  # the shutdown
            await asyncio.sleep(0.2)
            assert not stopping.done()  # it waits for the row to be written, then fails it
        await stopping
        (row,) = await asyncio.to_thread(recordings.rows)
        assert row.sync_group_id == english
        assert (row.status, row.status_message) == ("failed", "录制未能开始：服务正在停止")
        assert not recordings.active.busy(english) and recordings.active.by_id == {}
        assert recordings.active.cleanup_tasks == set()
    finally:
        await rooms.close_all()


async def test_a_workers_start_cancelled_while_its_row_is_read_fails_the_row(
    sqlite_db: DemoDatabase,
    recordings: Recordings,  # noqa: F811
) -> None:
    """An SFU worker records into a row the web process made; stopped during the start, the
    row is failed too (nobody else will record into it)."""
    made = await asyncio.to_thread(
        service.new_recording_row, sqlite_db.sessions, sync_group_id=WCK_EN_4
    )
    rooms = InProcessRoomRegistry()
    room = await rooms.open(f"sync-{WCK_EN_4}", kind="lesson")
    try:
        starting = asyncio.ensure_future(
            service.record_into(
                room, recording_id=made.recording_id, sync_group_id=WCK_EN_4, **recordings.where
            )
        )
        await asyncio.sleep(0)  # it reserves the group and reads its row in a thread
        assert recordings.active.busy(WCK_EN_4)
        starting.cancel()  # the worker shutting down
        with pytest.raises(asyncio.CancelledError):
            await starting
        row = await asyncio.to_thread(recordings.row, made.recording_id)
        assert (row.status, row.status_message) == ("failed", "录制未能开始：服务正在停止")
        assert not recordings.active.busy(WCK_EN_4) and recordings.active.by_id == {}
    finally:
        await rooms.close_all()


async def test_cancelled_twice_the_task_ends_and_the_row_is_failed_behind_it(
    sqlite_db: DemoDatabase,
    recordings: Recordings,  # noqa: F811
) -> None:
    """A start by hand (``attach_recorder``) whose task is cancelled again while it waits for
    its cleanup (a forced shutdown): the task ends at once, the cleanup goes on by itself."""
    rooms = InProcessRoomRegistry()
    room = await rooms.open(f"sync-{WCK_EN_4}", kind="lesson")
    try:
        async with database_locked(sqlite_db):
            starting = asyncio.ensure_future(
                service.attach_recorder(room, sync_group_id=WCK_EN_4, **recordings.where)
            )
            await asyncio.sleep(0.2)  # its INSERT waits for the lock, in a thread
            starting.cancel()
            await asyncio.sleep(0.1)
            assert not starting.done()  # waiting for the write, to fail the row
            starting.cancel()  # forced
            with pytest.raises(asyncio.CancelledError):
                await starting
            assert not recordings.active.busy(WCK_EN_4)
            (cleanup,) = recordings.active.cleanup_tasks  # still waiting for the lock
        await cleanup
        (row,) = await asyncio.to_thread(recordings.rows)
        assert (row.status, row.status_message) == ("failed", "录制未能开始：服务正在停止")
        assert recordings.active.cleanup_tasks == set() and recordings.active.by_id == {}
    finally:
        await rooms.close_all()
