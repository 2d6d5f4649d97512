"""Janus videoroom as the C reference of `tongke bench sfu` (Debian package ``janus``).

The bench writes its own configuration into a temporary folder: only the videoroom plugin
and the HTTP transport (on 127.0.0.1), no event handlers or loggers, ``nice_debug`` off,
and ICE on one non-loopback address — Janus ignores loopback, so inside the bench's private
network namespace that is the veth pair the CLI creates (``streaming.bench.JANUS_INTERFACE``),
and every aiortc peer gathers only that address. Publisher and subscribers are aiortc peers
speaking the videoroom API over HTTP (long-polled events).
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import shutil
import signal
import subprocess
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from streaming.bench import (
    BITRATES,
    JANUS_ADDRESS,
    JANUS_INTERFACE,
    BenchRoom,
    Closer,
    RoomOpener,
    free_port,
    publish_stream,
)

if TYPE_CHECKING:
    from streaming.bench_subscribers import SubscriberCounts

CONNECT_TIMEOUT_S = 30.0
PLUGINS = ("libjanus_videoroom.so",)
TRANSPORTS = ("libjanus_http.so",)
LIBRARY_DIRS = (Path("/usr/lib/x86_64-linux-gnu/janus"), Path("/usr/lib/janus"))


def janus_missing() -> str | None:
    """Why Janus cannot run here, or None."""
    if shutil.which("janus") is None:
        return "janus is not installed (apt-get install janus)"
    if _library_dir() is None:
        return "the janus plugins folder was not found"
    return None


def _library_dir() -> Path | None:
    return next((d for d in LIBRARY_DIRS if (d / "plugins" / PLUGINS[0]).exists()), None)


def _others(folder: Path, keep: tuple[str, ...]) -> str:
    return ",".join(sorted(p.name for p in folder.glob("*.so") if p.name not in keep))


def write_config(folder: Path, *, http_port: int, address: str, interface: str) -> Path:
    """janus.jcfg and the two plugin/transport configs; returns janus.jcfg."""
    library = _library_dir()
    assert library is not None, janus_missing()
    (folder / "janus.jcfg").write_text(
        f"""general: {{
	configs_folder = "{folder}"
	plugins_folder = "{library / "plugins"}"
	transports_folder = "{library / "transports"}"
	events_folder = "{library / "events"}"
	loggers_folder = "{library / "loggers"}"
	debug_level = 3
	session_timeout = 0
	interface = "{address}"
}}
media: {{
}}
nat: {{
	nice_debug = false
	full_trickle = false
	ice_enforce_list = "{interface}"
}}
plugins: {{
	disable = "{_others(library / "plugins", PLUGINS)}"
}}
transports: {{
	disable = "{_others(library / "transports", TRANSPORTS)}"
}}
loggers: {{
	disable = "{_others(library / "loggers", ())}"
}}
events: {{
	broadcast = false
}}
"""
    )
    (folder / "janus.transport.http.jcfg").write_text(
        f"""general: {{
	json = "plain"
	base_path = "/janus"
	http = true
	port = {http_port}
	ip = "127.0.0.1"
	https = false
}}
admin: {{
	admin_http = false
	admin_https = false
}}
"""
    )
    (folder / "janus.plugin.videoroom.jcfg").write_text("general: {\n}\n")
    return folder / "janus.jcfg"


@dataclass
class JanusServer:
    url: str
    pid: int


@contextmanager
def janus_server(
    work_dir: Path, *, http_port: int, address: str, interface: str
) -> Iterator[JanusServer]:
    """Janus with the bench's configuration, stopped on exit."""
    import httpx

    folder = work_dir / "janus"
    folder.mkdir(exist_ok=True)
    config = write_config(folder, http_port=http_port, address=address, interface=interface)
    log = (work_dir / "janus.log").open("wb")
    process = subprocess.Popen(
        ["janus", "--config", str(config), "--configs-folder", str(folder), "--disable-colors"],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{http_port}/janus"
    try:
        deadline = time.monotonic() + CONNECT_TIMEOUT_S
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"janus exited; see {work_dir / 'janus.log'}")
            try:
                if httpx.get(url + "/info", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("janus did not answer on its HTTP API")
            time.sleep(0.2)
        yield JanusServer(url, process.pid)
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
        log.close()


class JanusError(RuntimeError):
    pass


class JanusSession:
    """One Janus session over the HTTP API; events are long-polled and matched to the
    request that caused them by transaction."""

    def __init__(self, url: str, client: Any, session_id: int) -> None:
        self.url = url
        self.client = client
        self.session_id = session_id
        self._waiting: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._poller = asyncio.ensure_future(self._poll())

    @classmethod
    async def create(cls, url: str) -> JanusSession:
        import httpx

        client = httpx.AsyncClient(timeout=60)
        reply = await _post(client, url, {"janus": "create"})
        return cls(url, client, int(reply["data"]["id"]))

    async def attach(self) -> int:
        reply = await _post(
            self.client,
            f"{self.url}/{self.session_id}",
            {"janus": "attach", "plugin": "janus.plugin.videoroom"},
        )
        return int(reply["data"]["id"])

    async def request(self, handle: int, body: dict[str, Any]) -> dict[str, Any]:
        """A synchronous plugin request (e.g. ``create``): its plugin data."""
        reply = await _post(
            self.client,
            f"{self.url}/{self.session_id}/{handle}",
            {"janus": "message", "body": body},
        )
        data: dict[str, Any] = reply["plugindata"]["data"]
        if "error" in data:
            raise JanusError(str(data["error"]))
        return data

    async def message(
        self, handle: int, body: dict[str, Any], jsep: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """An asynchronous plugin request: the event that answers it (with its jsep)."""
        transaction = secrets.token_hex(8)
        waiter: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._waiting[transaction] = waiter
        payload: dict[str, Any] = {"janus": "message", "body": body, "transaction": transaction}
        if jsep is not None:
            payload["jsep"] = jsep
        try:
            await _post(self.client, f"{self.url}/{self.session_id}/{handle}", payload)
            event = await asyncio.wait_for(waiter, CONNECT_TIMEOUT_S)
        finally:
            self._waiting.pop(transaction, None)
        data = event.get("plugindata", {}).get("data", {})
        if "error" in data:
            raise JanusError(str(data["error"]))
        return event

    async def _poll(self) -> None:
        while True:
            response = await self.client.get(f"{self.url}/{self.session_id}", params={"maxev": 10})
            events: Any = response.json()
            for event in events if isinstance(events, list) else [events]:
                waiter = self._waiting.get(event.get("transaction", ""))
                if waiter is not None and not waiter.done() and event.get("janus") == "event":
                    waiter.set_result(event)

    async def close(self) -> None:
        self._poller.cancel()
        await asyncio.gather(self._poller, return_exceptions=True)
        with contextlib.suppress(Exception):  # Janus may be gone already at the end of a run
            await _post(self.client, f"{self.url}/{self.session_id}", {"janus": "destroy"})
        await self.client.aclose()


async def _post(client: Any, url: str, payload: dict[str, Any]) -> dict[str, Any]:
    payload = {"transaction": secrets.token_hex(8), **payload}
    reply: dict[str, Any] = (await client.post(url, json=payload)).json()
    if reply.get("janus") == "error":
        raise JanusError(str(reply.get("error")))
    return reply


async def create_room(session: JanusSession, *, room: int, bitrate: int) -> None:
    """A videoroom for one VP8 + Opus publisher; its REMB cap is the publisher's bitrate."""
    handle = await session.attach()
    await session.request(
        handle,
        {
            "request": "create",
            "room": room,
            "publishers": 1,
            "videocodec": "vp8",
            "audiocodec": "opus",
            "bitrate": bitrate,
            "notify_joining": False,
        },
    )


async def publish(session: JanusSession, *, room: int, offer_sdp: str) -> tuple[int, str]:
    """Join as the room's publisher and publish; returns the feed id and Janus's answer."""
    handle = await session.attach()
    joined = await session.message(
        handle, {"request": "join", "room": room, "ptype": "publisher", "display": "lead"}
    )
    feed = int(joined["plugindata"]["data"]["id"])
    configured = await session.message(
        handle,
        {"request": "publish", "audio": True, "video": True},
        {"type": "offer", "sdp": offer_sdp, "trickle": False},
    )
    return feed, str(configured["jsep"]["sdp"])


async def subscribe_to_feed(
    session: JanusSession,
    *,
    room: int,
    feed: int,
    attach_counters: Callable[[str, Any], object],
) -> Any:
    """An aiortc peer subscribed to ``feed``: Janus offers, the peer answers."""
    from aiortc import RTCBundlePolicy, RTCConfiguration, RTCPeerConnection, RTCSessionDescription

    handle = await session.attach()
    attached = await session.message(
        handle,
        {"request": "join", "room": room, "ptype": "subscriber", "streams": [{"feed": feed}]},
    )
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[], bundlePolicy=RTCBundlePolicy.MAX_BUNDLE))
    await pc.setRemoteDescription(RTCSessionDescription(attached["jsep"]["sdp"], "offer"))
    for transceiver in pc.getTransceivers():
        attach_counters(transceiver.kind, transceiver.receiver)
    await pc.setLocalDescription(await pc.createAnswer())
    await session.message(
        handle,
        {"request": "start"},
        {"type": "answer", "sdp": pc.localDescription.sdp, "trickle": False},
    )
    return pc


# -- the bench's side ------------------------------------------------------------------------


@asynccontextmanager
async def janus_sfu(work_dir: Path) -> AsyncIterator[RoomOpener]:
    """One Janus for every run; a fresh videoroom per run."""
    with janus_server(
        work_dir, http_port=free_port(), address=JANUS_ADDRESS, interface=JANUS_INTERFACE
    ) as janus:

        async def open_room(resolution: str, publisher_mode: str) -> BenchRoom:
            room = secrets.randbelow(2**31)
            session = await JanusSession.create(janus.url)
            feed: list[int] = []
            try:
                await create_room(session, room=room, bitrate=BITRATES[resolution])

                async def negotiate(offer: str) -> str:
                    feed_id, answer = await publish(session, room=room, offer_sdp=offer)
                    feed.append(feed_id)
                    return answer

                publisher = await publish_stream(resolution, "payload", negotiate, publisher_mode)
            except BaseException:
                await session.close()
                raise

            async def close() -> None:
                await publisher.close()
                await session.close()

            target = {
                "sfu": "janus",
                "key": "payload",
                "url": janus.url,
                "room": room,
                "feed": feed[0],  # the id Janus gave the publisher
            }
            return BenchRoom("janus", janus.pid, publisher, target, close)

        yield open_room


async def subscribe(target: dict[str, Any], index: int, counts: SubscriberCounts) -> Closer:
    """Join the Janus videoroom as a subscriber of the publisher's feed (Janus offers)."""
    from streaming.sfu.aiortc_hooks import PublisherReceiver

    session = await JanusSession.create(target["url"])
    try:
        pc = await subscribe_to_feed(
            session,
            room=target["room"],
            feed=target["feed"],
            attach_counters=lambda kind, receiver: PublisherReceiver(receiver, counts.on_rtp(kind)),
        )
    except BaseException:
        await session.close()
        raise

    async def close() -> None:
        await pc.close()
        await session.close()

    return close
