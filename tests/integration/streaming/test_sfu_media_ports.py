"""An SFU worker's media sockets stay in the configured UDP range and announce the public
address (real aiortc peers over loopback)."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Iterator

import pytest

from streaming.bots import ClassroomBot
from streaming.sfu.media_ports import MediaPorts, configure_media_ports
from tests.integration.streaming.conftest import Classrooms

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
