"""TURN with credentials the app mints (streaming.ice) against a real coturn: allocations
with them, refusals without them, and a classroom that reaches a lesson only through the
relay.

coturn runs here with deploy/turnserver.conf on loopback, less its refusal of loopback
peers (the SFU and the bots have host candidates on 127.0.0.1 only).
"""

from __future__ import annotations

import asyncio
import shutil
import time
from collections.abc import Iterator

import pytest
from aioice.stun import TransactionFailed
from aioice.turn import create_turn_endpoint
from aiortc import RTCBundlePolicy, RTCConfiguration, RTCIceServer
from aiortc.rtcconfiguration import RTCIceTransportPolicy
from typer.testing import CliRunner

from common.accounts.permissions import Principal
from common.settings import Settings, get_settings
from streaming.bots import ClassroomBot
from streaming.ice import browser_ice_servers, turn_credential
from tests.fixtures.coturn import running_coturn
from web.cli import app

pytestmark = [
    pytest.mark.timeout(90),
    pytest.mark.skipif(shutil.which("turnserver") is None, reason="coturn is not installed"),
]

SECRET = "turn-secret-for-the-tests-0123456789abcdef"
TEACHER = Principal(account_id=7, role="teacher", teacher_id=3)
TERMINAL = Principal(account_id=0, role="terminal", terminal_id=12)
PUPIL = Principal(account_id=9, role="student", student_id=4, class_id=2)


@pytest.fixture(scope="module")
def coturn(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, int]]:
    with running_coturn(tmp_path_factory.mktemp("coturn"), SECRET) as server:
        yield server


def _settings(server: tuple[str, int], **overrides: object) -> Settings:
    host, port = server
    return Settings(
        turn_urls=[f"turn:{host}:{port}?transport=udp"],
        turn_secret=SECRET,
        **overrides,  # type: ignore[arg-type]
    )


async def _allocate(server: tuple[str, int], username: str, password: str) -> tuple[str, int]:
    """A TURN allocation with these credentials: its relayed address."""
    transport, _ = await asyncio.wait_for(
        create_turn_endpoint(asyncio.DatagramProtocol, server, username, password), 5
    )
    relayed: tuple[str, int] = transport.get_extra_info("sockname")
    transport.close()
    return relayed


def _frames(bot: ClassroomBot, slot: str) -> int:
    return bot.stats[slot].frames if slot in bot.stats else 0


def _turn_entry(servers: list[dict[str, object]]) -> dict[str, object]:
    (entry,) = [s for s in servers if "username" in s]
    return entry


async def test_minted_credentials_allocate_and_forged_or_expired_ones_are_refused(
    coturn: tuple[str, int],
) -> None:
    settings = _settings(coturn, ice_servers=[{"urls": ["stun:stun.example.org:3478"]}])
    servers = browser_ice_servers(settings, TEACHER)
    assert servers[0] == {"urls": ["stun:stun.example.org:3478"]}  # the configured list first
    entry = _turn_entry(servers)
    username, credential = str(entry["username"]), str(entry["credential"])
    expiry, _, who = username.partition(":")
    assert who == "teacher-7"
    assert abs(int(expiry) - (time.time() + settings.turn_credential_ttl_seconds)) < 5
    host, _ = await _allocate(coturn, username, credential)
    assert host == "127.0.0.1"

    # a terminal's credential names the terminal, and works as well
    terminal = _turn_entry(browser_ice_servers(settings, TERMINAL))
    assert str(terminal["username"]).endswith(":terminal-12")
    await _allocate(coturn, str(terminal["username"]), str(terminal["credential"]))

    # the name changed (a longer life, another user) without the secret: refused
    forged = f"{int(expiry) + 86_400}:{who}"
    with pytest.raises(TransactionFailed, match="401"):
        await _allocate(coturn, forged, credential)
    with pytest.raises(TransactionFailed, match="401"):
        await _allocate(coturn, forged, turn_credential("not-the-secret", forged))
    # minted a day and a minute ago: expired
    stale = _turn_entry(browser_ice_servers(settings, TEACHER, now=time.time() - 86_400 - 60))
    with pytest.raises(TransactionFailed, match="401"):
        await _allocate(coturn, str(stale["username"]), str(stale["credential"]))

    # a pupil takes part in no live media: no relay for them
    assert browser_ice_servers(settings, PUPIL) == [{"urls": ["stun:stun.example.org:3478"]}]


async def test_a_classroom_that_only_reaches_the_relay_joins_the_lesson(
    coturn: tuple[str, int], classrooms, eventually
) -> None:
    servers = browser_ice_servers(_settings(coturn), TERMINAL)
    relay_only = RTCConfiguration(
        iceServers=[RTCIceServer(**server) for server in servers],
        iceTransportPolicy=RTCIceTransportPolicy.RELAY,
        bundlePolicy=RTCBundlePolicy.MAX_BUNDLE,
    )
    lead = classrooms.start("lead", "lead", configuration=relay_only)
    remote = classrooms.start("remote-1", "remote")
    await eventually(lambda: _frames(remote, "lead_camera") > 10, timeout=30)
    # and back: the lead sees the remote classroom through the same relay
    await eventually(lambda: _frames(lead, "remote_video_0") > 5, timeout=30)
    assert lead.pc is not None
    ice = lead.pc.getTransceivers()[0].sender.transport.transport
    nominated = ice._connection._nominated  # aioice: component -> the pair in use
    assert {pair.local_candidate.type for pair in nominated.values()} == {"relay"}


def test_turn_settings_are_checked_when_read() -> None:
    with pytest.raises(ValueError, match="together"):
        Settings(turn_urls=["turn:203.0.113.10:3478"])
    with pytest.raises(ValueError, match="together"):
        Settings(turn_secret=SECRET)
    with pytest.raises(ValueError, match="turn: or turns:"):
        Settings(turn_urls=["stun:203.0.113.10:3478"], turn_secret=SECRET)
    with pytest.raises(ValueError, match="32 random characters"):
        Settings(
            environment="production",
            secret_key="k" * 40,
            turn_urls=["turn:203.0.113.10:3478"],
            turn_secret="short",
        )
    # without TURN settings the configured list is all a browser gets
    assert browser_ice_servers(Settings(), TEACHER) == []


async def test_the_operators_check_credential_allocates_too(
    coturn: tuple[str, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    host, port = coturn
    monkeypatch.setenv("TONGKE_TURN_URLS", f'["turn:{host}:{port}?transport=udp"]')
    monkeypatch.setenv("TONGKE_TURN_SECRET", SECRET)
    get_settings.cache_clear()
    try:
        result = CliRunner().invoke(app, ["turn-credential", "--hours", "0.5"])
        refused = CliRunner().invoke(app, ["turn-credential", "--hours", "48"])
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 0, result.output
    lines = dict(line.split(": ", 1) for line in result.output.splitlines() if ": " in line)
    assert lines["username"].endswith(":check")
    assert 1700 < int(lines["username"].split(":")[0]) - time.time() <= 1800
    await _allocate(coturn, lines["username"], lines["password"])
    assert refused.exit_code == 1 and "0 到 24" in refused.output
