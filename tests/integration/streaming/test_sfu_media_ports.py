"""An SFU worker's media sockets stay in the configured UDP range and announce the public
address (real aiortc peers over loopback)."""

from __future__ import annotations

import asyncio
import re
import socket
from collections.abc import Awaitable, Callable, Iterator

import pytest
from aiortc import RTCConfiguration, RTCIceServer

from streaming.bots import ClassroomBot
from streaming.sfu import InProcessRoomRegistry
from streaming.sfu.media_ports import MediaPorts, configure_media_ports
from tests.fixtures.classrooms import Classrooms

PORTS = range(41000, 41010)
CANDIDATE = re.compile(r"a=candidate:\S+ \d+ udp \d+ (\S+) (\d+) typ host")


@pytest.fixture
def media_ports() -> Iterator[Callable[[MediaPorts], None]]:
    yield configure_media_ports
    configure_media_ports(MediaPorts())


def _answer_candidates(bot: ClassroomBot) -> list[tuple[str, int]]:
    answers = [m["sdp"] for m in bot.messages if m.get("type") == "answer"]
    assert answers, bot.messages
    return [(host, int(port)) for host, port in CANDIDATE.findall(answers[-1])]


async def test_media_flows_through_ports_of_the_configured_range(
    classrooms: Classrooms,
    media_ports: Callable[[MediaPorts], None],
    eventually: Callable[..., Awaitable[float]],
) -> None:
    media_ports(MediaPorts(port_min=PORTS.start, port_max=PORTS.stop - 1))
    classrooms.start("lead", "lead", fps=10)
    remote = classrooms.start("remote", "remote", fps=10)

    await eventually(lambda: sum(s.frames for s in remote.stats.values() if s.kind == "video") > 5)

    candidates = _answer_candidates(remote)
    assert candidates and all(port in PORTS for _, port in candidates), candidates


async def test_the_public_address_is_announced_in_the_answer(
    classrooms: Classrooms,
    media_ports: Callable[[MediaPorts], None],
    eventually: Callable[..., Awaitable[float]],
) -> None:
    media_ports(MediaPorts(port_min=PORTS.start, port_max=PORTS.stop - 1, announced_ip="192.0.2.7"))
    remote = classrooms.start("remote", "remote")

    await eventually(lambda: any(m.get("type") == "answer" for m in remote.messages))

    candidates = _answer_candidates(remote)
    assert candidates
    assert {host for host, _ in candidates} == {"192.0.2.7"}
    assert all(port in PORTS for _, port in candidates)


async def test_an_announced_worker_allocates_no_turn_relay_of_its_own(
    media_ports: Callable[[MediaPorts], None],
    eventually: Callable[..., Awaitable[float]],
) -> None:
    """With the public address announced, a join's answer waits for no TURN server: the
    worker sends it nothing and offers only its host candidate."""
    turn = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    turn.bind(("127.0.0.1", 0))
    turn.setblocking(False)
    server = RTCIceServer(
        urls=f"turn:127.0.0.1:{turn.getsockname()[1]}", username="tongke", credential="secret"
    )
    rooms = InProcessRoomRegistry(configuration=RTCConfiguration(iceServers=[server]))
    classrooms = Classrooms(rooms)
    media_ports(MediaPorts(port_min=PORTS.start, port_max=PORTS.stop - 1, announced_ip="192.0.2.7"))
    try:
        remote = classrooms.start("remote", "remote")
        await eventually(lambda: any(m.get("type") == "answer" for m in remote.messages))
        await asyncio.sleep(0.2)  # an allocation would have been sent before the answer
        answer = next(m["sdp"] for m in remote.messages if m.get("type") == "answer")
        assert "typ relay" not in answer and "typ srflx" not in answer
        assert {host for host, _ in _answer_candidates(remote)} == {"192.0.2.7"}
        with pytest.raises(BlockingIOError):
            turn.recv(2048)
    finally:
        await classrooms.stop_all()
        await rooms.close_all()
        turn.close()
