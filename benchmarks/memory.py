"""Resident memory of the web app with the demo alliance loaded, against a bare FastAPI app.

Run: .venv/bin/python benchmarks/memory.py
Starts `tongke demo` on a temporary SQLite database, signs in as every demo role and
walks their pages and lists (so routes, templates and ORM mappers are warm), then reads
VmRSS and VmHWM of the server from /proc. The reference, measured in the same run, is a
bare FastAPI app under the same uvicorn. Budget from issue 3: 250 MiB resident.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import httpx

BUDGET_MIB = 250
PASSWORD = "tongke-demo"
USERS = [
    "bureau",
    "admin-sy",
    "admin-wck",
    "principal-dj",
    "principal-cy",
    "teacher-wang",
    "teacher-lei",
    "student-cy-4-1",
    "student-dj-4-1",
]
LISTS = [
    "schools",
    "campuses",
    "bell-schedules",
    "rooms",
    "classes",
    "teachers",
    "students",
    "accounts",
    "terms",
    "subjects",
]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def memory_mib(pid: int) -> tuple[float, float]:
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        fields[key] = value.strip()
    return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024


def wait_up(base: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"server exited with {process.returncode}")
        try:
            if httpx.get(base + "/healthz", timeout=1).status_code in (200, 404):
                return
        except httpx.HTTPError:
            time.sleep(0.2)
    raise SystemExit("server did not start")


def start(argv: list[str], env: dict[str, str], port: int) -> subprocess.Popen[bytes]:
    process = subprocess.Popen(
        argv,
        env={**os.environ, **env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        stdin=subprocess.DEVNULL,
    )
    wait_up(f"http://127.0.0.1:{port}", process)
    return process


def stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    process.wait(timeout=15)


def measure_tongke(root: Path) -> tuple[float, float, int]:
    port = free_port()
    env = {
        "TONGKE_DATABASE_URL": f"sqlite:///{root / 'demo.db'}",
        "TONGKE_PORT": str(port),
        "TONGKE_MEDIA_ROOT": str(root / "media"),
        "TONGKE_REDIS_URL": "",
    }
    process = start([sys.executable, "-m", "web.cli", "demo"], env, port)
    requests = 0
    try:
        base = f"http://127.0.0.1:{port}"
        for _ in range(3):
            for user in USERS:
                with httpx.Client(base_url=base) as client:
                    client.post("/login", data={"username": user, "password": PASSWORD})
                    client.get("/")
                    requests += 2
                    for name in LISTS:
                        client.get(f"/api/{name}?limit=1000")
                        requests += 1
        rss, peak = memory_mib(process.pid)
    finally:
        stop(process)
    return rss, peak, requests


def measure_bare(root: Path) -> tuple[float, float]:
    port = free_port()
    (root / "bare_app.py").write_text(
        textwrap.dedent("""
        from fastapi import FastAPI
        app = FastAPI()
        @app.get("/healthz")
        def healthz() -> dict[str, str]:
            return {"status": "ok"}
    """)
    )
    process = start(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "bare_app:app",
            "--port",
            str(port),
            "--app-dir",
            str(root),
        ],
        {},
        port,
    )
    try:
        for _ in range(100):
            httpx.get(f"http://127.0.0.1:{port}/healthz")
        return memory_mib(process.pid)
    finally:
        stop(process)


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        bare_rss, bare_peak = measure_bare(root)
        rss, peak, requests = measure_tongke(root)
    print(f"{'process':<34}{'RSS MiB':>10}{'peak MiB':>10}")
    print(f"{'bare FastAPI + uvicorn (reference)':<34}{bare_rss:>10.1f}{bare_peak:>10.1f}")
    print(f"{'tongke demo web app':<34}{rss:>10.1f}{peak:>10.1f}   after {requests} requests")
    print(
        f"tongke over reference: {rss - bare_rss:+.1f} MiB; budget {BUDGET_MIB} MiB: "
        f"{'within' if peak <= BUDGET_MIB else 'OVER'} (peak {peak:.1f})"
    )


if __name__ == "__main__":
    main()
