"""The benchmarks' ffmpeg memory figures come from the ffmpeg process itself, split into what
is its own and what is shared library pages."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from recordings.ffmpeg_memory import FfmpegPeak
from recordings.processing import run_ffmpeg

pytestmark = pytest.mark.timeout(60)


async def _encode(target: Path, *, size: str) -> None:
    await run_ffmpeg(
        [
            # -re: the run lasts a second whatever the machine, so it is sampled
            "-re", "-f", "lavfi", "-i", f"testsrc2=size={size}:rate=25:duration=1",
            "-c:v", "libx264", "-preset", "veryfast", "-f", "mp4", str(target),
        ],
        duration_s=0,
        report=None,
    )  # fmt: skip


async def test_peak_and_private_memory_of_an_ffmpeg_run(tmp_path: Path) -> None:
    async with FfmpegPeak() as small:
        await _encode(tmp_path / "small.mp4", size="320x180")
    async with FfmpegPeak() as large:
        await _encode(tmp_path / "large.mp4", size="1920x1080")

    for peak in (small, large):
        run = peak.runs["mp4"]
        assert run["peak_mib"] == peak.mib
        # ffmpeg's libraries alone are tens of MiB; what is private is part of the peak
        assert peak.mib > 20
        assert 0 < peak.private_mib < peak.mib
        assert run["cpu_s"] >= 0
    # x264's frames at 1080p are private memory of that run: the shared part stays alike
    assert large.private_mib - small.private_mib > 20
    assert abs((large.mib - large.private_mib) - (small.mib - small.private_mib)) < 10


async def test_nothing_is_counted_when_no_ffmpeg_runs() -> None:
    async with FfmpegPeak() as peak:
        process = await asyncio.create_subprocess_exec("sleep", "0.3")
        await process.wait()
    assert peak.mib == 0
    assert peak.runs == {}
