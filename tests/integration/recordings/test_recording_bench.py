"""`tongke bench recording`: a tiny run through the real recorder gives the documented JSON."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from common.settings import get_settings
from recordings.ffmpeg_memory import ffmpeg_run_name
from tests.fixtures.recordings import LoggedFfmpeg
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


def _bench(tmp_path: Path, *options: str) -> tuple[str, dict[str, Any]]:
    target = tmp_path / "bench.json"
    result = CliRunner().invoke(
        app,
        [
            "bench", "recording", "--minutes", "0.15", "--streams", "1", "--clip-seconds", "2",
            "--no-reference", *options, "--json", str(target),
        ],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    return result.output, json.loads(target.read_text("utf-8"))


def test_a_camera_of_another_size(tmp_path: Path) -> None:
    _, report = _bench(tmp_path, "--resolution", "1280x720")
    assert report["input"]["video"] == "1280x720 30 fps"
    assert 1500 < report["input"]["kbps"] < 2600  # 2 Mbit/s at 720p
    [run] = report["runs"]
    assert run["frames_lost"] == 0 and run["playable_verified"] is True


def test_the_renditions_step_stays_under_100_mib(
    tmp_path: Path, logged_ffmpeg: LoggedFfmpeg, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TONGKE_RECORDING_FFMPEG", str(logged_ffmpeg.path))
    get_settings.cache_clear()
    try:
        output, report = _bench(tmp_path, "--renditions")
    finally:
        monkeypatch.undo()
        get_settings.cache_clear()
    assert "processing peak RSS" in output
    # processing ran the configured ffmpeg, as the app does (after the settings' start-up
    # check): poster, loudness, renditions, sprite, MP4
    check, *runs_of_it = logged_ffmpeg.runs
    assert check == ["-hide_banner", "-encoders"]
    assert sorted(ffmpeg_run_name(["ffmpeg", *run]) for run in runs_of_it) == [
        "loudness", "low", "main", "mp4", "sprite", "sprite",
    ], runs_of_it  # fmt: skip
    # the peak of every ffmpeg the step ran (sampled from /proc), for the 360p lesson
    assert 20 < report["renditions"]["ffmpeg_peak_rss_mib"] < 100
    runs = report["renditions"]["runs"]  # and per run, named by what it writes
    # loudness normalisation on (linear, the default): its measuring pass a run of its own
    assert report["renditions"]["loudness"]["mode"] == "linear"
    assert {"loudness", "main", "low"} <= set(runs), runs
    assert all(run["peak_mib"] < 100 for run in runs.values()), runs
    assert runs["main"]["peak_mib"] > 20 and runs["main"]["cpu_s"] > 0  # x264 and its frames
    # what of it is the run's own (the rest: library pages every ffmpeg shares)
    renditions = report["renditions"]
    assert 0 < renditions["ffmpeg_peak_private_mib"] < renditions["ffmpeg_peak_rss_mib"]
    assert all(0 < run["private_mib"] < run["peak_mib"] for run in runs.values()), runs
    assert all(0 < run["file_mib"] < run["peak_mib"] for run in runs.values()), runs
    assert "private" in output and "file" in output


def test_bad_resolutions_are_refused() -> None:
    for text in ("1920", "1921x1080", "8000x4000"):
        result = CliRunner().invoke(app, ["bench", "recording", "--resolution", text])
        assert result.exit_code == 1, text
        assert "--resolution" in result.output


def test_live_hls_times_the_h264_versions_after_the_end(tmp_path: Path) -> None:
    output, report = _bench(tmp_path, "--live-hls")
    assert "H.264 (HLS + MP4, live transcode)" in output
    [run] = report["runs"]
    # the keys stay; the H.264 figures come beside them
    assert {"streams", "cpu_percent_per_stream", "ready_after_end_s", "frames_lost"} <= run.keys()
    assert run["h264_from"] == ["live"] and run["live_outcomes"] == ["done"]
    assert run["h264_ready_after_end_s"] >= run["ready_after_end_s"] > 0
    assert run["h264_duration_error_s"] <= 0.5
    assert 0 < run["live_cpu_percent_per_stream"] < 200
    assert run["live_speed_x"] > 0 and isinstance(run["live_keeps_up"], bool)
