"""How `tongke bench sfu` turns what it counted into the figures of one run."""

from __future__ import annotations

from typing import Any

import pytest
from typer.testing import CliRunner

from streaming.bench import alternating, median_runs, summarize
from web.cli import _median_table, app


def _run(sfu: str, **counted: Any) -> dict[str, Any]:
    figures: dict[str, Any] = {
        "sfu": sfu,
        "resolution": "640x360",
        "seconds": 10.0,
        "cpu_percent": 12.0,
        "baseline_percent": 2.0,
        "sent": (1600, 600, 1_400_000),
        "received": ([1600, 1600, 1600, 1200], [600, 600, 600, 300]),
        "delays_ms": [float(ms) for ms in range(1, 101)],
        "first_frames_ms": [120.0, 180.0, None, 150.0],
    }
    return summarize(**(figures | counted))


def test_forwarders_are_judged_by_packets_and_cpu_above_the_publisher_alone() -> None:
    run = _run("janus")
    assert run["subscribers"] == 4
    assert run["cpu_percent_per_subscriber"] == 2.5  # (12 - 2) / 4
    assert run["delivered_ratio"] == 6000 / 6400
    assert run["delivered_unit"] == "packets"
    assert run["delivered_frames_ratio"] == 2100 / 2400
    assert run["us_per_packet"] == round(0.12 * 10 * 1e6 / 6000, 2)
    assert run["us_per_packet_marginal"] == round(0.10 * 10 * 1e6 / 6000, 2)
    assert (run["delay_ms_p50"], run["delay_ms_p99"]) == (51.0, 100.0)
    # a subscriber that never saw video is left out of the median, and counted as missing
    assert run["first_frame_ms"] == 150.0
    assert run["subscribers_joined"] == 3


def test_the_re_encoding_relay_is_judged_by_media_frames() -> None:
    run = _run("mediarelay", received=([900, 900, 900, 900], [600, 600, 600, 300]))
    assert run["delivered_unit"] == "frames"
    assert run["delivered_ratio"] == 2100 / 2400


def test_nothing_received_gives_no_per_packet_figures() -> None:
    run = _run("tongke", received=([0], [0]), delays_ms=[], first_frames_ms=[None])
    assert run["delivered_ratio"] == 0
    assert run["us_per_packet"] is None
    assert run["delay_ms_p50"] is None
    assert run["first_frame_ms"] is None


def test_repetitions_alternate_the_order_so_each_sfu_runs_first_as_often_as_last() -> None:
    orders = [alternating(["tongke", "janus"], r) for r in range(4)]
    assert orders == [["tongke", "janus"], ["janus", "tongke"]] * 2
    assert alternating(["tongke"], 1) == ["tongke"]


def test_repeated_runs_are_told_by_their_medians_and_ranges() -> None:
    def repetition(n: int, sfu: str, subscribers: int, **figures: Any) -> dict[str, Any]:
        return {"sfu": sfu, "resolution": "640x360", "subscribers": subscribers,
                "repetition": n, "delivered_unit": "packets"} | figures  # fmt: skip

    runs = [
        repetition(1, "tongke", 1, us_per_packet=130.0, first_frame_ms=80.0, joined=1),
        repetition(1, "janus", 1, us_per_packet=120.0, first_frame_ms=None, joined=1),
        repetition(2, "janus", 1, us_per_packet=110.0, first_frame_ms=None, joined=1),
        repetition(2, "tongke", 1, us_per_packet=100.0, first_frame_ms=None, joined=0),
        repetition(3, "tongke", 1, us_per_packet=90.0, first_frame_ms=60.0, joined=1),
        repetition(1, "tongke", 8, us_per_packet=30.0, first_frame_ms=70.0, joined=8),
    ]
    rows = median_runs(runs)
    assert [(r["sfu"], r["subscribers"], r["repeats"]) for r in rows] == [
        ("tongke", 1, 3), ("janus", 1, 2), ("tongke", 8, 1),
    ]  # fmt: skip
    tongke, janus, eight = rows
    assert tongke["us_per_packet"] == 100.0 and tongke["ranges"]["us_per_packet"] == [90.0, 130.0]
    # a run without a figure is left out of its median, not counted as zero
    assert tongke["first_frame_ms"] == 70.0 and tongke["ranges"]["first_frame_ms"] == [60.0, 80.0]
    assert tongke["joined"] == 1 and tongke["ranges"]["joined"] == [0, 1]
    assert janus["us_per_packet"] == 115.0 and janus["first_frame_ms"] is None
    assert "first_frame_ms" not in janus["ranges"]
    assert tongke["delivered_unit"] == "packets" and "repetition" not in tongke
    assert eight["us_per_packet"] == 30.0 and eight["ranges"]["us_per_packet"] == [30.0, 30.0]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--repeat", "0"], "重复轮数须为正整数"),
        (["--repeat", "2", "--soak-minutes", "1"], "不能与 --repeat 同用"),
        (["--subscribers", "0"], "订阅者人数须为正整数"),
        (["--sfus", "tongke,wowza"], "不支持的 SFU"),
        (["--publisher", "recorded"], "不支持的发布端视频"),
    ],
)
def test_the_bench_refuses_what_it_cannot_measure_before_starting_anything(
    options: list[str], message: str
) -> None:
    result = CliRunner().invoke(app, ["bench", "sfu", "--no-netns", *options])
    assert result.exit_code == 1
    assert message in result.output


def test_the_closing_table_gives_each_figure_with_its_range() -> None:
    row = {
        "sfu": "janus", "resolution": "640x360", "subscribers": 8, "us_per_packet": 44.4,
        "cpu_percent_per_subscriber": 0.54, "delay_ms_p50": 1.5, "delay_ms_p99": None,
        "first_frame_ms": 134.0, "delivered_ratio": 1.0,
        "ranges": {"us_per_packet": [40.1, 47.3], "cpu_percent_per_subscriber": [0.5, 0.6],
                   "delay_ms_p50": [1.5, 1.5], "first_frame_ms": [120.0, 150.5],
                   "delivered_ratio": [0.9992, 1.0]},
    }  # fmt: skip
    header, line = _median_table([row]).splitlines()
    assert header.split()[:4] == ["sfu", "resolution", "subscribers", "cpu_percent_per_subscriber"]
    assert line.split("  ") == [
        "janus", "640x360", "8", "0.54 (0.5–0.6)", "44.4 (40.1–47.3)", "1.5 (1.5–1.5)", "–",
        "134 (120–150.5)", "1 (0.9992–1)",
    ]  # fmt: skip
