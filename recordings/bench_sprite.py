"""What the thumbnail sprite step costs for one lesson: the whole-decode sprite (a tile every
2-3 s for lessons up to ~10 minutes) against the key-frame sprite the processing now makes.

Makes (or takes, ``--raw``) a lesson as the capture writes it (VP8 30 fps at ``--height``
lines, ~1 Mbit/s, + Opus), its low HLS rendition as the live transcoder or the job makes it,
then times each way of making the sprite, and prints figures::

    python -m recordings.bench_sprite --minutes 10 --height 720
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import tempfile
import time
from pathlib import Path

from recordings.processing import (
    HLS_DIR,
    LOW,
    THUMBS_NAME,
    Loudness,
    ThumbnailGrid,
    complete_playlist,
    key_frame_sprite_arguments,
    probe_media,
    rendition_arguments,
    rendition_playlist,
    run_ffmpeg,
    sprite_arguments,
)

CLIP_S = 20  # encoded once, then repeated by stream copy (cheap on a busy machine)


def synthetic_lesson(path: Path, *, seconds: float, height: int) -> None:
    """A raw capture: moving test picture, VP8 (realtime) 30 fps ~1 Mbit/s with a key frame
    every 10 s, + an Opus tone; a 20 s clip repeated to ``seconds`` without re-encoding."""
    width = height * 16 // 9 // 2 * 2
    clip = path.with_name(f".{path.stem}.clip.webm")
    subprocess.run(
        [
            "ffmpeg", "-v", "error", "-y",
            "-f", "lavfi", "-i", f"testsrc2=s={width}x{height}:r=30:d={CLIP_S}",
            "-f", "lavfi", "-i", f"sine=f=440:d={CLIP_S}",
            "-c:v", "libvpx", "-deadline", "realtime", "-cpu-used", "8", "-b:v", "1M",
            "-g", "300", "-c:a", "libopus", str(clip),
        ],
        check=True,
    )  # fmt: skip
    subprocess.run(
        [
            "ffmpeg", "-v", "error", "-y", "-stream_loop", "-1", "-i", str(clip),
            "-t", f"{seconds:.1f}", "-c", "copy", str(path),
        ],
        check=True,
    )  # fmt: skip
    clip.unlink()


async def _timed(arguments: list[str]) -> float:
    started = time.perf_counter()
    await run_ffmpeg(arguments, duration_s=0, report=None)
    return time.perf_counter() - started


async def measure(raw: Path, work: Path) -> dict[str, object]:
    facts = probe_media(raw, trust_header=True)
    low = rendition_playlist(work, LOW.name)
    if not low.exists():
        (work / HLS_DIR).mkdir(parents=True, exist_ok=True)
        await run_ffmpeg(
            rendition_arguments(raw, work, rendition=LOW, facts=facts, loudness=Loudness()),
            duration_s=facts.duration_s,
            report=None,
        )
        complete_playlist(low)
    whole = ThumbnailGrid.for_media(facts)
    keyed = ThumbnailGrid.on_key_frames(facts)
    return {
        "duration_s": round(facts.duration_s, 1),
        "source": f"{facts.width}x{facts.height}",
        "whole_grid": {"interval_s": whole.interval_s, "count": whole.count},
        "key_frame_grid": {"interval_s": keyed.interval_s, "count": keyed.count},
        "whole_low_s": round(
            await _timed(sprite_arguments(low, work / f"whole-low-{THUMBS_NAME}", grid=whole)), 2
        ),
        "whole_raw_s": round(
            await _timed(sprite_arguments(raw, work / f"whole-raw-{THUMBS_NAME}", grid=whole)), 2
        ),
        "key_frames_low_s": round(
            await _timed(key_frame_sprite_arguments(low, work / f"key-{THUMBS_NAME}", grid=keyed)),
            2,
        ),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--height", type=int, default=360)
    parser.add_argument("--raw", type=Path, help="an existing raw capture instead of a new one")
    parser.add_argument("--work", type=Path, help="keep the work here (reused when re-run)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="tongke-sprite-") as scratch:
        work = args.work or Path(scratch)
        work.mkdir(parents=True, exist_ok=True)
        raw = args.raw or work / "raw.webm"
        if not raw.exists():
            synthetic_lesson(raw, seconds=args.minutes * 60, height=args.height)
        figures = asyncio.run(measure(raw, work))
    print(json.dumps(figures, ensure_ascii=False, indent=2))


if __name__ == "__main__":
    main()
