"""An online 教研 meeting when rooms live in SFU workers: the web process authenticates the
join and relays it to the worker that claims ``research-{id}``; the host's mute-all is
enforced there, and that worker takes the attendance; the host's 开始录制 records the room in
that worker, and a job worker (arq on Redis) composes it into the library.

Run in a private network namespace (only loopback), as CI does:
    unshare -n sh -c 'ip link set lo up && .venv/bin/pytest tests/integration/streaming'
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from functools import partial
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select

from common.accounts import service as accounts
from common.accounts.models import Account
from common.db import make_engine, session_scope
from recordings.meeting_capture import TIMELINE_NAME, MeetingTimeline
from recordings.models import Recording
from research.models import Attendance as AttendanceRow
from research.models import ResearchGroup, ResearchSession
from tests.fixtures.classrooms import falls_silent
from tests.integration.streaming.test_meeting_recording import ffprobe_duration
from tests.integration.streaming.test_meeting_socket import Attendee, Meeting, Member, attend
from tests.integration.streaming.test_sfu_workers import (
    Stack,
    _start,
    _stop,
    stack,  # noqa: F401 - fixture
)

pytestmark = [pytest.mark.redis, pytest.mark.timeout(300)]

GROUP = "王村口联盟英语教研组"


def _meeting_now(database: Path) -> Meeting:
    """The English group's next session moved to now (the schools' time), hosted by its
    leader 王丽娟, with tokens for her and for 兰."""
    engine = make_engine(f"sqlite:///{database}")
    try:
        with session_scope(engine) as session:
            group = session.scalars(select(ResearchGroup).where(ResearchGroup.name == GROUP)).one()
            row = session.scalars(
                select(ResearchSession)
                .where(ResearchSession.group_id == group.id, ResearchSession.status == "planned")
                .order_by(ResearchSession.day)
            ).first()
            assert row is not None and group.leader_id is not None
            now = datetime.now(ZoneInfo("Asia/Shanghai")) - timedelta(minutes=1)
            row.day, row.start_time, row.host_id = now.date(), now.time(), group.leader_id
            members = []
            for username in ("teacher-wang", "teacher-lan"):
                account = session.scalars(select(Account).where(Account.username == username)).one()
                token, _ = accounts.issue_token(session, account=account, kind="api", lifetime=None)
                assert account.teacher_id is not None
                members.append(Member(account.teacher_id, token))
            return Meeting(row.id, members[0], members, Member(0, "", "inspector"))
    finally:
        engine.dispose()


async def test_a_meeting_routed_to_a_worker(stack: Stack, tmp_path: Path) -> None:  # noqa: F811
    meeting = _meeting_now(tmp_path / "tongke.db")
    base = stack.web.base.replace("http://", "ws://")
    host = await attend(base, meeting, meeting.members[0], amplitude=0.3)
    member = await attend(base, meeting, meeting.members[1], amplitude=0.3)
    member_pid = f"teacher-{meeting.members[1].teacher_id}"
    started = time.monotonic()
    try:
        for attendee in (host, member):
            deadline = time.monotonic() + 20
            while not attendee.bot.connected.is_set():
                assert time.monotonic() < deadline, f"not connected: {attendee.bot.errors}"
                await asyncio.sleep(0.1)
        assert stack.owner(f"research-{meeting.session_id}") in stack.workers
        joined = next(m for m in host.bot.messages if m["type"] == "joined")
        assert joined["host"] is True  # the host flag travelled in the worker's ticket

        def frames(attendee: Attendee, prefix: str) -> int:
            stats = attendee.bot.stats.items()
            return sum(s.frames for name, s in stats if name.startswith(prefix))

        def audio_frames(attendee: Attendee) -> int:
            return frames(attendee, "speaker_audio")

        def video_frames(attendee: Attendee) -> int:
            return frames(attendee, "speaker_video")

        deadline = time.monotonic() + 15
        while min(video_frames(host), video_frames(member), audio_frames(host)) < 5:
            assert time.monotonic() < deadline, stack.diagnostics()
            await asyncio.sleep(0.1)

        await host.bot.send({"type": "mute_all", "lock": True})
        deadline = time.monotonic() + 5
        while not any(p["id"] == member_pid and p["muted"] for p in member.bot.participants):
            assert time.monotonic() < deadline, stack.diagnostics()
            await asyncio.sleep(0.1)
        # the worker no longer forwards the member's audio (what is queued still arrives)
        await falls_silent(partial(audio_frames, host), quiet_for=1.5)
        await member.bot.send({"type": "unmute"})  # locked: refused with the reason
        deadline = time.monotonic() + 5
        while not member.bot.errors:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.1)
        assert member.bot.errors[-1]["code"] == "audio_locked"
    finally:
        await host.stop()
        await member.stop()
    elapsed = time.monotonic() - started

    engine = make_engine(f"sqlite:///{tmp_path / 'tongke.db'}")
    try:
        deadline = time.monotonic() + 15
        while True:
            with session_scope(engine) as session:
                rows = dict(
                    session.execute(
                        select(AttendanceRow.teacher_id, AttendanceRow.seconds).where(
                            AttendanceRow.session_id == meeting.session_id
                        )
                    ).all()
                )
            if len(rows) == 2:
                break
            assert time.monotonic() < deadline, f"attendance {rows}\n{stack.diagnostics()}"
            await asyncio.sleep(0.3)
    finally:
        engine.dispose()
    assert set(rows) == {m.teacher_id for m in meeting.members}
    assert all(1 <= seconds <= elapsed + 2 for seconds in rows.values()), rows


async def test_a_meeting_recorded_in_its_worker(stack: Stack, tmp_path: Path) -> None:  # noqa: F811
    meeting = _meeting_now(tmp_path / "tongke.db")
    # a job worker beside the stack: it composes what the SFU worker recorded
    jobs = _start("jobs", ["worker"], stack.env, tmp_path, 0)
    base = stack.web.base.replace("http://", "ws://")
    host = await attend(base, meeting, meeting.members[0], amplitude=0.3)
    member = await attend(base, meeting, meeting.members[1], amplitude=0.0)
    engine = make_engine(f"sqlite:///{tmp_path / 'tongke.db'}")

    async def wait_for(condition: Callable[[], bool], what: str, within: float = 15) -> None:
        deadline = time.monotonic() + within
        while not condition():
            assert time.monotonic() < deadline, f"{what}\n{stack.diagnostics()}\n{jobs.log()}"
            await asyncio.sleep(0.2)

    def told(attendee: Attendee, recording: bool) -> bool:
        return any(
            m["type"] == "meeting" and m.get("recording") is recording
            for m in attendee.bot.messages
        )

    try:
        for attendee in (host, member):
            await wait_for(attendee.bot.connected.is_set, "connected", within=20)
        await member.bot.send({"type": "start_recording"})  # not the host: refused
        await wait_for(lambda: bool(member.bot.errors), "refusal")
        assert member.bot.errors[-1]["code"] == "not_host"
        await host.bot.send({"type": "start_recording"})
        await wait_for(lambda: told(member, True), "录制中 through the relay")
        await asyncio.sleep(4)
        await host.bot.send({"type": "stop_recording"})
        await wait_for(lambda: told(member, False), "recording stopped")
    finally:
        await host.stop()
        await member.stop()

    def recording() -> Recording | None:
        with session_scope(engine) as session:
            found = session.scalars(
                select(Recording).where(Recording.research_session_id == meeting.session_id)
            ).one_or_none()
            if found is not None:
                session.expunge(found)
            return found

    try:
        await wait_for(
            lambda: (
                (r := recording()) is not None
                and (r.status == "failed" or (r.outputs or {}).get("renditions") == "ready")
            ),
            "composed by the job worker",
            within=150,
        )
    finally:
        _stop(jobs.process)
        engine.dispose()
    done = recording()
    assert done is not None and done.status == "ready", done and done.status_message
    raw = tmp_path / "media" / done.raw_path
    timeline = MeetingTimeline.read(raw.parent / TIMELINE_NAME)
    assert timeline.duration_s is not None and timeline.duration_s >= 4
    assert abs(ffprobe_duration(raw) - timeline.duration_s) <= 0.5
    assert done.outputs["chapters"][0]["title"] == "会议开始"
