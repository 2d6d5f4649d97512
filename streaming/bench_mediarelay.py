"""The re-encoding baseline of `tongke bench sfu`: aiortc's ``MediaRelay`` in its own process.

``python -m streaming.bench_mediarelay --port P --bitrate B`` serves one room over a
WebSocket on 127.0.0.1: the first message of a connection is ``{"role": "publish" |
"subscribe", "sdp": offer}`` and the reply ``{"sdp": answer}``; closing the socket leaves.
The publisher's tracks are decoded once; every subscriber gets ``MediaRelay.subscribe()``
proxies, each encoded by its own sender, which is how aiortc serves several viewers.

Two things keep the figures comparable with the forwarders:

- each subscriber's encoder is set to the publisher's bitrate (aiortc starts at 500 kbit/s
  and the benchmark subscribers send no REMB);
- the relay's outgoing RTP timestamps equal the publisher's (the decoded frames carry the
  publisher's timestamps again and the senders' random timestamp origin is zero), so the
  bench measures the added delay of each video frame as it does for the forwarders.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aiortc import RTCRtpReceiver
from aiortc.mediastreams import MediaStreamTrack

from streaming.bench import (
    BITRATES,
    CONNECT_TIMEOUT_S,
    BenchRoom,
    Closer,
    RoomOpener,
    free_port,
    publish_stream,
    set_bitrate,
    stop_processes,
)

if TYPE_CHECKING:
    from streaming.bench_subscribers import SubscriberCounts

RELAY_FRAME_DROPPING = True  # a live relay drops stale frames rather than queue them


def offer_bundle_configuration() -> Any:
    from aiortc import RTCBundlePolicy, RTCConfiguration

    return RTCConfiguration(iceServers=[], bundlePolicy=RTCBundlePolicy.MAX_BUNDLE)


async def offer_to_relay(url: str, role: str, sdp: str) -> tuple[str, Any]:
    """Send an offer to the relay server; returns the answer and the open socket (close it
    to leave)."""
    from websockets.asyncio.client import connect

    socket = await connect(url, max_size=2**20)
    await socket.send(json.dumps({"role": role, "sdp": sdp}))
    reply = json.loads(await socket.recv())
    if "sdp" not in reply:
        await socket.close()
        raise RuntimeError(f"the MediaRelay server refused the {role}: {reply}")
    return str(reply["sdp"]), socket


def _zero_timestamp_origin() -> None:
    """aiortc's sender adds a random 32-bit origin to every RTP timestamp; the relay's
    outgoing timestamps must equal the publisher's for the delay measurement."""
    import aiortc.rtcrtpsender as rtcrtpsender

    random32 = rtcrtpsender.random32  # type: ignore[attr-defined]

    def origin_or_random() -> int:
        caller = sys._getframe(1).f_code.co_name
        return 0 if caller == "_run_rtp" else random32()

    rtcrtpsender.random32 = origin_or_random  # type: ignore[attr-defined]


class PublisherTimestamps(MediaStreamTrack):
    """The publisher's decoded video with its RTP timestamps put back (aiortc's receiver
    rebases them to start at zero)."""

    kind = "video"

    def __init__(self, source: MediaStreamTrack, receiver: RTCRtpReceiver) -> None:
        super().__init__()
        self.source = source
        self.mapper = receiver._RTCRtpReceiver__timestamp_mapper  # type: ignore[attr-defined]

    async def recv(self) -> Any:
        frame = await self.source.recv()
        frame.pts = (frame.pts or 0) + (self.mapper._origin or 0)
        return frame


class RelayRoom:
    """One publisher, any number of subscribers, all through one ``MediaRelay``."""

    def __init__(self, bitrate: int) -> None:
        from aiortc.contrib.media import MediaRelay

        self.bitrate = bitrate
        self.relay = MediaRelay()
        self.sources: dict[str, Any] = {}
        self.ready = asyncio.Event()
        self._tasks: list[asyncio.Future[None]] = []

    async def publish(self, sdp: str) -> tuple[str, Any]:
        from aiortc import RTCPeerConnection, RTCSessionDescription

        pc = RTCPeerConnection(offer_bundle_configuration())

        @pc.on("track")
        def on_track(track: Any) -> None:
            source = track
            if track.kind == "video":
                receiver = next(t.receiver for t in pc.getTransceivers() if t.kind == "video")
                source = PublisherTimestamps(track, receiver)
            self.sources[track.kind] = source
            # Decode whether or not anyone watches, so the no-subscriber baseline holds the
            # decode and a subscriber adds its encoder only.
            self._tasks.append(asyncio.ensure_future(_drain(self.relay.subscribe(source, False))))
            if len(self.sources) == 2:
                self.ready.set()

        await pc.setRemoteDescription(RTCSessionDescription(sdp, "offer"))
        await pc.setLocalDescription(await pc.createAnswer())
        return pc.localDescription.sdp, pc

    async def subscribe(self, sdp: str) -> tuple[str, Any]:
        from aiortc import RTCPeerConnection, RTCSessionDescription

        await asyncio.wait_for(self.ready.wait(), 30)
        pc = RTCPeerConnection(offer_bundle_configuration())
        await pc.setRemoteDescription(RTCSessionDescription(sdp, "offer"))
        for kind in [t.kind for t in pc.getTransceivers()]:
            pc.addTrack(self.relay.subscribe(self.sources[kind], buffered=not RELAY_FRAME_DROPPING))
        await pc.setLocalDescription(await pc.createAnswer())
        self._tasks.append(asyncio.ensure_future(set_bitrate(pc, self.bitrate)))
        return pc.localDescription.sdp, pc

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


async def _drain(track: Any) -> None:
    from aiortc.mediastreams import MediaStreamError

    try:
        while True:
            await track.recv()
    except MediaStreamError:
        return


# -- the bench's side: a server per run, its publisher and subscribers ----------------------


@asynccontextmanager
async def mediarelay_sfu(work_dir: Path) -> AsyncIterator[RoomOpener]:
    """A fresh MediaRelay server process per run (it hosts one publisher)."""

    async def open_room(resolution: str, publisher_mode: str) -> BenchRoom:
        port = free_port()
        log_file = (work_dir / "mediarelay.log").open("ab")
        server = subprocess.Popen(
            [sys.executable, "-m", "streaming.bench_mediarelay", "--port", str(port),
             "--bitrate", str(BITRATES[resolution])],
            stdout=subprocess.PIPE,
            stderr=log_file,
        )  # fmt: skip
        sockets: list[Any] = []

        async def close() -> None:
            for open_socket in sockets:
                await open_socket.close()
            stop_processes(server)
            log_file.close()

        try:
            assert server.stdout is not None
            ready = await asyncio.wait_for(
                asyncio.to_thread(server.stdout.readline), CONNECT_TIMEOUT_S
            )
            if ready.strip() != b"ready":
                raise RuntimeError("the MediaRelay server did not start; see mediarelay.log")
            url = f"ws://127.0.0.1:{port}"

            async def negotiate(offer: str) -> str:
                answer, open_socket = await offer_to_relay(url, "publish", offer)
                sockets.append(open_socket)
                return answer

            publisher = await publish_stream(resolution, "timestamp", negotiate, publisher_mode)
        except BaseException:
            await close()
            raise

        async def close_all() -> None:
            await publisher.close()
            await close()

        target = {"sfu": "mediarelay", "key": "timestamp", "url": url}
        return BenchRoom("mediarelay", server.pid, publisher, target, close_all)

    yield open_room


async def subscribe(target: dict[str, Any], index: int, counts: SubscriberCounts) -> Closer:
    """Ask the MediaRelay server for one re-encoded copy of the publisher's audio and video."""
    from aiortc import RTCSessionDescription

    from streaming.bench_subscribers import recvonly_pc

    pc = recvonly_pc(counts, ["audio", "video"])
    await pc.setLocalDescription(await pc.createOffer())
    answer, socket = await offer_to_relay(target["url"], "subscribe", pc.localDescription.sdp)
    await pc.setRemoteDescription(RTCSessionDescription(answer, "answer"))

    async def close() -> None:
        await pc.close()
        await socket.close()

    return close


# -- the server process ---------------------------------------------------------------------


async def serve(port: int, bitrate: int) -> None:
    from aiortc.codecs import vpx
    from websockets.asyncio.server import ServerConnection, serve

    vpx.MAX_BITRATE = max(vpx.MAX_BITRATE, bitrate)
    _zero_timestamp_origin()
    room = RelayRoom(bitrate)

    async def handle(socket: ServerConnection) -> None:
        request = json.loads(await socket.recv())
        join = room.publish if request.get("role") == "publish" else room.subscribe
        try:
            answer, pc = await join(str(request["sdp"]))
        except Exception as exc:
            await socket.send(json.dumps({"error": f"{type(exc).__name__}: {exc}"}))
            return
        try:
            await socket.send(json.dumps({"sdp": answer}))
            await socket.wait_closed()
        finally:
            await pc.close()

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    async with serve(handle, "127.0.0.1", port, max_size=2**20):
        sys.stdout.write("ready\n")
        sys.stdout.flush()
        await stop.wait()
    await room.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--bitrate", type=int, required=True)
    arguments = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    asyncio.run(serve(arguments.port, arguments.bitrate))


if __name__ == "__main__":
    main()
