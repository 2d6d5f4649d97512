"""The renditions step's ffmpeg runs under several ffmpeg binaries (``TONGKE_RECORDING_FFMPEG``):
memory, CPU and output of each run, and whether each binary's output is byte for byte the
first one's.

Run: PYTHONPATH=. .venv/bin/python benchmarks/ffmpeg_binaries.py --raw raw.webm
--ffmpeg /usr/bin/ffmpeg,/opt/tongke-ffmpeg/bin/ffmpeg [--repeat 3] [--json FILE]

Each binary runs, in turn and in alternating order over the repeats, what processing runs on
``raw`` (a recording's raw WebM, e.g. the one ``tongke bench recording`` records): the
loudness measure, the main and low renditions exactly as ``rendition_arguments`` builds them
(with the measured linear gain), the sprite from the low rendition's key frames and the MP4
remux. Huge pages off as processing runs them. Per run: peak RSS (``VmHWM``), and at the
run's largest RSS sample (every 20 ms) its private memory (``Anonymous`` of
``smaps_rollup``) and file-backed pages (``RssFile``: the binary and its libraries), CPU
seconds of the process (``wait4``) and the output's bytes. The reference, in the same run, is
the first binary.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from recordings.ffmpeg_memory import process_memory
from recordings.processing import (
    HLS_DIR,
    LOW,
    MAIN,
    Loudness,
    ThumbnailGrid,
    complete_playlist,
    key_frame_sprite_arguments,
    loudness_arguments,
    metered_lufs,
    probe_media,
    rendition_arguments,
    rendition_playlist,
    without_huge_pages,
)

SAMPLE_S = 0.02
RUNS = ("loudness", "main", "low", "sprite", "mp4")


def measured_run(ffmpeg: str, arguments: list[str]) -> dict[str, Any]:
    """One ffmpeg run, sampled from /proc until it exits; its figures and stderr."""
    process = subprocess.Popen(
        [ffmpeg, "-hide_banner", "-nostdin", "-y", *arguments],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    pipe = process.stderr
    assert pipe is not None
    stderr: list[bytes] = []
    reader = threading.Thread(target=lambda: stderr.append(pipe.read()))
    reader.start()
    largest = hwm = private = file_backed = 0
    while True:
        try:
            now = process_memory(process.pid, private=False)
            hwm = max(hwm, now.hwm_kib)
            if now.rss_kib > largest:
                largest = now.rss_kib
                at_largest = process_memory(process.pid)
                private, file_backed = at_largest.anonymous_kib or 0, at_largest.file_kib
        except (OSError, ValueError, IndexError):
            pass  # exited between the reads
        done, code, usage = os.wait4(process.pid, os.WNOHANG)
        if done:
            break
        time.sleep(SAMPLE_S)
    reader.join()
    text = b"".join(stderr).decode(errors="replace")
    if code != 0:
        raise RuntimeError(f"{ffmpeg} failed ({code}): {text[-500:]}")
    return {
        "peak_mib": round(hwm / 1024, 1),
        "private_mib": round(private / 1024, 1),
        "file_mib": round(file_backed / 1024, 1),
        "cpu_s": round(usage.ru_utime + usage.ru_stime, 2),
        "stderr": text,
    }


def _digest(top: Path) -> str:
    """One hash over the names and bytes of ``top`` or of every file under it."""
    digest = hashlib.sha256()
    for path in sorted([top] if top.is_file() else [p for p in top.rglob("*") if p.is_file()]):
        digest.update(path.name.encode() + path.read_bytes())
    return digest.hexdigest()[:16]


def renditions_runs(ffmpeg: str, raw: Path, work: Path) -> dict[str, Any]:
    """The renditions step's runs on ``raw`` by ``ffmpeg``, into ``work``."""
    shutil.rmtree(work, ignore_errors=True)
    (work / HLS_DIR).mkdir(parents=True)
    facts = probe_media(raw, trust_header=True)
    runs = {"loudness": measured_run(ffmpeg, loudness_arguments(raw))}
    summary = runs["loudness"]["stderr"]
    summary = summary[summary.rfind("Summary:") :]
    peak = float(summary.split("Peak:")[1].split()[0]) if "Peak:" in summary else float("-inf")
    measured = metered_lufs(runs["loudness"]["stderr"])
    level = (
        Loudness.linear(measured_lufs=measured, true_peak_dbtp=peak)
        if measured is not None
        else Loudness()
    )
    for rendition in (MAIN, LOW):
        arguments = rendition_arguments(raw, work, rendition=rendition, facts=facts, loudness=level)
        runs[rendition.name] = measured_run(ffmpeg, arguments)
        playlist = rendition_playlist(work, rendition.name)
        complete_playlist(playlist)
        runs[rendition.name]["bytes"] = sum(p.stat().st_size for p in playlist.parent.iterdir())
    sprite = work / "thumbs.jpg"
    grid = ThumbnailGrid.on_key_frames(facts)
    low = rendition_playlist(work, LOW.name)
    runs["sprite"] = measured_run(ffmpeg, key_frame_sprite_arguments(low, sprite, grid=grid))
    runs["sprite"]["bytes"] = sprite.stat().st_size
    mp4 = work / "lesson.mp4"
    main = str(rendition_playlist(work, MAIN.name))
    remux = ["-i", main, "-c", "copy", "-movflags", "+faststart", "-f", "mp4", str(mp4)]
    runs["mp4"] = measured_run(ffmpeg, remux)
    runs["mp4"]["bytes"] = mp4.stat().st_size
    for run in runs.values():
        del run["stderr"]
    runs["main"]["digest"] = _digest(rendition_playlist(work, MAIN.name).parent)
    runs["low"]["digest"] = _digest(low.parent)
    runs["sprite"]["digest"] = _digest(sprite)
    runs["mp4"]["digest"] = _digest(mp4)
    return {"runs": runs, "gain_db": level.gain_db}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--raw", type=Path, required=True)
    parser.add_argument("--ffmpeg", required=True, help="binaries, comma-separated")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json", type=Path)
    options = parser.parse_args()
    binaries = [shutil.which(name) or name for name in options.ffmpeg.split(",")]
    without_huge_pages()
    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="tongke-ffmpeg-binaries-") as temporary:
        for repeat in range(options.repeat):
            order = binaries if repeat % 2 == 0 else binaries[::-1]
            for ffmpeg in order:
                work = Path(temporary) / f"{binaries.index(ffmpeg)}-{repeat}"
                result = renditions_runs(ffmpeg, options.raw, work)
                result |= {"ffmpeg": ffmpeg, "repeat": repeat, "load": os.getloadavg()[0]}
                results.append(result)
                shutil.rmtree(work, ignore_errors=True)
    reference = next(r["runs"] for r in results if r["ffmpeg"] == binaries[0])
    print(f"{options.raw} ({probe_media(options.raw).height}p), huge pages off; output against")
    print(f"{binaries[0]}'s first run (the low rendition of a source up to 480 lines differs")
    print("between any two runs: its bitrate mode over two frame threads)")
    print("run      peak / private / file MiB   CPU s       bytes  output")
    for result in results:
        print(f"-- {result['ffmpeg']} (repeat {result['repeat']}, load {result['load']:.1f})")
        for name in RUNS:
            run = result["runs"][name]
            digest = run.get("digest")
            same = (
                ""
                if digest is None
                else "same"
                if digest == reference[name]["digest"]
                else "DIFFERS"
            )
            # a run over before its first sample (a remux of seconds) shows no memory
            memory = (
                f"{run['peak_mib']:6.1f} / {run['private_mib']:5.1f} / {run['file_mib']:5.1f}"
                if run["peak_mib"]
                else f"{'-':>6} / {'-':>5} / {'-':>5}"
            )
            print(f"{name:8} {memory}   {run['cpu_s']:6.2f}  {run.get('bytes', ''):>10}  {same}")
    if options.json is not None:
        options.json.write_text(json.dumps(results, indent=1) + "\n", "utf-8")


if __name__ == "__main__":
    main()
