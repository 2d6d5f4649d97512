"""The tongke SFU in `tongke bench sfu`: one `tongke sfu` worker and the Redis it registers in.

The publisher is the classroom bot, publishing exactly as a lead classroom does; subscribers
join as inspectors with signed tickets, as the web process relays joins.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import secrets
import shutil
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from streaming.bench import (
    BITRATES,
    CONNECT_TIMEOUT_S,
    FRAME_RATES,
    BenchRoom,
    Closer,
    Publisher,
    RoomOpener,
    camera_track,
    free_port,
    set_bitrate,
    stop_processes,
    wait_healthy,
)

if TYPE_CHECKING:
    from streaming.bench_subscribers import SubscriberCounts


@dataclass
class Worker:
    """The tongke SFU worker under test, and the Redis it registers in."""

    url: str
    worker_id: str
    secret: str
    pid: int


@contextmanager
def sfu_worker(
    work_dir: Path, settings: dict[str, str] | None = None, source: Path | None = None
) -> Iterator[Worker]:
    """A redis-server and one `tongke sfu` worker, stopped on exit; ``settings`` are more
    ``TONGKE_*`` variables for the worker (to compare two configurations in one run), and
    ``source`` another checkout of tongke to run the worker's code from (to compare two
    commits in one run; the bench's publisher and subscribers stay this checkout's)."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise RuntimeError("redis-server is not installed (apt-get install redis-server)")
    redis_port, sfu_port = free_port(), free_port()
    secret = secrets.token_urlsafe(48)
    database = work_dir / "bench.db"
    if not database.exists():  # migrated as in a deployment: the worker sweeps it at start
        from common.migrate import upgrade

        upgrade(f"sqlite:///{database}")
    redis = subprocess.Popen(
        [binary, "--port", str(redis_port), "--bind", "127.0.0.1", "--save", "",
         "--dir", str(work_dir)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("TONGKE_")},
        "TONGKE_ENVIRONMENT": "test",
        "TONGKE_REDIS_URL": f"redis://127.0.0.1:{redis_port}/0",
        "TONGKE_SECRET_KEY": secret,
        "TONGKE_DATABASE_URL": f"sqlite:///{database}",
        "TONGKE_MEDIA_ROOT": str(work_dir / "media"),
        "TONGKE_ICE_SERVERS": "[]",
        "TONGKE_LOG_LEVEL": "WARNING",
        **(settings or {}),
    }
    log_file = (work_dir / "sfu.log").open("wb")
    worker = subprocess.Popen(
        [sys.executable, "-m", "web.cli", "sfu", "--port", str(sfu_port), "--worker-id", "bench"],
        env=env,
        stdout=log_file,
        stderr=subprocess.STDOUT,
        cwd=source,  # ``-m`` imports from the working directory first
    )
    try:
        url = f"http://127.0.0.1:{sfu_port}"
        wait_healthy(url + "/healthz", worker, work_dir / "sfu.log")
        yield Worker(url, "bench", secret, worker.pid)
    finally:
        stop_processes(worker, redis)
        log_file.close()


def parse_variant(text: str) -> tuple[str, dict[str, str]]:
    """``name:KEY=VALUE,...`` (a benchmark's worker variant) as its name and the ``TONGKE_*``
    settings it sets for ``sfu_worker``; a name may end in ``@PATH``, the checkout the
    worker runs from (``variant_source``)."""
    name, _, assignments = text.partition(":")
    settings = {}
    for assignment in filter(None, assignments.split(",")):
        key, _, value = assignment.partition("=")
        settings[f"TONGKE_{key.strip().upper()}"] = value.strip()
    return name, settings


def variant_source(name: str) -> tuple[str, Path | None]:
    """A variant's name without its ``@PATH`` and that checkout (None: this one)."""
    name, _, source = name.partition("@")
    return name, Path(source) if source else None


class TongkeSignaling:
    """One signaling session to the tongke worker (a ticket, then JSON over WebSocket)."""

    def __init__(self, url: str, worker_id: str, secret: str, identity: Any) -> None:
        self.url, self.worker_id, self.secret = url, worker_id, secret
        self.identity = identity
        self.socket: Any = None

    async def connect(self) -> None:
        from websockets.asyncio.client import connect

        from streaming.tickets import sign_ticket

        ticket = sign_ticket(
            secret=self.secret,
            worker_id=self.worker_id,
            purpose="join",
            identity=self.identity,
            lifetime=60,
        )
        self.socket = await connect(
            f"{self.url.replace('http://', 'ws://')}/sfu/ws",
            additional_headers={"Authorization": f"Bearer {ticket}"},
            max_size=2**20,
        )

    async def send(self, message: dict[str, Any]) -> None:
        await self.socket.send(json.dumps(message))

    async def receive(self) -> dict[str, Any]:
        import websockets

        try:
            message: dict[str, Any] = json.loads(await self.socket.recv())
        except websockets.ConnectionClosed as exc:
            raise ConnectionError(str(exc)) from exc
        return message

    async def receive_type(self, kind: str) -> dict[str, Any]:
        message = await self.receive()
        while message.get("type") != kind:
            message = await self.receive()
        return message

    async def expect_route(self) -> None:
        route = await self.receive()
        if route.get("type") != "route":
            raise RuntimeError(f"the SFU worker refused the join: {route}")

    async def close(self) -> None:
        if self.socket is not None:
            await self.socket.close()


async def drain(peer: TongkeSignaling) -> None:
    while True:
        await peer.receive()


Histograms = dict[str, dict[float, float]]  # series (name and labels) -> bucket bound -> count
LOOP_LAG = "tongke_sfu_loop_lag_seconds"
LOOP_LAG_OWN = "tongke_sfu_loop_lag_own_seconds"
GC_PAUSE = "tongke_sfu_gc_pause_seconds"


async def runtime_snapshot(url: str) -> Histograms:
    """The worker's loop-lag and GC-pause histograms (``streaming.runtime``) as it sees them."""
    import httpx
    from prometheus_client.parser import text_string_to_metric_families

    async with httpx.AsyncClient() as client:
        text = (await client.get(f"{url}/metrics", timeout=5)).text
    histograms: Histograms = {}
    for family in text_string_to_metric_families(text):
        if family.name not in (LOOP_LAG, LOOP_LAG_OWN, GC_PAUSE):
            continue
        for sample in family.samples:
            if sample.name.endswith("_bucket"):
                series = family.name + "".join(
                    f":{v}" for k, v in sorted(sample.labels.items()) if k != "le"
                )
                histograms.setdefault(series, {})[float(sample.labels["le"])] = sample.value
    return histograms


def _bucket_bound(buckets: dict[float, float], share: float) -> float | None:
    """The smallest bucket bound that holds ``share`` of the observations, in ms."""
    total = buckets.get(math.inf, 0.0)
    if total <= 0:
        return None
    for bound in sorted(buckets):
        if buckets[bound] >= share * total:
            return round(bound * 1000, 1) if bound != math.inf else None
    return None


def runtime_figures(before: Histograms, after: Histograms) -> dict[str, Any]:
    """What happened to the worker's event loop between two snapshots."""

    def delta(series: str) -> dict[float, float]:
        old = before.get(series, {})
        return {le: count - old.get(le, 0.0) for le, count in after.get(series, {}).items()}

    pauses: dict[float, float] = {}
    collections = [0, 0, 0]
    for generation in range(3):
        counts = delta(f"{GC_PAUSE}:{generation}")
        collections[generation] = int(counts.get(math.inf, 0))
        for le, count in counts.items():
            pauses[le] = pauses.get(le, 0.0) + count
    return {
        "sfu_loop_lag_ms_p99": _bucket_bound(delta(LOOP_LAG), 0.99),
        "sfu_loop_lag_own_ms_p99": _bucket_bound(delta(LOOP_LAG_OWN), 0.99),
        "sfu_gc_pause_ms_max": _bucket_bound(pauses, 1.0),
        "sfu_gc_collections": sum(collections),
        "sfu_gc_full_collections": collections[2],
    }


@asynccontextmanager
async def tongke_sfu(
    work_dir: Path, settings: dict[str, str] | None = None, source: Path | None = None
) -> AsyncIterator[RoomOpener]:
    """One `tongke sfu` worker for every run (from ``source``, see ``sfu_worker``); a fresh
    room per run, published by the classroom bot exactly as a lead classroom publishes."""
    with sfu_worker(work_dir, settings, source) as worker:

        async def open_room(resolution: str, publisher_mode: str) -> BenchRoom:
            from streaming.bots import ClassroomBot
            from streaming.sfu.identity import ParticipantIdentity

            room = f"bench-{resolution}-{secrets.token_hex(3)}"
            width, height = (int(x) for x in resolution.split("x"))
            bot = ClassroomBot(
                ParticipantIdentity("lead", "主讲教室", "lead", room, campus="主讲教室"),
                width=width,
                height=height,
                fps=FRAME_RATES[resolution],
                camera=camera_track(publisher_mode),
            )
            peer = TongkeSignaling(worker.url, worker.worker_id, worker.secret, bot.identity)
            await peer.connect()
            await peer.expect_route()
            task = asyncio.ensure_future(bot.run(peer.send, peer.receive))

            async def close() -> None:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
                await bot.close()
                await peer.close()

            publisher = Publisher(None, "payload", close)
            deadline = time.monotonic() + CONNECT_TIMEOUT_S
            while not bot.connected.is_set():
                if time.monotonic() > deadline or task.done():
                    await close()
                    raise RuntimeError(f"the publisher did not connect: {bot.errors}")
                if bot.pc is not None and publisher.pc is None:
                    publisher.pc = bot.pc
                    publisher.watch()
                await asyncio.sleep(0.005)
            await set_bitrate(bot.pc, BITRATES[resolution])
            target = {
                "sfu": "tongke",
                "key": "payload",
                "url": worker.url,
                "worker_id": worker.worker_id,
                "secret": worker.secret,
                "room": room,
            }
            return BenchRoom(
                "tongke",
                worker.pid,
                publisher,
                target,
                close,
                runtime_snapshot=lambda: runtime_snapshot(worker.url),
                runtime_figures=runtime_figures,
            )

        yield open_room


async def subscribe(target: dict[str, Any], index: int, counts: SubscriberCounts) -> Closer:
    """Join the tongke worker's room as an inspector, through a signed ticket."""
    from aiortc import RTCSessionDescription

    from streaming.bench_subscribers import recvonly_pc
    from streaming.sfu.identity import ParticipantIdentity

    room = target["room"]
    peer = TongkeSignaling(
        target["url"],
        target["worker_id"],
        target["secret"],
        ParticipantIdentity(f"viewer-{index}", f"viewer {index}", "inspector", room),
    )
    await peer.connect()
    await peer.expect_route()
    await peer.send({"v": 1, "type": "join", "room": room})
    joined = await peer.receive_type("joined")
    pc = recvonly_pc(counts, [line["kind"] for line in joined["media"]])
    await pc.setLocalDescription(await pc.createOffer())
    await peer.send({"v": 1, "type": "offer", "sdp": pc.localDescription.sdp})
    answer = await peer.receive_type("answer")
    await pc.setRemoteDescription(RTCSessionDescription(answer["sdp"], "answer"))
    counts.answered_at = time.monotonic()
    draining = asyncio.ensure_future(drain(peer))

    async def close() -> None:
        draining.cancel()
        await asyncio.gather(draining, return_exceptions=True)
        await pc.close()
        await peer.close()

    return close
