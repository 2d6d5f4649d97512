"""A recorded 教研 meeting replayable seconds after the stop: the preview, before the composition.

The composition (``recordings.composition``) decodes and re-encodes every file, which takes
minutes for a long meeting. The preview needs neither: during the meeting, as each minute
closes, a niced ffmpeg mixes the participants' mics of that minute into an Opus chunk
(``preview/chunk-0000.webm``, ~0.3-0.9 s of CPU per chunk for 3 mics, off the event loop);
at the stop the last partial minute is mixed, the chunks are joined by stream copy and the
host's camera (else the first camera with a picture) is copied in without re-encoding:
``preview/preview.webm``, playable at once. The recording is then ``ready`` with
``outputs["meeting_version"] == "preview"`` until the composition replaces it.

Crash-safe: every chunk is written under a temporary name and renamed, so a killed process
loses at most the chunk in progress; at the stop every chunk that is missing is made again.
Figures: ``python -m recordings.bench_composition --preview``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from common.logging import get_logger
from recordings.composition import chapter_events
from recordings.meeting_capture import MeetingTimeline
from recordings.processing import (
    ProcessingError,
    chapters_from_sidecar,
    probe_media,
    run_ffmpeg,
)

log = get_logger(__name__)

PREVIEW_DIR = "preview"
PREVIEW_NAME = "preview.webm"
CHUNK_S = 60.0
# the participants' writers flush every 0.25 s in 1 s clusters: a minute is on disk by then
SETTLE_S = 2.0
CHUNK_NICE = 10  # never at the live meeting's expense
AUDIO_KBPS = 64


def chunk_path(folder: Path, index: int) -> Path:
    return folder / PREVIEW_DIR / f"chunk-{index:04d}.webm"


def chunk_count(duration_s: float, chunk_s: float) -> int:
    return max(1, math.ceil(round(duration_s / chunk_s, 6)))


@dataclass(frozen=True)
class Voice:
    """One participant's camera-and-mic file, placed on the recording's clock."""

    path: Path
    offset_s: float  # when its first packet arrived, from the recording's start
    has_audio: bool
    has_video: bool
    host: bool


def _started_at(path: Path) -> float | None:
    sidecar = path.with_suffix(".events.json")
    try:
        document = json.loads(sidecar.read_text("utf-8"))
    except (OSError, ValueError):
        return None
    started = document.get("started_at")
    return None if started is None else float(started)


def voices(folder: Path, timeline: MeetingTimeline) -> list[Voice]:
    """The participants' camera files that hold media so far (growing files included: only
    their header is read)."""
    import av  # loads only where a recording runs

    found: list[Voice] = []
    for entry in timeline.participants.values():
        path = folder / entry.camera
        started_at = _started_at(path)
        if started_at is None or not path.exists() or path.stat().st_size == 0:
            continue
        try:
            with av.open(str(path)) as container:
                has_audio = bool(container.streams.audio)
                has_video = bool(container.streams.video)
        except (av.FFmpegError, OSError):
            continue  # no header yet
        offset = max(started_at - timeline.started_at, 0.0)
        found.append(Voice(path, offset, has_audio, has_video, entry.host))
    return found


def chunk_arguments(
    sources: list[Voice], *, start_s: float, end_s: float, target: Path
) -> list[str]:
    """ffmpeg's arguments for the mics' mix of ``[start_s, end_s)`` on the recording's clock:
    each file read from that moment (or placed at its own start), silence where nobody was."""
    length = end_s - start_s
    arguments: list[str] = []
    mics = [voice for voice in sources if voice.has_audio and voice.offset_s < end_s]
    for voice in mics:
        skip = start_s - voice.offset_s
        if skip > 0:
            arguments += ["-ss", f"{skip:.3f}"]
        else:
            arguments += ["-itsoffset", f"{-skip:.3f}"]
        arguments += ["-t", f"{length + 1:.3f}", "-vn", "-i", str(voice.path)]
    filters = [
        f"[{index}:a:0]aresample=48000:async=1:first_pts=0,"
        f"aformat=sample_fmts=fltp:channel_layouts=stereo[a{index}]"
        for index in range(len(mics))
    ]
    if mics:
        inputs = "".join(f"[a{index}]" for index in range(len(mics)))
        filters.append(
            f"{inputs}amix=inputs={len(mics)}:duration=longest:dropout_transition=0:"
            f"normalize=0,apad,atrim=end={length:.3f}[aout]"
        )
    else:
        filters.append(f"anullsrc=r=48000:cl=stereo,atrim=end={length:.3f}[aout]")
    return [
        *arguments,
        "-filter_complex", ";".join(filters),
        "-map", "[aout]", "-c:a", "libopus", "-b:a", f"{AUDIO_KBPS}k",
        "-t", f"{length:.3f}", "-f", "webm", str(target),
    ]  # fmt: skip


async def make_chunk(
    folder: Path,
    timeline: MeetingTimeline,
    *,
    index: int,
    chunk_s: float,
    end_s: float | None = None,
    nice: int = 0,
) -> Path:
    """Chunk ``index`` (up to ``end_s`` for the last, partial one), written atomically."""
    start = index * chunk_s
    end = start + chunk_s if end_s is None else min(end_s, start + chunk_s)
    target = chunk_path(folder, index)
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name}.partial")
    sources = await asyncio.to_thread(voices, folder, timeline)
    try:
        arguments = chunk_arguments(sources, start_s=start, end_s=end, target=partial)
        await run_ffmpeg(arguments, duration_s=0, report=None, nice=nice)
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)
    return target


async def make_preview(
    folder: Path, timeline: MeetingTimeline, *, chunk_s: float = CHUNK_S
) -> dict[str, Any]:
    """At the stop: the chunks still missing (the last, partial one, and any a crash or a
    failure lost), joined, with the host's camera copied in. Returns the ``outputs`` fields."""
    duration = timeline.duration_s
    if duration is None or duration <= 0:
        raise ProcessingError("会议录像缺少结束时间，无法生成预览")
    count = chunk_count(duration, chunk_s)
    remade = 0
    for index in range(count):
        whole = duration >= (index + 1) * chunk_s  # cut at its full length while recording
        if whole and chunk_path(folder, index).exists():
            continue
        await make_chunk(folder, timeline, index=index, chunk_s=chunk_s, end_s=duration)
        remade += 1 if index < count - 1 else 0
    sources = await asyncio.to_thread(voices, folder, timeline)
    pictures = sorted((v for v in sources if v.has_video), key=lambda v: (not v.host, v.offset_s))
    listing = folder / PREVIEW_DIR / ".chunks.txt"
    lines = []
    for index in range(count):
        length = min(chunk_s, duration - index * chunk_s)
        lines += [f"file '{chunk_path(folder, index).name}'", f"duration {length:.3f}"]
    listing.write_text("\n".join(lines) + "\n", "utf-8")
    target = folder / PREVIEW_DIR / PREVIEW_NAME
    partial = target.with_name(f".{target.name}.partial")
    arguments = ["-f", "concat", "-safe", "0", "-i", str(listing)]
    if pictures:
        picture = pictures[0]
        arguments += ["-itsoffset", f"{picture.offset_s:.3f}", "-an", "-i", str(picture.path)]
        arguments += ["-map", "1:v:0"]
    arguments += ["-map", "0:a:0", "-c", "copy", "-t", f"{duration:.3f}", "-f", "webm"]
    try:
        await run_ffmpeg([*arguments, str(partial)], duration_s=0, report=None)
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)
        listing.unlink(missing_ok=True)
    facts = await asyncio.to_thread(probe_media, target, trust_header=True)
    # the chapters the composed version will have (who spoke, who shared), from the timeline
    marks = folder / PREVIEW_DIR / ".chapters.json"
    sidecar = {"start_title": "会议开始", "events": chapter_events(timeline, duration_s=duration)}
    marks.write_text(json.dumps(sidecar, ensure_ascii=False), "utf-8")
    try:
        chapters = chapters_from_sidecar(marks, duration_s=facts.duration_s)
    finally:
        marks.unlink(missing_ok=True)
    return {
        "chapters": chapters,
        "meeting_version": "preview",
        "preview": f"{PREVIEW_DIR}/{PREVIEW_NAME}",
        "preview_picture": picture.path.name if pictures else None,
        "preview_chunks": count,
        "preview_chunks_remade": remade,
        "duration_s": round(facts.duration_s, 3),
    }


class PreviewChunker:
    """Mixes each closed minute of a running meeting recording into its chunk, in a task this
    object owns: niced, one chunk at a time, a failure only logged (the stop makes it again)."""

    def __init__(
        self,
        folder: Path,
        timeline: MeetingTimeline,
        *,
        chunk_s: float = CHUNK_S,
        settle_s: float = SETTLE_S,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.folder = folder
        self.timeline = timeline
        self.chunk_s = chunk_s
        self.settle_s = settle_s
        self.clock = clock
        self.made = 0
        self.failed = 0
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.ensure_future(self._run())

    async def stop(self) -> None:
        """Cancel the chunk in progress (its temporary file goes; the stop remakes it)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        index = 0
        while True:
            due = self.timeline.started_at + (index + 1) * self.chunk_s + self.settle_s
            await asyncio.sleep(max(due - self.clock(), 0.0))
            if not chunk_path(self.folder, index).exists():
                try:
                    await make_chunk(
                        self.folder,
                        self.timeline,
                        index=index,
                        chunk_s=self.chunk_s,
                        nice=CHUNK_NICE,
                    )
                    self.made += 1
                except (ProcessingError, OSError) as exc:
                    self.failed += 1
                    log.warning(
                        "meeting_preview_chunk_failed",
                        folder=str(self.folder),
                        chunk=index,
                        error=str(exc),
                    )
            index += 1
