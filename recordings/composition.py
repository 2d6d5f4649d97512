"""After a recorded 教研 meeting: compose its participants' files into one replayable file.

Picture: the shared screen while someone shares, else the active speaker's camera (else the
host's, else anyone's), switched by the meeting's timeline (``meeting.json``). Sound: every
participant's mic mixed. One ffmpeg run reads every file once, in time order (each input is
shifted to when its first packet arrived): the picture is one overlay per source, each
enabled only for its stretches, on a plain background as long as the recording; nothing is
buffered beyond what the inputs interleave, so memory stays flat with the meeting's length
(``tongke bench``-style figures: ``python -m recordings.bench_composition``).

The result is the recording's ``raw.webm`` (VP8 + Opus, what the lesson recorder makes) with
an ``events.json`` sidecar whose chapters are the speakers and screen shares; the usual
processing (``recordings.processing.process_recording``) then makes the poster, chapters and
renditions, in the same job.
"""

from __future__ import annotations

import asyncio
import json
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import update
from sqlalchemy.orm import Session, sessionmaker

from common.db import get_engine, session_factory, transaction
from common.jobs import JobContext, JobQueue
from common.logging import get_logger
from common.settings import Settings
from recordings.meeting_capture import TIMELINE_NAME, MeetingTimeline
from recordings.meetings import COMPOSE_JOB
from recordings.models import Recording
from recordings.processing import (
    PROCESS_RETRIES,
    ProcessingError,
    Report,
    probe_media,
    process_configured,
    run_ffmpeg,
)

log = get_logger(__name__)

MAX_HEIGHT = 720  # the picture is 16:9, as tall as the tallest source up to this
FRAME_RATE = 25
BACKGROUND = "0x202020"
VIDEO_KBPS = 1200
AUDIO_KBPS = 64
SIDECAR = "events.json"

SourceKey = tuple[str, str]  # (participant, "camera" | "screen")


@dataclass(frozen=True)
class Segment:
    start_s: float
    end_s: float
    source: SourceKey


def video_segments(
    timeline: MeetingTimeline,
    *,
    cameras: set[str],
    screens: set[str],
    duration_s: float,
) -> list[Segment]:
    """Which picture shows when: the shared screen, else the speaker's camera, else the
    host's, else the first present participant's. Only sources with a file count."""
    hosts = [pid for pid, p in timeline.participants.items() if p.host]
    present: list[str] = []
    speaker: str | None = None
    sharer: str | None = None

    def choice() -> SourceKey | None:
        if sharer is not None and sharer in screens:
            return (sharer, "screen")
        for pid in (speaker, *hosts, *present):
            if pid is not None and pid in cameras and pid in present:
                return (pid, "camera")
        return None

    segments: list[Segment] = []
    current: SourceKey | None = None
    since = 0.0
    for event in sorted(timeline.events, key=lambda e: float(e["t"])):
        at = min(float(event["t"]), duration_s)
        pid = event.get("participant")
        kind = event["kind"]
        if kind == "participant_joined" and pid is not None and pid not in present:
            present.append(pid)
        elif kind == "participant_left" and pid in present:
            present.remove(pid)
            speaker = None if speaker == pid else speaker
            sharer = None if sharer == pid else sharer
        elif kind == "speaker_changed":
            speaker = pid
        elif kind == "screen_share_changed":
            if event.get("detail", {}).get("sharing"):
                sharer = pid
            elif sharer == pid:
                sharer = None
        wanted = choice()
        if wanted != current:
            if current is not None and at > since:
                segments.append(Segment(since, at, current))
            current, since = wanted, at
    if current is not None and duration_s > since:
        segments.append(Segment(since, duration_s, current))
    merged: list[Segment] = []
    for segment in segments:
        if merged and merged[-1].source == segment.source and merged[-1].end_s == segment.start_s:
            merged[-1] = Segment(merged[-1].start_s, segment.end_s, segment.source)
        else:
            merged.append(segment)
    return merged


def chapter_events(timeline: MeetingTimeline, *, duration_s: float) -> list[dict[str, Any]]:
    """Chapter marks for the sidecar: who speaks (``王老师发言``) and who shares the screen."""
    marks: list[dict[str, Any]] = []
    for event in sorted(timeline.events, key=lambda e: float(e["t"])):
        pid = event.get("participant")
        entry = timeline.participants.get(pid) if pid is not None else None
        if entry is None or float(event["t"]) > duration_s:
            continue
        if event["kind"] == "speaker_changed":
            title = f"{entry.name}发言"
        elif event["kind"] == "screen_share_changed" and event.get("detail", {}).get("sharing"):
            title = f"{entry.name}共享屏幕"
        else:
            continue
        marks.append({"t": event["t"], "kind": event["kind"], "participant": pid, "title": title})
    return marks


@dataclass(frozen=True)
class SourceFile:
    key: SourceKey
    path: Path
    offset_s: float  # when its first packet arrived, from the recording's start
    has_video: bool
    has_audio: bool
    gaps: list[dict[str, Any]]
    height: int = 0
    duration_s: float = 0.0  # read from its packets: a file cut by a crash has it too


def source_files(folder: Path, timeline: MeetingTimeline) -> list[SourceFile]:
    """The participants' files that hold media, each placed on the recording's clock."""
    found: list[SourceFile] = []
    for pid, entry in timeline.participants.items():
        for kind, relative in (("camera", entry.camera), ("screen", entry.screen)):
            path = folder / relative if relative else None
            if path is None or not path.exists() or path.stat().st_size == 0:
                continue
            sidecar = path.with_suffix(".events.json")
            document = json.loads(sidecar.read_text("utf-8")) if sidecar.exists() else {}
            started_at = document.get("started_at")
            if started_at is None:
                continue  # nothing arrived
            try:
                facts = probe_media(path, trust_header=False)
            except ProcessingError:
                log.warning("meeting_track_unreadable", path=str(path))
                continue
            found.append(
                SourceFile(
                    key=(pid, kind),
                    path=path,
                    offset_s=max(float(started_at) - timeline.started_at, 0.0),
                    has_video=facts.has_video and facts.duration_s > 0,
                    has_audio=facts.has_audio and kind == "camera",
                    gaps=list(document.get("gaps", [])),
                    height=facts.height,
                    duration_s=facts.duration_s,
                )
            )
    return found


def recorded_duration(sources: list[SourceFile]) -> float:
    """How far the files go on the recording's clock: the length of a recording whose process
    died before the stop (its timeline has no ``stopped_at``)."""
    return max((s.offset_s + s.duration_s for s in sources), default=0.0)


def canvas_for(sources: list[SourceFile]) -> tuple[int, int]:
    """16:9 at the tallest source's height (at most 720p): upscaling adds nothing but cost."""
    height = min(max((s.height for s in sources if s.has_video), default=360), MAX_HEIGHT)
    height = max(height - height % 2, 2)
    return (round(height * 16 / 9 / 2) * 2, height)


def _enable(segments: list[Segment], key: SourceKey) -> str:
    spans = [f"between(t,{s.start_s:.3f},{s.end_s:.3f})" for s in segments if s.source == key]
    return "+".join(spans)


def compose_arguments(
    sources: list[SourceFile],
    segments: list[Segment],
    target: Path,
    *,
    duration_s: float,
    canvas: tuple[int, int],
) -> tuple[list[str], str]:
    """ffmpeg's arguments and its filter graph (passed as a script: it grows with the
    number of speaker changes)."""
    width, height = canvas
    # one thread per decoder, filter graph and encoder: each decoder thread holds a frame of
    # its own, and at 720p the threads cost more CPU than they save (README, 教研 meetings)
    arguments: list[str] = ["-copyts", "-filter_complex_threads", "1"]
    for source in sources:
        arguments += ["-threads", "1", "-itsoffset", f"{source.offset_s:.3f}"]
        arguments += ["-i", str(source.path)]
    filters = [f"color=c={BACKGROUND}:s={width}x{height}:r={FRAME_RATE}:d={duration_s:.3f}[bg]"]
    picture = "bg"
    for index, source in enumerate(sources):
        enable = _enable(segments, source.key) if source.has_video else ""
        if not enable:
            continue
        filters.append(
            f"[{index}:v:0]scale={width}:{height}:force_original_aspect_ratio=decrease,"
            f"pad={width}:{height}:-1:-1:color={BACKGROUND},setsar=1,format=yuv420p[v{index}]"
        )
        filters.append(f"[{picture}][v{index}]overlay=eof_action=pass:enable='{enable}'[o{index}]")
        picture = f"o{index}"
    filters.append(f"[{picture}]trim=end={duration_s:.3f},format=yuv420p[vout]")
    voices = [i for i, s in enumerate(sources) if s.has_audio]
    for index in voices:
        filters.append(
            f"[{index}:a:0]aresample=48000:async=1:first_pts=0,"
            f"aformat=sample_fmts=fltp:channel_layouts=stereo[a{index}]"
        )
    if voices:
        inputs = "".join(f"[a{i}]" for i in voices)
        filters.append(
            f"{inputs}amix=inputs={len(voices)}:duration=longest:dropout_transition=0:"
            f"normalize=0,apad,atrim=end={duration_s:.3f}[aout]"
        )
    else:
        filters.append(f"anullsrc=r=48000:cl=stereo,atrim=end={duration_s:.3f}[aout]")
    arguments += [
        "-map", "[vout]", "-map", "[aout]",
        "-c:v", "libvpx", "-threads", "1", "-deadline", "realtime", "-cpu-used", "8",
        "-b:v", f"{VIDEO_KBPS}k", "-g", str(FRAME_RATE * 2),
        "-c:a", "libopus", "-b:a", f"{AUDIO_KBPS}k",
        "-t", f"{duration_s:.3f}",
        "-progress", "pipe:1", "-nostats", "-f", "webm", str(target),
    ]  # fmt: skip
    return arguments, ";\n".join(filters)


async def compose_meeting(
    folder: Path, *, raw_name: str, report: Report | None = None
) -> dict[str, Any]:
    """``raw_name`` and its sidecar, in ``folder``, from the meeting's files; returns facts
    about the composition (duration, sources, segments)."""
    timeline_path = folder / TIMELINE_NAME
    if not timeline_path.exists():
        raise ProcessingError("会议录像缺少时间线（meeting.json）")
    timeline = MeetingTimeline.read(timeline_path)
    sources = source_files(folder, timeline)
    if not sources:
        raise ProcessingError("会议录像中没有任何参会教师的音视频")
    duration_s = timeline.duration_s
    if duration_s is None:  # the recording process died: as far as the files go
        duration_s = recorded_duration(sources)
    segments = video_segments(
        timeline,
        cameras={s.key[0] for s in sources if s.key[1] == "camera" and s.has_video},
        screens={s.key[0] for s in sources if s.key[1] == "screen" and s.has_video},
        duration_s=duration_s,
    )
    target = folder / raw_name
    partial = folder / f".{target.stem}.partial{target.suffix}"
    script = folder / ".compose.filters"
    canvas = canvas_for(sources)
    arguments, graph = compose_arguments(
        sources, segments, partial, duration_s=duration_s, canvas=canvas
    )
    script.write_text(graph, "utf-8")
    arguments = _with_script(arguments, script)

    async def composing(share: float, message: str) -> None:
        if report is not None:
            await report(0.5 * share, f"合成会议录像：{message}")

    try:
        await run_ffmpeg(arguments, duration_s=duration_s, report=composing)
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)
        script.unlink(missing_ok=True)
    gaps = [
        {**gap, "participant": s.key[0], "kind": f"{s.key[1]}_{gap.get('kind', '')}"}
        for s in sources
        for gap in s.gaps
    ]
    sidecar = {
        "version": 1,
        "media": raw_name,
        "started_at": timeline.started_at,
        "start_title": "会议开始",
        "events": chapter_events(timeline, duration_s=duration_s),
        "gaps": gaps,  # a participant's reconnects, on the recording's clock of their file
        # the composer closed the file itself: its header's duration can be trusted
        "summary": {"bytes": target.stat().st_size, "duration_s": round(duration_s, 3)},
    }
    (folder / SIDECAR).write_text(json.dumps(sidecar, ensure_ascii=False, indent=1), "utf-8")
    return {
        "meeting_version": "composed",
        "composed_duration_s": round(duration_s, 3),
        "composed_size": f"{canvas[0]}x{canvas[1]}",
        "sources": [f"{pid}:{kind}" for pid, kind in (s.key for s in sources)],
        "segments": [
            {"from_s": round(s.start_s, 3), "to_s": round(s.end_s, 3), "source": ":".join(s.source)}
            for s in segments
        ],
    }


def _with_script(arguments: list[str], script: Path) -> list[str]:
    """The inputs, then the filter graph from its file, then the outputs."""
    first_output = arguments.index("-map")
    script_option = ["-filter_complex_script", str(script)]
    return [*arguments[:first_output], *script_option, *arguments[first_output:]]


COMPOSING_MESSAGE = "合成会议录像中"
RESUMED_MESSAGE = "会议录像合成中断，已重新开始"
# the composition failed for good on a recording still playable on its preview
FAILED_ON_PREVIEW = "会议录像合成失败，仍可播放预览版"


def _start_composition(sessions: sessionmaker[Session], recording_id: int, *, resumed: bool) -> str:
    """The recording's message as the composition starts; returns its raw capture's key."""
    with transaction(sessions) as session:
        recording = session.get_one(Recording, recording_id)
        raw_path = recording.raw_path
        # ready on its preview, the recording keeps its message (it says the composition
        # runs, and where an interrupted recording stops): one conditional UPDATE, as the
        # preview may be published meanwhile (recordings.meetings)
        session.execute(
            update(Recording)
            .where(Recording.id == recording_id, Recording.status == "processing")
            .values(status_message=RESUMED_MESSAGE if resumed else COMPOSING_MESSAGE)
            .execution_options(synchronize_session=False)
        )
        return raw_path


def _composition_failed(
    sessions: sessionmaker[Session], recording_id: int, *, message: str, last: bool
) -> None:
    with transaction(sessions) as session:
        recording = session.get_one(Recording, recording_id)
        outputs = recording.outputs or {}
        if outputs.get("meeting_version") == "preview":
            # the preview stays playable, whatever the composition does; the recovery sweep
            # (recordings.requeue) leaves it alone only once it failed for good
            recording.status_message = (
                f"{FAILED_ON_PREVIEW}：{message}"
                if last
                else f"会议录像合成失败，将重试，仍可播放预览版：{message}"
            )
            if last:
                recording.outputs = {**outputs, "composition": "failed"}
        else:
            recording.status = "failed" if last else "processing"
            recording.status_message = f"会议录像合成失败：{message}"
        recording.status_message = recording.status_message[:500]


def _composed(sessions: sessionmaker[Session], recording_id: int, composed: dict[str, Any]) -> None:
    """The composed file replaces the preview: the replay switches to it."""
    with transaction(sessions) as session:
        recording = session.get_one(Recording, recording_id)
        outputs = {
            key: value for key, value in (recording.outputs or {}).items() if key != "composition"
        }
        # a preview is kept for a browser still playing it (its own URL); the retention
        # run a day later deletes it (service.retire_previews)
        retired = {"preview_retired_at": datetime.now(UTC).isoformat()}
        recording.outputs = {
            **outputs,
            **composed,
            "playable": "raw",
            **(retired if outputs.get("preview") else {}),
        }


def register_jobs(queue: JobQueue, settings: Settings) -> None:
    """Register ``compose_meeting_recording`` (the web app and ``tongke worker``). Its
    database writes run in threads, one transaction each (see ``process_recording``)."""

    async def compose_job(
        ctx: JobContext, *, recording_id: int, resumed: bool = False
    ) -> dict[str, Any]:
        sessions = session_factory(get_engine(settings.database_url))
        raw_path = await asyncio.to_thread(
            _start_composition, sessions, recording_id, resumed=resumed
        )
        raw = settings.media_root / raw_path

        async def report(progress: float, message: str) -> None:
            await ctx.report(progress, message)

        try:
            composed = await compose_meeting(raw.parent, raw_name=raw.name, report=report)
        except Exception as exc:
            message = exc.args[0] if isinstance(exc, ProcessingError) else repr(exc)
            last = ctx.attempt >= PROCESS_RETRIES + 1
            await asyncio.to_thread(
                _composition_failed, sessions, recording_id, message=message, last=last
            )
            raise
        await asyncio.to_thread(_composed, sessions, recording_id, composed)

        async def processing(progress: float, message: str) -> None:
            await ctx.report(0.5 + 0.5 * progress, message)

        outputs = await process_configured(
            settings,
            recording_id=recording_id,
            attempt=ctx.attempt,
            report=processing,
            resumed=resumed,
            keep_outputs=composed,  # processing's final write keeps them beside its own
        )
        return {**outputs, **composed}

    queue.register(COMPOSE_JOB, compose_job, max_retries=PROCESS_RETRIES)
