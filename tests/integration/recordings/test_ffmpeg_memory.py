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

    # the run's own figures: the overall peak is the largest of every ffmpeg this process has
    # running meanwhile (once, under two test workers, another's 61.3 beside this one's 60.8)
    mp4 = {"small": small.runs["mp4"], "large": large.runs["mp4"]}
    for peak, run in ((small, mp4["small"]), (large, mp4["large"])):
        assert peak.mib >= run["peak_mib"]
        # the ffmpeg child itself was sampled: its private memory and the pages of its binary
        # and libraries (~44 MiB for Debian's ffmpeg, ~9 for a lean build) are parts of its peak
        assert 0 < run["private_mib"] < run["peak_mib"]
        assert 0 < run["file_mib"] < run["peak_mib"]
        assert run["private_mib"] + run["file_mib"] <= run["peak_mib"] + 1  # one sample's parts
        assert run["cpu_s"] >= 0
    # x264's frames at 1080p are private memory of that run: the shared part stays alike
    assert mp4["large"]["private_mib"] - mp4["small"]["private_mib"] > 20
    shared = {size: run["peak_mib"] - run["private_mib"] for size, run in mp4.items()}
    assert abs(shared["large"] - shared["small"]) < 10


async def test_nothing_is_counted_when_no_ffmpeg_runs() -> None:
    async with FfmpegPeak() as peak:
        process = await asyncio.create_subprocess_exec("sleep", "0.3")
        await process.wait()
    assert peak.mib == 0
    assert peak.runs == {}


async def test_ffmpeg_runs_keep_x264_frames_out_of_huge_pages(tmp_path: Path) -> None:
    """x264 asks for transparent huge pages on its large buffers, which the kernel then
    keeps resident in whole 2 MiB pages (~58 MiB of a 1080p run); processing's runs have
    them switched off, so only touched 4 KiB pages count."""
    seen: list[tuple[str, int]] = []

    async def watch() -> None:
        while True:
            for children in Path("/proc/self/task").glob("*/children"):
                for pid in children.read_text("ascii").split():
                    try:
                        status = Path(f"/proc/{pid}/status").read_text("ascii")
                        rollup = Path(f"/proc/{pid}/smaps_rollup").read_text("ascii")
                    except OSError:
                        continue
                    if status.startswith("Name:\tffmpeg\n") and "VmRSS:" in status:
                        [thp] = [line for line in status.splitlines() if line.startswith("THP_")]
                        [huge] = [line for line in rollup.splitlines() if "AnonHugePages" in line]
                        seen.append((thp.split()[1], int(huge.split()[1])))
            await asyncio.sleep(0.05)

    watcher = asyncio.create_task(watch())
    try:
        await _encode(tmp_path / "large.mp4", size="1920x1080")
    finally:
        watcher.cancel()
    assert seen, "the run was never sampled"
    assert {thp for thp, _ in seen} == {"0"}  # THP_enabled: 0, inherited from this process
    assert max(huge for _, huge in seen) == 0
