"""After the bell: turn a raw WebM recording into what browsers play, as a retried job.

From ``raw.webm`` (VP8 + Opus, as captured) the job writes ``lesson.mp4`` (H.264 + AAC,
``+faststart``), ``poster.jpg`` and, from the sidecar, chapters; then marks the recording
``ready`` (or ``failed`` with a message once retries are spent). Every output is written to a
temporary name and renamed into place, so re-running the job on the same recording (a retry,
a worker killed mid-job, a manual re-process) replaces the outputs whole or not at all.

Transcoding costs about 0.1 s per second of 360p media on two cores (libx264 veryfast); a
45-minute lesson takes minutes. Replay within seconds of the bell would take the copy path
(serve the raw WebM, which Chromium plays, or capture H.264 when publishers offer it); the
library already serves the raw file while a recording is processing.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from common.db import get_engine, session_factory, transaction
from common.jobs import JobContext, JobQueue
from common.logging import get_logger
from common.settings import Settings
from recordings.models import Recording

log = get_logger(__name__)

PROCESS_JOB = "process_recording"
PROCESS_RETRIES = 2
MP4_NAME = "lesson.mp4"
POSTER_NAME = "poster.jpg"
CHAPTER_EVENTS = {
    "hand_accepted": "远端教室发言",
    "hand_raised": "远端教室举手",
    "speaker_changed": "发言人切换",
    "publisher_joined": "主讲教室重新连接",
}
MIN_CHAPTER_GAP_S = 5.0

Report = Callable[[float, str], Awaitable[None]]


class ProcessingError(RuntimeError):
    """ffmpeg failed or the raw file is unusable; the message is shown to staff."""


@dataclass(frozen=True)
class MediaFacts:
    duration_s: float
    has_video: bool
    has_audio: bool


def probe_media(path: Path) -> MediaFacts:
    """Duration and streams, read from packet timestamps (no decoding): a recording cut short
    by a crash has no duration in its header."""
    import av  # loads only where a job runs

    try:
        container = av.open(str(path))
    except (av.FFmpegError, OSError) as exc:
        log.warning("recording_unreadable", path=str(path), error=str(exc))
        raise ProcessingError("无法读取原始录像（文件损坏或为空）") from exc
    with container:
        has_video = bool(container.streams.video)
        has_audio = bool(container.streams.audio)
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
    return MediaFacts(max(end - (start or 0.0), 0.0), has_video, has_audio)


def chapters_from_sidecar(path: Path, *, duration_s: float) -> list[dict[str, Any]]:
    """Chapter marks from the lesson's events: start, hands taken, speaker changes, gaps."""
    chapters: list[dict[str, Any]] = [{"t": 0.0, "title": "课堂开始", "kind": "start"}]
    if not path.exists():
        return chapters
    document = json.loads(path.read_text("utf-8"))
    marks: list[dict[str, Any]] = []
    for event in document.get("events", []):
        title = CHAPTER_EVENTS.get(event.get("kind", ""))
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


async def _ffmpeg(arguments: list[str], *, duration_s: float, report: Report | None) -> None:
    process = await asyncio.create_subprocess_exec(
        "ffmpeg",
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


async def transcode_mp4(
    raw: Path,
    target: Path,
    *,
    facts: MediaFacts,
    loudnorm: bool = False,
    report: Report | None = None,
) -> None:
    """H.264/AAC MP4 with the index up front (plays while downloading), written atomically."""
    partial = target.with_name(f".{target.stem}.partial{target.suffix}")
    arguments = ["-i", str(raw)]
    if facts.has_video:
        arguments += ["-c:v", "libx264", "-preset", "veryfast", "-crf", "26", "-pix_fmt", "yuv420p"]
    else:
        arguments += ["-vn"]
    if facts.has_audio:
        arguments += ["-c:a", "aac", "-b:a", "96k"]
        if loudnorm:
            arguments += ["-af", "loudnorm=I=-16:TP=-1.5:LRA=11"]
    else:
        arguments += ["-an"]
    arguments += ["-movflags", "+faststart", "-progress", "pipe:1", "-nostats", "-f", "mp4"]
    try:
        await _ffmpeg([*arguments, str(partial)], duration_s=facts.duration_s, report=report)
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)


async def write_poster(raw: Path, target: Path, *, at_s: float) -> None:
    partial = target.with_name(f".{target.stem}.partial{target.suffix}")
    try:
        await _ffmpeg(
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
        )
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)


async def process_files(
    raw: Path, *, out_dir: Path, loudnorm: bool = False, report: Report | None = None
) -> dict[str, Any]:
    """Every output of one raw recording, in ``out_dir``; returns the ``outputs`` document
    (paths relative to ``out_dir``)."""
    if not raw.exists():
        raise ProcessingError(f"原始录像不存在：{raw.name}")
    if shutil.which("ffmpeg") is None:
        raise ProcessingError("服务器未安装 ffmpeg")
    facts = await asyncio.to_thread(probe_media, raw)
    if facts.duration_s <= 0:
        raise ProcessingError("原始录像没有可用的音视频")
    out_dir.mkdir(parents=True, exist_ok=True)

    async def transcoding(share: float, message: str) -> None:
        if report is not None:
            await report(0.05 + 0.85 * share, message)

    await transcode_mp4(raw, out_dir / MP4_NAME, facts=facts, loudnorm=loudnorm, report=transcoding)
    outputs: dict[str, Any] = {"mp4": MP4_NAME}
    if facts.has_video:
        if report is not None:
            await report(0.92, "生成封面")
        await write_poster(raw, out_dir / POSTER_NAME, at_s=min(1.0, facts.duration_s / 2))
        outputs["poster"] = POSTER_NAME
    mp4 = await asyncio.to_thread(probe_media, out_dir / MP4_NAME)
    outputs["duration_s"] = round(mp4.duration_s, 3)
    outputs["raw_duration_s"] = round(facts.duration_s, 3)
    outputs["size_bytes"] = (out_dir / MP4_NAME).stat().st_size
    outputs["chapters"] = chapters_from_sidecar(
        raw.with_name("events.json"), duration_s=mp4.duration_s
    )
    outputs["hls"] = None  # not produced yet: see the module notes in recordings/service.py
    return outputs


async def process_recording(
    sessions: sessionmaker[Session],
    *,
    media_root: Path,
    recording_id: int,
    attempt: int = 1,
    max_attempts: int = PROCESS_RETRIES + 1,
    loudnorm: bool = False,
    report: Report | None = None,
) -> dict[str, Any]:
    """Process one recording and record the outcome on its row (ready, or failed with the
    reason once ``attempt`` is the last); errors are re-raised for the job queue to retry."""
    with transaction(sessions) as session:
        recording = session.get(Recording, recording_id)
        if recording is None:
            raise ProcessingError(f"录像 {recording_id} 不存在")
        raw = media_root / recording.raw_path
        recording.status = "processing"
        recording.status_message = "处理中" if attempt == 1 else f"第 {attempt} 次处理"
    started = datetime.now(UTC)
    try:
        outputs = await process_files(raw, out_dir=raw.parent, loudnorm=loudnorm, report=report)
    except Exception as exc:
        last = attempt >= max_attempts
        message = (
            exc.args[0] if isinstance(exc, ProcessingError) else f"{type(exc).__name__}: {exc}"
        )
        with transaction(sessions) as session:
            recording = session.get_one(Recording, recording_id)
            recording.status = "failed" if last else "processing"
            recording.status_message = (
                f"处理失败：{message}" if last else f"处理失败，将重试：{message}"
            )[:500]
        log.warning(
            "recording_processing_failed", recording=recording_id, attempt=attempt, error=message
        )
        raise
    outputs["processing_s"] = round((datetime.now(UTC) - started).total_seconds(), 2)
    with transaction(sessions) as session:
        recording = session.get_one(Recording, recording_id)
        recording.status = "ready"
        recording.status_message = ""
        recording.outputs = outputs
        recording.processed_at = datetime.now(UTC)
    log.info(
        "recording_processed",
        recording=recording_id,
        duration_s=outputs["duration_s"],
        seconds=outputs["processing_s"],
    )
    return outputs


def register_jobs(queue: JobQueue, settings: Settings) -> None:
    """Register ``process_recording`` (the web app and ``tongke worker`` both call this)."""

    async def process_recording_job(ctx: JobContext, *, recording_id: int) -> dict[str, Any]:
        sessions = session_factory(get_engine(settings.database_url))

        async def report(progress: float, message: str) -> None:
            await ctx.report(progress, message)

        return await process_recording(
            sessions,
            media_root=settings.media_root,
            recording_id=recording_id,
            attempt=ctx.attempt,
            report=report,
        )

    queue.register(PROCESS_JOB, process_recording_job, max_retries=PROCESS_RETRIES)
