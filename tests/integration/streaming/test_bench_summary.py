"""How `tongke bench sfu` turns what it counted into the figures of one run."""

from __future__ import annotations

from typing import Any

from streaming.bench import summarize


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
