"""An online 教研 meeting when rooms live in SFU workers: the web process authenticates the
join and relays it to the worker that claims ``research-{id}``; the host's mute-all is
enforced there, and that worker takes the attendance.

Run in a private network namespace (only loopback), as CI does:
    unshare -n sh -c 'ip link set lo up && .venv/bin/pytest tests/integration/streaming'
"""

from __future__ import annotations

import asyncio
import time
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select

from common.accounts import service as accounts
from common.accounts.models import Account
from common.db import make_engine, session_scope
from research.models import Attendance as AttendanceRow
from research.models import ResearchGroup, ResearchSession
from tests.integration.streaming.test_meeting_socket import Attendee, Meeting, Member, attend
from tests.integration.streaming.test_sfu_workers import Stack, stack  # noqa: F401 - fixture

pytestmark = [pytest.mark.redis, pytest.mark.timeout(180)]

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
        await asyncio.sleep(0.5)
        held = audio_frames(host)
        await asyncio.sleep(1.5)
        assert audio_frames(host) == held  # the worker no longer forwards the member's audio
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
