"""`tongke demo` shows live lessons at once: simulated classrooms over the real signaling.

Run inside a loopback-only network namespace (as CI does):
    unshare -n sh -c 'ip link set lo up && .venv/bin/pytest tests/e2e/test_demo_live.py'
"""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import DEMO_PASSWORD
from tests.e2e.demo_process import DemoServer, running_demo

LIVE_WITHIN_S = 20.0


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoServer]:
    with running_demo(
        tmp_path_factory.mktemp("demo-live"), classrooms=True, env={"TONGKE_DEMO_CLASSROOMS": "2"}
    ) as server:
        yield server


def _live(client: httpx.Client, username: str) -> list[dict[str, Any]]:
    token = client.post(
        "/api/auth/token", json={"username": username, "password": DEMO_PASSWORD}
    ).json()["access_token"]
    response = client.get("/api/live-lessons", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200, response.text
    lessons: list[dict[str, Any]] = response.json()
    return lessons


def _full(lessons: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        lesson
        for lesson in lessons
        if sum(p["role"] == "lead" for p in lesson["participants"]) == 1
        and sum(p["role"] == "remote" for p in lesson["participants"]) >= 2
    ]


def test_the_demo_lists_simulated_live_lessons_with_their_classrooms(demo: DemoServer) -> None:
    with httpx.Client(base_url=demo.base, timeout=5) as client:
        lessons: list[dict[str, Any]] = []
        while time.monotonic() - demo.up_at < LIVE_WITHIN_S:
            lessons = _full(_live(client, "principal-cy"))
            if len(lessons) >= 2:
                break
            time.sleep(0.5)
        assert len(lessons) >= 2, (
            f"live lessons after {LIVE_WITHIN_S} s: {lessons}\n" + demo.log_path.read_text()[-3000:]
        )
        for lesson in lessons:
            assert lesson["code"].startswith("wck-en-")  # 王村口's English to 蔡源 and 龙洋
            assert lesson["my_role"] == "inspector"
            names = {p["name"] for p in lesson["participants"]}
            assert any("王村口" in n for n in names) and any("蔡源" in n for n in names)
        # media flows too: the SFU completed ICE with every classroom (its log says so)
        while demo.log_path.read_text().count("ICE completed") < 6:
            assert time.monotonic() - demo.up_at < LIVE_WITHIN_S + 10, demo.log_path.read_text()[
                -3000:
            ]
            time.sleep(0.5)
        # the alliance admin sees the same lessons
        codes = {lesson["code"] for lesson in _full(_live(client, "admin-wck"))}
        assert {lesson["code"] for lesson in lessons} <= codes


def test_stopping_the_demo_stops_its_classrooms(demo: DemoServer) -> None:
    bots = _children(demo.process.pid)
    assert bots, "the classrooms run in a child process of the demo"
    demo.process.send_signal(signal.SIGTERM)
    demo.process.wait(timeout=20)
    deadline = time.monotonic() + 10
    while any(Path(f"/proc/{pid}").exists() for pid in bots) and time.monotonic() < deadline:
        time.sleep(0.2)
    alive = [pid for pid in bots if Path(f"/proc/{pid}").exists()]
    assert not alive, f"classroom process still running: {alive}"
    output = demo.log_path.read_text()
    assert "模拟课堂 wck-en-" in output
