"""Recording fixtures: an in-process SFU on loopback with a lead classroom bot publishing."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import aioice.ice
import pytest

from streaming.sfu import InProcessRoomRegistry
from tests.fixtures.classrooms import Classrooms
from tests.fixtures.classrooms import eventually as wait_until
from tests.fixtures.loop_guard import failing_on_refusals
from tests.fixtures.recordings import LoggedFfmpeg


@pytest.fixture(autouse=True)
def _loop_guard() -> Iterator[None]:
    """Recording, processing, meeting and expiry jobs run here on the test's own loop."""
    with failing_on_refusals():
        yield


@pytest.fixture(autouse=True)
def loopback_only(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(aioice.ice, "get_host_addresses", lambda use_ipv4, use_ipv6: ["127.0.0.1"])
    yield


@pytest.fixture
async def rooms() -> AsyncIterator[InProcessRoomRegistry]:
    registry = InProcessRoomRegistry(close_when_empty=False)
    yield registry
    await registry.close_all()


@pytest.fixture
async def classrooms(rooms: InProcessRoomRegistry) -> AsyncIterator[Classrooms]:
    started = Classrooms(rooms, default_room="sync-1")
    yield started
    await started.stop_all()


@pytest.fixture
def eventually() -> Callable[..., object]:
    return wait_until


@pytest.fixture
def logged_ffmpeg(tmp_path: Path) -> LoggedFfmpeg:
    return LoggedFfmpeg(tmp_path / "configured-ffmpeg")


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
