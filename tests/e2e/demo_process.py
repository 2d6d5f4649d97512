"""`tongke demo` as a real subprocess on a free loopback port, for the end-to-end tests."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.fixtures.loop_guard import DB_LOOP_GUARD_ENV, caught_in_log

START_TIMEOUT_S = 90


@dataclass
class DemoServer:
    base: str
    process: subprocess.Popen[bytes]
    log_path: Path
    up_at: float


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextmanager
def running_demo(
    root: Path, *, classrooms: bool = False, env: Mapping[str, str] | None = None
) -> Iterator[DemoServer]:
    """Seed a fresh demo database under `root`, serve it, wait for /healthz, stop it after.

    No STUN/TURN servers: nothing leaves the host. Simulated classrooms only when asked.
    """
    port = free_port()
    environment = {
        **os.environ,
        "TONGKE_DATABASE_URL": f"sqlite:///{root / 'demo.db'}",
        "TONGKE_MEDIA_ROOT": str(root / "media"),
        "TONGKE_PORT": str(port),
        "TONGKE_REDIS_URL": "",
        "TONGKE_ICE_SERVERS": "[]",
        **DB_LOOP_GUARD_ENV,
        **(env or {}),
    }
    argv = [sys.executable, "-m", "web.cli", "demo"]
    if not classrooms:
        argv.append("--no-classrooms")
    log_path = root / "demo.log"
    with log_path.open("w") as log:
        process = subprocess.Popen(
            argv, env=environment, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )
        base = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + START_TIMEOUT_S
            while True:
                if process.poll() is not None:
                    pytest.fail("tongke demo exited:\n" + log_path.read_text())
                if time.monotonic() > deadline:
                    pytest.fail(
                        f"tongke demo did not answer within {START_TIMEOUT_S} s:\n"
                        + log_path.read_text()
                    )
                try:
                    if httpx.get(base + "/healthz", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    time.sleep(0.2)
            yield DemoServer(base, process, log_path, time.monotonic())
        finally:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    process.kill()
        if found := caught_in_log(log_path):
            pytest.fail("tongke demo: database work on an event loop:\n" + "\n".join(found))
