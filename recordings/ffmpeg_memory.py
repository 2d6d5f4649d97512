"""How much memory the ffmpeg runs of a processing step take, for the benchmarks.

``ru_maxrss`` of children cannot tell: a child's starts as the forked copy of the Python
process (PyAV and the recorder loaded) before exec. So the ffmpeg processes this process
starts are sampled from /proc instead: their peak RSS (``VmHWM``), and, at their largest
sample, how much of it is private (``Anonymous`` in ``smaps_rollup``: frames, encoder and
decoder state, relocated library data) rather than library pages shared with every other
ffmpeg on the host (Debian's ffmpeg links ~170 libraries: ~44 MiB of every run's RSS).
Used by ``tongke bench recording`` and ``python -m recordings.bench_composition``.
"""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass
from pathlib import Path

SAMPLE_S = 0.05


def ffmpeg_run_name(command: list[str]) -> str:
    """Which run of a processing step an ffmpeg command line is: a rendition by its name in
    ``-var_stream_map``, the loudness measure by its filter, else by its output (the sprite's
    JPEG, the MP4 remux, a composed meeting's WebM)."""
    if "-var_stream_map" in command[:-1]:
        return command[command.index("-var_stream_map") + 1].rpartition("name:")[2]
    if any(argument.startswith("ebur128") for argument in command):
        return "loudness"
    for suffix, name in ((".jpg", "sprite"), (".mp4", "mp4"), (".webm", "compose")):
        if any(argument.endswith(suffix) for argument in command[1:]):
            return name
    return "other"


def _kib(text: str, key: str) -> int:
    for line in text.splitlines():
        if line.startswith(key):
            return int(line.split()[1])
    return 0


@dataclass(frozen=True)
class ProcessMemory:
    """One sample of a process from /proc: its name, peak and current RSS, its private
    memory (``Anonymous`` in ``smaps_rollup``; None when not asked for: reading it walks
    every mapping), its CPU time so far (user + system clock ticks) and the file-backed part
    of its current RSS (``RssFile``: the binary and its libraries)."""

    name: str
    hwm_kib: int
    rss_kib: int
    anonymous_kib: int | None
    cpu_ticks: int
    file_kib: int = 0

    @property
    def cpu_s(self) -> float:
        return self.cpu_ticks / os.sysconf("SC_CLK_TCK")


def process_memory(pid: int, *, private: bool = True) -> ProcessMemory:
    """A sample of ``pid`` (OSError once it is gone)."""
    status = Path(f"/proc/{pid}/status").read_text("ascii")
    stat = Path(f"/proc/{pid}/stat").read_text("ascii").rsplit(")", 1)[1].split()
    anonymous = None
    if private:
        anonymous = _kib(Path(f"/proc/{pid}/smaps_rollup").read_text("ascii"), "Anonymous:")
    return ProcessMemory(
        name=status.partition("\n")[0].removeprefix("Name:\t"),
        hwm_kib=_kib(status, "VmHWM:"),
        rss_kib=_kib(status, "VmRSS:"),
        anonymous_kib=anonymous,
        cpu_ticks=int(stat[11]) + int(stat[12]),
        file_kib=_kib(status, "RssFile:"),
    )


class FfmpegPeak:
    """The highest peak RSS (``VmHWM``) of any ffmpeg this process starts while it watches,
    sampled every 50 ms, overall and per run (``runs``: ``peak_mib``, ``private_mib`` and
    ``file_mib`` at the run's largest sample, and CPU seconds at its last, by
    ``ffmpeg_run_name``)."""

    def __init__(self) -> None:
        self.peak_kib = 0
        self.private_kib = 0
        self.runs: dict[str, dict[str, float]] = {}
        self._largest: dict[int, int] = {}  # pid: largest VmRSS seen
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> FfmpegPeak:
        self._task = asyncio.create_task(self._watch())
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    @property
    def mib(self) -> float:
        return round(self.peak_kib / 1024, 1)

    @property
    def private_mib(self) -> float:
        """Private memory of the run with the highest peak (at its largest sample)."""
        return round(self.private_kib / 1024, 1)

    def sample(self) -> None:
        for children in Path("/proc/self/task").glob("*/children"):
            for pid in map(int, children.read_text("ascii").split()):
                try:
                    now = process_memory(pid, private=False)
                    if now.name != "ffmpeg" or now.rss_kib == 0:
                        continue  # not ffmpeg, or exited and not yet reaped: nothing mapped
                    command = Path(f"/proc/{pid}/cmdline").read_text().split("\0")
                    largest = None
                    if now.rss_kib > self._largest.get(pid, 0):
                        self._largest[pid] = now.rss_kib
                        largest = process_memory(pid)
                except OSError:
                    continue  # already gone
                run = self.runs.setdefault(ffmpeg_run_name(command), {})
                run["peak_mib"] = max(run.get("peak_mib", 0.0), round(now.hwm_kib / 1024, 1))
                run["cpu_s"] = round(now.cpu_s, 1)
                if largest is not None and largest.anonymous_kib is not None:
                    private = round(largest.anonymous_kib / 1024, 1)
                    run["private_mib"] = max(run.get("private_mib", 0.0), private)
                    run["file_mib"] = round(largest.file_kib / 1024, 1)
                if now.hwm_kib >= self.peak_kib:
                    self.peak_kib = now.hwm_kib
                    self.private_kib = round(run.get("private_mib", 0.0) * 1024)

    async def _watch(self) -> None:
        while True:
            self.sample()
            await asyncio.sleep(SAMPLE_S)
