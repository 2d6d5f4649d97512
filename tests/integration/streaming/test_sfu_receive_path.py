"""The SFU's receive path (``aiortc_hooks.install_fast_receive``): a publisher's SRTP and
every peer's SRTCP go straight from the UDP socket to the SFU, while STUN (ICE consent) and
DTLS keep aiortc's own path, and garbage datagrams are dropped without harm."""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import Callable, Iterator
from typing import Any

import aioice.ice
import pytest

from streaming.sfu import aiortc_hooks

pytestmark = pytest.mark.timeout(60)


def _ice_connection(participant: Any) -> Any:
    """The aioice connection under a participant's bundled transport, SFU side."""
    return participant.pc.getTransceivers()[0].receiver.transport.transport._connection


def _is_rtp(data: bytes) -> bool:
    return len(data) > 1 and 127 < data[0] < 192 and not 191 < data[1] < 209


def _is_rtcp(data: bytes) -> bool:
    return len(data) > 1 and 127 < data[0] < 192 and 191 < data[1] < 209


async def _lesson(rooms: Any, classrooms: Any, eventually: Any) -> tuple[Any, Any, Any]:
    """A lead and one remote classroom watching it: (room, lead's SFU participant, viewer)."""
    classrooms.start("lead", "lead")
    viewer = classrooms.start("remote-a", "remote")
    await eventually(lambda: "lead_camera" in viewer.stats)
    await eventually(lambda: viewer.slot("lead_camera").frames > 15, timeout=15)
    room = await rooms.get("lesson-1")
    return room, room.participants["lead"], viewer


async def _frames_keep_coming(viewer: Any, eventually: Any, more: int = 10) -> None:
    frames = viewer.slot("lead_camera").frames
    await eventually(lambda: viewer.slot("lead_camera").frames > frames + more, timeout=10)


def _spy_on_queue(participant: Any) -> list[bytes]:
    """What reaches aioice's per-datagram queue on ``participant``'s connection from now on."""
    connection = _ice_connection(participant)
    queued: list[bytes] = []
    original = connection.data_received

    def spy(data: bytes, component: int) -> None:
        queued.append(data)
        original(data, component)

    connection.data_received = spy
    return queued


async def test_publisher_rtp_and_rtcp_skip_aioice(rooms, classrooms, eventually):
    room, lead, viewer = await _lesson(rooms, classrooms, eventually)
    connection = _ice_connection(lead)
    assert connection._protocols
    assert all("datagram_received" in vars(p) for p in connection._protocols)
    queued = _spy_on_queue(lead)
    camera = room.participants["lead"].published["camera"]
    reports: dict[int, int] = camera.rtp_receiver._RTCRtpReceiver__lsr
    reports.clear()
    packets = camera.packets
    # the publisher's sender reports (every second or so) still reach aiortc's receiver,
    # which answers them in its receiver reports
    await eventually(lambda: bool(reports), timeout=10)
    await eventually(lambda: camera.packets > packets + 60, timeout=10)
    await _frames_keep_coming(viewer, eventually)
    assert not any(_is_rtp(d) or _is_rtcp(d) for d in queued), "media went through the queue"
    assert camera.rejected == 0
    assert viewer.errors == []


async def test_subscriber_rtcp_reaches_its_slot_from_the_socket(rooms, classrooms, eventually):
    """The viewer's receiver reports reach its slot's handler straight from the socket (not
    aiortc's ``_handle_rtcp_packet``, which the fast path does not call): the slot learns its
    round trip and loss from them."""
    room, _lead, viewer = await _lesson(rooms, classrooms, eventually)
    remote = room.participants["remote-a"]
    queued = _spy_on_queue(remote)
    downlink = remote.downlinks["lead_camera"]
    through_aiortc: list[Any] = []

    async def aiortc_path(packet: Any) -> None:
        through_aiortc.append(packet)

    downlink.sender._handle_rtcp_packet = aiortc_path
    downlink.rtt_ms = None
    await eventually(lambda: downlink.rtt_ms is not None, timeout=10)
    await _frames_keep_coming(viewer, eventually)
    assert through_aiortc == []
    assert not any(_is_rtcp(d) for d in queued), "RTCP went through aioice's queue"
    assert viewer.errors == []


def _switched_off(switch: Callable[[bool], None]) -> Iterator[None]:
    switch(False)
    yield
    switch(True)


@pytest.fixture
def aiortc_rtcp_path() -> Iterator[None]:
    yield from _switched_off(aiortc_hooks.set_fast_rtcp)


async def test_switched_off_rtcp_takes_aiortcs_path(
    rooms, classrooms, eventually, aiortc_rtcp_path
):
    room, lead, viewer = await _lesson(rooms, classrooms, eventually)
    queued = _spy_on_queue(lead)
    remote = room.participants["remote-a"]
    downlink = remote.downlinks["lead_camera"]
    downlink.rtt_ms = None
    await eventually(lambda: any(_is_rtcp(d) for d in queued), timeout=10)
    await eventually(lambda: downlink.rtt_ms is not None, timeout=10)
    assert not any(_is_rtp(d) for d in queued), "RTP still takes the shortcut"
    await _frames_keep_coming(viewer, eventually)
    assert viewer.errors == []


@pytest.fixture
def short_consent_interval(monkeypatch: pytest.MonkeyPatch) -> float:
    """ICE consent checked every 0.2 s instead of 5 s: a peer that stops seeing the answers
    gives up after 6 missed checks, about 1.2 s."""
    monkeypatch.setattr(aioice.ice, "CONSENT_INTERVAL", 0.2)
    return 0.2 * aioice.ice.CONSENT_FAILURES


async def test_ice_consent_keeps_the_connection_up_past_its_expiry(
    rooms, classrooms, eventually, short_consent_interval
):
    room, lead, viewer = await _lesson(rooms, classrooms, eventually)
    assert all("datagram_received" in vars(p) for p in _ice_connection(lead)._protocols)
    await asyncio.sleep(3 * short_consent_interval)
    # both ends still consent: the SFU saw the publisher's answers to its checks, and the
    # publisher the SFU's (the STUN both ways shares the socket with the media)
    assert lead.pc.connectionState == "connected"
    assert room.participants["remote-a"].pc.connectionState == "connected"
    await _frames_keep_coming(viewer, eventually)
    assert viewer.errors == []


def _garbage() -> Iterator[bytes]:
    """Datagrams of every shape the SFU's media socket may see from a stranger."""
    yield b""
    yield b"\x80"
    for _ in range(40):
        body = os.urandom(1100)
        yield bytes([0x80 | body[0] & 0x3F, 96]) + body[2:]  # RTP-like, not authentic
        yield bytes([0x80, 200]) + body[2:60]  # SRTCP-like
        yield bytes([0x17, 0xFE, 0xFD]) + body[3:100]  # a DTLS record
        yield bytes([0x00, 0x01, 0x00, 0x00, 0x21, 0x12, 0xA4, 0x42]) + body[8:20]  # STUN
        yield body[: 12 + body[0] % 50]  # anything


def _media_address(participant: Any) -> tuple[str, int]:
    candidate = _ice_connection(participant)._nominated[1].local_candidate
    return candidate.host, candidate.port


async def test_garbage_datagrams_are_dropped_without_harm(rooms, classrooms, eventually):
    """aiortc 1.16's own receive task ends on an empty datagram (IndexError in
    ``_recv_next``): one stray packet would cut a classroom off."""
    room, lead, viewer = await _lesson(rooms, classrooms, eventually)
    inspector = classrooms.start("inspector", "inspector")
    await eventually(lambda: "lead_camera" in inspector.stats)
    await eventually(lambda: inspector.slot("lead_camera").frames > 5, timeout=15)
    watcher = room.participants["inspector"]  # subscribes only: no RTP ever comes in
    camera = lead.published["camera"]
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as stranger:
        for datagram in _garbage():
            for participant in (lead, watcher):
                stranger.sendto(datagram, _media_address(participant))
            await asyncio.sleep(0)
    await _frames_keep_coming(viewer, eventually, more=20)
    await _frames_keep_coming(inspector, eventually, more=20)
    assert lead.pc.connectionState == "connected"
    assert watcher.pc.connectionState == "connected"
    assert camera.rejected == 0  # nothing unauthenticated reached the track
    assert viewer.errors == [] and inspector.errors == []


@pytest.fixture
def aiortc_receive_path() -> Iterator[None]:
    yield from _switched_off(aiortc_hooks.set_aiortc_shortcuts)


async def test_switched_off_media_takes_aiortcs_path(
    rooms, classrooms, eventually, aiortc_receive_path
):
    _room, lead, viewer = await _lesson(rooms, classrooms, eventually)
    assert not any("datagram_received" in vars(p) for p in _ice_connection(lead)._protocols)
    await _frames_keep_coming(viewer, eventually)
    assert viewer.errors == []
