"""Classroom bots: a synthetic lesson publisher and a viewer that measures what it receives.

The classroom bot publishes a moving picture with the campus name, the wall-clock time as text
and as a machine-readable block pattern (``streaming.timecode``), and a sine tone. Every bot
also decodes what it receives: frames per slot, glass-to-glass delay read back from the
pattern, and the dominant audio frequency (so a test can tell whose tone it hears).

    python -m streaming.bots demo --viewers 2 --seconds 10
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import fractions
import json
import math
import statistics
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, ClassVar

import numpy as np
import numpy.typing as npt
import websockets
from aiortc import (
    RTCBundlePolicy,
    RTCConfiguration,
    RTCPeerConnection,
    RTCRtpSender,
    RTCRtpTransceiver,
    RTCSessionDescription,
)
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from av import AudioFrame, Packet, VideoFrame
from websockets.asyncio.client import ClientConnection

from common.logging import get_logger
from streaming.sfu.identity import ParticipantIdentity
from streaming.sfu.registry import InProcessRoomRegistry, RoomRegistry
from streaming.signaling import serve_participant
from streaming.timecode import WIDTH as TIMECODE_WIDTH
from streaming.timecode import draw_timecode, read_timecode

log = get_logger(__name__)

VIDEO_CLOCK = 90000
AUDIO_RATE = 48000
AUDIO_PTIME = 0.02
FONT_PATHS = (
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/opentype/noto/NotoSerifCJK-Regular.ttc",
)

Send = Callable[[dict[str, Any]], Awaitable[None]]
Receive = Callable[[], Awaitable[dict[str, Any]]]


def websocket_channel(socket: ClientConnection) -> tuple[Send, Receive]:
    """A bot's ``send``/``receive`` over a signaling WebSocket (JSON text frames); a closed
    socket reads as ``ConnectionError``, which ends ``ClassroomBot.run`` cleanly."""

    async def send(message: dict[str, Any]) -> None:
        await socket.send(json.dumps(message, ensure_ascii=False))

    async def receive() -> dict[str, Any]:
        try:
            message: dict[str, Any] = json.loads(await socket.recv())
        except websockets.ConnectionClosed as exc:
            raise ConnectionError(str(exc)) from exc
        return message

    return send, receive


async def run_over_websocket(bot: ClassroomBot, socket: ClientConnection) -> None:
    """Run ``bot`` over ``socket`` until the session ends, then close the socket."""
    send, receive = websocket_channel(socket)
    try:
        await bot.run(send, receive)
    finally:
        await socket.close()


# -- media sources -------------------------------------------------------------------------


@lru_cache(maxsize=8)
def _text_mask(text: str, size: int) -> npt.NDArray[np.bool_]:
    """The text rendered once as a boolean mask (Pillow, Noto CJK when installed)."""
    from PIL import Image, ImageDraw, ImageFont

    font: ImageFont.FreeTypeFont | ImageFont.ImageFont
    for path in FONT_PATHS:
        try:
            font = ImageFont.truetype(path, size)
            break
        except OSError:
            continue
    else:
        font = ImageFont.load_default()
    left, top, right, bottom = font.getbbox(text)
    box = (int(max(right - left, 1)) + 2, int(max(bottom - top, 1)) + 2)
    image = Image.new("L", box, 0)
    ImageDraw.Draw(image).text((1 - left, 1 - top), text, fill=255, font=font)
    return np.asarray(image) > 127


def _stamp(luma: npt.NDArray[np.uint8], mask: npt.NDArray[np.bool_], x: int, y: int) -> None:
    height = min(mask.shape[0], luma.shape[0] - y)
    width = min(mask.shape[1], luma.shape[1] - x)
    if height > 0 and width > 0:
        region = luma[y : y + height, x : x + width]
        region[mask[:height, :width]] = 235


class PacedVideoTrack(MediaStreamTrack):
    """A video track that hands out ``fps`` frames a second by the clock from its first."""

    kind = "video"

    def __init__(self, fps: int) -> None:
        super().__init__()
        self.fps = fps
        self.frames = 0  # handed out
        self._start: float | None = None

    async def _pace(self) -> None:
        """Wait for the next frame's time (the caller counts ``frames`` up)."""
        if self.readyState != "live":
            raise MediaStreamError
        if self._start is None:
            self._start = time.monotonic()
            return
        wait = self._start + self.frames / self.fps - time.monotonic()
        if wait > 0:
            await asyncio.sleep(wait)


class SyntheticLessonTrack(PacedVideoTrack):
    """A moving picture with the campus name, a clock and the timecode pattern."""

    def __init__(self, campus: str, *, width: int = 320, height: int = 180, fps: int = 15) -> None:
        super().__init__(fps)
        if width < TIMECODE_WIDTH or width % 2 or height % 4:
            raise ValueError(f"frame must be at least {TIMECODE_WIDTH} px wide, even, height % 4")
        self.campus = campus
        self.width, self.height = width, height
        ramp = np.linspace(40, 160, width, dtype=np.float32)
        self._background = np.tile(ramp.astype(np.uint8), (height, 1))
        tint = sum(campus.encode()) % 64
        self._chroma = np.full((height // 2, width), 128, dtype=np.uint8)
        self._chroma[: height // 4] = 96 + tint  # U rows
        self._chroma[height // 4 :] = 160 - tint // 2  # V rows
        self._name = _text_mask(campus, max(height // 8, 12))

    async def recv(self) -> VideoFrame:
        await self._pace()
        return self.draw()

    def draw(self) -> VideoFrame:
        """The next frame now, unpaced (``recv`` paces it to the frame rate)."""
        now_ms = int(time.time() * 1000)
        luma = np.roll(self._background, (self.frames * 4) % self.width, axis=1)
        bar = (self.frames * 3) % (self.height - 8)
        luma[bar : bar + 8, :] = 200
        _stamp(luma, self._name, 8, self.height // 3)
        clock = time.strftime("%H:%M:%S", time.localtime(now_ms / 1000)) + f".{now_ms % 1000:03d}"
        _stamp(luma, _text_mask(clock, max(self.height // 10, 10)), 8, self.height * 2 // 3)
        draw_timecode(luma, now_ms)
        frame = VideoFrame.from_ndarray(np.vstack([luma, self._chroma]), format="yuv420p")
        frame.pts = self.frames * VIDEO_CLOCK // self.fps
        frame.time_base = fractions.Fraction(1, VIDEO_CLOCK)
        self.frames += 1
        return frame


class LoopedEncodedTrack(PacedVideoTrack):
    """Encoded VP8 frames sent in a loop at the frame rate: aiortc packetizes them without
    encoding, so publishing costs a few % of a core (the SFU bench's publisher, beside the
    SFU on the same cores). The first frame must be a keyframe. A keyframe request (PLI or
    FIR, which aiortc's sender only flags for its own encoder) starts the loop again there,
    as an encoder answers with a keyframe; the picture jumping back is still decodable."""

    def __init__(self, frames: list[bytes], fps: int) -> None:
        super().__init__(fps)
        if not frames:
            raise ValueError("no frames to loop")
        self.encoded = frames
        self.restarts = 0  # keyframe requests answered
        self._next = 0
        self._sender: RTCRtpSender | None = None

    def follow_keyframe_requests(self, sender: RTCRtpSender) -> None:
        self._sender = sender

    async def recv(self) -> Packet[Any]:
        await self._pace()
        flag = "_RTCRtpSender__force_keyframe"
        if self._sender is not None and getattr(self._sender, flag, False):
            setattr(self._sender, flag, False)
            self._next = 0
            self.restarts += 1
        packet = Packet(self.encoded[self._next])
        self._next = (self._next + 1) % len(self.encoded)
        packet.pts = self.frames * VIDEO_CLOCK // self.fps
        packet.time_base = fractions.Fraction(1, VIDEO_CLOCK)
        self.frames += 1
        return packet


class ToneTrack(MediaStreamTrack):
    """A continuous sine tone, 20 ms per frame, mono 48 kHz.

    Paced by the wall clock, but on a loaded machine it falls behind it: aiortc's sender
    encodes each frame on a worker thread before asking for the next, and once that round
    trip nears 20 ms the tone lags further every frame (a real microphone does not).
    """

    kind = "audio"

    def __init__(self, frequency: float = 440.0, *, amplitude: float = 0.3) -> None:
        super().__init__()
        self.frequency = frequency
        self.amplitude = amplitude
        self._samples = int(AUDIO_RATE * AUDIO_PTIME)
        self._sent = 0
        self._start: float | None = None

    @property
    def samples_sent(self) -> int:
        """Samples handed to the sender so far (on a loaded machine fewer than wall time)."""
        return self._sent

    @property
    def started_at(self) -> float | None:
        """``time.monotonic()`` of the first frame, None before it."""
        return self._start

    async def recv(self) -> AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        if self._start is None:
            self._start = time.monotonic()
        else:
            wait = self._start + self._sent / AUDIO_RATE - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
        t = (self._sent + np.arange(self._samples)) / AUDIO_RATE
        wave = self.amplitude * 32767 * np.sin(2 * math.pi * self.frequency * t)
        frame = AudioFrame.from_ndarray(
            wave.astype(np.int16).reshape(1, -1), format="s16", layout="mono"
        )
        frame.sample_rate = AUDIO_RATE
        frame.pts = self._sent
        frame.time_base = fractions.Fraction(1, AUDIO_RATE)
        self._sent += self._samples
        return frame


# -- what a bot receives -------------------------------------------------------------------


@dataclass
class SlotStats:
    """What one receive slot delivered to the bot."""

    kind: str
    frames: int = 0
    first_frame_at: float | None = None  # time.monotonic()
    last_frame_at: float | None = None
    max_gap_s: float = 0.0  # longest freeze between two frames
    delays_ms: list[float] = field(default_factory=list)
    dominant_hz: float | None = None
    rms: float = 0.0

    def delay_percentile(self, share: float) -> float | None:
        if not self.delays_ms:
            return None
        ordered = sorted(self.delays_ms)
        return ordered[min(int(share * len(ordered)), len(ordered) - 1)]


def _count_frame(stats: SlotStats) -> None:
    now = time.monotonic()
    stats.frames += 1
    if stats.first_frame_at is None:
        stats.first_frame_at = now
    if stats.last_frame_at is not None:
        stats.max_gap_s = max(stats.max_gap_s, now - stats.last_frame_at)
    stats.last_frame_at = now


async def _consume_video(track: MediaStreamTrack, stats: SlotStats) -> None:
    while True:
        frame = await track.recv()
        now_ms = time.time() * 1000
        assert isinstance(frame, VideoFrame)
        _count_frame(stats)
        luma: npt.NDArray[np.uint8] = frame.to_ndarray(format="gray")  # type: ignore[assignment]
        drawn = read_timecode(luma)
        if drawn is not None:
            stats.delays_ms.append(now_ms - drawn)


async def _consume_audio(track: MediaStreamTrack, stats: SlotStats) -> None:
    window: list[npt.NDArray[np.float32]] = []
    while True:
        frame = await track.recv()
        assert isinstance(frame, AudioFrame)
        _count_frame(stats)
        samples = frame.to_ndarray().astype(np.float32).reshape(-1)
        if frame.layout.nb_channels > 1:
            samples = samples[:: frame.layout.nb_channels]
        window.append(samples)
        if len(window) >= 10:
            signal = np.concatenate(window)
            window.clear()
            stats.rms = float(np.sqrt(np.mean(signal**2)))
            spectrum = np.abs(np.fft.rfft(signal * np.hanning(len(signal))))
            peak = int(np.argmax(spectrum[1:])) + 1
            stats.dominant_hz = peak * frame.sample_rate / len(signal)


# -- the bot -------------------------------------------------------------------------------


def _codec_preferences(kind: str) -> list[Any]:
    wanted = "video/vp8" if kind == "video" else "audio/opus"
    return [c for c in RTCRtpSender.getCapabilities(kind).codecs if c.mimeType.lower() == wanted]


class ClassroomBot:
    """A classroom terminal in Python: joins, publishes what its role publishes, and decodes
    and measures everything it receives."""

    def __init__(
        self,
        identity: ParticipantIdentity,
        *,
        tone_hz: float = 440.0,
        amplitude: float = 0.3,
        board: bool = False,
        width: int = 320,
        height: int = 180,
        fps: int = 15,
        configuration: RTCConfiguration | None = None,
        camera: Callable[[str, int, int, int], MediaStreamTrack] | None = None,
    ) -> None:
        """``camera(label, width, height, fps)`` makes each published video track instead of
        the drawn ``SyntheticLessonTrack`` (the SFU bench sends a pre-encoded one)."""
        self.identity = identity
        self.tone_hz = tone_hz
        self.amplitude = amplitude
        self.tone: ToneTrack | None = None  # set the amplitude to 0 to fall silent
        self.camera: SyntheticLessonTrack | None = None
        self._make_camera = camera
        self.board = board
        self.size = (width, height, fps)
        # max-bundle: see streaming.sfu.participant
        self.configuration = configuration or RTCConfiguration(
            iceServers=[], bundlePolicy=RTCBundlePolicy.MAX_BUNDLE
        )
        self.pc: RTCPeerConnection | None = None
        self.media: list[dict[str, str]] = []
        self.slots: dict[str, dict[str, Any]] = {}
        self.stats: dict[str, SlotStats] = {}
        self.participants: list[dict[str, Any]] = []
        self.participant_updates: list[list[dict[str, Any]]] = []
        self.errors: list[dict[str, Any]] = []
        self.messages: list[dict[str, Any]] = []
        self.joined_at: float | None = None
        self.connected = asyncio.Event()
        self.done = asyncio.Event()
        self._send: Send | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._outgoing: list[MediaStreamTrack] = []

    # actions
    async def send(self, message: dict[str, Any]) -> None:
        assert self._send is not None, "the bot is not running"
        await self._send({"v": 1, **message})

    async def raise_hand(self) -> None:
        await self.send({"type": "raise_hand"})

    async def accept_hand(self, participant_id: str) -> None:
        await self.send({"type": "accept_hand", "participant": participant_id})

    async def revoke_hand(self, participant_id: str) -> None:
        await self.send({"type": "revoke_hand", "participant": participant_id})

    async def leave(self) -> None:
        await self.send({"type": "leave"})

    def slot(self, name: str) -> SlotStats:
        return self.stats[name]

    async def run(self, send: Send, receive: Receive) -> None:
        """Join and follow the signaling until the SFU says ``left``/``closed`` or the
        channel closes; the peer connection is closed on the way out."""
        self._send = send
        try:
            self.joined_at = time.monotonic()
            await self.send({"type": "join", "room": self.identity.room_id, "board": self.board})
            while True:
                try:
                    message = await receive()
                except ConnectionError:
                    return
                self.messages.append(message)
                if await self._handle(message):
                    return
        finally:
            await self.close()
            self.done.set()

    async def _handle(self, message: dict[str, Any]) -> bool:
        kind = message.get("type")
        if kind == "joined":
            self.media = message["media"]
            self.participants = message["participants"]
            self.participant_updates.append(self.participants)
            await self._offer()
        elif kind == "answer":
            assert self.pc is not None
            await self.pc.setRemoteDescription(RTCSessionDescription(message["sdp"], "answer"))
            self._start_consumers()
        elif kind == "participants":
            self.participants = message["participants"]
            self.participant_updates.append(self.participants)
        elif kind == "slots":
            self.slots = {slot["slot"]: slot for slot in message["slots"]}
        elif kind == "error":
            log.info("bot_received_error", code=message.get("code"), bot=self.identity.display_name)
            self.errors.append(message)
        elif kind in ("left", "closed"):
            return True
        return False

    async def _offer(self) -> None:
        width, height, fps = self.size
        self.pc = pc = RTCPeerConnection(self.configuration)

        @pc.on("connectionstatechange")
        def on_state() -> None:
            if pc.connectionState == "connected":
                self.connected.set()

        for line in self.media:
            transceiver: RTCRtpTransceiver
            if line["direction"] == "send":
                track: MediaStreamTrack
                if line["kind"] == "audio":
                    track = self.tone = ToneTrack(self.tone_hz, amplitude=self.amplitude)
                else:
                    label = self.identity.campus or self.identity.display_name
                    if line["name"] == "board":
                        label += " 板书"
                    if self._make_camera is not None:
                        track = self._make_camera(label, width, height, fps)
                    else:
                        track = SyntheticLessonTrack(label, width=width, height=height, fps=fps)
                    if line["name"] == "camera" and isinstance(track, SyntheticLessonTrack):
                        self.camera = track
                self._outgoing.append(track)
                transceiver = pc.addTransceiver(track, direction="sendonly")
            else:
                transceiver = pc.addTransceiver(line["kind"], direction="recvonly")
            transceiver.setCodecPreferences(_codec_preferences(line["kind"]))
        await pc.setLocalDescription(await pc.createOffer())
        await self.send({"type": "offer", "sdp": pc.localDescription.sdp})

    def _start_consumers(self) -> None:
        assert self.pc is not None
        for line, transceiver in zip(self.media, self.pc.getTransceivers(), strict=True):
            if line["direction"] != "recv":
                continue
            stats = self.stats[line["name"]] = SlotStats(kind=line["kind"])
            consume = _consume_video if line["kind"] == "video" else _consume_audio
            task = asyncio.ensure_future(self._consume(consume, transceiver.receiver.track, stats))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    @staticmethod
    async def _consume(
        consume: Callable[[MediaStreamTrack, SlotStats], Awaitable[None]],
        track: MediaStreamTrack,
        stats: SlotStats,
    ) -> None:
        with contextlib.suppress(MediaStreamError):
            await consume(track, stats)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for track in self._outgoing:
            track.stop()
        if self.pc is not None:
            await self.pc.close()

    def summary(self) -> dict[str, Any]:
        result: dict[str, Any] = {}
        for name, stats in self.stats.items():
            entry: dict[str, Any] = {"frames": stats.frames}
            if stats.first_frame_at is not None and self.joined_at is not None:
                entry["first_frame_ms"] = round((stats.first_frame_at - self.joined_at) * 1000)
            if stats.delays_ms:
                entry["delay_ms_p50"] = round(statistics.median(stats.delays_ms), 1)
                entry["delay_ms_p99"] = round(stats.delay_percentile(0.99) or 0, 1)
            if stats.dominant_hz is not None:
                entry["dominant_hz"] = round(stats.dominant_hz)
            result[name] = entry
        return result


# -- in-process wiring ---------------------------------------------------------------------


class ChannelClosed(ConnectionError):
    pass


class LocalChannel:
    """Two queues standing in for a WebSocket between a bot and ``serve_participant``."""

    _CLOSE: ClassVar[dict[str, Any]] = {}

    def __init__(self) -> None:
        self._to_server: asyncio.Queue[dict[str, Any] | str] = asyncio.Queue()
        self._to_client: asyncio.Queue[dict[str, Any]] = asyncio.Queue()

    async def client_send(self, message: dict[str, Any]) -> None:
        # round-trip through JSON, as a real socket would
        self._to_server.put_nowait(json.loads(json.dumps(message)))

    async def client_receive(self) -> dict[str, Any]:
        message = await self._to_client.get()
        if message is self._CLOSE:
            raise ChannelClosed
        return message

    async def client_send_text(self, text: str) -> None:
        """Send raw text, unparsed (for tests of malformed input)."""
        self._to_server.put_nowait(text)

    async def server_send(self, message: dict[str, Any]) -> None:
        self._to_client.put_nowait(json.loads(json.dumps(message)))

    async def server_receive(self) -> dict[str, Any] | str:
        message = await self._to_server.get()
        if message is self._CLOSE:
            raise ChannelClosed
        return message

    def close(self) -> None:
        self._to_server.put_nowait(self._CLOSE)
        self._to_client.put_nowait(self._CLOSE)


@dataclass
class LocalSession:
    bot: ClassroomBot
    channel: LocalChannel
    server: asyncio.Task[None]
    client: asyncio.Task[None]

    async def stop(self) -> None:
        """Leave politely if still connected, then tear both ends down."""
        if not self.client.done():
            with contextlib.suppress(Exception):
                await self.bot.leave()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(asyncio.shield(self.client), 3)
        self.channel.close()
        for task in (self.client, self.server):
            if not task.done():
                task.cancel()
        await asyncio.gather(self.client, self.server, return_exceptions=True)


def start_local(bot: ClassroomBot, rooms: RoomRegistry) -> LocalSession:
    """Run ``bot`` against ``serve_participant`` in this process."""
    channel = LocalChannel()
    server = asyncio.ensure_future(
        serve_participant(channel.server_send, channel.server_receive, bot.identity, rooms)
    )
    client = asyncio.ensure_future(bot.run(channel.client_send, channel.client_receive))
    return LocalSession(bot, channel, server, client)


def use_loopback_only() -> None:
    """Gather ICE host candidates on 127.0.0.1 only (tests, demos in a network namespace)."""
    import aioice.ice

    aioice.ice.get_host_addresses = lambda use_ipv4, use_ipv6: ["127.0.0.1"]


# -- command line --------------------------------------------------------------------------


async def _demo(viewers: int, seconds: float, width: int, height: int, fps: int) -> None:
    use_loopback_only()
    rooms = InProcessRoomRegistry()

    def identity(pid: str, name: str, role: Any) -> ParticipantIdentity:
        return ParticipantIdentity(pid, name, role, "demo-lesson", campus=name)

    lead = ClassroomBot(identity("lead", "城关一小", "lead"), width=width, height=height, fps=fps)
    sessions = [start_local(lead, rooms)]
    for index in range(viewers):
        bot = ClassroomBot(
            identity(f"remote-{index}", f"村小{index + 1}", "remote"),
            tone_hz=660 + 110 * index,
            width=width,
            height=height,
            fps=fps,
        )
        sessions.append(start_local(bot, rooms))
    await asyncio.sleep(seconds)
    report = {session.bot.identity.display_name: session.bot.summary() for session in sessions}
    for session in sessions:
        await session.stop()
    await rooms.close_all()
    print(json.dumps(report, ensure_ascii=False, indent=2))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m streaming.bots")
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser("demo", help="lead bot → in-process SFU → viewer bots, loopback")
    demo.add_argument("--viewers", type=int, default=2)
    demo.add_argument("--seconds", type=float, default=10.0)
    demo.add_argument("--width", type=int, default=320)
    demo.add_argument("--height", type=int, default=180)
    demo.add_argument("--fps", type=int, default=15)
    args = parser.parse_args(argv)
    asyncio.run(_demo(args.viewers, args.seconds, args.width, args.height, args.fps))


if __name__ == "__main__":
    main()
