"""Recording fixtures: an in-process SFU on loopback with a lead classroom bot publishing."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Iterator

import aioice.ice
import pytest

from streaming.bots import ClassroomBot, LocalSession, start_local
from streaming.sfu import InProcessRoomRegistry, ParticipantIdentity
from streaming.sfu.identity import Role


@pytest.fixture(autouse=True)
def loopback_only(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(aioice.ice, "get_host_addresses", lambda use_ipv4, use_ipv6: ["127.0.0.1"])
    yield


@pytest.fixture
async def rooms() -> AsyncIterator[InProcessRoomRegistry]:
    registry = InProcessRoomRegistry(close_when_empty=False)
    yield registry
    await registry.close_all()


class Classrooms:
    """Starts bots against the registry and stops every one of them at teardown."""

    def __init__(self, rooms: InProcessRoomRegistry) -> None:
        self.rooms = rooms
        self.sessions: list[LocalSession] = []

    def start(
        self, participant_id: str, role: Role, *, room: str = "sync-1", **options: object
    ) -> ClassroomBot:
        identity = ParticipantIdentity(
            participant_id=participant_id,
            display_name=participant_id,
            role=role,
            room_id=room,
            campus=participant_id,
        )
        bot = ClassroomBot(identity, **options)  # type: ignore[arg-type]
        self.sessions.append(start_local(bot, self.rooms))
        return bot

    async def stop(self, bot: ClassroomBot) -> None:
        await next(s for s in self.sessions if s.bot is bot).stop()

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
def eventually() -> Callable[..., object]:
    return _eventually


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """A real S3 HTTP endpoint: moto's server in a process of its own on loopback."""
    import socket
    import subprocess
    import sys
    import urllib.request

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(f"{url}/moto-api/", timeout=1).close()
                break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("moto server did not start") from None
                time.sleep(0.1)
        yield url
    finally:
        server.terminate()
        server.wait(timeout=10)
