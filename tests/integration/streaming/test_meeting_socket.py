"""An online 教研 meeting over the web app's real WebSocket (uvicorn on loopback), with real
aiortc bots as the group's teachers: the active speaker's video reaches the others, the
host's mute-all stops the SFU forwarding audio (counted in packets), and attendance rows
appear for every member, not for the inspector.

Run in a private network namespace (only loopback), as CI does:
    unshare -n sh -c 'ip link set lo up && .venv/bin/pytest tests/integration/streaming'
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial
from pathlib import Path

import pytest
import uvicorn
from fastapi import FastAPI
from sqlalchemy import select
from websockets.asyncio.client import connect

from common.accounts import service as accounts
from common.accounts.models import Account
from common.alliance.models import Teacher
from research.models import Attendance, ResearchGroup, ResearchSession
from research.service import starts_at
from streaming.bots import ClassroomBot, SlotStats, run_over_websocket
from streaming.lifecycle import LessonClock
from streaming.sfu.identity import ParticipantIdentity, Role
from streaming.sfu.room import Room
from tests.conftest import DemoDatabase, make_test_app
from tests.e2e.demo_process import free_port
from tests.fixtures.classrooms import falls_silent

pytestmark = pytest.mark.timeout(90)


class RunningClock(LessonClock):
    """Real time moved to the meeting's day: durations are real, the date is the session's."""

    def __init__(self, start: datetime) -> None:
        self.offset = start - datetime.now(start.tzinfo)

    def now(self) -> datetime:
        return super().now() + self.offset


@dataclass
class Member:
    teacher_id: int
    token: str
    role: Role = "meeting"


@dataclass
class Meeting:
    session_id: int
    host: Member
    members: list[Member]
    inspector: Member


@pytest.fixture
def meeting(sqlite_db: DemoDatabase) -> Meeting:
    """A planned session of a group whose host and two more members get device-less tokens."""
    with sqlite_db.sessions() as session, session.begin():
        row = session.scalars(
            select(ResearchSession)
            .where(ResearchSession.status == "planned", ResearchSession.host_id.is_not(None))
            .order_by(ResearchSession.day.desc())
        ).first()
        assert row is not None
        group = session.get_one(ResearchGroup, row.group_id)
        assert row.host_id is not None
        ids = [row.host_id, *[m.id for m in group.members if m.id != row.host_id][:2]]

        def token_of(teacher_id: int, username: str) -> str:
            account = session.scalars(
                select(Account).where(Account.teacher_id == teacher_id)
            ).first() or accounts.create_account(
                session,
                username=username,
                display_name=username,
                role="teacher",
                alliance_id=group.alliance_id,
                school_id=session.get_one(Teacher, teacher_id).school_id,
                teacher_id=teacher_id,
            )
            return accounts.issue_token(session, account=account, kind="api", lifetime=None)[0]

        tokens = [token_of(teacher_id, f"meeting-t{teacher_id}") for teacher_id in ids]
        bureau = session.scalars(select(Account).where(Account.role == "bureau")).one()
        bureau_token = accounts.issue_token(session, account=bureau, kind="api", lifetime=None)[0]
        members = [Member(t, token) for t, token in zip(ids, tokens, strict=True) if t]
        return Meeting(
            session_id=row.id,
            host=members[0],
            members=members,
            inspector=Member(0, bureau_token, "inspector"),
        )


@pytest.fixture
async def server(
    sqlite_db: DemoDatabase, tmp_path: Path, meeting: Meeting, request: pytest.FixtureRequest
) -> AsyncIterator[tuple[str, FastAPI]]:
    # settings of the app: ``@pytest.mark.parametrize("server", [{...}], indirect=True)``
    app = make_test_app(sqlite_db, tmp_path, **getattr(request, "param", {}))
    with sqlite_db.sessions() as session:
        start = starts_at(session.get_one(ResearchSession, meeting.session_id))
    app.state.lesson_clock = RunningClock(start + timedelta(minutes=1))
    port = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, lifespan="on")
    uv = uvicorn.Server(config)
    task = asyncio.ensure_future(uv.serve())
    while not uv.started:
        assert not task.done(), "uvicorn did not start"
        await asyncio.sleep(0.05)
    yield f"ws://127.0.0.1:{port}", app
    uv.should_exit = True
    await asyncio.wait_for(task, 20)


class Attendee:
    def __init__(self, bot: ClassroomBot, task: asyncio.Future[None]) -> None:
        self.bot = bot
        self.task = task

    async def stop(self) -> None:
        with contextlib.suppress(Exception):
            await self.bot.leave()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.task, 5)
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)


async def attend(base: str, meeting: Meeting, member: Member, *, amplitude: float) -> Attendee:
    pid = f"teacher-{member.teacher_id}" if member.teacher_id else "inspector"
    identity = ParticipantIdentity(
        participant_id=pid,
        display_name=pid,
        role=member.role,
        room_id=f"research-{meeting.session_id}",
        room_kind="meeting",
    )
    bot = ClassroomBot(identity, amplitude=amplitude, width=320, height=180, fps=10)
    socket = await connect(
        f"{base}/ws/research/{meeting.session_id}?token={member.token}", open_timeout=5
    )
    return Attendee(bot, asyncio.ensure_future(run_over_websocket(bot, socket)))


async def until(condition: Callable[[], bool], *, within: float, what: str) -> None:
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {within} s")
        await asyncio.sleep(0.1)


def decoded(stats: SlotStats, frames: int) -> bool:
    return stats.frames > frames


def audio_packets_to(room: Room, pid: str) -> int:
    participant = room.participants[pid]
    return sum(d.packets for d in participant.downlinks.values() if d.kind == "audio")


async def test_a_research_meeting_over_the_websocket(
    server: tuple[str, FastAPI], meeting: Meeting, sqlite_db: DemoDatabase
) -> None:
    base, app = server
    host_member, quiet_member, speaker_member = meeting.members
    host_pid, quiet_pid, speaker_pid = (f"teacher-{m.teacher_id}" for m in meeting.members)
    started = time.monotonic()
    host = await attend(base, meeting, host_member, amplitude=0.0)
    quiet = await attend(base, meeting, quiet_member, amplitude=0.0)
    speaker = await attend(base, meeting, speaker_member, amplitude=0.3)
    inspector = await attend(base, meeting, meeting.inspector, amplitude=0.0)
    attendees = [host, quiet, speaker, inspector]
    try:
        for attendee in attendees:
            await until(attendee.bot.connected.is_set, within=15, what="connected")
        joined = next(m for m in host.bot.messages if m["type"] == "joined")
        assert joined["host"] is True and joined["meeting"]["audio_locked"] is False
        assert {p["id"] for p in host.bot.participants} == {host_pid, quiet_pid, speaker_pid}

        # The active speaker's video reaches the others, decoded.
        room = await app.state.rooms.registry().get(f"research-{meeting.session_id}")
        assert room is not None and room.kind == "meeting"
        await until(lambda: room.speakers.active == speaker_pid, within=10, what="speaker")
        for listener in (host.bot, quiet.bot):
            slot = next(
                name
                for name, s in listener.slots.items()
                if name.startswith("speaker_video") and s["participant"] == speaker_pid
            )
            await until(partial(decoded, listener.slot(slot), 5), within=10, what="video")
            assert any(
                m["type"] == "speaker" and m["participant"] == speaker_pid
                for m in listener.messages
            )

        # Before mute-all the host hears audio; after it nothing is forwarded to the host
        # (the others are muted) and only the host's audio reaches the others.
        # (counts are awaited, not slept for: on a loaded machine 1 s carried 17 of 50 packets)
        before = audio_packets_to(room, host_pid)
        await until(lambda: audio_packets_to(room, host_pid) > before + 20, within=5, what="audio")
        await host.bot.send({"type": "mute_all"})
        await until(lambda: room.muted == {quiet_pid, speaker_pid}, within=5, what="muted")
        quiet_heard = audio_packets_to(room, quiet_pid)
        await falls_silent(partial(audio_packets_to, room, host_pid), quiet_for=1.5)
        await until(  # the host still speaks
            lambda: audio_packets_to(room, quiet_pid) > quiet_heard + 20, within=5, what="host"
        )
        await until(
            lambda: all(p["muted"] for p in speaker.bot.participants if p["id"] != host_pid),
            within=5,
            what="the muted flags",
        )

        # A member who is not the host may not use the controls; the speaker unmutes.
        await quiet.bot.send({"type": "spotlight", "participant": quiet_pid})
        await until(lambda: bool(quiet.bot.errors), within=5, what="refusal")
        assert quiet.bot.errors[-1]["code"] == "not_host"
        await speaker.bot.send({"type": "unmute"})
        resumed = audio_packets_to(room, host_pid)
        await until(
            lambda: audio_packets_to(room, host_pid) > resumed + 20, within=5, what="unmuted"
        )
    finally:
        for attendee in attendees:
            await attendee.stop()
    elapsed = time.monotonic() - started

    # The room closed with its last participant: attendance is written for each member.
    def rows() -> dict[int, int]:
        with sqlite_db.sessions() as session:
            found = session.execute(
                select(Attendance.teacher_id, Attendance.seconds).where(
                    Attendance.session_id == meeting.session_id
                )
            ).all()
            return {teacher_id: seconds for teacher_id, seconds in found}

    await until(lambda: len(rows()) == 3, within=10, what="attendance rows")
    seconds = rows()
    assert set(seconds) == {m.teacher_id for m in meeting.members}
    for teacher_id, spent in seconds.items():
        assert 3 <= spent <= elapsed + 1, (teacher_id, spent, elapsed)
    with sqlite_db.sessions() as session:
        assert session.get_one(ResearchSession, meeting.session_id).status == "held"
