"""After the bell: turn a raw WebM recording into what browsers play, as a retried job.

Two steps. ``make_playable`` (under a second for a 45-minute lesson: the duration comes from
the header of a file the recorder closed, the poster from one decoded frame) checks
``raw.webm`` (VP8 + Opus, as captured), writes ``poster.jpg`` and the chapters from the
sidecar, and the recording is ``ready``: the library serves the WebM, which Chromium, Firefox
and Edge play. ``make_renditions`` then makes what every device plays, one ffmpeg run per
rendition and one for the sprite (each run's peak RSS under 100 MiB for a 45-minute 360p
lesson and flat in its length: the main run 85 MiB after 2 minutes, 87 after 20 and after 45;
``benchmarks/ffmpeg_growth.py``, ``tongke bench recording --renditions``):
HLS in ~4 s fMP4 segments with the main rendition and a 360p ~300 kbit/s one, a thumbnail
sprite with its WebVTT index, and ``lesson.mp4`` (the main rendition remuxed,
``+faststart``), the audio brought to -16 LUFS by one gain measured first (``Loudness``).
That costs minutes for a 45-minute lesson, unless ``recordings.live_hls`` transcoded it while
it was recorded: then only ``finish_renditions`` runs, in seconds (a live run cannot measure
ahead: for ``linear`` its audio goes through a streaming normaliser instead, ``LIVE_NORMALISER``).

Every output is written under a temporary name and moved into place, so re-running the job
(a retry, a worker killed mid-job, a manual re-process) replaces the outputs whole or not at
all. With S3 storage configured, everything is uploaded at the end (``recordings.storage``).
"""

from __future__ import annotations

import asyncio
import ctypes
import functools
import itertools
import json
import math
import os
import re
import shutil
import struct
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Any, Literal

from sqlalchemy.orm import Session, sessionmaker

from common.db import get_engine, session_factory, transaction
from common.jobs import JobContext, JobQueue
from common.logging import get_logger
from common.settings import Settings
from recordings.models import Recording
from recordings.storage import MediaStorage, remote_storage

log = get_logger(__name__)

PROCESS_JOB = "process_recording"
EXPIRE_JOB = "expire_recordings"
PROCESS_RETRIES = 2
MP4_NAME = "lesson.mp4"
POSTER_NAME = "poster.jpg"
HLS_DIR = "hls"
HLS_MASTER = "master.m3u8"
THUMBS_NAME = "thumbs.jpg"
THUMBS_INDEX = "thumbs.vtt"
SEGMENT_S = 4
SEGMENT_PATTERN = "seg_%05d.m4s"
# ffmpeg's HLS muxer keeps a ~9 KiB record of every segment a playlist lists until the run
# ends (+9 MiB of peak RSS over a 45-minute lesson): a run lists only its last one, and the
# whole VOD playlist is written from the segments afterwards (``complete_playlist``)
HLS_WINDOW = 1
# a segment's sidx boxes come right after its styp, before the moof
SIDX_SEARCH_BYTES = 4096
# The rendition for weak links: 360p at ~300 kbit/s video + 48 kbit/s audio.
LOW_HEIGHT = 360
LOW_VIDEO_KBPS = 300
THUMB_WIDTH = 160
THUMB_COLUMNS = 10
MAX_THUMBS = 200
# Loudness normalisation of the web versions (EBU R128, the level of spoken-word streaming)
TARGET_LUFS = -16.0
MAX_TRUE_PEAK_DBTP = -1.5
LOUDNORM = f"loudnorm=I={TARGET_LUFS:g}:TP={MAX_TRUE_PEAK_DBTP:g}:LRA=11"
# Below this a recording is a room's noise floor or silence (ebur128 gives -70 for silence):
# raising it would only make the hiss loud.
NEAR_SILENCE_LUFS = -60.0
# A live run's level (it cannot measure the whole first): dynaudnorm aiming each 2 s frame's
# RMS at 0.14 per channel (speech at about TARGET_LUFS), smoothed over 3 frames (it holds
# back 8 s of audio, under the muxer's 10 s interleave window), at most +24 dB, sample peaks
# at -1.5 dBFS; frames whose peak is under -56.5 dBFS (a room's hiss, silence) are left as
# they are. Figures: docs/recordings-measurements.md (recordings.bench_live_loudness).
LIVE_NORMALISER = "dynaudnorm=f=2000:g=3:p=0.84:m=16:r=0.14:t=0.0015"
CHAPTER_EVENTS = {
    "hand_accepted": "远端教室发言",
    "hand_raised": "远端教室举手",
    "speaker_changed": "发言人切换",
    "publisher_joined": "主讲教室重新连接",
}
MIN_CHAPTER_GAP_S = 5.0
# outputs noted before processing that it keeps: the recorder's alerts (a full disk,
# recordings.service.note_alert) and a 教研 meeting's retired preview, until the retention run
# deletes it (recordings.service.retire_previews)
KEPT = ("alerts", "preview", "preview_retired_at")

Report = Callable[[float, str], Awaitable[None]]


def rendition_playlist(work: Path, name: str) -> Path:
    """Where a rendition run in ``work`` writes its media playlist."""
    return work / HLS_DIR / name / "index.m3u8"


def incomplete_note(outputs: dict[str, Any] | None) -> str:
    """Why a recording stops short (a full disk while recording), or ""."""
    for alert in (outputs or {}).get("alerts", []):
        if alert.get("kind") in ("disk_full", "write_failed"):
            return f"录像不完整：{alert.get('message', '')}"
    return ""


class ProcessingError(RuntimeError):
    """ffmpeg failed or the raw file is unusable; the message is shown to staff."""


@dataclass(frozen=True)
class MediaFacts:
    duration_s: float
    has_video: bool
    has_audio: bool
    width: int = 0
    height: int = 0


def probe_media(path: Path, *, trust_header: bool = False) -> MediaFacts:
    """Duration and streams. With ``trust_header`` (a file its writer closed: the recorder's
    sidecar says so, or an MP4 we made) the container's own duration is used, instantly;
    otherwise it is read from every packet's timestamp (no decoding, ~2 s for 45 minutes): a
    recording cut short by a crash has no duration in its header."""
    import av  # loads only where a job runs

    try:
        container = av.open(str(path))
    except (av.FFmpegError, OSError) as exc:
        log.warning("recording_unreadable", path=str(path), error=str(exc))
        raise ProcessingError("无法读取原始录像（文件损坏或为空）") from exc
    with container:
        has_video = bool(container.streams.video)
        has_audio = bool(container.streams.audio)
        width = container.streams.video[0].codec_context.width if has_video else 0
        height = container.streams.video[0].codec_context.height if has_video else 0
        if trust_header and container.duration:
            seconds = container.duration / 1_000_000  # AV_TIME_BASE
            return MediaFacts(seconds, has_video, has_audio, width, height)
        end = 0.0
        start: float | None = None
        for packet in container.demux():
            if packet.pts is None or packet.time_base is None:
                continue
            at = float(packet.pts * packet.time_base)
            start = at if start is None else min(start, at)
            if packet.duration:
                at += float(packet.duration * packet.time_base)
            end = max(end, at)
    return MediaFacts(max(end - (start or 0.0), 0.0), has_video, has_audio, width, height)


def chapters_from_sidecar(path: Path, *, duration_s: float) -> list[dict[str, Any]]:
    """Chapter marks from the lesson's events: start, hands taken, speaker changes, gaps."""
    if not path.exists():
        return [{"t": 0.0, "title": "课堂开始", "kind": "start"}]
    document = json.loads(path.read_text("utf-8"))
    # a composed meeting (recordings.composition) names its own start and marks
    start = {"t": 0.0, "title": document.get("start_title", "课堂开始"), "kind": "start"}
    chapters: list[dict[str, Any]] = [start]
    marks: list[dict[str, Any]] = []
    for event in document.get("events", []):
        title = event.get("title") or CHAPTER_EVENTS.get(event.get("kind", ""))
        if title is None:
            continue
        marks.append(
            {
                "t": float(event["t"]),
                "title": title,
                "kind": event["kind"],
                "who": event.get("participant"),
            }
        )
    for gap in document.get("gaps", []):
        if gap.get("kind") == "video":
            marks.append({"t": float(gap["to_s"]), "title": "信号中断后恢复", "kind": "gap"})
    for mark in sorted(marks, key=lambda m: m["t"]):
        if mark["t"] > duration_s:
            continue
        if (
            mark["t"] - chapters[-1]["t"] < MIN_CHAPTER_GAP_S
            and mark["kind"] == chapters[-1]["kind"]
        ):
            continue  # a burst of the same event is one chapter
        chapters.append(mark)
    return chapters


def _parse_progress(line: str) -> float | None:
    """Seconds of output written, from one line of ``ffmpeg -progress``."""
    key, _, value = line.strip().partition("=")
    if key in ("out_time_us", "out_time_ms") and value.lstrip("-").isdigit():
        # ffmpeg reports microseconds under both keys (out_time_ms is misnamed)
        return max(int(value), 0) / 1_000_000
    return None


PR_SET_THP_DISABLE = 41  # linux/prctl.h


@functools.cache
def without_huge_pages() -> bool:
    """No transparent huge pages for this process and the ffmpeg runs it starts (the flag is
    inherited and kept across exec): x264 asks for them on every buffer over 1.75 MiB and the
    kernel then keeps each such buffer resident in whole 2 MiB pages, touched or not: ~58 MiB
    of a 1080p run's RSS, 5.6 MiB more than the same buffers in 4 KiB pages (README). The
    output is bit-identical. False where the kernel refuses (not Linux, or older than 3.15)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return int(libc.prctl(PR_SET_THP_DISABLE, 1, 0, 0, 0)) == 0
    except (OSError, AttributeError):
        return False


async def run_ffmpeg(
    arguments: list[str],
    *,
    duration_s: float,
    report: Report | None,
    nice: int = 0,
    ffmpeg: str = "ffmpeg",
) -> str:
    """Run ffmpeg with ``arguments`` (``-progress pipe:1`` in them reports the share of
    ``duration_s`` written) and return its stderr; a failure raises ``ProcessingError`` with
    stderr's last lines. ``nice``: run it at that lower priority (work done beside a live
    meeting); ``ffmpeg``: which binary (``Settings.recording_ffmpeg`` for the web versions)."""
    without_huge_pages()
    process = await asyncio.create_subprocess_exec(
        *(["nice", "-n", str(nice)] if nice else []),
        ffmpeg,
        "-hide_banner",
        "-nostdin",
        "-y",
        *arguments,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert process.stdout is not None and process.stderr is not None
    stderr_task = asyncio.ensure_future(process.stderr.read())
    try:
        async for raw in process.stdout:
            seconds = _parse_progress(raw.decode(errors="replace"))
            if seconds is not None and report is not None and duration_s > 0:
                share = min(seconds / duration_s, 1.0)
                await report(share, f"转码 {seconds:.0f}/{duration_s:.0f} 秒")
        code = await process.wait()
    except BaseException:
        if process.returncode is None:
            process.kill()
            await process.wait()
        stderr_task.cancel()
        raise
    stderr = (await stderr_task).decode(errors="replace")
    if code != 0:
        tail = " | ".join(stderr.strip().splitlines()[-3:])
        raise ProcessingError(f"ffmpeg 退出码 {code}：{tail}")
    return stderr


async def transcode_mp4(
    raw: Path,
    target: Path,
    *,
    facts: MediaFacts,
    loudnorm: bool = False,
    report: Report | None = None,
) -> None:
    """H.264/AAC MP4 with the index up front (plays while downloading), written atomically
    (the benchmark's reference; ``loudnorm``: ffmpeg's one-pass dynamic normalisation)."""
    partial = target.with_name(f".{target.stem}.partial{target.suffix}")
    arguments = ["-i", str(raw)]
    if facts.has_video:
        arguments += ["-c:v", "libx264", "-preset", "veryfast", "-crf", "26", "-pix_fmt", "yuv420p"]
    else:
        arguments += ["-vn"]
    if facts.has_audio:
        arguments += ["-c:a", "aac", "-b:a", "96k"]
        if loudnorm:
            arguments += ["-af", LOUDNORM]
    else:
        arguments += ["-an"]
    arguments += ["-movflags", "+faststart", "-progress", "pipe:1", "-nostats", "-f", "mp4"]
    try:
        await run_ffmpeg([*arguments, str(partial)], duration_s=facts.duration_s, report=report)
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)


async def write_poster(raw: Path, target: Path, *, at_s: float, ffmpeg: str = "ffmpeg") -> None:
    partial = target.with_name(f".{target.stem}.partial{target.suffix}")
    try:
        await run_ffmpeg(
            [
                "-ss",
                f"{at_s:.2f}",
                "-i",
                str(raw),
                "-frames:v",
                "1",
                "-q:v",
                "4",
                "-f",
                "image2",
                str(partial),
            ],
            duration_s=0,
            report=None,
            ffmpeg=ffmpeg,
        )
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)


def _closed_cleanly(raw: Path) -> bool:
    """Whether the recorder closed this file itself (its sidecar's summary has the file's
    final size), so the duration in the header can be trusted."""
    sidecar = raw.with_name("events.json")
    try:
        summary = json.loads(sidecar.read_text("utf-8")).get("summary") or {}
    except (OSError, ValueError):
        return False
    return bool(summary.get("bytes")) and summary.get("bytes") == raw.stat().st_size


async def make_playable(
    raw: Path, *, out_dir: Path, report: Report | None = None, ffmpeg: str = "ffmpeg"
) -> tuple[MediaFacts, dict[str, Any]]:
    """The seconds after the bell: check the raw WebM plays (it is what browsers get first),
    take its duration, a poster (by ``ffmpeg``) and the chapters. No transcoding: a 45-minute
    lesson is ready in about the time it takes to read its packets once."""
    if not raw.exists():
        raise ProcessingError(f"原始录像不存在：{raw.name}")
    if shutil.which(ffmpeg) is None:
        raise ProcessingError("服务器未安装 ffmpeg")
    facts = await asyncio.to_thread(probe_media, raw, trust_header=_closed_cleanly(raw))
    if facts.duration_s <= 0:
        raise ProcessingError("原始录像没有可用的音视频")
    out_dir.mkdir(parents=True, exist_ok=True)
    outputs: dict[str, Any] = {
        "playable": "raw",
        "raw_duration_s": round(facts.duration_s, 3),
        "duration_s": round(facts.duration_s, 3),
        "raw_bytes": raw.stat().st_size,
    }
    if facts.has_video:
        if report is not None:
            await report(0.03, "生成封面")
        await write_poster(
            raw, out_dir / POSTER_NAME, at_s=min(1.0, facts.duration_s / 2), ffmpeg=ffmpeg
        )
        outputs["poster"] = POSTER_NAME
    outputs["chapters"] = chapters_from_sidecar(
        raw.with_name("events.json"), duration_s=facts.duration_s
    )
    return facts, outputs


@dataclass(frozen=True)
class ThumbnailGrid:
    """One tile every ``interval_s`` seconds, ``columns`` to a row of the sprite."""

    interval_s: int
    count: int
    width: int
    height: int
    columns: int = THUMB_COLUMNS

    @classmethod
    def for_media(cls, facts: MediaFacts) -> ThumbnailGrid:
        interval = max(2, math.ceil(facts.duration_s / MAX_THUMBS))
        height = THUMB_WIDTH * facts.height / facts.width if facts.width else 90
        return cls(
            interval_s=interval,
            # a tile only for a stretch with at least half a second of media
            count=max(1, math.ceil((facts.duration_s - 0.5) / interval)),
            width=THUMB_WIDTH,
            height=max(2, round(height / 2) * 2),
        )

    @classmethod
    def on_key_frames(cls, facts: MediaFacts, *, every_s: int = SEGMENT_S) -> ThumbnailGrid:
        """The grid for a source with a key frame every ``every_s`` seconds (our HLS
        renditions): tiles that many seconds apart or a multiple of it, so each tile is the
        key frame at its cue's start and decoding only key frames makes the sprite."""
        grid = cls.for_media(facts)
        interval = every_s * math.ceil(grid.interval_s / every_s)
        count = max(1, math.ceil((facts.duration_s - 0.5) / interval))
        return cls(interval_s=interval, count=count, width=grid.width, height=grid.height)

    @property
    def rows(self) -> int:
        return math.ceil(self.count / self.columns)

    def webvtt(self, *, duration_s: float, sprite: str) -> str:
        """The WebVTT index players use for seek-bar previews (``sprite#xywh=``)."""
        lines = ["WEBVTT", ""]
        for index in range(self.count):
            start = index * self.interval_s
            end = min(start + self.interval_s, duration_s)
            if end <= start:
                break
            x, y = (index % self.columns) * self.width, (index // self.columns) * self.height
            lines += [
                f"{_vtt_time(start)} --> {_vtt_time(end)}",
                f"{sprite}#xywh={x},{y},{self.width},{self.height}",
                "",
            ]
        return "\n".join(lines)


def _vtt_time(seconds: float) -> str:
    millis = round(seconds * 1000)
    hours, rest = divmod(millis, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    return f"{hours:02d}:{minutes:02d}:{rest // 1000:02d}.{rest % 1000:03d}"


@dataclass(frozen=True)
class Rendition:
    """One HLS variant, encoded by its own ffmpeg run (see ``rendition_arguments``)."""

    name: str
    height: int | None  # None: the source's height
    video_args: tuple[str, ...]
    audio_kbps: int


MAIN = Rendition("main", None, ("-crf", "26"), 96)
LOW = Rendition(
    "low",
    LOW_HEIGHT,
    (
        "-b:v", f"{LOW_VIDEO_KBPS}k",
        "-maxrate", f"{LOW_VIDEO_KBPS * 6 // 5}k",
        "-bufsize", f"{LOW_VIDEO_KBPS * 2}k",
    ),
    48,
)  # fmt: skip
# Memory, not speed, bounds how many lessons a worker processes at once: one encoder per
# ffmpeg run (two in one run cost ~50 MiB more at peak) and fixed thread counts (x264's
# default, 1.5 x cores, and the decoder's grow with the machine's cores). ~44 MiB of every
# run of Debian's ffmpeg is library pages shared by every ffmpeg, ~9 MiB its private start-up
# (see recordings.ffmpeg_memory; a lean build maps ~9 MiB in all: Settings.recording_ffmpeg);
# the rest pays for the decoder's frames (a few at the source's size) and x264's, which grow
# with the encoded size and with how many frames it holds: look-ahead, B-frames, and one more
# picture per frame thread (figures: README).
SMALL_HEIGHT = 480


@dataclass(frozen=True)
class EncoderBudget:
    """How one rendition run decodes and encodes (``-x264-params``, decoder threads)."""

    x264_params: str
    decoder_threads: int


def encoder_budget(*, source_height: int, output_height: int) -> EncoderBudget:
    """Settings that keep a run decoding ``source_height`` lines and encoding
    ``output_height`` lines within its memory: up to 480 lines both, x264's look-ahead of 10
    frames over two frame threads; larger, one decoder thread, x264 slicing each frame over
    two threads (no frame in flight per thread) and, for a large output, a look-ahead of 2
    frames without B-frames (each held frame costs ~3 MiB at 720p)."""
    small_source = source_height <= SMALL_HEIGHT
    small_output = output_height <= SMALL_HEIGHT
    threads = "threads=2" if small_source and small_output else "threads=2:sliced-threads=1"
    lookahead = "rc-lookahead=10" if small_output else "rc-lookahead=2:bframes=0"
    return EncoderBudget(f"{threads}:{lookahead}", 2 if small_source else 1)


LoudnessMode = Literal["linear", "dynamic", "off"]
# what a run applied: a live run's stand-in for "linear" is "live-dynaudnorm"
AppliedLoudness = Literal["linear", "dynamic", "off", "live-dynaudnorm"]


@dataclass(frozen=True)
class Loudness:
    """What the renditions' audio chain does to the level. ``linear``: one gain for the
    whole recording, from a measuring pass over its audio (``measure_loudness``), so the
    dynamics stay as recorded; ``dynamic``: ffmpeg's one-pass ``loudnorm``, which needs no
    measuring pass but about doubles a rendition run's memory (README); ``live-dynaudnorm``:
    ``LIVE_NORMALISER``, what ``linear`` means for a run that encodes while the lesson is
    recorded (``recordings.live_hls``); ``off``: as recorded. ``achieved_lufs``: the main
    rendition's integrated loudness, where its run measured it."""

    mode: AppliedLoudness = "off"
    gain_db: float = 0.0
    measured_lufs: float | None = None
    true_peak_dbtp: float | None = None
    achieved_lufs: float | None = None

    @classmethod
    def linear(cls, *, measured_lufs: float, true_peak_dbtp: float) -> Loudness:
        """The gain that brings ``measured_lufs`` to ``TARGET_LUFS``, held down so the true
        peak stays at or under ``MAX_TRUE_PEAK_DBTP`` (a quiet room with loud peaks stays
        under the target rather than clipping); none for silence or near-silence."""
        gain = 0.0
        if measured_lufs > NEAR_SILENCE_LUFS and math.isfinite(true_peak_dbtp):
            gain = min(TARGET_LUFS - measured_lufs, MAX_TRUE_PEAK_DBTP - true_peak_dbtp)
        # rounded: the same input gives the same filter text, so a retried job the same output
        return cls("linear", round(gain, 2) + 0.0, measured_lufs, true_peak_dbtp)

    @property
    def audio_filter(self) -> str:
        """The filters that open the audio chain, each followed by a comma ("" for none)."""
        if self.mode == "dynamic":
            return f"{LOUDNORM},"
        if self.mode == "live-dynaudnorm":
            return f"{LIVE_NORMALISER},"
        if self.mode == "linear" and self.gain_db:
            return f"volume={self.gain_db:.2f}dB,"
        return ""

    def as_outputs(self) -> dict[str, Any]:
        """The recording's ``outputs["loudness"]``."""
        figures: dict[str, Any] = {"mode": self.mode}
        if self.mode == "linear":
            figures |= {
                "target_lufs": TARGET_LUFS,
                "measured_lufs": self.measured_lufs,
                "true_peak_dbtp": self.true_peak_dbtp,
                "gain_db": self.gain_db,
            }
        elif self.mode == "dynamic":
            figures["target_lufs"] = TARGET_LUFS
        elif self.mode == "live-dynaudnorm":
            figures |= {
                "target_lufs": TARGET_LUFS,
                "filter": LIVE_NORMALISER,
                "achieved_lufs": self.achieved_lufs,
            }
        return figures


def _summary_figure(summary: str, label: str, unit: str) -> float | None:
    found = re.search(rf"{label}:\s+(-?(?:inf|[0-9.]+))\s+{unit}", summary)
    return float(found.group(1)) if found is not None else None


def loudness_arguments(raw: Path) -> list[str]:
    """The measuring pass: the audio alone decoded through ``ebur128`` (integrated loudness
    and true peak), nothing written; its summary goes to stderr at the end."""
    return [
        "-i", str(raw), "-vn", "-map", "0:a:0",
        "-af", "ebur128=peak=true:framelog=verbose",
        "-progress", "pipe:1", "-nostats", "-f", "null", "-",
    ]  # fmt: skip


def _ebur128_summary(stderr: str) -> str:
    """The last summary an ``ebur128`` filter printed to ``stderr`` ("" if none)."""
    return stderr[stderr.rfind("Summary:") :] if "Summary:" in stderr else ""


def metered_lufs(stderr: str) -> float | None:
    """The integrated loudness in the summary a ``LOUDNESS_METER`` printed to ``stderr``."""
    return _summary_figure(_ebur128_summary(stderr), "I", "LUFS")


async def measure_loudness(
    raw: Path, *, duration_s: float, report: Report | None, ffmpeg: str = "ffmpeg"
) -> Loudness:
    """The linear gain for ``raw``'s audio, from one measuring pass (``loudness_arguments``);
    no gain (and no figures in the outputs) when ffmpeg printed no summary to read."""
    stderr = await run_ffmpeg(
        loudness_arguments(raw), duration_s=duration_s, report=report, ffmpeg=ffmpeg
    )
    summary = _ebur128_summary(stderr)
    measured = _summary_figure(summary, "I", "LUFS")
    peak = _summary_figure(summary, "Peak", "dBFS")
    if measured is None or peak is None:
        # the web versions matter more than their level: made as recorded, the log says why
        log.warning("loudness_unmeasured", raw=str(raw), stderr=stderr[-300:])
        return Loudness("linear")
    return Loudness.linear(measured_lufs=measured, true_peak_dbtp=peak)


async def plan_loudness(
    raw: Path,
    *,
    facts: MediaFacts,
    mode: LoudnessMode,
    report: Report | None = None,
    ffmpeg: str = "ffmpeg",
) -> Loudness:
    """How the renditions of ``raw`` set their level in ``mode``: for ``linear``, the
    measuring pass runs here, at the start of the renditions step (seconds of CPU for a
    45-minute lesson, so not in the quick step that makes the recording ready)."""
    if not facts.has_audio or mode == "off":
        return Loudness()
    if mode == "dynamic":
        return Loudness("dynamic")
    return await measure_loudness(raw, duration_s=facts.duration_s, report=report, ffmpeg=ffmpeg)


# The sprite's run only decodes (its tile is small): two decoder threads fit at every size.
SPRITE_DECODER_THREADS = 2


# The integrated loudness of what a run encodes, in its summary on stderr at the end
# (``achieved_lufs``); no true peak: its 4x oversampling is most of a measuring pass's CPU.
LOUDNESS_METER = "ebur128=framelog=verbose"


def rendition_arguments(
    raw: Path,
    work: Path,
    *,
    rendition: Rendition,
    facts: MediaFacts,
    loudness: Loudness,
    meter: bool = False,
) -> list[str]:
    """One ffmpeg run for one rendition: HLS (fMP4, ``SEGMENT_S`` s segments; the key frames
    are forced on the same timestamps in every run, so segments align across renditions),
    writing ``hls/master-<name>.m3u8`` (merged by ``merge_masters``) and a playlist of its
    last segment only, which ``complete_playlist`` makes whole afterwards; the audio's level set
    by ``loudness``, the same in every rendition; with ``meter``, the level it comes out at
    measured on the way (``LOUDNESS_METER``, read by ``metered_lufs``)."""
    filters: list[str] = []
    maps: list[str] = []
    height = 0
    if facts.has_video:
        height = min(rendition.height, facts.height or rendition.height) if rendition.height else 0
        filters.append("[0:v]" + (f"scale=-2:{height}" if height else "null") + "[v]")
        maps += ["-map", "[v]"]
    if facts.has_audio:
        filters.append(
            f"[0:a]{loudness.audio_filter}aresample=48000,"
            "aformat=sample_fmts=fltp:channel_layouts=stereo"
            + (f",{LOUDNESS_METER}" if meter else "")
            + "[a]"
        )
        maps += ["-map", "[a]"]
    streams = ["v:0"] if facts.has_video else []
    streams += ["a:0"] if facts.has_audio else []
    budget = encoder_budget(source_height=facts.height, output_height=height or facts.height)
    arguments = [
        "-threads", str(budget.decoder_threads), "-i", str(raw),
        "-filter_complex", ";".join(filters), *maps,
    ]  # fmt: skip
    if facts.has_video:
        arguments += [
            "-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p",
            "-x264-params", budget.x264_params,
            "-force_key_frames", f"expr:gte(t,n_forced*{SEGMENT_S})",
            *rendition.video_args,
        ]  # fmt: skip
    if facts.has_audio:
        arguments += ["-c:a", "aac", "-b:a", f"{rendition.audio_kbps}k"]
    hls = work / HLS_DIR
    arguments += [
        "-f", "hls", "-hls_time", str(SEGMENT_S), "-hls_list_size", str(HLS_WINDOW),
        "-hls_segment_type", "fmp4", "-hls_fmp4_init_filename", "init.mp4",
        "-hls_segment_filename", str(hls / "%v" / SEGMENT_PATTERN),
        "-master_pl_name", f"master-{rendition.name}.m3u8",
        "-var_stream_map", ",".join([*streams, f"name:{rendition.name}"]),
        str(hls / "%v" / "index.m3u8"),
    ]  # fmt: skip
    return [*arguments, "-progress", "pipe:1", "-nostats"]


def _segment_start(segment: Path) -> tuple[int, int]:
    """(earliest presentation time, timescale) of an fMP4 segment's first track (the video
    when there is one: ffmpeg's reference for cutting), from its first ``sidx`` box."""
    with segment.open("rb") as file:
        head = file.read(SIDX_SEARCH_BYTES)
    at = 0
    while at + 8 <= len(head):
        size, kind = struct.unpack_from(">I4s", head, at)
        if kind == b"sidx":
            version = head[at + 8]
            timescale = struct.unpack_from(">I", head, at + 16)[0]
            start = struct.unpack_from(">Q" if version else ">I", head, at + 20)[0]
            return int(start), int(timescale)
        if size < 8:
            break
        at += size
    raise ProcessingError(f"HLS 分段缺少索引：{segment.name}")


def complete_playlist(playlist: Path) -> None:
    """Rewrite the playlist a rendition's run left (its last ``HLS_WINDOW`` segments) as the
    VOD playlist of all of them, as ffmpeg writes one when it keeps every segment in memory:
    a segment before the window lasts from its start to the next one's (their ``sidx``), the
    same presentation times ffmpeg cuts on. A VOD playlist already is left alone."""
    lines = playlist.read_text("utf-8").splitlines()
    if "#EXT-X-PLAYLIST-TYPE:VOD" in lines:
        return
    marks = [line for line in lines if line.startswith("#EXT-X-MEDIA-SEQUENCE:")]
    sequence = int(marks[0].partition(":")[2]) if marks else 0
    first_entry = next(i for i, line in enumerate(lines) if line.startswith("#EXTINF:"))
    header = [
        line
        for line in lines[:first_entry]
        if not line.startswith(("#EXT-X-TARGETDURATION", "#EXT-X-MEDIA-SEQUENCE"))
    ]
    folder = playlist.parent
    starts = [_segment_start(folder / (SEGMENT_PATTERN % n)) for n in range(sequence + 1)]
    entries: list[str] = []
    for number, (start, following) in enumerate(itertools.pairwise(starts)):
        seconds = (following[0] - start[0]) / start[1]
        entries += [f"#EXTINF:{seconds:.6f},", SEGMENT_PATTERN % number]
    entries += lines[first_entry:]
    lengths = [float(line[8:].split(",")[0]) for line in entries if line.startswith("#EXTINF:")]
    # what ffmpeg declares: the longest segment, rounded to the nearest second
    target = max(math.floor(seconds + 0.5) for seconds in lengths)
    at = 2 if header[1:2] and header[1].startswith("#EXT-X-VERSION") else 1
    header[at:at] = [
        f"#EXT-X-TARGETDURATION:{target}",
        "#EXT-X-MEDIA-SEQUENCE:0",
        "#EXT-X-PLAYLIST-TYPE:VOD",
    ]
    partial = playlist.with_name(f".{playlist.name}.partial")
    partial.write_text("\n".join([*header, *entries]) + "\n", "utf-8")
    os.replace(partial, playlist)


def sprite_arguments(raw: Path, target: Path, *, grid: ThumbnailGrid) -> list[str]:
    """The thumbnail sprite, by a run of its own: in a rendition's run its 1600-pixel-wide
    tile and JPEG encoder add ~14 MiB to that run's peak; decoding once more costs less."""
    return [
        "-threads", str(SPRITE_DECODER_THREADS), "-i", str(raw), "-an",
        "-vf", f"fps=1/{grid.interval_s},scale={grid.width}:{grid.height},"
        f"tile={grid.columns}x{grid.rows}",
        "-frames:v", "1", "-update", "1", "-q:v", "5", str(target),
        "-progress", "pipe:1", "-nostats",
    ]  # fmt: skip


# A key frame forced at ``n * SEGMENT_S`` lands on the first frame at or after that time.
KEY_FRAME_SLACK_S = 0.25


def key_frame_sprite_arguments(source: Path, target: Path, *, grid: ThumbnailGrid) -> list[str]:
    """The thumbnail sprite from a source with a key frame every ``grid.interval_s`` seconds
    or more often (see ``ThumbnailGrid.on_key_frames``), decoding only its key frames: a
    10-minute lesson is 150 pictures to decode instead of 18 000. Each tile is the first key
    frame at or after its cue's start (``select`` on the source's clock, which players show)."""
    pick = f"gte(t,selected_n*{grid.interval_s}-{KEY_FRAME_SLACK_S})"
    return [
        "-skip_frame", "nokey", "-threads", str(SPRITE_DECODER_THREADS), "-i", str(source),
        "-an", "-vf", f"select='{pick}',"
        f"scale={grid.width}:{grid.height},tile={grid.columns}x{grid.rows}",
        "-fps_mode", "vfr", "-frames:v", "1", "-update", "1", "-q:v", "5", str(target),
        "-progress", "pipe:1", "-nostats",
    ]  # fmt: skip


def merge_masters(hls: Path, names: Sequence[str]) -> None:
    """One master playlist listing every rendition, from the one each run wrote."""
    lines: list[str] = []
    for name in names:
        part = hls / f"master-{name}.m3u8"
        for line in part.read_text("utf-8").splitlines():
            header = line.startswith(("#EXTM3U", "#EXT-X-VERSION", "#EXT-X-INDEPENDENT"))
            if line.strip() and not (header and line in lines):
                lines.append(line)
        part.unlink()
    (hls / HLS_MASTER).write_text("\n".join(lines) + "\n", "utf-8")


def _variant_bandwidths(playlist: Path) -> tuple[int, int]:
    """(peak, average) bits per second of a variant, from its segments' sizes and lengths."""
    folder = playlist.parent
    peak = 0.0
    total_bytes = 0
    total_s = 0.0
    duration: float | None = None
    for line in playlist.read_text("utf-8").splitlines():
        if line.startswith("#EXT-X-MAP:"):
            found = re.search(r'URI="([^"]+)"', line)
            if found is not None:
                total_bytes += (folder / found.group(1)).stat().st_size
        elif line.startswith("#EXTINF:"):
            duration = float(line.removeprefix("#EXTINF:").split(",")[0])
        elif line and not line.startswith("#") and duration is not None:
            size = (folder / line).stat().st_size
            total_bytes += size
            total_s += duration
            if duration >= 1.0:
                peak = max(peak, size * 8 / duration)
            duration = None
    average = total_bytes * 8 / total_s if total_s else 0.0
    return round(max(peak, average) * 1.1), round(average)


def rewrite_master(master: Path) -> None:
    """ffmpeg declares BANDWIDTH from nominal bitrates (none for a CRF encode): declare what
    the segments really need, so players pick the low rendition on a weak link."""
    lines = master.read_text("utf-8").splitlines()
    out: list[str] = []
    for index, line in enumerate(lines):
        if line.startswith("#EXT-X-STREAM-INF:") and index + 1 < len(lines):
            peak, average = _variant_bandwidths(master.parent / lines[index + 1].strip())
            attributes = re.sub(r"BANDWIDTH=\d+", f"BANDWIDTH={peak}", line)
            line = attributes.replace(
                f"BANDWIDTH={peak}", f"BANDWIDTH={peak},AVERAGE-BANDWIDTH={average}", 1
            )
        out.append(line)
    master.write_text("\n".join(out) + "\n", "utf-8")


def _replace_tree(source: Path, target: Path) -> None:
    """Put ``source`` where ``target`` is, the old one going only once the new one is whole."""
    old = target.with_name(f".{target.name}.old")
    shutil.rmtree(old, ignore_errors=True)
    if target.exists():
        os.replace(target, old)
    os.replace(source, target)
    shutil.rmtree(old, ignore_errors=True)


def _share(report: Report | None, first: float, last: float, label: str = "") -> Report:
    """Progress of one ffmpeg run as its span of the renditions step (5 %..90 % of the job);
    ``label`` in place of the run's own message."""

    async def scaled(share: float, message: str) -> None:
        if report is not None:
            await report(0.05 + 0.85 * (first + (last - first) * share), label or message)

    return scaled


async def make_renditions(
    raw: Path,
    *,
    out_dir: Path,
    facts: MediaFacts,
    loudness: LoudnessMode = "linear",
    report: Report | None = None,
    ffmpeg: str = "ffmpeg",
) -> dict[str, Any]:
    """What every device plays, after the recording is already playable from its raw file:
    HLS with the main and a low-bitrate rendition, a thumbnail strip with its WebVTT index,
    and the MP4 (the main rendition remuxed, +faststart) for download and old players, the
    audio's loudness normalised as ``loudness`` says (see ``Loudness``). One ffmpeg run per
    rendition; everything is built in a work folder and moved into place, so a re-run
    replaces the outputs whole (and measures the raw file again: the same gain)."""
    work = out_dir / ".renditions.partial"
    shutil.rmtree(work, ignore_errors=True)
    (work / HLS_DIR).mkdir(parents=True)

    # one ffmpeg run per rendition, then one for the sprite (see encoder_budget): decoding the
    # raw file again costs ~10 % of an encode
    renditions = [MAIN, LOW] if facts.has_video else [MAIN]
    # the main rendition is most of the work, the loudness measure and the sprite little
    spans = [(0.03, 0.6), (0.6, 0.9)] if facts.has_video else [(0.03, 1.0)]
    try:
        level = await plan_loudness(
            raw,
            facts=facts,
            mode=loudness,
            report=_share(report, 0.0, 0.03, "测量响度"),
            ffmpeg=ffmpeg,
        )
        for rendition, (first, last) in zip(renditions, spans, strict=True):
            await run_ffmpeg(
                rendition_arguments(raw, work, rendition=rendition, facts=facts, loudness=level),
                duration_s=facts.duration_s,
                report=_share(report, first, last),
                ffmpeg=ffmpeg,
            )
            await asyncio.to_thread(complete_playlist, rendition_playlist(work, rendition.name))
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    outputs = await finish_renditions(
        work,
        out_dir=out_dir,
        facts=facts,
        renditions=[r.name for r in renditions],
        loudness=level,
        # the sprite from the low rendition's key frames, not by decoding the whole raw file
        sprite_from=rendition_playlist(work, LOW.name) if facts.has_video else raw,
        key_frames_only=facts.has_video,
        report=report,
        ffmpeg=ffmpeg,
    )
    outputs["renditions_from"] = "full"
    return outputs


async def finish_renditions(
    work: Path,
    *,
    out_dir: Path,
    facts: MediaFacts,
    renditions: Sequence[str],
    loudness: Loudness,
    sprite_from: Path,
    key_frames_only: bool = False,
    report: Report | None = None,
    ffmpeg: str = "ffmpeg",
) -> dict[str, Any]:
    """From the renditions' runs in ``work/hls`` (here, or ``recordings.live_hls`` during the
    lesson): the master playlist, the thumbnail sprite (from ``sprite_from``; with
    ``key_frames_only``, a rendition of ours with a key frame every ``SEGMENT_S``, decoding
    only those: 1-4 s for 10 minutes on a loaded machine), the MP4, all moved into place; ``work``
    is removed whatever happens."""
    grid: ThumbnailGrid | None = None
    if facts.has_video:
        layout = ThumbnailGrid.on_key_frames if key_frames_only else ThumbnailGrid.for_media
        grid = layout(facts)
    try:
        merge_masters(work / HLS_DIR, renditions)
        if grid is not None:
            make_sprite = key_frame_sprite_arguments if key_frames_only else sprite_arguments
            await run_ffmpeg(
                make_sprite(sprite_from, work / THUMBS_NAME, grid=grid),
                duration_s=facts.duration_s,
                report=_share(report, 0.9, 1.0, "生成缩略图"),
                ffmpeg=ffmpeg,
            )
        rewrite_master(work / HLS_DIR / HLS_MASTER)
        if report is not None:
            await report(0.92, "生成 MP4")
        await run_ffmpeg(
            [
                "-i", str(rendition_playlist(work, MAIN.name)),
                "-c", "copy", "-movflags", "+faststart", "-f", "mp4", str(work / MP4_NAME),
            ],
            duration_s=0,
            report=None,
            ffmpeg=ffmpeg,
        )  # fmt: skip
        outputs: dict[str, Any] = {
            "mp4": MP4_NAME,
            "hls": f"{HLS_DIR}/{HLS_MASTER}",
            "hls_renditions": ["main", "low"] if facts.has_video else ["main"],
            "loudness": loudness.as_outputs(),
        }
        if grid is not None:
            (work / THUMBS_INDEX).write_text(
                grid.webvtt(duration_s=facts.duration_s, sprite=THUMBS_NAME), "utf-8"
            )
            outputs["thumbnails"] = {
                "sprite": THUMBS_NAME,
                "index": THUMBS_INDEX,
                "interval_s": grid.interval_s,
                "count": grid.count,
                "width": grid.width,
                "height": grid.height,
                "columns": grid.columns,
            }
        mp4 = await asyncio.to_thread(probe_media, work / MP4_NAME, trust_header=True)
        outputs["duration_s"] = round(mp4.duration_s, 3)
        outputs["size_bytes"] = (work / MP4_NAME).stat().st_size
        # into place: files by rename, the HLS folder as a whole
        for name in (MP4_NAME, THUMBS_NAME, THUMBS_INDEX):
            if (work / name).exists():
                os.replace(work / name, out_dir / name)
        _replace_tree(work / HLS_DIR, out_dir / HLS_DIR)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return outputs


async def process_files(
    raw: Path,
    *,
    out_dir: Path,
    loudness: LoudnessMode = "linear",
    report: Report | None = None,
    ffmpeg: str = "ffmpeg",
) -> dict[str, Any]:
    """Every output of one raw recording, in ``out_dir``; returns the ``outputs`` document
    (paths relative to ``out_dir``)."""
    facts, outputs = await make_playable(raw, out_dir=out_dir, report=report, ffmpeg=ffmpeg)
    outputs.update(
        await make_renditions(
            raw, out_dir=out_dir, facts=facts, loudness=loudness, report=report, ffmpeg=ffmpeg
        )
    )
    return outputs


CONTENT_TYPES = {
    ".webm": "video/webm",
    ".mp4": "video/mp4",
    ".m4s": "video/iso.segment",
    ".m3u8": "application/vnd.apple.mpegurl",
    ".jpg": "image/jpeg",
    ".vtt": "text/vtt",
    ".json": "application/json",
}


def content_type(name: str) -> str:
    return CONTENT_TYPES.get(Path(name).suffix.lower(), "application/octet-stream")


def _fail_message(exc: BaseException) -> str:
    return exc.args[0] if isinstance(exc, ProcessingError) else f"{type(exc).__name__}: {exc}"


async def _fetch_raw(raw: Path, key: str, remote: MediaStorage | None) -> None:
    """A re-run after the outputs went to the bucket: bring the raw capture back first."""
    if raw.exists() or remote is None:
        return
    if await asyncio.to_thread(remote.size, key) is None:
        return
    await asyncio.to_thread(remote.download, key, raw)
    sidecar = str(PurePosixPath(key).with_name("events.json"))
    if await asyncio.to_thread(remote.size, sidecar) is not None:
        await asyncio.to_thread(remote.download, sidecar, raw.with_name("events.json"))


async def upload_outputs(
    out_dir: Path, *, key_dir: str, remote: MediaStorage, keep_local: bool
) -> int:
    """Every finished file of ``out_dir`` to the bucket (one at a time, each streamed in parts);
    then, unless ``keep_local``, the local copies go. Returns the bytes uploaded."""
    files = sorted(p for p in out_dir.rglob("*") if p.is_file() and not p.name.startswith("."))
    uploaded = 0
    await asyncio.to_thread(remote.ensure_bucket)
    for path in files:
        key = f"{key_dir}/{path.relative_to(out_dir).as_posix()}"
        await asyncio.to_thread(remote.upload, key, path, content_type=content_type(path.name))
        uploaded += path.stat().st_size
    if not keep_local:
        for path in files:
            path.unlink(missing_ok=True)
    return uploaded


RESUMED_MESSAGE = "处理中断，已重新开始"


def _start_row(
    sessions: sessionmaker[Session], recording_id: int, *, attempt: int, resumed: bool
) -> str:
    """The recording ``processing`` as a run starts; returns its raw capture's key."""
    with transaction(sessions) as session:
        recording = session.get(Recording, recording_id)
        if recording is None:
            raise ProcessingError(f"录像 {recording_id} 不存在")
        recording.status = "processing"
        if attempt > 1:
            recording.status_message = f"第 {attempt} 次处理"
        else:
            recording.status_message = RESUMED_MESSAGE if resumed else "处理中"
        return recording.raw_path


def _note_unplayable(
    sessions: sessionmaker[Session], recording_id: int, *, message: str, last: bool
) -> None:
    with transaction(sessions) as session:
        recording = session.get_one(Recording, recording_id)
        recording.status = "failed" if last else "processing"
        recording.status_message = (
            f"处理失败：{message}" if last else f"处理失败，将重试：{message}"
        )[:500]


def _note_playable(
    sessions: sessionmaker[Session], recording_id: int, *, outputs: dict[str, Any]
) -> None:
    with transaction(sessions) as session:
        recording = session.get_one(Recording, recording_id)
        previous = recording.outputs or {}
        recording.status = "ready"
        recording.status_message = "可先播放原始录像；网页通用版本生成中"
        # keep the renditions of an earlier run servable until this run replaces them
        recording.outputs = {**previous, **outputs, "renditions": "processing"}


def _note_renditions_failed(
    sessions: sessionmaker[Session], recording_id: int, *, message: str, last: bool
) -> None:
    with transaction(sessions) as session:
        recording = session.get_one(Recording, recording_id)
        # "failed" only for good: a retry still to come leaves the work unfinished, for the
        # recovery sweep (recordings.requeue) should this process die before it runs
        state = "failed" if last else "processing"
        recording.outputs = {**(recording.outputs or {}), "renditions": state}
        recording.status_message = (
            f"网页通用版本生成失败：{message}"
            if last
            else f"网页通用版本生成失败，将重试：{message}"
        )[:500]


def _note_processed(
    sessions: sessionmaker[Session],
    recording_id: int,
    *,
    outputs: dict[str, Any],
    keep: Mapping[str, Any] | None = None,
) -> None:
    with transaction(sessions) as session:
        recording = session.get_one(Recording, recording_id)
        # what the recorder noted while recording (a full disk) stays with the recording
        kept = {key: value for key, value in (recording.outputs or {}).items() if key in KEPT}
        recording.status = "ready"
        recording.outputs = {**outputs, **(keep or {}), **kept}
        recording.status_message = incomplete_note(recording.outputs)
        recording.processed_at = datetime.now(UTC)


async def process_recording(
    sessions: sessionmaker[Session],
    *,
    media_root: Path,
    recording_id: int,
    attempt: int = 1,
    max_attempts: int = PROCESS_RETRIES + 1,
    loudness: LoudnessMode = "linear",
    report: Report | None = None,
    remote: MediaStorage | None = None,
    keep_local: bool = False,
    resumed: bool = False,
    keep_outputs: Mapping[str, Any] | None = None,
    ffmpeg: str = "ffmpeg",
) -> dict[str, Any]:
    """Process one recording and record the outcome on its row; errors are re-raised for the
    job queue to retry. ``keep_outputs`` (a meeting's composition facts) go into the row's
    final outputs in the same write, so no reader sees the recording processed without them.

    Two steps: within seconds the raw capture is checked, given a poster and chapters, and the
    row is ``ready`` (the library serves the WebM); then the renditions every device plays are
    made and added. A failure of the first step ends ``failed`` once ``attempt`` is the last;
    a failure of the second leaves the recording ``ready`` on its raw file, with the reason.
    With ``remote``, everything is uploaded at the end (raw capture included). ``resumed``:
    queued again by the recovery sweep (``recordings.requeue``), and the status says so.

    Every database write is one transaction in a thread: without Redis this runs on the web
    process's event loop, which may be forwarding live lessons."""
    raw_key = await asyncio.to_thread(
        _start_row, sessions, recording_id, attempt=attempt, resumed=resumed
    )
    raw = media_root / raw_key
    started = datetime.now(UTC)
    last = attempt >= max_attempts
    try:
        await _fetch_raw(raw, raw_key, remote)
        facts, outputs = await make_playable(raw, out_dir=raw.parent, report=report, ffmpeg=ffmpeg)
    except Exception as exc:
        message = _fail_message(exc)
        await asyncio.to_thread(
            _note_unplayable, sessions, recording_id, message=message, last=last
        )
        log.warning(
            "recording_processing_failed", recording=recording_id, attempt=attempt, error=message
        )
        raise
    outputs["playable_after_s"] = round((datetime.now(UTC) - started).total_seconds(), 2)
    await asyncio.to_thread(_note_playable, sessions, recording_id, outputs=outputs)
    try:
        from recordings.live_hls import renditions_from_live  # builds on this module

        # what a live transcoder made during the lesson, finished; else the full transcode
        rendered = await renditions_from_live(
            raw, out_dir=raw.parent, facts=facts, loudness=loudness, report=report, ffmpeg=ffmpeg
        )
        if rendered is None:
            rendered = await make_renditions(
                raw,
                out_dir=raw.parent,
                facts=facts,
                loudness=loudness,
                report=report,
                ffmpeg=ffmpeg,
            )
        outputs.update(rendered)
        if remote is not None:
            if report is not None:
                await report(0.97, "上传到对象存储")
            outputs["uploaded_bytes"] = await upload_outputs(
                raw.parent,
                key_dir=str(PurePosixPath(raw_key).parent),
                remote=remote,
                keep_local=keep_local,
            )
            outputs["stored"] = remote.kind
    except Exception as exc:
        message = _fail_message(exc)
        await asyncio.to_thread(
            _note_renditions_failed, sessions, recording_id, message=message, last=last
        )
        log.warning(
            "recording_renditions_failed", recording=recording_id, attempt=attempt, error=message
        )
        raise
    outputs["renditions"] = "ready"
    outputs["processing_s"] = round((datetime.now(UTC) - started).total_seconds(), 2)
    await asyncio.to_thread(
        _note_processed, sessions, recording_id, outputs=outputs, keep=keep_outputs
    )
    log.info(
        "recording_processed",
        recording=recording_id,
        duration_s=outputs["duration_s"],
        seconds=outputs["processing_s"],
        playable_after_s=outputs["playable_after_s"],
    )
    return outputs


async def process_configured(
    settings: Settings,
    *,
    recording_id: int,
    attempt: int,
    report: Report,
    resumed: bool = False,
    keep_outputs: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """``process_recording`` as a job runs it, with the configured database, media root,
    storage and loudness normalisation (the processing and meeting-composition jobs)."""
    return await process_recording(
        session_factory(get_engine(settings.database_url)),
        media_root=settings.media_root,
        recording_id=recording_id,
        attempt=attempt,
        report=report,
        remote=remote_storage(settings),
        keep_local=settings.s3_keep_local,
        loudness=settings.recording_loudness,
        resumed=resumed,
        keep_outputs=keep_outputs,
        ffmpeg=settings.recording_ffmpeg,
    )


def register_jobs(queue: JobQueue, settings: Settings) -> None:
    """Register ``process_recording`` and ``expire_recordings`` (the web app and
    ``tongke worker`` both call this)."""

    async def process_recording_job(
        ctx: JobContext, *, recording_id: int, resumed: bool = False
    ) -> dict[str, Any]:
        return await process_configured(
            settings,
            recording_id=recording_id,
            attempt=ctx.attempt,
            report=ctx.report,
            resumed=resumed,
        )

    queue.register(PROCESS_JOB, process_recording_job, max_retries=PROCESS_RETRIES)

    async def expire_recordings_job(ctx: JobContext) -> dict[str, Any]:
        from recordings.service import expire_recordings

        sessions = session_factory(get_engine(settings.database_url))
        expired = await asyncio.to_thread(
            expire_recordings,
            sessions,
            media_root=settings.media_root,
            remote=remote_storage(settings),
        )
        return {"expired": expired}

    queue.register(EXPIRE_JOB, expire_recordings_job, max_retries=1)
