"""`tongke bench sfu`: the tongke SFU beside aiortc's MediaRelay and Janus videoroom.

Each SFU runs in its own process and is fed the same stream — a publisher in this process
sending the classroom bot's moving picture and tone (VP8 + Opus, the resolution's bitrate
held fixed: REMB from the SFU is ignored so no SFU gets a different stream; by default the
picture is encoded once and sent in a loop, ``LoopedEncodedTrack``, so the publisher does
not take the SFU's cores: ``PUBLISHER_MODES``) — and N
subscribers that count raw RTP and never decode. The subscribers live in several processes
(``streaming.bench_subscribers``, at most ``SUBSCRIBERS_PER_PROCESS`` each) so that receiving
does not saturate the bench; the SFU's CPU is read from ``/proc``.

- ``tongke``: redis-server and one `tongke sfu` worker; subscribers join as inspectors through
  signed tickets, exactly as the web process relays joins.
- ``mediarelay``: ``streaming.bench_mediarelay``, aiortc decoding once and re-encoding per
  subscriber (a fresh process per run, its encoders at the publisher's bitrate).
- ``janus``: Janus videoroom with the bench's own configuration (``streaming.bench_janus``).

Per run (sfu × resolution × subscribers), over a window of ``seconds``:

- ``cpu_percent``: the SFU process's CPU, % of one core;
- ``cpu_percent_per_subscriber``: (that − the same publisher with no subscriber) / N;
- ``us_per_packet``: all of the SFU's CPU (its threads' run time, ns) / packets the
  subscribers received
  (``us_per_packet_marginal`` counts only the CPU above the no-subscriber baseline);
- ``delay_ms_p50`` / ``delay_ms_p99``: from the publisher handing a video packet to its
  transport to a subscriber receiving it (the SFU's added delay plus two local hops and
  SRTP). For the relay, which re-packetizes, per video frame: first packet out to first
  packet in, matched by RTP timestamp;
- ``first_frame_ms``: a subscriber's first signaling message to its first video packet,
  median over subscribers (``first_frame_ms_max`` the slowest); ``connected_ms``: the same
  to its ICE and DTLS being up (not for Janus's subscribers); ``answer_ms``: the same to the
  SFU's SDP answer applied (tongke: signaling and the SFU's side of negotiation);
- ``late_join_first_frame_ms`` (``_connected_ms``, ``_answer_ms``): one more subscriber
  joining after the window, into the room that carries the N (a classroom joining a running
  lesson) rather than N joining at once;
- ``sfu_loop_lag_ms_p99``, ``sfu_gc_pause_ms_max``, ``sfu_gc_collections``,
  ``sfu_gc_full_collections`` (tongke only, from the worker's ``/metrics`` over the window):
  how late the SFU's event loop ran a timer (bucket bound), its longest garbage-collection
  pause (bucket bound), its collections and the full ones among them, so a delay tail can be
  told apart from the subscribers' own stalls; ``sfu_loop_lag_own_ms_p99`` the same lag less
  the time the loop waited for a CPU;
- ``sfu_cpu_wait_percent``: the share of the window the SFU's main thread was runnable but
  waiting for a CPU (other processes on the machine; Linux ``schedstat``);
- ``memory_mib_per_subscriber``: the SFU process's resident memory once the subscribers have
  joined and warmed up, minus before they joined, / N (their downlinks, transports and any
  per-subscriber cache; the publisher's packet caches are in the "before");
- ``delivered_ratio``: packets the subscribers received / packets they should have (the
  publisher's packets in the window × N). A re-encoder sends other packets than it receives,
  so for ``mediarelay`` it counts media frames (video frames by RTP marker, audio packets):
  ``delivered_unit`` says which; ``delivered_frames_ratio`` is given for every SFU.

``soak`` keeps one room with N subscribers running for minutes and samples the SFU's
resident memory every minute: the growth is what a lesson-long run would leak.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeGuard, TypeVar

from common.logging import get_logger
from streaming.runtime import runqueue_wait_s

log = get_logger(__name__)
T = TypeVar("T")

WARM_UP_S = 3.0
BASELINE_S = 5.0
CONNECT_TIMEOUT_S = 30.0
SUBSCRIBERS_PER_PROCESS = 8
SENT_AT_KEPT = 30_000  # video packets whose send time is kept (minutes of video)
BITRATES = {"640x360": 1_000_000, "1920x1080": 2_500_000}
FRAME_RATES = {"640x360": 30, "1920x1080": 25}
SFUS = ("tongke", "mediarelay", "janus")
# The veth the CLI creates in its private network namespace: Janus ignores loopback.
JANUS_INTERFACE = "bench0"
JANUS_ADDRESS = "10.99.0.1"
NETNS_SETUP = (
    "ip link set lo up && "
    f"{{ ip link add {JANUS_INTERFACE} type veth peer name {JANUS_INTERFACE}p && "
    f"ip addr add {JANUS_ADDRESS}/24 dev {JANUS_INTERFACE} && "
    f"ip link set {JANUS_INTERFACE} up && ip link set {JANUS_INTERFACE}p up || true; }}"
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _cpu_seconds(pid: int) -> float:
    """User + system time of the whole process (all its threads), to the nanosecond.

    ``/proc/PID/stat`` counts in 10 ms ticks: over an 8 s window of a worker at 2-3 % of a
    core that is 20 ticks, and a tick more or less at either end moved ``us_per_packet`` by
    5-10 % between runs of the same code. The threads' ``schedstat`` run times are exact (a
    thread that ends within the window takes its time with it; the workers' threads live
    as long as they do); the ticks remain the fallback."""
    total_ns = 0
    try:
        for task in Path(f"/proc/{pid}/task").iterdir():
            try:
                total_ns += int((task / "schedstat").read_text().split()[0])
            except (OSError, IndexError, ValueError):
                continue  # a thread that ended meanwhile
    except OSError:
        total_ns = 0
    if total_ns:
        return total_ns / 1e9
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wake_ups(pid: int) -> int:
    """How often the process's main thread has gone to sleep and been woken (its voluntary
    context switches): an event loop's wake-ups."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("voluntary_ctxt_switches:"):
            return int(line.split()[1])
    raise RuntimeError(f"no context switches for process {pid}")


def rss_mib(pid: int) -> float:
    """Resident memory of a process, MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


def packet_key(payload: bytes) -> str:
    """A forwarded packet's identity: forwarders rewrite headers, never the payload (tongke
    renumbers VP8 picture IDs only when it drops temporal layers, which the bench's stream
    does not have). The descriptor's picture ID tells apart the same frame sent again by the
    looped publisher."""
    return (len(payload).to_bytes(2, "big") + payload[:4] + payload[-16:]).hex()


# -- the publisher's video ---------------------------------------------------------------------

# "looped": the classroom bot's picture encoded once and sent in a loop; "live": drawn and
# encoded frame by frame as a classroom does (the bench's publisher then takes 18 % of a core
# at 640x360 and 68 % at 1920x1080 on the 2-core machine, beside the SFU it measures).
PUBLISHER_MODES = ("looped", "live")
LOOP_S = 10.0
_encoded_loops: dict[tuple[str, float], list[bytes]] = {}


def encoded_loop(resolution: str, seconds: float = LOOP_S) -> list[bytes]:
    """The classroom bot's moving picture at ``resolution``, ``seconds`` of it encoded once by
    aiortc's VP8 encoder at the resolution's bitrate (as the live publisher sends it): the
    first frame a keyframe, the others not. Kept for the process's later runs."""
    if (resolution, seconds) not in _encoded_loops:
        from aiortc.codecs import vpx

        from streaming.bots import SyntheticLessonTrack

        width, height = (int(x) for x in resolution.split("x"))
        fps = FRAME_RATES[resolution]
        vpx.MAX_BITRATE = max(vpx.MAX_BITRATE, BITRATES[resolution])
        encoder = vpx.Vp8Encoder()
        encoder.target_bitrate = BITRATES[resolution]
        picture = SyntheticLessonTrack("主讲教室", width=width, height=height, fps=fps)
        frames = []
        for _ in range(round(seconds * fps)):
            payloads, _ = encoder.encode(picture.draw())
            frames.append(b"".join(vpx.vp8_depayload(payload) for payload in payloads))
        _encoded_loops[resolution, seconds] = [frame for frame in frames if frame]
    return _encoded_loops[resolution, seconds]


def camera_track(mode: str) -> Callable[[str, int, int, int], Any]:
    """The publisher's video track maker for ``mode``: ``(label, width, height, fps)`` →
    track (``ClassroomBot(camera=...)``)."""
    if mode not in PUBLISHER_MODES:
        raise ValueError(f"publisher mode must be one of {PUBLISHER_MODES}, not {mode!r}")

    def make(label: str, width: int, height: int, fps: int) -> Any:
        from streaming.bots import LoopedEncodedTrack, SyntheticLessonTrack

        if mode == "live":
            return SyntheticLessonTrack(label, width=width, height=height, fps=fps)
        resolution = f"{width}x{height}"
        if FRAME_RATES.get(resolution) != fps:
            raise ValueError(f"no looped stream for {resolution} at {fps} fps")
        return LoopedEncodedTrack(encoded_loop(resolution), fps)

    return make


def _percentile(values: list[float], share: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(int(share * len(ordered)), len(ordered) - 1)], 2)


# -- the publisher ---------------------------------------------------------------------------


@dataclass
class Publisher:
    """The stream every SFU is fed, counted as it leaves (before SRTP)."""

    pc: Any
    key_kind: str  # "payload" (forwarders) or "timestamp" (the re-encoding relay)
    close: Callable[[], Awaitable[None]]
    window: tuple[float, float] = (0.0, 0.0)
    packets: int = 0
    frames: int = 0
    octets: int = 0

    def __post_init__(self) -> None:
        self.sent_at: dict[str, float] = {}
        self._wrapped: set[int] = set()

    def set_window(self, start: float, end: float) -> None:
        self.window = (start, end)
        self.packets = self.frames = self.octets = 0

    def watch(self) -> None:
        """Count what the peer connection sends and keep its video at the set bitrate."""
        from aiortc.rtp import RTCP_PSFB_APP, RtcpPsfbPacket, RtpPacket, is_rtcp

        for sender in self.pc.getSenders():
            if hasattr(sender.track, "follow_keyframe_requests"):
                sender.track.follow_keyframe_requests(sender)
            if sender.track is not None and sender.track.kind == "video":
                handle_rtcp = sender._handle_rtcp_packet

                async def without_remb(packet: Any, handle: Any = handle_rtcp) -> None:
                    if not (isinstance(packet, RtcpPsfbPacket) and packet.fmt == RTCP_PSFB_APP):
                        await handle(packet)

                sender._handle_rtcp_packet = without_remb
            transport = sender.transport
            if transport is None or id(transport) in self._wrapped:
                continue
            self._wrapped.add(id(transport))
            send_rtp = transport._send_rtp
            video_ssrcs = {
                s._ssrc for s in self.pc.getSenders() if s.track and s.track.kind == "video"
            }
            by_timestamp = self.key_kind == "timestamp"

            async def recording(
                data: bytes,
                send_rtp: Any = send_rtp,
                video_ssrcs: set[int] = video_ssrcs,
                by_timestamp: bool = by_timestamp,
            ) -> None:
                now = time.monotonic()
                start, end = self.window
                if not is_rtcp(data):
                    packet = RtpPacket.parse(data)
                    video = packet.ssrc in video_ssrcs
                    if start <= now < end:
                        self.packets += 1
                        self.octets += len(data)
                        self.frames += packet.marker if video else 1
                    # Kept from before the window too: an overloaded relay delivers late.
                    if video and packet.payload:
                        key = str(packet.timestamp) if by_timestamp else packet_key(packet.payload)
                        self.sent_at.setdefault(key, now)
                        if len(self.sent_at) > SENT_AT_KEPT:
                            del self.sent_at[next(iter(self.sent_at))]
                await send_rtp(data)

            transport._send_rtp = recording


def _codecs(kind: str) -> list[Any]:
    from aiortc import RTCRtpSender

    wanted = "video/vp8" if kind == "video" else "audio/opus"
    return [c for c in RTCRtpSender.getCapabilities(kind).codecs if c.mimeType.lower() == wanted]


async def set_bitrate(pc: Any, bitrate: int) -> None:
    """aiortc starts VP8 at 500 kbit/s: set the resolution's target once the encoder exists."""
    from aiortc.codecs import vpx

    vpx.MAX_BITRATE = max(vpx.MAX_BITRATE, bitrate)  # aiortc caps at 1.5 Mbit/s
    for _ in range(400):
        for sender in pc.getSenders():
            encoder = getattr(sender, "_RTCRtpSender__encoder", None)
            if encoder is not None and hasattr(encoder, "target_bitrate"):
                encoder.target_bitrate = bitrate
                return
        await asyncio.sleep(0.05)


async def publish_stream(
    resolution: str,
    key_kind: str,
    negotiate: Callable[[str], Awaitable[str]],
    publisher_mode: str = "looped",
) -> Publisher:
    """The classroom bot's picture and tone from a plain aiortc peer (for SFUs that are not
    tongke): ``negotiate`` takes the offer and returns the SFU's answer."""
    from aiortc import RTCBundlePolicy, RTCConfiguration, RTCPeerConnection, RTCSessionDescription
    from aiortc.codecs import vpx

    from streaming.bots import ToneTrack

    width, height = (int(x) for x in resolution.split("x"))
    vpx.MAX_BITRATE = max(vpx.MAX_BITRATE, BITRATES[resolution])
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[], bundlePolicy=RTCBundlePolicy.MAX_BUNDLE))
    camera = camera_track(publisher_mode)("主讲教室", width, height, FRAME_RATES[resolution])
    tracks = [ToneTrack(440.0), camera]
    for track in tracks:
        pc.addTransceiver(track, direction="sendonly").setCodecPreferences(_codecs(track.kind))

    async def close() -> None:
        for track in tracks:
            track.stop()
        await pc.close()

    publisher = Publisher(pc, key_kind, close)
    try:
        await pc.setLocalDescription(await pc.createOffer())
        publisher.watch()
        answer = await negotiate(pc.localDescription.sdp)
        await pc.setRemoteDescription(RTCSessionDescription(answer, "answer"))
        deadline = time.monotonic() + CONNECT_TIMEOUT_S
        while pc.connectionState != "connected":
            if time.monotonic() > deadline or pc.connectionState in ("failed", "closed"):
                raise RuntimeError(f"the publisher did not connect ({pc.connectionState})")
            await asyncio.sleep(0.02)
        await set_bitrate(pc, BITRATES[resolution])
    except BaseException:
        await close()
        raise
    return publisher


# -- subscriber processes --------------------------------------------------------------------


class SubscriberProcesses:
    """N subscribers spread over processes of at most ``SUBSCRIBERS_PER_PROCESS``."""

    def __init__(self, processes: list[asyncio.subprocess.Process], log_file: Any) -> None:
        self.processes = processes
        self._log = log_file

    @classmethod
    async def start(cls, count: int, work_dir: Path) -> SubscriberProcesses:
        log_file = (work_dir / "subscribers.log").open("ab")
        processes = [
            await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "streaming.bench_subscribers",
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=log_file,
                limit=2**26,
            )
            for _ in range(math.ceil(count / SUBSCRIBERS_PER_PROCESS))
        ]
        started = cls(processes, log_file)
        for process in processes:  # their imports must not overlap a measured window
            assert process.stdout is not None
            ready = await asyncio.wait_for(process.stdout.readline(), CONNECT_TIMEOUT_S)
            if not ready:
                await started.close()
                raise RuntimeError("a subscriber process did not start; see subscribers.log")
        return started

    async def _ask(self, process: asyncio.subprocess.Process, message: Any) -> dict[str, Any]:
        assert process.stdin is not None and process.stdout is not None
        await self._tell(process, message)
        line = await process.stdout.readline()
        if not line:
            raise RuntimeError("a subscriber process exited; see subscribers.log")
        reply: dict[str, Any] = json.loads(line)
        if "error" in reply:
            raise RuntimeError(f"a subscriber failed to join: {reply['error']}")
        return reply

    @staticmethod
    async def _tell(process: asyncio.subprocess.Process, message: Any) -> None:
        assert process.stdin is not None
        process.stdin.write(json.dumps(message).encode() + b"\n")
        await process.stdin.drain()

    async def join(
        self, target: dict[str, Any], count: int, *, first_index: int = 0
    ) -> list[list[float | None]]:
        """Every subscriber joins (named from ``first_index`` on); their join-to-first-video,
        join-to-connected and join-to-answer times (ms)."""
        end = first_index + count
        shares = [
            list(range(start, min(start + SUBSCRIBERS_PER_PROCESS, end)))
            for start in range(first_index, end, SUBSCRIBERS_PER_PROCESS)
        ]
        replies = await asyncio.gather(
            *(
                self._ask(p, {"join": target, "indices": share})
                for p, share in zip(self.processes, shares, strict=True)
            )
        )
        return [ms for reply in replies for ms in reply["joined"]]

    async def set_window(self, start: float, end: float) -> None:
        await asyncio.gather(*(self._tell(p, {"window": [start, end]}) for p in self.processes))

    async def report(self, sent_at: dict[str, float]) -> tuple[list[int], list[int], list[float]]:
        """Packets and media frames per subscriber, and all the delays (ms)."""
        replies = await asyncio.gather(*(self._ask(p, {"report": sent_at}) for p in self.processes))
        return (
            [n for reply in replies for n in reply["packets"]],
            [n for reply in replies for n in reply["frames"]],
            [d for reply in replies for d in reply["delays_ms"]],
        )

    async def close(self) -> None:
        for process in self.processes:
            if process.stdin is not None:
                process.stdin.close()
        for process in self.processes:
            try:
                await asyncio.wait_for(process.wait(), 20)
            except TimeoutError:
                process.kill()
                await process.wait()
        self._log.close()


# -- the SFUs under test ---------------------------------------------------------------------


@dataclass
class BenchRoom:
    """One publisher in one room of one SFU, and how subscribers reach it."""

    sfu: str
    pid: int
    publisher: Publisher
    target: dict[str, Any]  # what a subscriber process needs to join
    close: Callable[[], Awaitable[None]]
    # the SFU's own view of its event loop (tongke): a snapshot, and the figures between two
    runtime_snapshot: Callable[[], Awaitable[Any]] | None = None
    runtime_figures: Callable[[Any, Any], dict[str, Any]] | None = None


RoomOpener = Callable[[str, str], Awaitable[BenchRoom]]  # (resolution, publisher mode)
Closer = Callable[[], Awaitable[None]]


def wait_healthy(url: str, process: subprocess.Popen[bytes], log_path: Path) -> None:
    import httpx

    deadline = time.monotonic() + CONNECT_TIMEOUT_S
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"{url} stopped answering: its process exited; see {log_path}")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"{url} did not answer; see {log_path}")
        time.sleep(0.2)


def stop_processes(*processes: subprocess.Popen[bytes]) -> None:
    for process in processes:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _has_janus_interface() -> bool:
    import ifaddr  # what aioice gathers from; /sys/class/net may show another namespace

    return any(
        adapter.nice_name == JANUS_INTERFACE and any(ip.ip == JANUS_ADDRESS for ip in adapter.ips)
        for adapter in ifaddr.get_adapters()
    )


def unavailable(sfu: str) -> str | None:
    """Why ``sfu`` cannot be measured here, or None."""
    if sfu == "janus":
        from streaming.bench_janus import janus_missing

        missing = janus_missing()
        if missing is not None:
            return missing
        if not _has_janus_interface():
            return (
                f"no {JANUS_INTERFACE} interface for Janus's ICE (Janus ignores loopback): "
                "run the bench as root so it makes its private network namespace"
            )
    if sfu == "tongke" and shutil.which("redis-server") is None:
        return "redis-server is not installed"
    return None


# -- measuring -------------------------------------------------------------------------------


async def _window(
    pid: int, publisher: Publisher, seconds: float, subscribers: SubscriberProcesses | None
) -> float:
    """Count over ``seconds`` from a moment every process knows in advance; the SFU's CPU
    over that window, % of one core."""
    start = time.monotonic() + 0.2
    end = start + seconds
    publisher.set_window(start, end)
    if subscribers is not None:
        await subscribers.set_window(start, end)
    await asyncio.sleep(max(0.0, start - time.monotonic()))
    cpu_0, wall_0 = _cpu_seconds(pid), time.monotonic()
    await asyncio.sleep(max(0.0, end - time.monotonic()))
    cpu_1, wall_1 = _cpu_seconds(pid), time.monotonic()
    # packets sent at the end of the window are still on their way
    await asyncio.sleep(0.3)
    return 100 * (cpu_1 - cpu_0) / (wall_1 - wall_0)


async def bench_room(
    open_room: RoomOpener,
    work_dir: Path,
    *,
    resolution: str,
    subscribers: int,
    seconds: float,
    warm_up: float = WARM_UP_S,
    publisher_mode: str = "looped",
) -> dict[str, Any]:
    """One publisher and ``subscribers`` viewers in a fresh room: the figures of one run.
    ``publisher_mode`` is how its video is made (``PUBLISHER_MODES``).

    After the measured window one more subscriber joins the room that already carries the
    ``subscribers`` (a classroom joining a running lesson): ``late_join_*``."""
    viewers = await SubscriberProcesses.start(subscribers, work_dir)
    late_viewer: SubscriberProcesses | None = None
    runtime: dict[str, Any] = {}
    try:
        late_viewer = await SubscriberProcesses.start(1, work_dir)
        room = await open_room(resolution, publisher_mode)
        try:
            publisher = room.publisher
            await asyncio.sleep(warm_up)
            baseline_percent = await _window(room.pid, publisher, min(BASELINE_S, seconds), None)
            rss_before = rss_mib(room.pid)
            joins = await viewers.join(room.target, subscribers)
            await asyncio.sleep(warm_up)
            rss_joined = rss_mib(room.pid)
            snapshot = room.runtime_snapshot
            before = await snapshot() if snapshot is not None else None
            waited, started = runqueue_wait_s(Path(f"/proc/{room.pid}/schedstat")), time.monotonic()
            cpu_percent = await _window(room.pid, publisher, seconds, viewers)
            if waited is not None:
                waited_s = runqueue_wait_s(Path(f"/proc/{room.pid}/schedstat")) or waited
                runtime["sfu_cpu_wait_percent"] = round(
                    100 * (waited_s - waited) / (time.monotonic() - started), 2
                )
            if snapshot is not None and room.runtime_figures is not None:
                runtime |= room.runtime_figures(before, await snapshot())
            sent = (publisher.packets, publisher.frames, publisher.octets)
            # before the report, whose matching keeps every subscriber process busy
            late_joins = await late_viewer.join(room.target, 1, first_index=subscribers)
            packets, frames, delays = await viewers.report(publisher.sent_at)
        finally:
            await room.close()
    finally:
        await viewers.close()
        if late_viewer is not None:
            await late_viewer.close()
    late_first_frame, late_connected, late_answered = late_joins[0]
    return (
        runtime
        | summarize(
            sfu=room.sfu,
            resolution=resolution,
            seconds=seconds,
            cpu_percent=cpu_percent,
            baseline_percent=baseline_percent,
            sent=sent,
            received=(packets, frames),
            delays_ms=delays,
            first_frames_ms=[join[0] for join in joins],
            connected_ms=[join[1] for join in joins],
            answered_ms=[join[2] for join in joins],
            rss_mib=(rss_before, rss_joined),
        )
        | {
            "publisher": publisher_mode,
            "late_join_first_frame_ms": late_first_frame,
            "late_join_connected_ms": late_connected,
            "late_join_answer_ms": late_answered,
        }
    )


async def soak(
    open_room: RoomOpener,
    work_dir: Path,
    *,
    resolution: str,
    subscribers: int,
    minutes: int,
    on_sample: Callable[[dict[str, Any]], None] | None = None,
    publisher_mode: str = "looped",
) -> dict[str, Any]:
    """One room with ``subscribers`` viewers for ``minutes``: the SFU's RSS each minute."""
    viewers = await SubscriberProcesses.start(subscribers, work_dir)
    try:
        room = await open_room(resolution, publisher_mode)
        try:
            await asyncio.sleep(WARM_UP_S)
            rss_before = rss_mib(room.pid)
            joins = await viewers.join(room.target, subscribers)
            await asyncio.sleep(WARM_UP_S)
            samples: list[dict[str, Any]] = []
            started = time.monotonic()
            for minute in range(minutes + 1):
                await asyncio.sleep(max(0.0, started + 60 * minute - time.monotonic()))
                rss = rss_mib(room.pid)
                growth = rss - samples[0]["rss_mib"] if samples else 0.0
                sample = {
                    "minute": minute,
                    "rss_mib": round(rss, 2),
                    "growth_mib": round(growth, 2),
                }
                samples.append(sample)
                if on_sample is not None:
                    on_sample(sample)
        finally:
            await room.close()
    finally:
        await viewers.close()
    joined = [join[0] for join in joins if join[0] is not None]
    first, last = samples[0]["rss_mib"], samples[-1]["rss_mib"]
    return {
        "sfu": room.sfu,
        "resolution": resolution,
        "subscribers": subscribers,
        "subscribers_joined": len(joined),
        "minutes": minutes,
        "rss_mib_before_join": round(rss_before, 2),
        "memory_mib_per_subscriber": round((first - rss_before) / subscribers, 3),
        "growth_mib": round(last - first, 2),
        "growth_mib_per_hour": round((last - first) * 60 / minutes, 2) if minutes else None,
        "samples": samples,
    }


def summarize(
    *,
    sfu: str,
    resolution: str,
    seconds: float,
    cpu_percent: float,
    baseline_percent: float,
    sent: tuple[int, int, int],
    received: tuple[list[int], list[int]],
    delays_ms: list[float],
    first_frames_ms: list[float | None],
    rss_mib: tuple[float, float] | None = None,
    connected_ms: list[float | None] | None = None,
    answered_ms: list[float | None] | None = None,
) -> dict[str, Any]:
    """The JSON of one run from what was counted; ``rss_mib`` is the SFU's resident memory
    before the subscribers joined and after."""
    sent_packets, sent_frames, sent_octets = sent
    packets, frames = received
    subscribers = len(packets)
    forwarded = sum(packets)
    packet_ratio = forwarded / (sent_packets * subscribers) if sent_packets else None
    frame_ratio = sum(frames) / (sent_frames * subscribers) if sent_frames else None
    marginal_cpu_s = (cpu_percent - baseline_percent) / 100 * seconds
    joined = [ms for ms in first_frames_ms if ms is not None]
    connected = [ms for ms in connected_ms or [] if ms is not None]
    answered = [ms for ms in answered_ms or [] if ms is not None]
    relay = sfu == "mediarelay"
    delivered = frame_ratio if relay else packet_ratio
    return {
        "sfu": sfu,
        "resolution": resolution,
        "subscribers": subscribers,
        "cpu_percent": round(cpu_percent, 2),
        "cpu_percent_per_subscriber": round((cpu_percent - baseline_percent) / subscribers, 3),
        "us_per_packet": (
            round(cpu_percent / 100 * seconds * 1e6 / forwarded, 2) if forwarded else None
        ),
        "us_per_packet_marginal": round(marginal_cpu_s * 1e6 / forwarded, 2) if forwarded else None,
        "delay_ms_p50": _percentile(delays_ms, 0.5),
        "delay_ms_p99": _percentile(delays_ms, 0.99),
        "first_frame_ms": round(statistics.median(joined), 1) if joined else None,
        "first_frame_ms_max": max(joined) if joined else None,
        "connected_ms": round(statistics.median(connected), 1) if connected else None,
        "answer_ms": round(statistics.median(answered), 1) if answered else None,
        "memory_mib_per_subscriber": (
            round((rss_mib[1] - rss_mib[0]) / subscribers, 3) if rss_mib and subscribers else None
        ),
        "delivered_ratio": round(delivered, 4) if delivered is not None else None,
        # context for reading the figures
        "delivered_unit": "frames" if relay else "packets",
        "delivered_frames_ratio": round(frame_ratio, 4) if frame_ratio is not None else None,
        "subscribers_joined": len(joined),
        "publisher_kbps": round(sent_octets * 8 / seconds / 1000, 1),
        "publisher_packets_per_s": round(sent_packets / seconds, 1),
        "cpu_percent_publisher_only": round(baseline_percent, 2),
    }


def sfu_under_test(sfu: str) -> Callable[[Path], Any]:
    """The async context manager that runs ``sfu`` and opens rooms in it."""
    if sfu == "tongke":
        from streaming.bench_tongke import tongke_sfu

        return tongke_sfu
    if sfu == "mediarelay":
        from streaming.bench_mediarelay import mediarelay_sfu

        return mediarelay_sfu
    from streaming.bench_janus import janus_sfu

    return janus_sfu


async def run_bench(
    *,
    resolutions: list[str],
    subscribers: list[int],
    seconds: float,
    sfus: tuple[str, ...] = SFUS,
    relay_max_subscribers: int = 32,
    warm_up: float = WARM_UP_S,
    repeat: int = 1,
    on_run: Callable[[dict[str, Any]], None] | None = None,
    publisher_mode: str = "looped",
) -> dict[str, list[dict[str, Any]]]:
    """Every (sfu, resolution, subscribers) run: ``{"runs": [...], "skipped": [...]}``.

    MediaRelay runs above ``relay_max_subscribers`` are skipped: at about 10 % of a core per
    subscriber it saturates a 2-core machine near 32 and would only starve everything else.
    ``on_run`` sees each run (or skip) as soon as it is done.

    With ``repeat`` > 1 every SFU is measured that many times, each time in a fresh process
    and in alternating order (A B, B A, ...), so that a change of the machine's load weighs
    on every SFU alike: ``runs`` then holds one row per (sfu, resolution, subscribers), each
    figure the median over the repetitions with its ``ranges`` (``median_runs``), and
    ``repeats`` every single run (its ``repetition`` from 1).
    """
    import logging

    logging.getLogger("aiortc").setLevel(logging.ERROR)
    logging.getLogger("aioice").setLevel(logging.ERROR)
    runs: list[dict[str, Any]] = []
    skipped: list[dict[str, Any]] = []
    measured: list[str] = []
    for sfu in sfus:
        reason = unavailable(sfu)
        if reason is None:
            measured.append(sfu)
            continue
        log.warning("bench_sfu_skipped", sfu=sfu, reason=reason)
        skipped.append({"sfu": sfu, "reason": reason})
    with tempfile.TemporaryDirectory(prefix="tongke-bench-") as work:
        work_dir = Path(work)
        for repetition, sfu in (
            (r, sfu) for r in range(repeat) for sfu in alternating(measured, r)
        ):
            async with AsyncExitStack() as stack:
                open_room = await stack.enter_async_context(sfu_under_test(sfu)(work_dir))
                for resolution in resolutions:
                    for count in subscribers:
                        if sfu == "mediarelay" and count > relay_max_subscribers:
                            if repetition > 0:
                                continue  # noted once
                            skipped.append(
                                {
                                    "sfu": sfu,
                                    "resolution": resolution,
                                    "subscribers": count,
                                    "reason": f"more than {relay_max_subscribers} subscribers",
                                }
                            )
                            continue
                        run = await bench_room(
                            open_room,
                            work_dir,
                            resolution=resolution,
                            subscribers=count,
                            seconds=seconds,
                            warm_up=warm_up,
                            publisher_mode=publisher_mode,
                        )
                        if repeat > 1:
                            run["repetition"] = repetition + 1
                        runs.append(run)
                        if on_run is not None:
                            on_run(run)
    if repeat > 1:
        return {"runs": median_runs(runs), "repeats": runs, "skipped": skipped}
    return {"runs": runs, "skipped": skipped}


def alternating(items: Sequence[T], repetition: int) -> list[T]:
    """The order of ``items`` in repetition ``repetition`` (from 0): as given, then reversed,
    and so on (A B, B A, A B, ...), so each item runs as often first as last."""
    return list(items) if repetition % 2 == 0 else list(reversed(items))


GROUPED_BY = ("sfu", "resolution", "subscribers")


def median_runs(
    runs: list[dict[str, Any]], *, by: tuple[str, ...] = GROUPED_BY
) -> list[dict[str, Any]]:
    """One row per group of ``runs`` (the same values of ``by``, in the order first seen):
    each number the median over the group's runs that have it (None if none has), with
    ``ranges[figure] = [min, max]``; ``repeats``: how many runs; other values from the first
    run. The JSON shape of a single run, so a reader of ``runs`` needs no other code."""
    groups: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
    for run in runs:
        groups.setdefault(tuple(run.get(key) for key in by), []).append(run)
    rows: list[dict[str, Any]] = []
    for members in groups.values():
        row: dict[str, Any] = {}
        ranges: dict[str, list[float]] = {}
        for key in dict.fromkeys(k for run in members for k in run):
            if key in by or key == "repetition":
                row[key] = members[0].get(key)
                continue
            values = [run.get(key) for run in members]
            numbers = [v for v in values if _is_number(v)]
            if numbers:
                middle = statistics.median(numbers)
                row[key] = round(middle, 4) if isinstance(middle, float) else middle
                ranges[key] = [min(numbers), max(numbers)]
            elif all(v is None or _is_number(v) for v in values):
                row[key] = None
            else:
                row[key] = members[0].get(key)
        row.pop("repetition", None)
        row["repeats"] = len(members)
        row["ranges"] = ranges
        rows.append(row)
    return rows


def _is_number(value: object) -> TypeGuard[float]:
    return isinstance(value, int | float) and not isinstance(value, bool)


async def run_soak(
    *,
    resolution: str,
    subscribers: int,
    minutes: int,
    sfu: str = "tongke",
    on_sample: Callable[[dict[str, Any]], None] | None = None,
    publisher_mode: str = "looped",
) -> dict[str, Any]:
    """``soak`` in a fresh SFU process and working directory."""
    import logging

    logging.getLogger("aiortc").setLevel(logging.ERROR)
    logging.getLogger("aioice").setLevel(logging.ERROR)
    reason = unavailable(sfu)
    if reason is not None:
        raise RuntimeError(f"{sfu} cannot be measured here: {reason}")
    with tempfile.TemporaryDirectory(prefix="tongke-soak-") as work:
        async with sfu_under_test(sfu)(Path(work)) as open_room:
            return await soak(
                open_room,
                Path(work),
                resolution=resolution,
                subscribers=subscribers,
                minutes=minutes,
                on_sample=on_sample,
                publisher_mode=publisher_mode,
            )
