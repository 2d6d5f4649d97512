"""The suite's check for ffmpeg left running (tests/fixtures/processes.py) finds a child of this
process and an orphan whose parent is gone, and only while they run."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import pytest

from tests.fixtures.classrooms import eventually
from tests.fixtures.processes import ffmpeg_left

# runs until killed, writes nothing
ENDLESS = [
    "ffmpeg",
    "-v",
    "error",
    "-nostdin",
    "-re",
    "-f",
    "lavfi",
    "-i",
    "anullsrc",
]


def _running(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] != "Z"
    except OSError:
        return False


async def test_a_child_ffmpeg_is_found_until_it_ends(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    basetemp = tmp_path_factory.getbasetemp()
    child = subprocess.Popen([*ENDLESS, "-f", "null", "-"])
    try:
        await eventually(lambda: child.pid in {p.pid for p in ffmpeg_left(basetemp)}, timeout=5)
        [found] = [p for p in ffmpeg_left(basetemp) if p.pid == child.pid]
        assert found.command.startswith("ffmpeg -v error") and 0 <= found.age_s < 5
    finally:
        child.kill()
        child.wait()
    assert child.pid not in {p.pid for p in ffmpeg_left(basetemp)}


async def test_an_orphaned_ffmpeg_is_found_by_the_session_s_folder(
    tmp_path_factory: pytest.TempPathFactory, tmp_path: Path
) -> None:
    basetemp = tmp_path_factory.getbasetemp()
    # the shell starts ffmpeg in the background and exits: ffmpeg's parent is then init's
    background = f'{" ".join(ENDLESS)} -f null "$0" >/dev/null 2>&1 & echo $!'
    shell = subprocess.run(
        ["sh", "-c", background, tmp_path / "out"], capture_output=True, text=True, check=True
    )
    pid = int(shell.stdout)
    try:
        await eventually(lambda: pid in {p.pid for p in ffmpeg_left(basetemp)}, timeout=5)
        # another session's ffmpeg is not this one's
        assert pid not in {p.pid for p in ffmpeg_left(basetemp / "elsewhere")}
    finally:
        os.kill(pid, signal.SIGKILL)
    await eventually(lambda: not _running(pid), timeout=5)
    assert pid not in {p.pid for p in ffmpeg_left(basetemp)}
