"""The linear loudness gain: one gain per recording, to -16 LUFS, held under -1.5 dBTP; a live
run's streaming stand-in for it."""

from __future__ import annotations

import math
from dataclasses import replace

from recordings.live_hls import live_loudness
from recordings.processing import LIVE_NORMALISER, LOUDNORM, Loudness, metered_lufs


def test_a_quiet_room_is_raised_and_a_loud_one_lowered_to_the_target() -> None:
    quiet = Loudness.linear(measured_lufs=-35.0, true_peak_dbtp=-31.0)
    assert quiet.gain_db == 19.0 and quiet.audio_filter == "volume=19.00dB,"
    loud = Loudness.linear(measured_lufs=-10.0, true_peak_dbtp=-6.2)
    assert loud.gain_db == -6.0 and loud.audio_filter == "volume=-6.00dB,"


def test_the_gain_stops_where_the_true_peak_would_pass_minus_1_5_dbtp() -> None:
    # a quiet room with a door slam: raised only as far as the slam allows
    peaky = Loudness.linear(measured_lufs=-35.0, true_peak_dbtp=-6.0)
    assert peaky.gain_db == 4.5


def test_silence_and_a_noise_floor_get_no_gain() -> None:
    for measured, peak in ((-70.0, -math.inf), (-65.0, -50.0)):
        level = Loudness.linear(measured_lufs=measured, true_peak_dbtp=peak)
        assert level.gain_db == 0 and level.audio_filter == "", level
        assert level.as_outputs()["gain_db"] == 0


def test_the_outputs_carry_the_figures_and_the_modes_their_filters() -> None:
    level = Loudness.linear(measured_lufs=-30.456, true_peak_dbtp=-20.0)
    assert level.as_outputs() == {
        "mode": "linear",
        "target_lufs": -16.0,
        "measured_lufs": -30.456,
        "true_peak_dbtp": -20.0,
        "gain_db": 14.46,
    }
    assert Loudness("dynamic").audio_filter == f"{LOUDNORM},"
    assert Loudness().audio_filter == "" and Loudness().as_outputs() == {"mode": "off"}


def test_a_live_run_cannot_measure_ahead_so_linear_streams_there() -> None:
    assert live_loudness("linear") == Loudness("live-dynaudnorm")
    assert live_loudness("linear").audio_filter == f"{LIVE_NORMALISER},"
    assert live_loudness("off") == Loudness()
    assert live_loudness("dynamic") == Loudness("dynamic")
    applied = replace(live_loudness("linear"), achieved_lufs=-16.4).as_outputs()
    assert applied == {
        "mode": "live-dynaudnorm",
        "target_lufs": -16.0,
        "filter": LIVE_NORMALISER,
        "achieved_lufs": -16.4,
    }


def test_the_meter_reads_the_summary_of_the_main_run() -> None:
    stderr = (
        "[Parsed_ebur128_3 @ 0x1] Summary:\n\n  Integrated loudness:\n"
        "    I:         -16.8 LUFS\n    Threshold: -26.9 LUFS\n"
    )
    assert metered_lufs(stderr) == -16.8
    assert metered_lufs("video:1kB audio:2kB") is None


def test_no_summary_to_read_means_no_gain() -> None:
    assert Loudness("linear").audio_filter == ""
    assert Loudness("linear").as_outputs()["measured_lufs"] is None
