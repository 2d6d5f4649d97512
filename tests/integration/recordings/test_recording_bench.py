"""`tongke bench recording`: a tiny run through the real recorder gives the documented JSON."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from web.cli import app

pytestmark = pytest.mark.timeout(120)


def test_a_tiny_recording_benchmark_writes_sane_figures(tmp_path: Path) -> None:
    target = tmp_path / "bench.json"
    result = CliRunner().invoke(
        app,
        [
            "bench",
            "recording",
            "--minutes",
            "0.2",
            "--streams",
            "1",
            "--clip-seconds",
            "2",
            "--json",
            str(target),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "CPU %/stream" in result.output
    report = json.loads(target.read_text("utf-8"))
    [run] = report["runs"]
    assert {"streams", "cpu_percent_per_stream", "ready_after_end_s"} <= run.keys()
    assert {"size_overhead_ratio", "frames_lost"} <= run.keys()
    assert run["streams"] == 1
    assert 0 < run["cpu_percent_per_stream"] < 100
    assert 0 < run["ready_after_end_s"] < 30
    # WebM framing over VP8 + Opus is a few percent at most; nothing fed is dropped
    assert 0 < run["size_overhead_ratio"] < 0.05
    assert run["frames_lost"] == 0
    assert run["playable_verified"] is True
    assert run["duration_error_s"] < 0.2
    assert run["errors"] == []
    # the input really is ~1 Mbit/s, and the reference re-encode ran on the same recording
    assert 700 < report["input"]["kbps"] < 1400
    assert report["reference"]["transcode_s"] > 0
    assert abs(report["reference"]["media_minutes"] - 0.2) < 0.01


def test_bad_stream_counts_are_refused() -> None:
    result = CliRunner().invoke(app, ["bench", "recording", "--streams", "0,x"])
    assert result.exit_code == 1
    assert "--streams" in result.output
