"""Two real `tongke sfu` workers behind a real `tongke serve`, routed through a real
redis-server; aiortc classroom bots join through the web app's signaling WebSocket with
device tokens, exactly as classroom terminals do.

Run in a private network namespace (only loopback), as CI does:
    unshare -n sh -c 'ip link set lo up && .venv/bin/pytest tests/integration/streaming'
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from sqlalchemy import select
from websockets.asyncio.client import connect

from common.alliance.models import SyncGroup
from common.db import make_engine, session_scope
from common.settings import Settings
from recordings.models import Recording
from recordings.service import new_recording_for_sync_group
from streaming.bots import ClassroomBot, run_over_websocket
from streaming.cluster import SfuCluster, WorkerInfo, preferred
from streaming.demo_classrooms import DemoSeat, plan_demo_classrooms, websocket_url
from streaming.relay import relay_to_worker
from streaming.sfu.identity import ParticipantIdentity
from streaming.tickets import sign_ticket
from streaming.worker import SfuWorker
from tests.conftest import DEMO_PASSWORD, DemoDatabase
from tests.e2e.demo_process import free_port, running_demo
from tests.fixtures.loop_guard import (  # noqa: F401 - in_process_loop_guard: fixture
    DB_LOOP_GUARD_ENV,
    DB_LOOP_GUARD_SETTINGS,
    caught_in_log,
    in_process_loop_guard,
)
from web.jobs import register_all

pytestmark = [pytest.mark.redis, pytest.mark.timeout(180)]

SECRET = "integration-secret-" + "x" * 40
LEASE_S = 1.5
START_TIMEOUT_S = 60.0


@dataclass
class Process:
    name: str
    base: str
    process: subprocess.Popen[bytes]
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]


@dataclass
class Stack:
    web: Process
    workers: dict[str, Process]
    redis_url: str
    seats: list[DemoSeat]
    logs: list[Process] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)  # what the processes were started with

    def owner(self, room_id: str) -> str | None:
        client = redis.Redis.from_url(self.redis_url, decode_responses=True)
        try:
            value = client.get(f"tongke:sfu:room:{room_id}")
            return None if value is None else str(value)
        finally:
            client.close()

    def worker_rooms(self, worker_id: str) -> dict[str, list[dict[str, Any]]]:
        ticket = sign_ticket(secret=SECRET, worker_id=worker_id, purpose="rooms")
        response = httpx.get(
            f"{self.workers[worker_id].base}/sfu/rooms",
            headers={"Authorization": f"Bearer {ticket}"},
            timeout=5,
        )
        assert response.status_code == 200, response.text
        return {room["room"]: room["participants"] for room in response.json()["rooms"]}

    def diagnostics(self) -> str:
        return "\n".join(f"--- {p.name}\n{p.log()}" for p in [self.web, *self.workers.values()])


def _start(name: str, argv: list[str], env: dict[str, str], root: Path, port: int) -> Process:
    log_path = root / f"{name}.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "web.cli", *argv],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    return Process(name, f"http://127.0.0.1:{port}", process, log_path)


def _wait_healthy(process: Process) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.process.poll() is not None:
            pytest.fail(f"{process.name} exited:\n{process.log()}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(process.base + "/healthz", timeout=1).status_code == 200:
                return
        time.sleep(0.1)
    pytest.fail(f"{process.name} not healthy within {START_TIMEOUT_S} s:\n{process.log()}")


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture
def stack(redis_server: str, sqlite_demo_template: Path, tmp_path: Path) -> Iterator[Stack]:
    database = tmp_path / "tongke.db"
    shutil.copy(sqlite_demo_template, database)
    redis_url = redis_server.rsplit("/", 1)[0] + "/7"  # a database of its own
    flush = redis.Redis.from_url(redis_url)
    flush.flushdb()
    flush.close()
    engine = make_engine(f"sqlite:///{database}")
    with session_scope(engine) as session:
        seats = plan_demo_classrooms(session, count=2)
    engine.dispose()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("TONGKE_")},
        "TONGKE_ENVIRONMENT": "test",
        "TONGKE_DATABASE_URL": f"sqlite:///{database}",
        "TONGKE_REDIS_URL": redis_url,
        "TONGKE_SECRET_KEY": SECRET,
        "TONGKE_MEDIA_ROOT": str(tmp_path / "media"),
        "TONGKE_ICE_SERVERS": "[]",
        "TONGKE_SFU_LEASE_SECONDS": str(LEASE_S),
        **DB_LOOP_GUARD_ENV,
    }
    workers: dict[str, Process] = {}
    started: list[Process] = []
    try:
        for worker_id in ("sfu-a", "sfu-b"):
            port = free_port()
            argv = ["sfu", "--port", str(port), "--worker-id", worker_id]
            workers[worker_id] = _start(worker_id, argv, env, tmp_path, port)
            started.append(workers[worker_id])
        web_port = free_port()
        web = _start("web", ["serve", "--port", str(web_port)], env, tmp_path, web_port)
        started.append(web)
        for process in started:
            _wait_healthy(process)
        running = Stack(web, workers, redis_url, seats, env=env)
        yield running
    finally:
        for process in started:
            _stop(process.process)
    watched = [*started, *running.logs]
    if found := [line for process in watched for line in caught_in_log(process.log_path)]:
        pytest.fail("database work on an event loop:\n" + "\n".join(found))


@dataclass
class Attendance:
    bot: ClassroomBot
    task: asyncio.Task[None]

    def video_frames(self) -> int:
        return sum(s.frames for s in self.bot.stats.values() if s.kind == "video")

    async def stop(self) -> None:
        if not self.task.done():
            with contextlib.suppress(Exception):
                await self.bot.leave()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(asyncio.shield(self.task), 3)
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)


async def attend(base: str, seat: DemoSeat) -> Attendance:
    """One classroom terminal joining through the web app's WebSocket with its device token."""
    identity = ParticipantIdentity(
        participant_id=seat.participant_id,
        display_name=seat.label,
        role="lead" if seat.role == "lead" else "remote",
        room_id=f"sync-{seat.sync_group_id}",
        campus=seat.label,
    )
    bot = ClassroomBot(identity, tone_hz=seat.tone_hz, width=320, height=180, fps=10)
    socket = await connect(websocket_url(base, seat), open_timeout=5, max_size=2**20)
    return Attendance(bot, asyncio.ensure_future(run_over_websocket(bot, socket)))


async def attend_until_connected(base: str, seat: DemoSeat, *, within: float) -> Attendance:
    """Join, and join again while the SFU says it is unavailable (a worker just died)."""
    deadline = time.monotonic() + within
    while True:
        attendance = await attend(base, seat)
        while not attendance.bot.connected.is_set() and not attendance.task.done():
            if time.monotonic() > deadline:
                await attendance.stop()
                raise AssertionError(f"{seat.label} did not connect: {attendance.bot.errors}")
            await asyncio.sleep(0.05)
        if attendance.bot.connected.is_set():
            return attendance
        await attendance.stop()
        await asyncio.sleep(0.3)


async def until(condition: Any, *, within: float, what: str, stack: Stack) -> float:
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > within:
            raise AssertionError(f"{what} not within {within} s\n{stack.diagnostics()}")
        await asyncio.sleep(0.1)
    return time.monotonic() - started


def _lesson_seats(stack: Stack) -> list[tuple[DemoSeat, DemoSeat]]:
    """Per lesson: the lead and its first remote classroom."""
    lessons: dict[int, list[DemoSeat]] = {}
    for seat in stack.seats:
        lessons.setdefault(seat.sync_group_id, []).append(seat)
    pairs = [
        (next(s for s in seats if s.role == "lead"), next(s for s in seats if s.role == "remote"))
        for seats in lessons.values()
    ]
    assert len(pairs) == 2
    return pairs


async def test_lessons_spread_over_workers_and_a_dead_workers_room_moves(stack: Stack) -> None:
    (lead_a, remote_a), (lead_b, remote_b) = _lesson_seats(stack)
    room_a, room_b = f"sync-{lead_a.sync_group_id}", f"sync-{lead_b.sync_group_id}"
    attendances: list[Attendance] = []
    try:
        # Lesson A first; once it runs, lesson B goes to the less loaded worker.
        for seat in (lead_a, remote_a):
            attendances.append(await attend_until_connected(stack.web.base, seat, within=20))
        for seat in (lead_b, remote_b):
            attendances.append(await attend_until_connected(stack.web.base, seat, within=20))
        viewer_a, viewer_b = attendances[1], attendances[3]
        await until(
            lambda: viewer_a.video_frames() > 10 and viewer_b.video_frames() > 10,
            within=20, what="frames in both lessons", stack=stack,
        )  # fmt: skip

        owner_a, owner_b = stack.owner(room_a), stack.owner(room_b)
        assert {owner_a, owner_b} == {"sfu-a", "sfu-b"}, "the two lessons share a worker"
        assert owner_a is not None and owner_b is not None
        # every join landed on its room's owner, and only there
        hosted_a, hosted_b = stack.worker_rooms(owner_a), stack.worker_rooms(owner_b)
        assert list(hosted_a) == [room_a] and list(hosted_b) == [room_b]
        for hosted, room, seats in (
            (hosted_a, room_a, (lead_a, remote_a)),
            (hosted_b, room_b, (lead_b, remote_b)),
        ):
            assert {p["id"] for p in hosted[room]} == {seat.participant_id for seat in seats}
        # the web app's 巡课 list gathers them from both workers
        with httpx.Client(base_url=stack.web.base, timeout=5) as client:
            token = client.post(
                "/api/auth/token", json={"username": "admin-wck", "password": DEMO_PASSWORD}
            ).json()["access_token"]
            live = client.get(
                "/api/live-lessons", headers={"Authorization": f"Bearer {token}"}
            ).json()
        assert {lesson["sync_group_id"] for lesson in live} >= {
            lead_a.sync_group_id,
            lead_b.sync_group_id,
        }

        # SIGKILL lesson A's worker: no goodbye, its claims must run out.
        stack.workers[owner_a].process.send_signal(signal.SIGKILL)
        stack.workers[owner_a].process.wait(timeout=10)
        killed_at = time.monotonic()
        frames_b = viewer_b.video_frames()
        await until(
            lambda: attendances[0].task.done() and attendances[1].task.done(),
            within=10, what="lesson A's classrooms noticing the dead worker", stack=stack,
        )  # fmt: skip
        rejoined = [
            await attend_until_connected(stack.web.base, seat, within=LEASE_S + 20)
            for seat in (lead_a, remote_a)
        ]
        attendances.extend(rejoined)
        await until(
            lambda: rejoined[1].video_frames() > 10,
            within=20, what="frames in lesson A after the move", stack=stack,
        )  # fmt: skip
        moved_after = time.monotonic() - killed_at
        assert stack.owner(room_a) == owner_b
        assert set(stack.worker_rooms(owner_b)) == {room_a, room_b}
        assert viewer_b.video_frames() > frames_b + 10  # lesson B never stopped
        assert not viewer_b.task.done()
        print(f"lesson A back on {owner_b} {moved_after:.2f} s after SIGKILL (lease {LEASE_S} s)")
    finally:
        await asyncio.gather(*(a.stop() for a in attendances))


async def test_a_join_follows_the_claim_and_workers_refuse_what_is_not_theirs(
    stack: Stack,
) -> None:
    (lead, _remote), _ = _lesson_seats(stack)
    room = f"sync-{lead.sync_group_id}"
    # Another worker than the one placement would pick has just claimed the room (as when
    # a join raced a heartbeat): the web app routes the join to the claim's owner.
    cluster = SfuCluster(stack.redis_url, lease_seconds=LEASE_S)
    try:
        picked = preferred(await cluster.workers(), room)
        assert picked is not None
        owner = "sfu-a" if picked.worker_id == "sfu-b" else "sfu-b"
        assert await cluster.claim(room, owner) == owner
        attendance = await attend_until_connected(stack.web.base, lead, within=20)
    finally:
        await cluster.close()
    try:
        assert stack.owner(room) == owner
        assert room in stack.worker_rooms(owner) and room not in stack.worker_rooms(
            picked.worker_id
        )
        health = httpx.get(stack.workers[owner].base + "/healthz", timeout=5).json()
        assert health == {"status": "ok", "worker": owner, "rooms": 1, "participants": 1}
        metrics = httpx.get(stack.workers[owner].base + "/metrics", timeout=5).text
        assert "tongke_sfu_rooms 1.0" in metrics
        assert "tongke_sfu_participants 1.0" in metrics

        # A worker trusts only tickets the web app signed for it.
        url = stack.workers[owner].base.replace("http://", "ws://") + "/sfu/ws"
        other = picked.worker_id
        identity = ParticipantIdentity("intruder", "x", "lead", room)
        for header in (
            {},
            {
                "Authorization": "Bearer "
                + sign_ticket(secret="y" * 48, worker_id=owner, purpose="join", identity=identity)
            },
            {
                "Authorization": "Bearer "
                + sign_ticket(secret=SECRET, worker_id=other, purpose="join", identity=identity)
            },
        ):
            async with connect(url, additional_headers=header) as socket:
                refusal = json.loads(await socket.recv())
                assert refusal["type"] == "error"
                assert refusal["code"] in ("invalid_ticket", "wrong_worker")
        listing = httpx.get(stack.workers[owner].base + "/sfu/rooms", timeout=5)
        assert listing.status_code == 401
        metrics = httpx.get(stack.workers[owner].base + "/metrics", timeout=5).text
        assert 'tongke_sfu_signaling_sockets_total{outcome="bad_ticket"} 3.0' in metrics
        # The other worker, with a ticket that is good for it, names the room's owner.
        ticket = sign_ticket(secret=SECRET, worker_id=other, purpose="join", identity=identity)
        other_url = stack.workers[other].base.replace("http://", "ws://") + "/sfu/ws"
        async with connect(
            other_url, additional_headers={"Authorization": f"Bearer {ticket}"}
        ) as socket:
            assert json.loads(await socket.recv()) == {"v": 1, "type": "route", "worker": owner}
        assert room not in stack.worker_rooms(other)
        # and the room was not touched: the lead is still the only one in it
        assert [p["id"] for p in stack.worker_rooms(owner)[f"sync-{lead.sync_group_id}"]] == [
            lead.participant_id
        ]
        # Without a token the web app refuses before any worker is involved.
        no_token = websocket_url(stack.web.base, lead).split("?")[0]
        async with connect(no_token) as socket:
            assert json.loads(await socket.recv())["code"] == "unauthenticated"

        # A relay whose look-up raced a claim goes to the wrong worker first, and follows it
        # to the owner.
        stale = StaleDirectory(stack.redis_url, lease_seconds=LEASE_S, wrong=picked)
        to_client: asyncio.Queue[str] = asyncio.Queue()
        from_client: asyncio.Queue[str] = asyncio.Queue()
        await from_client.put(json.dumps({"v": 1, "type": "join", "room": room}))
        inspector = ParticipantIdentity("account-9", "巡课", "inspector", room)
        relay = asyncio.ensure_future(
            relay_to_worker(to_client.put, from_client.get, inspector, cluster=stale, secret=SECRET)
        )
        try:
            joined = json.loads(await asyncio.wait_for(to_client.get(), 10))
            assert joined["type"] == "joined" and joined["role"] == "inspector", joined
            assert stale.lookups == 2
            health = httpx.get(stack.workers[owner].base + "/healthz", timeout=5).json()
            assert health["participants"] == 2  # the lead and the (invisible) inspector
            await from_client.put(json.dumps({"v": 1, "type": "leave"}))
            await asyncio.wait_for(relay, 10)
        finally:
            relay.cancel()
            await asyncio.gather(relay, return_exceptions=True)
            await stale.close()
    finally:
        await attendance.stop()


class StaleDirectory(SfuCluster):
    """Answers the first look-up with the wrong worker (as one that raced a claim)."""

    def __init__(self, redis_url: str, *, lease_seconds: float, wrong: WorkerInfo) -> None:
        super().__init__(redis_url, lease_seconds=lease_seconds)
        self.wrong = wrong
        self.lookups = 0

    async def placement(self, room_id: str) -> tuple[WorkerInfo | None, str | None]:
        self.lookups += 1
        if self.lookups == 1:
            return self.wrong, None
        return await super().placement(room_id)


def test_the_demo_with_redis_streams_its_lessons_through_an_sfu_worker(
    redis_server: str, tmp_path: Path
) -> None:
    redis_url = redis_server.rsplit("/", 1)[0] + "/8"
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    client.flushdb()
    environment = {
        "TONGKE_REDIS_URL": redis_url,
        "TONGKE_DEMO_CLASSROOMS": "1",
        "TONGKE_SFU_PORT": str(free_port()),
    }
    try:
        with running_demo(tmp_path, classrooms=True, env=environment) as demo:
            lessons: list[dict[str, Any]] = []
            with httpx.Client(base_url=demo.base, timeout=5) as web:
                token = web.post(
                    "/api/auth/token", json={"username": "principal-cy", "password": DEMO_PASSWORD}
                ).json()["access_token"]
                while time.monotonic() - demo.up_at < 30:
                    lessons = [
                        lesson
                        for lesson in web.get(
                            "/api/live-lessons", headers={"Authorization": f"Bearer {token}"}
                        ).json()
                        if len(lesson["participants"]) >= 3
                    ]
                    if lessons:
                        break
                    time.sleep(0.5)
            assert lessons, demo.log_path.read_text()[-3000:]
            owner = client.get(f"tongke:sfu:room:sync-{lessons[0]['sync_group_id']}")
            assert owner is not None and client.get(f"tongke:sfu:worker:{owner}") is not None
    finally:
        client.close()


async def test_recording_by_hand_runs_in_the_worker_that_hosts_the_lesson(
    stack: Stack, tmp_path: Path
) -> None:
    """The web process holds no room: start and stop go to the room's worker, which records."""
    (lead, remote), _ = _lesson_seats(stack)
    group = lead.sync_group_id
    attendances: list[Attendance] = []
    try:
        for seat in (lead, remote):
            attendances.append(await attend_until_connected(stack.web.base, seat, within=20))
        await until(
            lambda: attendances[1].video_frames() > 10, within=20, what="frames", stack=stack
        )
        owner = stack.owner(f"sync-{group}")
        assert owner is not None
        async with httpx.AsyncClient(base_url=stack.web.base, timeout=20) as client:

            async def headers(username: str) -> dict[str, str]:
                response = await client.post(
                    "/api/auth/token", json={"username": username, "password": DEMO_PASSWORD}
                )
                return {"Authorization": f"Bearer {response.json()['access_token']}"}

            admin = await headers("admin-wck")

            async def recording_now() -> list[int]:
                rows = await client.get("/api/recordings?status=recording", headers=admin)
                return [row["id"] for row in rows.json() if row["sync_group_id"] == group]

            for username in ("student-cy-4-1", "teacher-ye"):
                refused = await client.post(
                    "/api/recordings/start",
                    json={"sync_group_id": group},
                    headers=await headers(username),
                )
                assert refused.status_code == 403, (username, refused.text)
            started = await client.post(
                "/api/recordings/start", json={"sync_group_id": group, "topic": "分机录制"},
                headers=admin,
            )  # fmt: skip
            assert started.status_code == 201, started.text + stack.diagnostics()
            recording = started.json()
            assert recording["status"] == "recording"
            twice = await client.post(
                "/api/recordings/start", json={"sync_group_id": group}, headers=admin
            )
            assert (
                twice.status_code == 409
                and twice.json()["error"]["message"] == "这节同步课堂正在录制"
            )
            assert await recording_now() == [recording["id"]], "the refused start left a row"

            folder = tmp_path / "media" / "recordings" / str(recording["id"])
            await until(
                lambda: any(f.stat().st_size > 20_000 for f in folder.glob("*.webm")),
                within=20, what=f"the worker {owner} writing the recording", stack=stack,
            )  # fmt: skip
            stopped = await client.post(f"/api/recordings/{recording['id']}/stop", headers=admin)
            assert stopped.status_code == 200, stopped.text
            assert stopped.json()["status"] == "processing"
            assert stopped.json()["job_id"]
            again = await client.post(f"/api/recordings/{recording['id']}/stop", headers=admin)
            assert (
                again.status_code == 409
                and again.json()["error"]["message"] == "这段录像没有在录制"
            )
            assert await recording_now() == []
    finally:
        await asyncio.gather(*(a.stop() for a in attendances))


async def test_a_recording_whose_worker_was_killed_goes_on_where_the_lesson_moves(
    stack: Stack, tmp_path: Path
) -> None:
    """SIGKILL the recording worker: no recording stays "recording" for ever. When the lesson
    comes back on another worker, what was captured is queued for processing with the
    interruption noted, and recording goes on in a continuation that notes the gap."""
    (lead, remote), _ = _lesson_seats(stack)
    group = lead.sync_group_id
    attendances: list[Attendance] = []
    media = tmp_path / "media" / "recordings"
    try:
        for seat in (lead, remote):
            attendances.append(await attend_until_connected(stack.web.base, seat, within=20))
        owner = stack.owner(f"sync-{group}")
        assert owner is not None
        async with httpx.AsyncClient(base_url=stack.web.base, timeout=20) as client:
            token = await client.post(
                "/api/auth/token", json={"username": "admin-wck", "password": DEMO_PASSWORD}
            )
            admin = {"Authorization": f"Bearer {token.json()['access_token']}"}
            started = await client.post(
                "/api/recordings/start", json={"sync_group_id": group, "topic": "第一部分"},
                headers=admin,
            )  # fmt: skip
            assert started.status_code == 201, started.text
            first = started.json()["id"]
            await until(
                lambda: any(f.stat().st_size > 20_000 for f in (media / str(first)).glob("*")),
                within=20, what="the first part written", stack=stack,
            )  # fmt: skip

            stack.workers[owner].process.send_signal(signal.SIGKILL)
            stack.workers[owner].process.wait(timeout=10)
            await until(
                lambda: all(a.task.done() for a in attendances),
                within=10, what="the classrooms noticing the dead worker", stack=stack,
            )  # fmt: skip
            for seat in (lead, remote):
                attendances.append(
                    await attend_until_connected(stack.web.base, seat, within=LEASE_S + 20)
                )
            assert stack.owner(f"sync-{group}") not in (None, owner)

            async def rows() -> dict[int, dict[str, Any]]:
                listed = await client.get("/api/recordings", headers=admin)
                return {r["id"]: r for r in listed.json() if r["sync_group_id"] == group}

            found = await rows()
            assert found[first]["status"] == "processing", found[first]
            assert "媒体服务器中断" in found[first]["status_message"]
            assert found[first]["job_id"]
            (second,) = [i for i, r in found.items() if r["status"] == "recording"]
            assert second != first and found[second]["topic"] == "第一部分"
            assert "续录" in found[second]["status_message"]
            await until(
                lambda: any(f.stat().st_size > 20_000 for f in (media / str(second)).glob("*")),
                within=20, what="the continuation written on the new worker", stack=stack,
            )  # fmt: skip
            stopped = await client.post(f"/api/recordings/{second}/stop", headers=admin)
            assert stopped.status_code == 200, stopped.text
            assert stopped.json()["status"] == "processing"
            assert not [r for r in (await rows()).values() if r["status"] == "recording"]
    finally:
        await asyncio.gather(*(a.stop() for a in attendances))


ABANDON_AFTER_S = 3600  # what the workers of these tests wait before closing a recording


def sweeper_settings(
    redis_server: str, sqlite_db: DemoDatabase, media_root: Path, **overrides: Any
) -> Settings:
    """A worker's settings on a Redis database of its own (emptied) and the test's database,
    abandoning recordings after ``ABANDON_AFTER_S``."""
    redis_url = redis_server.rsplit("/", 1)[0] + "/8"
    with redis.Redis.from_url(redis_url) as flush:
        flush.flushdb()
    return Settings(
        environment="test",
        database_url=sqlite_db.url,
        redis_url=redis_url,
        media_root=media_root,
        secret_key=SECRET,
        recording_abandon_seconds=ABANDON_AFTER_S,
        **{**DB_LOOP_GUARD_SETTINGS, **overrides},
    )


def _recordings_left_behind(
    redis_server: str, sqlite_db: DemoDatabase, media_root: Path, *, age_s: float = 0.0
) -> tuple[Settings, list[int], dict[int, str]]:
    """Two lessons' recordings a dead worker left 'recording', their files written ``age_s``
    ago: the settings of a worker on the same Redis and database, the groups and the rows."""
    settings = sweeper_settings(redis_server, sqlite_db, media_root)
    with sqlite_db.sessions() as session, session.begin():
        groups = list(session.scalars(select(SyncGroup.id).order_by(SyncGroup.id).limit(2)))
        left, hosted = (new_recording_for_sync_group(session, sync_group_id=g) for g in groups)
        rows = {left.id: str(left.raw_path), hosted.id: str(hosted.raw_path)}
    written = time.time() - age_s
    for raw_path in rows.values():
        raw = settings.media_root / raw_path
        raw.parent.mkdir(parents=True)
        raw.write_bytes(b"\x1a\x45\xdf\xa3" + bytes(4000))  # what a recorder wrote
        os.utime(raw, (written, written))
    return settings, groups, rows


@pytest.mark.usefixtures("in_process_loop_guard")  # the worker runs on the test's loop
async def test_a_worker_closes_what_a_dead_worker_recorded_once_nobody_hosts_the_room(
    redis_server: str, sqlite_db: DemoDatabase, tmp_path: Path
) -> None:
    """The lesson is over (nobody came back): the sweep finalizes the recording whose room no
    worker hosts, and leaves alone one whose room is hosted (its worker records it)."""
    settings, groups, rows = await asyncio.to_thread(
        _recordings_left_behind, redis_server, sqlite_db, tmp_path / "media"
    )
    worker = SfuWorker(
        settings, worker_id="sweeper", url="http://127.0.0.1:9", register_jobs=register_all
    )
    try:
        assert await worker.cluster.claim(f"sync-{groups[1]}", "sfu-alive") == "sfu-alive"
        assert await worker.close_abandoned_recordings() == 0, "fresh within the setting"
        assert await worker.close_abandoned_recordings(stale_after_s=0) == 1
        assert await worker.close_abandoned_recordings(stale_after_s=0) == 0, "done once"
    finally:
        if worker._jobs is not None:
            await worker._jobs.close()
        await worker.cluster.close()
    with sqlite_db.sessions() as session:
        closed, untouched = (session.get_one(Recording, i) for i in rows)
        assert closed.status == "processing" and closed.job_id
        assert "媒体服务器中断" in closed.status_message
        assert untouched.status == "recording"


@pytest.mark.usefixtures("in_process_loop_guard")  # the worker runs on the test's loop
async def test_a_starting_worker_sweeps_at_once(
    redis_server: str, sqlite_db: DemoDatabase, tmp_path: Path
) -> None:
    """The first sweep runs as the worker starts (not a hundred seconds into a lesson, where
    what it loads showed as a jump of the worker's memory)."""
    settings, groups, rows = await asyncio.to_thread(
        _recordings_left_behind,
        redis_server,
        sqlite_db,
        tmp_path / "media",
        age_s=ABANDON_AFTER_S + 60,
    )
    worker = SfuWorker(
        settings, worker_id="starter", url="http://127.0.0.1:9", register_jobs=register_all
    )
    assert await worker.cluster.claim(f"sync-{groups[1]}", "sfu-alive") == "sfu-alive"
    await worker.start()
    try:
        with sqlite_db.sessions() as session:
            closed, untouched = (session.get_one(Recording, i) for i in rows)
            assert closed.status == "processing" and closed.job_id
            assert untouched.status == "recording", "its room is hosted"
    finally:
        await worker.stop()


@pytest.mark.usefixtures("in_process_loop_guard")  # the worker runs on the test's loop
async def test_a_burst_of_joins_reports_the_load_in_one_beat(
    redis_server: str, sqlite_db: DemoDatabase, tmp_path: Path
) -> None:
    """Joins into a room that is placed already do not each wait for Redis: the load goes
    out in one beat, and one more for what changed while a beat was on its way."""
    settings, _, _ = await asyncio.to_thread(
        _recordings_left_behind, redis_server, sqlite_db, tmp_path / "media"
    )
    worker = SfuWorker(settings, worker_id="bursty", url="http://127.0.0.1:9")
    heartbeats: list[WorkerInfo] = []
    heartbeat = worker.cluster.heartbeat

    async def counted(info: WorkerInfo) -> None:
        heartbeats.append(info)
        await heartbeat(info)

    worker.cluster.heartbeat = counted  # type: ignore[method-assign, assignment]
    try:
        for _ in range(64):
            worker.beat_soon()
        assert worker._soon_task is not None
        await worker._soon_task
        assert len(heartbeats) == 1
        assert "bursty" in {w.worker_id for w in await worker.cluster.workers()}
        worker.beat_soon()
        await asyncio.sleep(0)  # that beat is on its way to Redis
        assert len(heartbeats) == 2
        for _ in range(10):
            worker.beat_soon()
        await worker._soon_task
        assert len(heartbeats) == 3, "what changed meanwhile goes out right after"
    finally:
        await worker.stop()
