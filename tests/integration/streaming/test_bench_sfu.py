"""`tongke bench sfu` end to end, tiny: one subscriber, a 3 s window, each SFU once.

A smoke test of the benchmark's plumbing (processes, private network namespace, Janus
config, JSON), not of speed: the figures are only checked for being sane.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from streaming.bench import SFUS, run_soak
from streaming.bench_janus import janus_missing

KEYS = {
    "sfu", "resolution", "subscribers", "cpu_percent", "cpu_percent_per_subscriber",
    "us_per_packet", "delay_ms_p50", "delay_ms_p99", "first_frame_ms", "delivered_ratio",
    "memory_mib_per_subscriber",
}  # fmt: skip


def _private_netns_possible() -> bool:
    unshare = shutil.which("unshare")
    return unshare is not None and subprocess.run([unshare, "-n", "true"]).returncode == 0


pytestmark = [
    pytest.mark.redis,
    pytest.mark.skipif(
        shutil.which("redis-server") is None, reason="redis-server is not installed"
    ),
    pytest.mark.skipif(
        not _private_netns_possible(),
        reason="the bench needs a private network namespace (unshare -n, i.e. root)",
    ),
]


@pytest.fixture(scope="module")
def bench_result(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    path: Path = tmp_path_factory.mktemp("bench") / "bench.json"
    available = [s for s in SFUS if s != "janus" or janus_missing() is None]
    completed = subprocess.run(
        [sys.executable, "-m", "web.cli", "bench", "sfu", "--subscribers", "1",
         "--seconds", "3", "--warm-up", "1", "--resolutions", "640x360",
         "--sfus", ",".join(available), "--json", str(path)],
        capture_output=True,
        text=True,
        timeout=600,
    )  # fmt: skip
    assert completed.returncode == 0, completed.stdout + completed.stderr
    result: dict[str, Any] = json.loads(path.read_text())
    result["stdout"] = completed.stdout
    return result


@pytest.mark.parametrize("sfu", SFUS)
def test_each_sfu_is_measured_with_sane_figures(bench_result: dict[str, Any], sfu: str) -> None:
    if sfu == "janus" and (reason := janus_missing()) is not None:
        pytest.skip(f"Janus: {reason}")
    assert bench_result["skipped"] == []
    (run,) = [r for r in bench_result["runs"] if r["sfu"] == sfu]
    assert set(run) >= KEYS
    assert run["resolution"] == "640x360"
    assert run["subscribers"] == 1
    assert run["publisher"] == "looped"  # the default: encoded once, sent in a loop
    assert run["cpu_percent"] > 0
    assert run["us_per_packet"] > 0
    assert run["delivered_ratio"] > 0.8
    assert run["first_frame_ms"] is not None and run["first_frame_ms"] > 0
    assert 0 <= run["delay_ms_p50"] <= run["delay_ms_p99"]
    assert run["memory_mib_per_subscriber"] is not None
    # the table names every run
    assert any(
        line.split()[:3] == [sfu, "640x360", "1"] for line in bench_result["stdout"].splitlines()
    )


async def test_soak_samples_the_sfu_memory_with_subscribers_joined() -> None:
    """The soak's plumbing with no minute to wait: one sample right after the joins."""
    result = await run_soak(resolution="640x360", subscribers=2, minutes=0)
    assert result["subscribers_joined"] == 2
    assert [sample["minute"] for sample in result["samples"]] == [0]
    assert result["samples"][0]["rss_mib"] > result["rss_mib_before_join"] > 0
    assert result["memory_mib_per_subscriber"] > 0
    assert result["growth_mib"] == 0
