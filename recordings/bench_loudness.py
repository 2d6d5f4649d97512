"""What loudness normalisation costs a processing run: peak RSS and CPU of one rendition's
ffmpeg run with ``off``, ``linear`` and ``dynamic`` levels, and of the measuring pass.

Makes (or takes, ``--raw``) a lesson as the capture writes it (VP8 30 fps at ``--height``
lines, 2.5 Mbit/s, + Opus: a beeping tone at about -31 LUFS; a long one is the first
30 s looped by stream copy), then runs ``rendition_arguments`` / ``loudness_arguments`` under
``/usr/bin/time`` with huge pages off, as processing runs them, and prints one JSON line per
run::

    python -m recordings.bench_loudness --seconds 30 --height 720 --modes off,linear,dynamic
    python -m recordings.bench_loudness --seconds 2700 --height 720 --measure-only
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import IO, Any, cast

from recordings.processing import (
    HLS_DIR,
    LOW,
    MAIN,
    Loudness,
    LoudnessMode,
    loudness_arguments,
    measure_loudness,
    probe_media,
    rendition_arguments,
    without_huge_pages,
)

CLIP_S = 30
MODES: tuple[LoudnessMode, ...] = ("off", "linear", "dynamic")


def synthetic_lesson(raw: Path, *, seconds: float, height: int) -> None:
    width = round(height * 16 / 9 / 2) * 2
    clip = raw.with_name("clip.webm")
    subprocess.run(
        [
            "ffmpeg", "-v", "error", "-y",
            "-f", "lavfi", "-i", f"testsrc2=size={width}x{height}:rate=30",
            "-f", "lavfi", "-i", "sine=f=440:r=48000:beep_factor=4,volume=-10dB",
            "-ac", "2", "-t", str(min(seconds, CLIP_S)),
            "-c:v", "libvpx", "-deadline", "realtime", "-cpu-used", "8", "-b:v", "2500k",
            "-c:a", "libopus", "-b:a", "32k", str(clip),
        ],
        check=True,
    )  # fmt: skip
    loops = max(0, int(seconds // CLIP_S) - 1)
    subprocess.run(
        ["ffmpeg", "-v", "error", "-y", "-stream_loop", str(loops), "-i", str(clip),
         "-c", "copy", str(raw)],
        check=True,
    )  # fmt: skip
    clip.unlink()


def timed_run(arguments: list[str], *, stdin: IO[bytes] | None = None) -> dict[str, float]:
    """Peak RSS (MiB) and CPU seconds of one ffmpeg run, from ``/usr/bin/time``; ``stdin``:
    what it reads as ``pipe:0``."""
    finished = subprocess.run(
        ["/usr/bin/time", "-f", "TIME %M %U %S %e",
         "ffmpeg", "-hide_banner", *([] if stdin else ["-nostdin"]), "-y", *arguments],
        stdin=stdin, capture_output=True, text=True, check=True,
    )  # fmt: skip
    line = [row for row in finished.stderr.splitlines() if row.startswith("TIME ")][-1]
    kib, user, system, wall = line.split()[1:]
    return {
        "peak_mib": round(int(kib) / 1024, 1),
        "cpu_s": round(float(user) + float(system), 1),
        "wall_s": float(wall),
    }


def rendition_run(raw: Path, work: Path, *, low: bool, mode: LoudnessMode) -> dict[str, Any]:
    facts = probe_media(raw, trust_header=True)
    level = Loudness(mode)
    if mode == "linear":
        level = asyncio.run(measure_loudness(raw, duration_s=facts.duration_s, report=None))
    out = work / f"run-{mode}"
    shutil.rmtree(out, ignore_errors=True)
    (out / HLS_DIR).mkdir(parents=True)
    rendition = LOW if low else MAIN
    arguments = rendition_arguments(raw, out, rendition=rendition, facts=facts, loudness=level)
    figures = timed_run(arguments)
    size = sum(p.stat().st_size for p in (out / HLS_DIR).rglob("*.m4s"))
    shutil.rmtree(out, ignore_errors=True)
    return {
        "run": f"{rendition.name} from {facts.height}p",
        "mode": mode,
        "gain_db": level.gain_db,
        **figures,
        "segment_bytes": size,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--seconds", type=float, default=CLIP_S)
    parser.add_argument("--height", type=int, default=720)
    parser.add_argument("--raw", type=Path, help="an existing raw capture instead of a new one")
    parser.add_argument("--modes", default="off,linear,dynamic")
    parser.add_argument("--low", action="store_true", help="the 360p rendition, not the main")
    parser.add_argument("--measure-only", action="store_true")
    args = parser.parse_args(argv)
    modes = [cast(LoudnessMode, mode) for mode in args.modes.split(",") if mode in MODES]
    without_huge_pages()  # inherited by every ffmpeg started from here
    with tempfile.TemporaryDirectory(prefix="tongke-loudness-") as scratch:
        work = Path(scratch)
        raw = args.raw or work / "raw.webm"
        if not raw.exists():
            synthetic_lesson(raw, seconds=args.seconds, height=args.height)
        if args.measure_only:
            minutes = round(probe_media(raw, trust_header=True).duration_s / 60, 1)
            figures = {"run": "loudness measure", "minutes": minutes}
            print(json.dumps(figures | timed_run(loudness_arguments(raw))))
            return
        for mode in modes:
            print(json.dumps(rendition_run(raw, work, low=args.low, mode=mode)), flush=True)


if __name__ == "__main__":
    main()
