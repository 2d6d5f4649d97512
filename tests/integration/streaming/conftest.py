"""Real aiortc peers over loopback: host candidates on 127.0.0.1 only, no STUN servers."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator

import aioice.ice
import pytest

from streaming.sfu import InProcessRoomRegistry, ParticipantIdentity, RoomLimits
from tests.fixtures.classrooms import Classrooms, identity
from tests.fixtures.classrooms import eventually as wait_until


@pytest.fixture(autouse=True)
def loopback_only(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(aioice.ice, "get_host_addresses", lambda use_ipv4, use_ipv6: ["127.0.0.1"])
    yield


@pytest.fixture
async def rooms() -> AsyncIterator[InProcessRoomRegistry]:
    registry = InProcessRoomRegistry(limits=RoomLimits(speaker_video_slots=2))
    yield registry
    await registry.close_all()


@pytest.fixture
def make_identity() -> Callable[..., ParticipantIdentity]:
    return identity


@pytest.fixture
async def classrooms(rooms: InProcessRoomRegistry) -> AsyncIterator[Classrooms]:
    started = Classrooms(rooms)
    yield started
    await started.stop_all()


@pytest.fixture
def eventually() -> Callable[..., Awaitable[float]]:
    """``await eventually(condition, timeout=...)``: wait until it holds, return the seconds it
    took; fail the test on timeout."""
    return wait_until
