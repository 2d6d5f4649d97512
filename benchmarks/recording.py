"""Benchmark of the recording path: N simulated live lessons through the real recorder, then the
processing that makes each one playable.

    tongke bench recording [--minutes 45] [--streams 1,4,8] [--json PATH] [--pace fast|realtime]
                           [--no-reference] [--renditions [--loudness linear|dynamic|off]]
                           [--resolution 1920x1080]
                           [--live-hls [--live-nice 10]]
    .venv/bin/python benchmarks/recording.py (same options)

Input: one clip of real media, encoded once with ffmpeg (VP8 640x360 30 fps, 1 Mbit/s CBR;
``--resolution 1920x1080``: that size at 3 Mbit/s, see ``clip_kbps``;
keyframe every 3 s; Opus 48 kHz stereo 32 kbit/s), demuxed with PyAV without decoding,
packetized into RTP as a browser does (VP8 RFC 7741 descriptor with a 15-bit picture id,
payloads ≤ 1200 bytes; one Opus frame per packet) and looped to the lesson's length with
continuous sequence numbers and timestamps (random initial values, so 16-bit sequence numbers
wrap during a long lesson).

Each stream has its own room stand-in (the ``Room`` surface the recorder uses: a packet tap and
an event listener) and its own ``recordings.capture.LessonRecorder`` — the real tap, inbox,
worker-thread depacketizer and PyAV muxer writing WebM. Pace ``fast`` (default) feeds packets
faster than real time with their RTP timestamps preserved (the recorder timestamps frames from
RTP, so the file is the one a live lesson gives; the feeder waits while a recorder has more than
5 s of media queued, and recorders drain every 20 ms instead of 250 ms); ``realtime`` paces
packets on the wall clock (for short runs that check the fast figures).

Figures per run (all of a run's streams recorded at once):

- ``cpu_percent_per_stream``: the process's CPU time from the first packet until every recorder
  closed its file, minus the feeder's own packet building, per second of media and per stream,
  as a percentage of one core.
- ``ready_after_end_s``: from the last packet until every stream is playable: recorder stopped
  and file closed, then ``recordings.processing.make_playable`` (probe, poster, chapters) — the
  step after which the library serves the raw WebM, which Chromium, Firefox and Edge play. Each
  file is then checked by seeking near its end and decoding a frame.
- ``size_overhead_ratio``: bytes of ``raw.webm`` / bytes of encoded media fed − 1.
- ``frames_lost``: frames fed − frames written, over all streams.
- ``rss_mib_per_stream``: (peak RSS during the run − RSS before it) / streams;
  ``rss_growth_second_half_mib``: RSS at the end of the feed − RSS at half-time (flat = ~0).

With ``--live-hls`` each stream also gets the live H.264/HLS transcoder of
``recordings.live_hls`` (two niced ffmpeg runs reading the growing file), and:

- ``h264_ready_after_end_s``: from the last packet until every stream's H.264 versions are in
  place: the transcoders' tail, then what the processing job does with live renditions
  (``renditions_from_live``: checks, master playlist, thumbnail sprite, MP4 remux), after the
  playable step above (the job's order). A stream whose live output is unusable falls back to
  ``make_renditions`` inside this figure (``h264_from`` says which ran).
- ``live_cpu_percent_per_stream``: the live ffmpeg runs' CPU time (sampled from /proc every
  0.25 s until they exit) per second of media and per stream, as a percentage of one core.
- ``live_speed_x``: media seconds the slowest transcoder encoded per wall second of the feed.
  Pace ``fast`` would outrun any encoder, so with ``--live-hls`` the feeder also waits while a
  transcoder trails the fed media by more than ``LIVE_PACE_S`` (what a lesson in real time
  gives a transcoder that keeps up: its input arrives no faster than it encodes). That stands
  for a live lesson only if ``live_speed_x`` >= 1 (below, the transcoder could not keep up in
  real time and the figure is not valid; ``live_keeps_up`` says so); ``--pace realtime`` on a
  shorter lesson checks it without that assumption.

Reference, once, on stream 1 of the first run: ffmpeg re-encoding that recording to H.264/AAC
MP4 with faststart (the processing job's transcode, libx264 veryfast) — the readiness an encode
gives instead of a copy, with ffmpeg's CPU time and peak RSS.

``--renditions``: the processing job's second step on stream 1
(``recordings.processing.make_renditions``), with each ffmpeg run's peak RSS, the private
part of it and its file-backed pages (``recordings.ffmpeg_memory``: the binary and its
libraries, shared by every ffmpeg);
``--loudness`` as ``TONGKE_RECORDING_LOUDNESS`` (default ``linear``: the measuring pass is
the run named ``loudness``).

Processing and live HLS run ``TONGKE_RECORDING_FFMPEG`` (default ``ffmpeg`` on PATH), as the
app does; the input clip and the reference use the ffmpeg on PATH.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import random
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, cast

if TYPE_CHECKING:
    from aiortc.rtp import RtpPacket

    from recordings.capture import LessonRecorder
    from recordings.live_hls import LiveTranscoder
    from recordings.processing import LoudnessMode, MediaFacts
    from streaming.sfu.room import Room

Pace = Literal["fast", "realtime"]
MediaKind = Literal["audio", "video"]

CLOCKS: dict[MediaKind, int] = {"video": 90000, "audio": 48000}
PAYLOAD_TYPES: dict[MediaKind, int] = {"video": 96, "audio": 111}
MAX_PAYLOAD = 1200
TICK_S = 0.25  # media fed per step, per stream
FAST_BACKLOG_S = 5.0  # the feeder waits while a recorder has more than this queued
FAST_FLUSH_S = 0.02
# fast pace with live transcoding: the feeder waits while a transcoder trails by more than this
LIVE_PACE_S = 4.0
MIB = 1024 * 1024


# -- the input ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ClipFrame:
    kind: MediaKind
    timestamp: int  # clock units from the clip's start
    payloads: tuple[bytes, ...]  # RTP payloads, descriptor included
    size: int  # encoded frame bytes


@dataclass(frozen=True)
class Clip:
    seconds: float
    ticks: tuple[tuple[ClipFrame, ...], ...]  # frames per TICK_S of the clip, in time order
    video_frames: int
    audio_frames: int
    media_bytes: int

    @property
    def kbps(self) -> float:
        return self.media_bytes * 8 / self.seconds / 1000


BASE_RESOLUTION = (640, 360)
BASE_KBPS = 1000


def parse_resolution(text: str) -> tuple[int, int]:
    """``WxH`` (even, 160x90 to 3840x2160) or ValueError."""
    found = re.fullmatch(r"(\d{3,4})x(\d{2,4})", text.strip())
    if found is None:
        raise ValueError(f"resolution must look like 1920x1080, not {text!r}")
    width, height = int(found.group(1)), int(found.group(2))
    if width % 2 or height % 2 or not (160 <= width <= 3840 and 90 <= height <= 2160):
        raise ValueError(f"resolution {text} must be even, from 160x90 to 3840x2160")
    return width, height


def clip_kbps(resolution: tuple[int, int]) -> int:
    """What a browser sends at that size: 1 Mbit/s at 360p, scaled with the square root of
    the pixel count (2 Mbit/s at 720p, 3 Mbit/s at 1080p)."""
    pixels = resolution[0] * resolution[1]
    return round(BASE_KBPS * math.sqrt(pixels / (BASE_RESOLUTION[0] * BASE_RESOLUTION[1])))


def encode_clip(
    path: Path, *, seconds: float, resolution: tuple[int, int] = BASE_RESOLUTION
) -> None:
    """A camera-like clip: moving test pattern with a clock, a tone; encoded once."""
    kbps = clip_kbps(resolution)
    path.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [
            "ffmpeg",
            "-hide_banner",
            "-loglevel",
            "error",
            "-nostdin",
            "-y",
            "-f",
            "lavfi",
            "-i",
            f"testsrc2=size={resolution[0]}x{resolution[1]}:rate=30",
            "-f",
            "lavfi",
            "-i",
            "sine=frequency=440:sample_rate=48000:beep_factor=4",
            "-t",
            f"{seconds:g}",
            "-c:v",
            "libvpx",
            "-b:v",
            f"{kbps}k",
            "-minrate",
            f"{kbps}k",
            "-maxrate",
            f"{kbps}k",
            "-bufsize",
            f"{kbps}k",
            "-deadline",
            "realtime",
            "-cpu-used",
            "8",
            "-g",
            "90",
            "-keyint_min",
            "90",
            "-c:a",
            "libopus",
            "-b:a",
            "32k",
            "-ac",
            "2",
            str(path),
        ],
        check=True,
    )


def vp8_payloads(frame: bytes, picture_id: int) -> tuple[bytes, ...]:
    """RFC 7741 packetization: X=1, I=1 with a 15-bit picture id, S on the first packet."""
    pid = picture_id & 0x7FFF
    tail = bytes([0x80, 0x80 | (pid >> 8), pid & 0xFF])
    room = MAX_PAYLOAD - 4
    return tuple(
        bytes([0x90 if start == 0 else 0x80]) + tail + frame[start : start + room]
        for start in range(0, len(frame), room)
    )


def load_clip(path: Path, *, seconds: float) -> Clip:
    """The clip's encoded frames (demuxed, never decoded), bucketed per feeding tick."""
    import av

    raw: list[tuple[float, MediaKind, bytes]] = []
    with av.open(str(path)) as container:
        for packet in container.demux():
            if packet.pts is None or packet.time_base is None or packet.size == 0:
                continue
            kind: MediaKind = "video" if packet.stream.type == "video" else "audio"
            raw.append((float(packet.pts * packet.time_base), kind, bytes(packet)))
    origin = min(at for at, _, _ in raw)
    ticks_per_clip = round(seconds / TICK_S)
    buckets: list[list[ClipFrame]] = [[] for _ in range(ticks_per_clip)]
    counts = {"video": 0, "audio": 0}
    media_bytes = 0
    for at, kind, data in sorted(raw, key=lambda item: item[0]):
        at -= origin
        if at >= seconds - 1e-6:
            continue  # the loop restarts exactly at ``seconds``
        payloads = vp8_payloads(data, counts["video"]) if kind == "video" else (data,)
        frame = ClipFrame(kind, round(at * CLOCKS[kind]), payloads, len(data))
        buckets[min(int(at / TICK_S), ticks_per_clip - 1)].append(frame)
        counts[kind] += 1
        media_bytes += len(data)
    return Clip(
        seconds,
        tuple(tuple(bucket) for bucket in buckets),
        counts["video"],
        counts["audio"],
        media_bytes,
    )


# -- what the recorder sees of a room -----------------------------------------------------


class BenchTrack:
    """The attributes of ``PublishedTrack`` the recorder reads, and keyframe requests."""

    def __init__(self, kind: MediaKind) -> None:
        self.participant_id = "lead"
        self.kind: MediaKind = kind
        self.source = "camera" if kind == "video" else "mic"
        self.codec_name = "VP8" if kind == "video" else "opus"
        self.keyframe_requests = 0

    def request_keyframe(self) -> None:
        self.keyframe_requests += 1


class BenchEvents:
    def __init__(self) -> None:
        self.listeners: list[Callable[[Any], Any]] = []

    def listen(self, listener: Callable[[Any], Any]) -> Callable[[], None]:
        self.listeners.append(listener)
        return lambda: self.listeners.remove(listener)


class BenchRoom:
    """A lesson room as the recorder uses it: ``add_packet_tap`` and ``events.listen``."""

    def __init__(self, room_id: str) -> None:
        self.room_id = room_id
        self.kind = "lesson"
        self.participants: dict[str, Any] = {}
        self.events = BenchEvents()
        self.taps: list[Callable[[Any, RtpPacket], None]] = []

    def add_packet_tap(self, tap: Callable[[Any, RtpPacket], None]) -> Callable[[], None]:
        self.taps.append(tap)
        return lambda: self.taps.remove(tap)


@dataclass
class SimulatedStream:
    """One lead classroom publishing: its RTP state and what it fed."""

    index: int
    path: Path
    room: BenchRoom
    tracks: dict[MediaKind, BenchTrack]
    recorder: LessonRecorder
    ssrc: dict[MediaKind, int]
    sequence: dict[MediaKind, int]
    timestamp0: dict[MediaKind, int]
    frames_fed: int = 0
    bytes_fed: int = 0

    def packets(self, clip: Clip, tick: int) -> list[tuple[BenchTrack, RtpPacket]]:
        from aiortc.rtp import RtpPacket

        ticks_per_clip = len(clip.ticks)
        loop, bucket = divmod(tick, ticks_per_clip)
        out: list[tuple[BenchTrack, RtpPacket]] = []
        for frame in clip.ticks[bucket]:
            kind = frame.kind
            timestamp = (
                self.timestamp0[kind] + loop * round(clip.seconds * CLOCKS[kind]) + frame.timestamp
            ) & 0xFFFFFFFF
            last = len(frame.payloads) - 1
            for position, payload in enumerate(frame.payloads):
                out.append(
                    (
                        self.tracks[kind],
                        RtpPacket(
                            payload_type=PAYLOAD_TYPES[kind],
                            marker=int(kind == "video" and position == last),
                            sequence_number=self.sequence[kind],
                            timestamp=timestamp,
                            ssrc=self.ssrc[kind],
                            payload=payload,
                        ),
                    )
                )
                self.sequence[kind] = (self.sequence[kind] + 1) & 0xFFFF
            self.frames_fed += 1
            self.bytes_fed += frame.size
        return out


def rss_mib() -> float:
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def decodes_near_end(path: Path, *, duration_s: float) -> bool:
    """Seek to three seconds before the end and decode a video frame: the file plays there."""
    import av

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        assert stream.time_base is not None
        target = max(duration_s - 3.0, 0.0)
        container.seek(int(target / stream.time_base), stream=stream, backward=True)
        for frame in container.decode(stream):
            return frame.time is not None and frame.time >= target - 4.0
    return False


def recording_ffmpeg() -> str:
    """The ffmpeg processing and live HLS run (``TONGKE_RECORDING_FFMPEG``), as the app does."""
    from common.settings import get_settings

    return get_settings().recording_ffmpeg


# -- one run --------------------------------------------------------------------------------


@dataclass
class RunResult:
    figures: dict[str, Any]
    first_raw: Path
    stop_s: float
    keep: list[Path] = field(default_factory=list)


class LiveCpu:
    """CPU seconds of the live transcoders' ffmpeg runs, from /proc/<pid>/stat while they run
    (the kernel's count of a child shows in RUSAGE_CHILDREN only with every other ffmpeg)."""

    def __init__(self, transcoders: Sequence[LiveTranscoder]) -> None:
        self.transcoders = transcoders
        self.seconds: dict[int, float] = {}
        self._tick = os.sysconf("SC_CLK_TCK")

    def sample(self) -> None:
        for transcoder in self.transcoders:
            for pid in transcoder.encoder_pids:
                try:
                    fields = Path(f"/proc/{pid}/stat").read_text("ascii").rsplit(")", 1)[1].split()
                except (OSError, IndexError):
                    continue  # gone: its last sample stands
                self.seconds[pid] = (int(fields[11]) + int(fields[12])) / self._tick

    async def watch(self) -> None:
        while True:
            self.sample()
            await asyncio.sleep(0.25)

    @property
    def total_s(self) -> float:
        return sum(self.seconds.values())


async def run_streams(
    clip: Clip,
    *,
    streams: int,
    minutes: float,
    pace: Pace,
    directory: Path,
    live_hls: bool = False,
    live_nice: int = 10,
) -> RunResult:
    """Record ``streams`` simulated lessons of ``minutes`` at once; then make them playable
    (and, with ``live_hls``, their H.264 versions, transcoded while they were recorded)."""
    from recordings.capture import LessonRecorder
    from recordings.live_hls import LiveHlsPolicy, LiveTranscoder
    from recordings.processing import make_playable

    ffmpeg = recording_ffmpeg()
    rng = random.Random(streams)
    media_s = minutes * 60
    ticks = max(1, math.ceil(media_s / TICK_S))
    simulated: list[SimulatedStream] = []
    baseline_rss = rss_mib()
    for index in range(streams):
        room = BenchRoom(f"bench-{streams}-{index}")
        path = directory / f"stream-{index}" / "raw.webm"
        recorder = LessonRecorder(
            cast("Room", room),
            path,
            publisher_id="lead",
            metadata={"title": f"bench {index}"},
            flush_interval_s=FAST_FLUSH_S if pace == "fast" else 0.25,
        )
        simulated.append(
            SimulatedStream(
                index=index,
                path=path,
                room=room,
                tracks={"video": BenchTrack("video"), "audio": BenchTrack("audio")},
                recorder=recorder,
                ssrc={"video": rng.getrandbits(32), "audio": rng.getrandbits(32)},
                sequence={"video": rng.getrandbits(16), "audio": rng.getrandbits(16)},
                timestamp0={"video": rng.getrandbits(32), "audio": rng.getrandbits(32)},
            )
        )
    backlog_limit = FAST_BACKLOG_S * (clip.video_frames * 1.2 + clip.audio_frames) / clip.seconds

    transcoders: list[LiveTranscoder] = []
    if live_hls:
        policy = LiveHlsPolicy(
            max_per_host=streams, slots_dir=directory / "slots", nice=live_nice, ffmpeg=ffmpeg
        )
        transcoders = [LiveTranscoder(s.path, policy=policy) for s in simulated]
    live_cpu = LiveCpu(transcoders)
    watcher = asyncio.ensure_future(live_cpu.watch())

    cpu_start = time.process_time()
    wall_start = time.perf_counter()
    for stream in simulated:
        stream.recorder.start()
    for transcoder in transcoders:
        transcoder.start()
    feeder_cpu = 0.0
    rss_peak = baseline_rss
    rss_half = baseline_rss
    last_sample = 0.0
    for tick in range(ticks):
        building = time.thread_time()
        batches = [stream.packets(clip, tick) for stream in simulated]
        feeder_cpu += time.thread_time() - building
        for stream, batch in zip(simulated, batches, strict=True):
            taps = stream.room.taps
            for track, packet in batch:
                for tap in taps:
                    tap(track, packet)
        now = time.perf_counter()
        if now - last_sample >= 0.2 or tick == ticks // 2:
            last_sample = now
            current = rss_mib()
            rss_peak = max(rss_peak, current)
            if tick == ticks // 2:
                rss_half = current
        if pace == "realtime":
            delay = wall_start + (tick + 1) * TICK_S - time.perf_counter()
            await asyncio.sleep(max(delay, 0.0))
        else:
            await asyncio.sleep(0)
            while max(stream.recorder.backlog for stream in simulated) > backlog_limit:
                await asyncio.sleep(0.005)
            fed_s = (tick + 1) * TICK_S
            idle = {t: (t.media_s, time.perf_counter()) for t in transcoders}
            while transcoders and min(t.media_s for t in transcoders) < fed_s - LIVE_PACE_S:
                if any(t.outcome is not None for t in transcoders):
                    break  # one gave up: its stream falls back after the end
                now = time.perf_counter()
                for t in transcoders:
                    if t.media_s != idle[t][0]:
                        idle[t] = (t.media_s, now)
                # every byte of the file fed and nothing new encoded for a second: the
                # transcoder waits for input (ffmpeg reports progress only between reads, and
                # the recorder's last cluster closes with the next packets)
                if all(
                    t.raw.exists()
                    and t.fed_bytes >= t.raw.stat().st_size
                    and now - idle[t][1] > 1.0
                    for t in transcoders
                ):
                    break
                await asyncio.sleep(0.02)
    rss_end = rss_mib()
    rss_peak = max(rss_peak, rss_end)
    end = time.perf_counter()
    live_encoded_s = min((t.media_s for t in transcoders), default=0.0)
    summaries = await asyncio.gather(*(stream.recorder.stop() for stream in simulated))
    stopped = time.perf_counter()
    cpu_recording = time.process_time() - cpu_start - feeder_cpu
    for transcoder in transcoders:
        transcoder.finish()

    children_before = children_cpu_s()
    playable = await asyncio.gather(
        *(make_playable(s.path, out_dir=s.path.parent, ffmpeg=ffmpeg) for s in simulated)
    )
    ready = time.perf_counter()
    fed_seconds = ticks * TICK_S
    verified = [
        await asyncio.to_thread(decodes_near_end, s.path, duration_s=facts.duration_s)
        for s, (facts, _) in zip(simulated, playable, strict=True)
    ]
    frames_written = sum(
        summary.tracks["video"].frames + summary.tracks["audio"].frames for summary in summaries
    )
    frames_fed = sum(s.frames_fed for s in simulated)
    bytes_fed = sum(s.bytes_fed for s in simulated)
    bytes_out = sum(s.path.stat().st_size for s in simulated)
    durations = [facts.duration_s for facts, _ in playable]
    figures: dict[str, Any] = {
        "streams": streams,
        "cpu_percent_per_stream": round(100 * cpu_recording / (fed_seconds * streams), 3),
        "ready_after_end_s": round(ready - end, 2),
        "size_overhead_ratio": round(bytes_out / bytes_fed - 1, 4),
        "frames_lost": frames_fed - frames_written,
        "media_minutes": round(fed_seconds / 60, 2),
        "pace": pace,
        "wall_s": round(end - wall_start, 1),
        "speed_x": round(fed_seconds / (end - wall_start), 1),
        "stop_s": round(stopped - end, 2),
        "playable_step_s": round(ready - stopped, 2),
        "playable_cpu_s": round(children_cpu_s() - children_before, 2),
        "playable_verified": all(verified),
        "duration_error_s": round(max(abs(d - fed_seconds) for d in durations), 3),
        "writer_thread_s_per_stream": round(
            sum(summary.process_seconds for summary in summaries) / streams, 2
        ),
        "rss_mib_before": round(baseline_rss, 1),
        "rss_mib_per_stream": round((rss_peak - baseline_rss) / streams, 1),
        "rss_growth_second_half_mib": round(rss_end - rss_half, 1),
        "bytes_out_per_stream": bytes_out // streams,
        "errors": [error for summary in summaries for error in summary.errors],
        # where lost frames went, over all streams (recordings.capture.TrackSummary)
        "recorder_counts": {
            key: sum(getattr(summary.tracks[kind], key) for summary in summaries)
            for kind in ("video", "audio")
            for key in (
                "frames_lost",
                "frames_cut",
                "frames_skipped",
                "late_packets",
                "duplicates",
            )
        },
    }
    if live_hls:
        figures.update(
            await _h264_figures(
                simulated, transcoders, playable, end=end, stopped=stopped, live_cpu=live_cpu
            )
        )
        figures["live_speed_x"] = round(live_encoded_s / (end - wall_start), 2)
        figures["live_keeps_up"] = figures["live_speed_x"] >= 1.0
        figures["live_nice"] = live_nice
    watcher.cancel()
    return RunResult(figures, simulated[0].path, stopped - end)


async def _h264_figures(
    simulated: Sequence[SimulatedStream],
    transcoders: Sequence[LiveTranscoder],
    playable: Sequence[tuple[MediaFacts, dict[str, Any]]],
    *,
    end: float,
    stopped: float,
    live_cpu: LiveCpu,
) -> dict[str, Any]:
    """After the playable step: the live transcoders' tail and what the job does with them."""
    from recordings.live_hls import renditions_from_live
    from recordings.processing import make_renditions

    async def h264(stream: SimulatedStream, facts: MediaFacts) -> dict[str, Any]:
        folder = stream.path.parent
        outputs = await renditions_from_live(
            stream.path, out_dir=folder, facts=facts, loudness="linear"
        )
        if outputs is None:
            outputs = await make_renditions(stream.path, out_dir=folder, facts=facts)
        return outputs

    tails = asyncio.gather(*(t.wait() for t in transcoders))
    results = await asyncio.gather(
        *(h264(s, facts) for s, (facts, _) in zip(simulated, playable, strict=True))
    )
    h264_ready = time.perf_counter()
    await tails
    live_cpu.sample()
    media_s = sum(facts.duration_s for facts, _ in playable)
    return {
        "h264_ready_after_end_s": round(h264_ready - end, 2),
        "h264_from": sorted({outputs["renditions_from"] for outputs in results}),
        "h264_duration_error_s": round(
            max(
                abs(outputs["duration_s"] - facts.duration_s)
                for outputs, (facts, _) in zip(results, playable, strict=True)
            ),
            3,
        ),
        "live_outcomes": sorted({t.outcome or "running" for t in transcoders}),
        "live_cpu_percent_per_stream": round(100 * live_cpu.total_s / media_s, 1),
        "live_tail_s": round(max(t.ended_at or h264_ready for t in transcoders) - stopped, 2),
    }


async def reference_transcode(raw: Path, *, stop_s: float) -> dict[str, Any]:
    """ffmpeg re-encoding one recording to H.264/AAC MP4 (+faststart), as processing does."""
    from recordings.ffmpeg_memory import FfmpegPeak
    from recordings.processing import probe_media, transcode_mp4

    started = time.perf_counter()
    facts = await asyncio.to_thread(probe_media, raw, trust_header=True)
    cpu_before = children_cpu_s()
    encode_started = time.perf_counter()
    target = raw.with_name("reference.mp4")
    async with FfmpegPeak() as peak:
        await transcode_mp4(raw, target, facts=facts)
    encoded = time.perf_counter()
    return {
        "what": "ffmpeg libx264 veryfast crf 26 + AAC 96k MP4 +faststart of stream 1",
        "media_minutes": round(facts.duration_s / 60, 2),
        "transcode_s": round(encoded - encode_started, 1),
        "ready_after_end_s": round(stop_s + encoded - started, 1),
        "speed_x": round(facts.duration_s / (encoded - encode_started), 1),
        "ffmpeg_cpu_s": round(children_cpu_s() - cpu_before, 1),
        "ffmpeg_peak_rss_mib": peak.mib,
        "mp4_bytes": target.stat().st_size,
    }


async def renditions_run(raw: Path, *, loudness: LoudnessMode = "linear") -> dict[str, Any]:
    """The processing job's second step on one recording: loudness measure (``linear``), HLS
    main + low rendition, thumbnail sprite, MP4 remux; ``ffmpeg_peak_rss_mib`` is the highest
    of its ffmpeg runs."""
    from recordings.ffmpeg_memory import FfmpegPeak
    from recordings.processing import make_renditions, probe_media

    facts = await asyncio.to_thread(probe_media, raw, trust_header=True)
    cpu_before = children_cpu_s()
    started = time.perf_counter()
    async with FfmpegPeak() as peak:
        outputs = await make_renditions(
            raw, out_dir=raw.parent, facts=facts, loudness=loudness, ffmpeg=recording_ffmpeg()
        )
    seconds = time.perf_counter() - started
    return {
        "what": "HLS main (crf 26) + low 360p 300 kbit/s, thumbnails, MP4 remux",
        "loudness": outputs["loudness"],
        "media_minutes": round(facts.duration_s / 60, 2),
        "seconds": round(seconds, 1),
        "speed_x": round(facts.duration_s / seconds, 1),
        "ffmpeg_cpu_s": round(children_cpu_s() - cpu_before, 1),
        "ffmpeg_peak_rss_mib": peak.mib,
        "ffmpeg_peak_private_mib": peak.private_mib,
        "runs": peak.runs,
        "mp4_bytes": outputs["size_bytes"],
    }


def _loudness_text(loudness: dict[str, Any]) -> str:
    if "gain_db" not in loudness:
        return str(loudness["mode"])
    return f"linear ({loudness['measured_lufs']} LUFS, gain {loudness['gain_db']:+} dB)"


def print_table(report: dict[str, Any], write: Callable[[str], None]) -> None:
    clip = report["input"]
    write(
        f"Recording benchmark — {report['minutes']} min lessons, pace {report['pace']}, "
        f"input {clip['kbps']:.0f} kbit/s VP8 {clip['video']} + Opus (looped "
        f"{clip['clip_seconds']:g} s clip); {os.cpu_count()} cores, load {report['load']}"
    )
    header = (
        f"{'streams':>7} {'CPU %/stream':>12} {'ready s':>8} {'overhead %':>10} "
        f"{'lost':>5} {'RSS MiB/str':>11} {'RSS 2nd half':>12} {'speed x':>8} {'plays':>6}"
    )
    write(header)
    for run in report["runs"]:
        write(
            f"{run['streams']:>7} {run['cpu_percent_per_stream']:>12.3f} "
            f"{run['ready_after_end_s']:>8.2f} {100 * run['size_overhead_ratio']:>10.2f} "
            f"{run['frames_lost']:>5} {run['rss_mib_per_stream']:>11.1f} "
            f"{run['rss_growth_second_half_mib']:>+12.1f} {run['speed_x']:>8.1f} "
            f"{'yes' if run['playable_verified'] else 'NO':>6}"
        )
    for run in report["runs"]:
        if "h264_ready_after_end_s" in run:
            write(
                f"  H.264 (HLS + MP4, live transcode) of {run['streams']} stream(s): ready "
                f"{run['h264_ready_after_end_s']:.2f} s after the end (tail "
                f"{run['live_tail_s']:.2f} s), live ffmpeg {run['live_cpu_percent_per_stream']}"
                f" % of a core per stream, speed {run['live_speed_x']}x, from "
                f"{'/'.join(run['h264_from'])}"
                + ("" if run["live_keeps_up"] else " — SLOWER THAN REAL TIME: not valid")
            )
    renditions = report.get("renditions")
    if renditions:
        write(
            f"renditions (HLS main + low, thumbnails, MP4) of one {renditions['media_minutes']} "
            f"min recording, loudness {_loudness_text(renditions['loudness'])}: "
            f"{renditions['seconds']} s "
            f"({renditions['speed_x']}x real time), "
            f"ffmpeg CPU {renditions['ffmpeg_cpu_s']} s, processing peak RSS "
            f"{renditions['ffmpeg_peak_rss_mib']} MiB ("
            + ", ".join(
                f"{name} {run['peak_mib']} MiB, private {run.get('private_mib', 0.0)} MiB,"
                f" file {run.get('file_mib', 0.0)} MiB / {run['cpu_s']} s CPU"
                for name, run in renditions["runs"].items()
            )
            + ")"
        )
    reference = report.get("reference")
    if reference:
        write(
            f"reference (H.264 re-encode of one {reference['media_minutes']} min recording): "
            f"ready after end {reference['ready_after_end_s']} s, transcode "
            f"{reference['transcode_s']} s ({reference['speed_x']}x real time), ffmpeg CPU "
            f"{reference['ffmpeg_cpu_s']} s, peak RSS {reference['ffmpeg_peak_rss_mib']} MiB"
        )


async def run_benchmark(
    *,
    minutes: float,
    streams: Sequence[int],
    pace: Pace = "fast",
    reference: bool = True,
    renditions: bool = False,
    loudness: LoudnessMode = "linear",
    clip_seconds: float = 30.0,
    workdir: Path | None = None,
    resolution: tuple[int, int] = BASE_RESOLUTION,
    live_hls: bool = False,
    live_nice: int = 10,
) -> dict[str, Any]:
    """Every run, then the reference; returns the JSON document."""
    if shutil.which("ffmpeg") is None:
        raise RuntimeError("ffmpeg is required (apt-get install ffmpeg)")
    if clip_seconds <= 0 or abs(clip_seconds / TICK_S - round(clip_seconds / TICK_S)) > 1e-9:
        raise ValueError(f"clip seconds must be a positive multiple of {TICK_S}")
    with tempfile.TemporaryDirectory(prefix="tongke-bench-recording-", dir=workdir) as temporary:
        directory = Path(temporary)
        clip_path = directory / "clip.webm"
        encode_clip(clip_path, seconds=clip_seconds, resolution=resolution)
        clip = load_clip(clip_path, seconds=clip_seconds)
        report: dict[str, Any] = {
            "runs": [],
            "minutes": minutes,
            "pace": pace,
            "load": os.getloadavg()[0],
            "cpu_count": os.cpu_count(),
            "input": {
                "video": f"{resolution[0]}x{resolution[1]} 30 fps",
                "clip_seconds": clip_seconds,
                "kbps": round(clip.kbps, 1),
                "video_frames_per_clip": clip.video_frames,
                "audio_frames_per_clip": clip.audio_frames,
            },
        }
        for count in streams:
            run_dir = directory / f"run-{count}"
            result = await run_streams(
                clip,
                streams=count,
                minutes=minutes,
                pace=pace,
                directory=run_dir,
                live_hls=live_hls,
                live_nice=live_nice,
            )
            report["runs"].append(result.figures)
            if reference and "reference" not in report:
                report["reference"] = await reference_transcode(
                    result.first_raw, stop_s=result.stop_s
                )
            if renditions and "renditions" not in report:
                report["renditions"] = await renditions_run(result.first_raw, loudness=loudness)
            shutil.rmtree(run_dir, ignore_errors=True)  # 45 min x 8 streams is ~2.7 GB
        report["load_after"] = os.getloadavg()[0]
        return report


def main(
    *,
    minutes: float,
    streams: Sequence[int],
    json_path: Path | None,
    pace: Pace = "fast",
    reference: bool = True,
    renditions: bool = False,
    loudness: LoudnessMode = "linear",
    clip_seconds: float = 30.0,
    workdir: Path | None = None,
    resolution: tuple[int, int] = BASE_RESOLUTION,
    live_hls: bool = False,
    live_nice: int = 10,
    write: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Run, print the table, write the JSON; the entry point of ``tongke bench recording``."""
    report = asyncio.run(
        run_benchmark(
            minutes=minutes,
            streams=streams,
            pace=pace,
            reference=reference,
            renditions=renditions,
            loudness=loudness,
            clip_seconds=clip_seconds,
            workdir=workdir,
            resolution=resolution,
            live_hls=live_hls,
            live_nice=live_nice,
        )
    )
    print_table(report, write)
    if json_path is not None:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(report, ensure_ascii=False, indent=2) + "\n", "utf-8")
    return report


def _parse_streams(text: str) -> list[int]:
    return [int(part) for part in text.split(",") if part.strip()]


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--minutes", type=float, default=45.0)
    parser.add_argument("--streams", type=_parse_streams, default=[1, 4, 8])
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--pace", choices=["fast", "realtime"], default="fast")
    parser.add_argument("--no-reference", action="store_true")
    parser.add_argument("--renditions", action="store_true")
    parser.add_argument("--loudness", choices=["linear", "dynamic", "off"], default="linear")
    parser.add_argument("--clip-seconds", type=float, default=30.0)
    parser.add_argument("--resolution", type=parse_resolution, default=BASE_RESOLUTION)
    parser.add_argument("--live-hls", action="store_true")
    parser.add_argument("--live-nice", type=int, default=10)
    arguments = parser.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    main(
        minutes=arguments.minutes,
        streams=arguments.streams,
        json_path=arguments.json,
        pace=arguments.pace,
        reference=not arguments.no_reference,
        renditions=arguments.renditions,
        loudness=arguments.loudness,
        clip_seconds=arguments.clip_seconds,
        resolution=arguments.resolution,
        live_hls=arguments.live_hls,
        live_nice=arguments.live_nice,
    )
