"""What composing a recorded 教研 meeting costs: wall time and ffmpeg's peak memory.

Makes a synthetic meeting (``--participants`` files of VP8 15 fps at 640x360 or ``--size``,
+ Opus, as the capture writes them, joining a few seconds apart, with a speaker change every
``--turn`` seconds and one screen share), composes it as the job does, and prints figures::

    python -m recordings.bench_composition --minutes 3 --participants 3

With ``--preview`` it first measures the preview path (``recordings.meeting_preview``) on the
same meeting: the mics' chunks made during the meeting, then the stop until it plays.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from recordings.composition import compose_meeting
from recordings.ffmpeg_memory import FfmpegPeak
from recordings.meeting_capture import (
    TIMELINE_NAME,
    TRACKS_DIR,
    MeetingParticipant,
    MeetingTimeline,
)
from recordings.meeting_preview import (
    CHUNK_S,
    PREVIEW_DIR,
    PREVIEW_NAME,
    chunk_count,
    make_chunk,
    make_preview,
)
from recordings.processing import probe_media

JOIN_STEP_S = 2.0


LOOP_S = 20.0  # encoded once, then repeated by stream copy (cheap on a busy machine)


def _synthetic_track(
    path: Path, *, seconds: float, tone_hz: int, audio: bool, size: str = "640x360"
) -> None:
    clip = path.with_name(f".{path.stem}.clip.webm")
    arguments = ["ffmpeg", "-v", "error", "-y", "-f", "lavfi"]
    arguments += ["-i", f"testsrc2=size={size}:rate=15:duration={LOOP_S:.1f}"]
    if audio:
        arguments += ["-f", "lavfi", "-i", f"sine=f={tone_hz}:r=48000:duration={LOOP_S:.1f}"]
        arguments += ["-c:a", "libopus", "-b:a", "32k"]
    arguments += ["-c:v", "libvpx", "-deadline", "realtime", "-cpu-used", "8", "-b:v", "800k"]
    subprocess.run([*arguments, "-g", "30", str(clip)], check=True)
    repeat = ["ffmpeg", "-v", "error", "-y", "-stream_loop", "-1", "-i", str(clip)]
    subprocess.run([*repeat, "-t", f"{seconds:.1f}", "-c", "copy", str(path)], check=True)
    clip.unlink()


def make_meeting(
    folder: Path, *, minutes: float, participants: int, turn_s: float, size: str = "640x360"
) -> float:
    """A recording folder as ``MeetingRecorder`` leaves it; returns its length in seconds."""
    duration = minutes * 60
    started_at = time.time() - duration
    timeline = MeetingTimeline(started_at=started_at, stopped_at=started_at + duration)
    (folder / TRACKS_DIR).mkdir(parents=True, exist_ok=True)
    for index in range(participants):
        pid = f"teacher-{index + 1}"
        joined = index * JOIN_STEP_S
        entry = MeetingParticipant(
            name=f"教师{index + 1}", host=index == 0, camera=f"{TRACKS_DIR}/p{index + 1}.webm"
        )
        if index == participants - 1:
            entry.screen = f"{TRACKS_DIR}/p{index + 1}-screen.webm"
        timeline.participants[pid] = entry
        timeline.events.append({"t": joined, "kind": "participant_joined", "participant": pid})
        files = [(entry.camera, True)] + ([(entry.screen, False)] if entry.screen else [])
        for relative, audio in files:
            path = folder / relative
            _synthetic_track(
                path,
                seconds=duration - joined,
                tone_hz=300 + 110 * index,
                audio=audio,
                size=size,
            )
            sidecar = {"started_at": started_at + joined, "gaps": []}
            path.with_suffix(".events.json").write_text(json.dumps(sidecar), "utf-8")
    at, speaker = turn_s, 0
    while at < duration:
        timeline.events.append(
            {"t": at, "kind": "speaker_changed", "participant": f"teacher-{speaker + 1}"}
        )
        at, speaker = at + turn_s, (speaker + 1) % participants
    sharer = f"teacher-{participants}"
    for t, sharing in ((duration / 3, True), (duration / 2, False)):
        timeline.events.append(
            {
                "t": t,
                "kind": "screen_share_changed",
                "participant": sharer,
                "detail": {"sharing": sharing},
            }
        )
    (folder / TIMELINE_NAME).write_text(json.dumps(timeline.as_document()), "utf-8")
    return duration


def compose_and_measure(folder: Path, duration: float) -> None:
    """Runs in a process of its own, so the children it measures are the composer's only."""

    async def measured() -> tuple[dict[str, Any], FfmpegPeak]:
        async with FfmpegPeak() as peak:
            composed = await compose_meeting(folder, raw_name="raw.webm")
        return composed, peak

    started = time.perf_counter()
    composed, peak = asyncio.run(measured())
    seconds = time.perf_counter() - started
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu_s = children.ru_utime + children.ru_stime  # what a loaded machine does not change
    own_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    size = (folder / "raw.webm").stat().st_size
    print(f"segments: {len(composed['segments'])}, sources: {len(composed['sources'])}")
    print(
        f"compose: {seconds:.1f} s wall ({duration / seconds:.1f}x real time), "
        f"ffmpeg CPU {cpu_s:.1f} s, {composed['composed_size']}, {size / 1e6:.1f} MB"
    )
    # ffmpeg's own VmHWM (ru_maxrss of children would count the forked Python before exec)
    print(
        f"peak RSS: ffmpeg {peak.mib:.1f} MiB (private {peak.private_mib:.1f} MiB), "
        f"job process {own_kib / 1024:.0f} MiB"
    )


def _children_cpu_s() -> float:
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return children.ru_utime + children.ru_stime


def preview_and_measure(folder: Path, chunk_s: float) -> None:
    """The preview path (``recordings.meeting_preview``), in a process of its own: the
    chunks made during the meeting (CPU each), then what the stop costs until the preview
    plays (the chunk the meeting ended in, the join, the camera copied in)."""
    timeline = MeetingTimeline.read(folder / TIMELINE_NAME)
    duration = timeline.duration_s or 0.0
    count = chunk_count(duration, chunk_s)
    shutil.rmtree(folder / PREVIEW_DIR, ignore_errors=True)

    async def during() -> tuple[list[float], FfmpegPeak]:
        cpu: list[float] = []
        async with FfmpegPeak() as peak:
            for index in range(count - 1):  # the last one is the stop's
                before = _children_cpu_s()
                await make_chunk(folder, timeline, index=index, chunk_s=chunk_s)
                cpu.append(_children_cpu_s() - before)
        return cpu, peak

    async def at_stop() -> tuple[dict[str, Any], FfmpegPeak]:
        async with FfmpegPeak() as peak:
            made = await make_preview(folder, timeline, chunk_s=chunk_s)
        return made, peak

    cpu, chunk_peak = asyncio.run(during())
    before = _children_cpu_s()
    started = time.perf_counter()
    made, stop_peak = asyncio.run(at_stop())
    seconds = time.perf_counter() - started
    stop_cpu = _children_cpu_s() - before
    probed = probe_media(folder / PREVIEW_DIR / PREVIEW_NAME, trust_header=True)
    mean = sum(cpu) / len(cpu) if cpu else 0.0
    print(
        f"preview chunks during the meeting: {len(cpu)} of {chunk_s:.0f} s, ffmpeg CPU "
        f"{mean:.2f} s each (max {max(cpu, default=0.0):.2f}), {sum(cpu):.1f} s in all "
        f"= {100 * sum(cpu) / duration:.2f} % of a core; peak RSS {chunk_peak.mib:.1f} MiB"
    )
    print(
        f"preview at the stop: playable {seconds:.2f} s after it (ffmpeg CPU {stop_cpu:.2f} s, "
        f"peak RSS {stop_peak.mib:.1f} MiB), {probed.duration_s:.2f} s long "
        f"(recorded {duration:.2f} s), picture {made['preview_picture']}"
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--minutes", type=float, default=3.0)
    parser.add_argument("--participants", type=int, default=3)
    parser.add_argument("--turn", type=float, default=20.0, help="seconds between speakers")
    parser.add_argument("--size", default="640x360", help="every camera's and screen's size")
    parser.add_argument("--keep", type=Path, help="make the meeting here and keep it")
    parser.add_argument(
        "--preview",
        type=float,
        metavar="CHUNK_S",
        nargs="?",
        const=CHUNK_S,
        help="measure the preview path first (chunks of CHUNK_S seconds, default 60)",
    )
    parser.add_argument("--compose", type=Path, help=argparse.SUPPRESS)  # the measured child
    parser.add_argument("--preview-of", type=Path, help=argparse.SUPPRESS)  # the measured child
    args = parser.parse_args(argv)
    if args.compose is not None:
        compose_and_measure(args.compose, args.minutes * 60)
        return
    if args.preview_of is not None:
        preview_and_measure(args.preview_of, args.preview)
        return
    with tempfile.TemporaryDirectory(prefix="tongke-compose-") as scratch:
        root = args.keep or Path(scratch)
        duration = args.minutes * 60
        if not (root / TIMELINE_NAME).exists():  # --keep: made once, composed as often as asked
            made = time.perf_counter()
            make_meeting(
                root,
                minutes=args.minutes,
                participants=args.participants,
                turn_s=args.turn,
                size=args.size,
            )
            print(f"meeting made in {time.perf_counter() - made:.1f} s")
        print(f"meeting: {duration:.0f} s, {args.participants} participants")
        bench = [sys.executable, "-m", "recordings.bench_composition"]
        if args.preview:
            preview = [*bench, "--preview-of", str(root), "--preview", str(args.preview)]
            subprocess.run(preview, check=True)
        child = [*bench, "--compose", str(root)]
        subprocess.run([*child, "--minutes", str(args.minutes)], check=True)


if __name__ == "__main__":
    main()
