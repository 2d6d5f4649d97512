"""A process of benchmark subscribers: ``python -m streaming.bench_subscribers``.

One Python process cannot receive 64 SRTP streams and keep up (the first tongke run showed
0.61 of the packets delivered at 64 subscribers because the bench itself was saturated), so
`tongke bench sfu` spreads its subscribers over several of these. Each subscriber joins one
SFU (tongke, aiortc's MediaRelay server or Janus videoroom), counts raw RTP without
decoding, and notes when the first packet of each video key arrived (see
``streaming.bench.packet_key``).

The orchestrator speaks JSON lines on stdin/stdout:

- ``{"join": {...target...}, "indices": [...]}`` →
  ``{"joined": [[first_frame_ms | null, connected_ms | null, answered_ms | null], ...]}``
- ``{"window": [t0, t1]}`` (``time.monotonic()``, the same clock in every process): count only
  what arrives in that window, so no start/stop message races the media
- ``{"report": {key: sent_at}}`` → ``{"packets": [...], "frames": [...], "delays_ms": [...]}``
- end of stdin: leave and exit.

It says ``{"ready": true}`` once its imports are done.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import logging
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from streaming.bench import CONNECT_TIMEOUT_S, Closer, packet_key


@dataclass
class SubscriberCounts:
    """What one subscriber received; times are ``time.monotonic()``."""

    key_kind: str
    joined_at: float = 0.0
    answered_at: float | None = None  # the SFU's answer applied (where the bench sets it)
    connected_at: float | None = None  # ICE and DTLS done (peers made by ``recvonly_pc``)
    first_video_at: float | None = None
    window: tuple[float, float] = (0.0, 0.0)
    packets: int = 0
    frames: int = 0  # audio packets and video frames (RTP marker)
    arrivals: dict[str, float] = field(default_factory=dict)

    def on_rtp(self, kind: str) -> Callable[[Any, int], None]:
        by_timestamp = self.key_kind == "timestamp"

        def on_rtp(packet: Any, arrival_time_ms: int) -> None:
            now = time.monotonic()
            start, end = self.window
            inside = start <= now < end
            if inside:
                self.packets += 1
                self.frames += packet.marker if kind == "video" else 1
            if kind != "video" or not packet.payload:
                return
            if self.first_video_at is None:
                self.first_video_at = now
            if inside:
                key = str(packet.timestamp) if by_timestamp else packet_key(packet.payload)
                self.arrivals.setdefault(key, now)

        return on_rtp


def recvonly_pc(counts: SubscriberCounts, kinds: list[str]) -> Any:
    from aiortc import RTCBundlePolicy, RTCConfiguration, RTCPeerConnection

    from streaming.sfu.aiortc_hooks import PublisherReceiver

    pc = RTCPeerConnection(RTCConfiguration(iceServers=[], bundlePolicy=RTCBundlePolicy.MAX_BUNDLE))
    for kind in kinds:
        transceiver = pc.addTransceiver(kind, direction="recvonly")
        PublisherReceiver(transceiver.receiver, counts.on_rtp(kind))

    @pc.on("connectionstatechange")
    def on_state() -> None:
        if pc.connectionState == "connected" and counts.connected_at is None:
            counts.connected_at = time.monotonic()

    return pc


def _ms_since(start: float, then: float | None) -> float | None:
    return None if then is None else round((then - start) * 1000, 1)


def subscribe_function(
    sfu: str,
) -> Callable[[dict[str, Any], int, SubscriberCounts], Awaitable[Closer]]:
    """``subscribe(target, index, counts)`` of ``streaming.bench_<sfu>``."""
    module = importlib.import_module(f"streaming.bench_{sfu}")
    subscribe: Callable[[dict[str, Any], int, SubscriberCounts], Awaitable[Closer]]
    subscribe = module.subscribe
    return subscribe


class Pool:
    """The subscribers of one process."""

    def __init__(self) -> None:
        self.subscribers: list[SubscriberCounts] = []
        self.closers: list[Closer] = []

    async def join(self, target: dict[str, Any], indices: list[int]) -> list[list[float | None]]:
        """Join every subscriber; per subscriber, ms from joining to its first video packet,
        to its connection being up and to the SFU's answer being applied."""
        subscribe = subscribe_function(target["sfu"])
        for index in indices:
            counts = SubscriberCounts(key_kind=target["key"], joined_at=time.monotonic())
            self.subscribers.append(counts)
            self.closers.append(await subscribe(target, index, counts))
        deadline = time.monotonic() + CONNECT_TIMEOUT_S
        while (
            any(s.first_video_at is None for s in self.subscribers) and time.monotonic() < deadline
        ):
            await asyncio.sleep(0.05)
        joined = self.subscribers[-len(indices) :] if indices else []
        return [
            [
                _ms_since(s.joined_at, s.first_video_at),
                _ms_since(s.joined_at, s.connected_at),
                _ms_since(s.joined_at, s.answered_at),
            ]
            for s in joined
        ]

    def set_window(self, start: float, end: float) -> None:
        for counts in self.subscribers:
            counts.window = (start, end)
            counts.packets = counts.frames = 0
            counts.arrivals = {}

    def report(self, sent_at: dict[str, float]) -> dict[str, list[Any]]:
        delays = [
            round((arrived - sent_at[key]) * 1000, 3)
            for counts in self.subscribers
            for key, arrived in counts.arrivals.items()
            if key in sent_at
        ]
        return {
            "packets": [s.packets for s in self.subscribers],
            "frames": [s.frames for s in self.subscribers],
            "delays_ms": delays,
        }

    async def close(self) -> None:
        await asyncio.gather(*(close() for close in self.closers), return_exceptions=True)


async def serve_orchestrator() -> None:
    """Follow the orchestrator's commands on stdin until it closes it."""
    # imported before "ready", so no import overlaps a measured window
    import streaming.bench
    import streaming.sfu.aiortc_hooks  # noqa: F401

    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=2**26)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    pool = Pool()

    def reply(message: dict[str, Any]) -> None:
        sys.stdout.write(json.dumps(message) + "\n")
        sys.stdout.flush()

    reply({"ready": True})

    try:
        while line := await reader.readline():
            command = json.loads(line)
            if "join" in command:
                try:
                    reply({"joined": await pool.join(command["join"], command["indices"])})
                except Exception as exc:  # the orchestrator reports it and stops the run
                    reply({"error": f"{type(exc).__name__}: {exc}"})
            elif "window" in command:
                pool.set_window(*command["window"])
            elif "report" in command:
                reply(pool.report(command["report"]))
    finally:
        await pool.close()


def main() -> None:
    logging.basicConfig(level=logging.ERROR)
    asyncio.run(serve_orchestrator())


if __name__ == "__main__":
    main()
