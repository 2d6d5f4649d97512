"""Resident memory of the web app with the demo alliance loaded, against a bare FastAPI app,
and of the whole demo with its simulated live classrooms.

Run: .venv/bin/python benchmarks/memory.py [--classrooms N] [--seconds S]
(best inside a private network namespace: `unshare -n sh -c 'ip link set lo up && ...'`).
Starts `tongke demo --no-classrooms` on a temporary SQLite database, signs in as every demo
role and walks their pages and lists (so routes, templates and ORM mappers are warm), then
reads VmRSS and VmHWM of the server from /proc. The reference, measured in the same run, is a
bare FastAPI app under the same uvicorn. Budget from issue 3: 250 MiB resident.

Then the whole demo as a visitor gets it: `tongke demo` with N simulated classrooms (the web
app with the SFU, and the classroom bots' process), live for S seconds once every lesson has
its lead and remote classrooms; it sums RSS, peak RSS and PSS over the process tree and
reports each process's CPU over those seconds. Budget from issue 3: 1 GiB for the whole demo.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from streaming.demo_classrooms import FPS, HEIGHT, WIDTH

BUDGET_MIB = 250
WHOLE_DEMO_BUDGET_MIB = 1024
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
    process = start([sys.executable, "-m", "web.cli", "demo", "--no-classrooms"], env, port)
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


@dataclass
class ProcessFigures:
    pid: int
    name: str
    rss: float
    peak: float
    pss: float
    cpu_percent: float


def tree(root_pid: int) -> list[int]:
    """``root_pid`` and its descendants, from /proc."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [root_pid]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(children.get(pid, []))
    return found


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def pss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith("Pss:"):
            return int(line.split()[1]) / 1024
    return 0.0


def process_name(pid: int) -> str:
    argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    words = [a.decode() for a in argv if a]
    return " ".join(words[1:4]) if len(words) > 1 else (words[0] if words else "?")


def wait_live(base: str, classrooms: int, timeout: float = 90) -> float:
    """Seconds until /api/live-lessons lists every simulated lesson with all its classrooms."""
    started = time.monotonic()
    with httpx.Client(base_url=base) as client:
        token = client.post(
            "/api/auth/token", json={"username": "admin-wck", "password": PASSWORD}
        ).json()["access_token"]
        while time.monotonic() - started < timeout:
            live = client.get(
                "/api/live-lessons", headers={"Authorization": f"Bearer {token}"}
            ).json()
            full = [lesson for lesson in live if len(lesson["participants"]) >= 3]
            if len(full) >= classrooms:
                return time.monotonic() - started
            time.sleep(0.5)
    raise SystemExit(f"the demo's {classrooms} simulated lessons did not go live")


def measure_whole_demo(
    root: Path, classrooms: int, seconds: float
) -> tuple[float, list[ProcessFigures]]:
    port = free_port()
    env = {
        "TONGKE_DATABASE_URL": f"sqlite:///{root / 'whole.db'}",
        "TONGKE_PORT": str(port),
        "TONGKE_MEDIA_ROOT": str(root / "whole-media"),
        "TONGKE_REDIS_URL": "",
        "TONGKE_ICE_SERVERS": "[]",
        "TONGKE_DEMO_CLASSROOMS": str(classrooms),
    }
    process = start([sys.executable, "-m", "web.cli", "demo"], env, port)
    try:
        live_after = wait_live(f"http://127.0.0.1:{port}", classrooms)
        pids = tree(process.pid)
        before = {pid: cpu_seconds(pid) for pid in pids}
        began = time.monotonic()
        time.sleep(seconds)
        elapsed = time.monotonic() - began
        figures = []
        for pid in tree(process.pid):
            rss, peak = memory_mib(pid)
            used = cpu_seconds(pid) - before.get(pid, 0.0)
            figures.append(
                ProcessFigures(
                    pid, process_name(pid), rss, peak, pss_mib(pid), 100 * used / elapsed
                )
            )
    finally:
        stop(process)
    return live_after, figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--classrooms", type=int, default=2, help="simulated live lessons")
    parser.add_argument("--seconds", type=float, default=30.0, help="live time before reading")
    parser.add_argument("--skip-web", action="store_true", help="only the whole demo")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        if not args.skip_web:
            report_web_app(root)
        live_after, figures = measure_whole_demo(root, args.classrooms, args.seconds)
    print()
    print(
        f"whole demo: {args.classrooms} simulated lessons ({3 * args.classrooms} classroom bots, "
        f"{WIDTH}x{HEIGHT} {FPS} fps VP8 + Opus), live {live_after:.1f} s after start, "
        f"measured over {args.seconds:.0f} s"
    )
    print(f"{'process':<52}{'RSS MiB':>9}{'peak MiB':>10}{'PSS MiB':>9}{'CPU %':>8}")
    for f in figures:
        print(f"{f.name[:50]:<52}{f.rss:>9.1f}{f.peak:>10.1f}{f.pss:>9.1f}{f.cpu_percent:>8.1f}")
    rss = sum(f.rss for f in figures)
    peak = sum(f.peak for f in figures)
    pss = sum(f.pss for f in figures)
    cpu = sum(f.cpu_percent for f in figures)
    print(f"{'total':<52}{rss:>9.1f}{peak:>10.1f}{pss:>9.1f}{cpu:>8.1f}")
    print(
        f"whole demo budget {WHOLE_DEMO_BUDGET_MIB} MiB: "
        f"{'within' if peak <= WHOLE_DEMO_BUDGET_MIB else 'OVER'} (sum of peaks {peak:.1f}); "
        f"CPU as % of one core ({os.cpu_count()} cores here)"
    )


def report_web_app(root: Path) -> None:
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
