"""What composing a recorded 教研 meeting costs: wall time and ffmpeg's peak memory.

Makes a synthetic meeting (``--participants`` files of VP8 15 fps at 640x360 or ``--size``,
+ Opus, as the capture writes them, joining a few seconds apart, with a speaker change every
``--turn`` seconds and one screen share), composes it as the job does, and prints figures::

    python -m recordings.bench_composition --minutes 3 --participants 3
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
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


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--minutes", type=float, default=3.0)
    parser.add_argument("--participants", type=int, default=3)
    parser.add_argument("--turn", type=float, default=20.0, help="seconds between speakers")
    parser.add_argument("--size", default="640x360", help="every camera's and screen's size")
    parser.add_argument("--keep", type=Path, help="make the meeting here and keep it")
    parser.add_argument("--compose", type=Path, help=argparse.SUPPRESS)  # the measured child
    args = parser.parse_args(argv)
    if args.compose is not None:
        compose_and_measure(args.compose, args.minutes * 60)
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
        child = [sys.executable, "-m", "recordings.bench_composition", "--compose", str(root)]
        subprocess.run([*child, "--minutes", str(args.minutes)], check=True)


if __name__ == "__main__":
    main()
