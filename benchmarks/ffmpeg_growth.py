"""Where a rendition run's memory grows with the lesson's length: one ffmpeg run per step,
each adding one component to the one before, over the same long raw WebM.

Run: PYTHONPATH=. .venv/bin/python benchmarks/ffmpeg_growth.py --raw long.webm
[--rendition main|low] [--steps demux,decode,filters,x264,aac,vod,hls,gain,meter] [--keep DIR]

Steps (each the run ``rendition_arguments`` builds, cut down): ``demux`` (packets copied to
``-f null``), ``decode`` (decoded, nothing else), ``filters`` (+ the filter graph), ``x264``
(+ the video encoder), ``aac`` (+ the audio encoder), ``vod`` (+ the HLS muxer keeping every
segment for a VOD playlist, as processing ran it until 2026-12-06), ``hls`` (+ the HLS muxer:
the run exactly as processing makes it with loudness off, then ``complete_playlist``),
``gain`` (+ a linear gain, as ``linear`` makes it), ``meter`` (+ ``LOUDNESS_METER``, as a live
main run has it). Each run is sampled
at every ``-progress`` report (about every 0.5 s of wall time) from /proc, huge pages off as
processing runs them; printed per step: peak RSS (VmHWM), RSS and private memory
(``Anonymous`` of ``smaps_rollup``) after 2, 10, 20, 30 and 45 minutes of media (or the
end), the growth from 2 minutes to the end, CPU seconds and the output's size. ``--keep``:
the HLS output of each step kept in ``DIR/<step>`` (to compare ``vod`` with ``hls``).
The reference, in the same run, is each step's own figure at 2 minutes, and ``vod``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from recordings.ffmpeg_memory import ProcessMemory, process_memory
from recordings.processing import (
    HLS_DIR,
    LOW,
    MAIN,
    Loudness,
    complete_playlist,
    probe_media,
    rendition_arguments,
    rendition_playlist,
    without_huge_pages,
)

STEPS = ("demux", "decode", "filters", "x264", "aac", "vod", "hls", "gain", "meter")
MARKS_MIN = (2, 10, 20, 30, 45)
GAIN = Loudness("linear", gain_db=5.0, measured_lufs=-21.0, true_peak_dbtp=-8.0)


def _null_output(arguments: list[str]) -> list[str]:
    """The same run with its HLS output replaced by ``-f null``."""
    cut = arguments.index("-f")
    return [*arguments[:cut], "-f", "null", "-", "-progress", "pipe:1", "-nostats"]


def _without(arguments: list[str], option: str, count: int) -> list[str]:
    """``arguments`` less ``option`` and the ``count`` values after it."""
    at = arguments.index(option)
    return arguments[:at] + arguments[at + 1 + count :]


def step_arguments(step: str, raw: Path, work: Path, *, rendition_name: str) -> list[str]:
    facts = probe_media(raw, trust_header=True)
    rendition = MAIN if rendition_name == "main" else LOW
    level = GAIN if step in ("gain", "meter") else Loudness()
    full = rendition_arguments(
        raw, work, rendition=rendition, facts=facts, loudness=level, meter=step == "meter"
    )
    if step in ("hls", "gain", "meter"):
        return full
    if step == "vod":
        # before the output's name and -progress
        return [*_without(full, "-hls_list_size", 1)[:-4], "-hls_playlist_type", "vod",
                *full[-4:]]  # fmt: skip
    if step == "demux":
        return ["-i", str(raw), "-map", "0", "-c", "copy", "-f", "null", "-", "-progress",
                "pipe:1", "-nostats"]  # fmt: skip
    if step == "decode":
        threads = full[full.index("-threads") + 1]
        return ["-threads", threads, "-i", str(raw), "-f", "null", "-", "-progress", "pipe:1",
                "-nostats"]  # fmt: skip
    arguments = _null_output(full)
    if step in ("filters", "x264"):
        arguments = _without(arguments, "-c:a", 1)
        arguments = _without(arguments, "-b:a", 1)
    if step == "filters":
        start = arguments.index("-c:v")
        end = arguments.index("-force_key_frames") + 2 + len(rendition.video_args)
        arguments = arguments[:start] + arguments[end:]
    return arguments


def run_step(
    step: str, raw: Path, *, rendition_name: str, keep: Path | None = None
) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix=f"tongke-growth-{step}-"))
    (work / HLS_DIR).mkdir()
    started = time.perf_counter()
    arguments = step_arguments(step, raw, work, rendition_name=rendition_name)
    process = subprocess.Popen(
        ["ffmpeg", "-hide_banner", "-nostdin", "-y", *arguments],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert process.stdout is not None
    marks: dict[str, dict[str, float]] = {}
    pending = list(MARKS_MIN)
    last: ProcessMemory | None = None
    media_s = 0.0
    for line in process.stdout:
        key, _, value = line.strip().partition("=")
        if key == "out_time_us" and value.lstrip("-").isdigit():
            media_s = int(value) / 1e6
        if key != "progress":
            continue
        try:
            last = process_memory(process.pid)
        except (OSError, ValueError):
            break
        while pending and media_s >= pending[0] * 60:
            marks[f"{pending.pop(0)}"] = _mib(last)
    process.wait()
    if process.returncode != 0:
        raise SystemExit(f"{step}: ffmpeg exited {process.returncode}")
    if last is None:
        raise SystemExit(f"{step}: ffmpeg reported no progress")
    marks["end"] = _mib(last)
    wall_s = time.perf_counter() - started
    playlist = rendition_playlist(work, rendition_name)
    completed_s = None
    if step in ("hls", "gain", "meter"):
        before = time.perf_counter()
        complete_playlist(playlist)
        completed_s = round(time.perf_counter() - before, 3)
    size = sum(p.stat().st_size for p in work.rglob("*") if p.is_file())
    if keep is not None and playlist.exists():
        shutil.rmtree(keep / step, ignore_errors=True)
        shutil.copytree(work / HLS_DIR, keep / step)
    shutil.rmtree(work, ignore_errors=True)
    first = marks.get("2", marks["end"])
    return {
        "step": step,
        "rendition": rendition_name,
        "media_min": round(media_s / 60, 1),
        "marks": marks,
        "growth_hwm_mib": round(marks["end"]["hwm"] - first["hwm"], 1),
        "growth_anon_mib": round(marks["end"]["anon"] - first["anon"], 1),
        "cpu_s": round(last.cpu_s, 1),
        "wall_s": round(wall_s, 1),
        "complete_playlist_s": completed_s,
        "output_bytes": size,
    }


def _mib(sample: ProcessMemory) -> dict[str, float]:
    kib = {"hwm": sample.hwm_kib, "rss": sample.rss_kib, "anon": sample.anonymous_kib or 0}
    return {key: round(value / 1024, 1) for key, value in kib.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--raw", type=Path, required=True)
    parser.add_argument("--rendition", choices=("main", "low"), default="main")
    parser.add_argument("--steps", default=",".join(STEPS))
    parser.add_argument("--keep", type=Path, help="keep each step's HLS output here")
    args = parser.parse_args()
    without_huge_pages()  # inherited by every ffmpeg started from here, as in processing
    for step in args.steps.split(","):
        if step not in STEPS:
            raise SystemExit(f"unknown step {step!r}: one of {', '.join(STEPS)}")
        figures = run_step(step, args.raw, rendition_name=args.rendition, keep=args.keep)
        print(json.dumps(figures), flush=True)


if __name__ == "__main__":
    main()
