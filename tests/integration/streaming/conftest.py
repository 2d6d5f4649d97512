"""Real aiortc peers over loopback: host candidates on 127.0.0.1 only, no STUN servers."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator

import aioice.ice
import pytest

from streaming.bots import ClassroomBot, LocalChannel, LocalSession, start_local
from streaming.sfu import InProcessRoomRegistry, ParticipantIdentity, RoomLimits
from streaming.sfu.identity import Role, RoomKind
from streaming.signaling import serve_participant


@pytest.fixture(autouse=True)
def loopback_only(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(aioice.ice, "get_host_addresses", lambda use_ipv4, use_ipv6: ["127.0.0.1"])
    yield


@pytest.fixture
async def rooms() -> AsyncIterator[InProcessRoomRegistry]:
    registry = InProcessRoomRegistry(limits=RoomLimits(speaker_video_slots=2))
    yield registry
    await registry.close_all()


def identity(
    participant_id: str,
    role: Role,
    *,
    room: str = "lesson-1",
    kind: RoomKind = "lesson",
    name: str | None = None,
) -> ParticipantIdentity:
    return ParticipantIdentity(
        participant_id=participant_id,
        display_name=name or participant_id,
        role=role,
        room_id=room,
        room_kind=kind,
        campus=name or participant_id,
    )


@pytest.fixture
def make_identity() -> Callable[..., ParticipantIdentity]:
    return identity


class Classrooms:
    """Starts bots against the registry and stops every one of them at teardown."""

    def __init__(self, rooms: InProcessRoomRegistry) -> None:
        self.rooms = rooms
        self.sessions: list[LocalSession] = []

    def start(self, participant_id: str, role: Role, **options: object) -> ClassroomBot:
        room = str(options.pop("room", "lesson-1"))
        kind: RoomKind = options.pop("kind", "lesson")  # type: ignore[assignment]
        bot = ClassroomBot(identity(participant_id, role, room=room, kind=kind), **options)  # type: ignore[arg-type]
        self.sessions.append(start_local(bot, self.rooms))
        return bot

    def attach(self, bot: ClassroomBot, channel: LocalChannel) -> ClassroomBot:
        """Run ``bot`` over a custom channel (e.g. one that stops reading)."""
        server = serve_participant(
            channel.server_send, channel.server_receive, bot.identity, self.rooms
        )
        client = bot.run(channel.client_send, channel.client_receive)
        self.sessions.append(
            LocalSession(bot, channel, asyncio.ensure_future(server), asyncio.ensure_future(client))
        )
        return bot

    def session(self, bot: ClassroomBot) -> LocalSession:
        return next(s for s in self.sessions if s.bot is bot)

    async def stop(self, bot: ClassroomBot) -> None:
        await self.session(bot).stop()

    async def stop_all(self) -> None:
        await asyncio.gather(*(session.stop() for session in self.sessions))


@pytest.fixture
async def classrooms(rooms: InProcessRoomRegistry) -> AsyncIterator[Classrooms]:
    started = Classrooms(rooms)
    yield started
    await started.stop_all()


async def _eventually(
    condition: Callable[[], bool], *, timeout: float = 10.0, interval: float = 0.05
) -> float:
    start = time.monotonic()
    while not condition():
        if time.monotonic() - start > timeout:
            raise AssertionError(f"condition not met within {timeout} s")
        await asyncio.sleep(interval)
    return time.monotonic() - start


@pytest.fixture
def eventually() -> Callable[..., Awaitable[float]]:
    """``await eventually(condition, timeout=...)``: wait until it holds, return the seconds it
    took; fail the test on timeout."""
    return _eventually
