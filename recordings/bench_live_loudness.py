"""Streaming loudness normalisers for a live run (``recordings.live_hls``), compared: the level
each gives speech-like audio, the audio it holds back, its CPU, and the peak RSS of a
live-shaped rendition run with it.

Sources, each a lesson's raw WebM audio (stereo Opus 32 kbit/s, as captured): ``quiet``
(speech-like, -35 LUFS, a -70 dBFS hiss under it: a rural classroom's far microphone),
``loud`` (the same at -10 LUFS) and ``silent`` (the hiss alone). The speech-like signal is
voiced (seven harmonics of a pitch gliding 120-200 Hz), paced in syllables (4 a second) and
phrases (3 s of speech, 1.5 s of pause), not a steady tone: normalisers tell speech from
pauses, and a tone has none.

- ``lufs``/``peak``: integrated loudness and true peak of the filter's output (``ebur128``);
- ``cpu_s``: CPU of decoding the source and running the filter, minus the same run without
  it, per ``--seconds`` of audio;
- ``delay_ms``: audio the filter holds back while its input keeps coming: PCM is written to
  ffmpeg's stdin as fast as it takes it, stdin left open, and what came out on stdout is
  subtracted from what went in (the same run without the filter subtracted);
- ``live_main``: peak RSS and CPU of the main rendition's run (``rendition_arguments``
  reading ``pipe:0``, as ``live_hls`` starts it) over a ``--height`` lesson
  (``recordings.bench_loudness.synthetic_lesson``) with the filter in its audio chain, under
  ``/usr/bin/time`` with huge pages off;
- ``--meter-minutes``: the cost of measuring a finished main rendition's audio after the bell
  (the alternative to the meter in the live run).

::

    python -m recordings.bench_live_loudness --seconds 60 --height 720 --meter-minutes 45
    python -m recordings.bench_live_loudness --filters "speechnorm=e=12:p=0.5" --no-rss
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from recordings.bench_loudness import synthetic_lesson, timed_run
from recordings.processing import (
    LIVE_NORMALISER,
    LOUDNESS_METER,
    LOUDNORM,
    MAIN,
    Loudness,
    probe_media,
    rendition_arguments,
    without_huge_pages,
)

RATE = 48000
# phase of a pitch gliding 160 +/- 40 Hz at 0.7 Hz: 2 pi (160 t - 40 / (2 pi 0.7) cos(2 pi 0.7 t))
VOICE = (
    "st(0,2*PI*160*t-57.142857*cos(4.398230*t));"
    "(sin(ld(0))+sin(2*ld(0))/2+sin(3*ld(0))/3+sin(4*ld(0))/4+sin(5*ld(0))/5"
    "+sin(6*ld(0))/6+sin(7*ld(0))/7)/3"
    "*max(0,sin(2*PI*4*t))*lt(mod(t,4.5),3)"
)
# The voice above, as stereo, measures -18.0 LUFS; the hiss is uniform noise at -70 dBFS RMS.
VOICE_LUFS = -18.0
HISS = "0.000548*(2*random(1)-1)"
# a steady tone at -25 LUFS: no pauses and a low crest factor (a music lesson's held note)
TONE = "0.0795*sin(2*PI*440*t)"
SOURCES = {"quiet": -35.0, "loud": -10.0, "silent": None, "tone": None}
REFERENCE = "anull"


def candidates() -> list[str]:
    return [
        REFERENCE,
        LIVE_NORMALISER,
        # the same with shorter frames: less held back, speech a little under the target
        "dynaudnorm=f=1500:g=3:p=0.84:m=16:r=0.14:t=0.0015",
        # made for speech, peak-based: each half-wave's peak towards 0.55
        "speechnorm=e=12:p=0.55:r=0.005:f=0.00001:t=0.002:l=1",
        # dynaudnorm aiming at peaks, short frames, no RMS target and no threshold
        "dynaudnorm=f=250:g=15:p=0.84:m=12",
        LOUDNORM,
    ]


def speech_source(path: Path, *, seconds: float, lufs: float | None) -> Path:
    """A raw capture's audio: the speech-like voice at ``lufs`` over the hiss (None: hiss
    alone), stereo Opus in WebM."""
    gain = 0.0 if lufs is None else 10 ** ((lufs - VOICE_LUFS) / 20)
    expression = f"{gain:.6f}*({VOICE})+{HISS}" if lufs is not None else HISS
    if path.stem == "tone":
        expression = TONE
    subprocess.run(
        [
            "ffmpeg", "-v", "error", "-y", "-f", "lavfi",
            "-i", f"aevalsrc='{expression}':s={RATE}:d={seconds}",
            "-ac", "2", "-c:a", "libopus", "-b:a", "32k", str(path),
        ],
        check=True,
    )  # fmt: skip
    return path


def _figure(summary: str, label: str, unit: str) -> float | None:
    found = re.search(rf"{label}:\s+(-?(?:inf|[0-9.]+))\s+{unit}", summary)
    return float(found.group(1)) if found is not None else None


def level(source: Path, audio_filter: str) -> dict[str, Any]:
    """Integrated loudness and true peak of ``source`` through ``audio_filter``, with the
    run's CPU (the ebur128 measure's own cost is the same for every filter)."""
    finished = subprocess.run(
        ["/usr/bin/time", "-f", "TIME %U %S", "ffmpeg", "-hide_banner", "-nostdin", "-nostats",
         "-i", str(source), "-af", f"{audio_filter},ebur128=peak=true:framelog=verbose",
         "-f", "null", "-"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    summary = finished.stderr[finished.stderr.rfind("Summary:") :]
    user, system = finished.stderr.rsplit("TIME ", 1)[1].split()[:2]
    return {
        "lufs": _figure(summary, "I", "LUFS"),
        "peak": _figure(summary, "Peak", "dBFS"),
        "cpu_s": float(user) + float(system),
    }


def held_back_ms(source: Path, audio_filter: str, *, feed_s: float = 20.0) -> float:
    """Milliseconds of audio ``audio_filter`` has not given out while its input is still
    open (``feed_s`` of ``source`` written), ffmpeg's own buffering included."""
    pcm = subprocess.run(
        ["ffmpeg", "-v", "error", "-i", str(source), "-t", str(feed_s),
         "-f", "f32le", "-ac", "2", "-ar", str(RATE), "-"],
        capture_output=True, check=True,
    ).stdout  # fmt: skip
    process = subprocess.Popen(
        ["ffmpeg", "-v", "error", "-f", "f32le", "-ac", "2", "-ar", str(RATE), "-i", "pipe:0",
         "-af", f"{audio_filter},aresample={RATE}", "-ac", "2", "-flush_packets", "1",
         "-f", "f32le", "pipe:1"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE,
    )  # fmt: skip
    assert process.stdin is not None and process.stdout is not None
    out = [0]

    def read(stream: Any = process.stdout) -> None:
        while chunk := stream.read1(65536):
            out[0] += len(chunk)

    reader = threading.Thread(target=read)
    reader.start()
    process.stdin.write(pcm)
    process.stdin.flush()
    # wait until the output stops growing: what is out now is all the filter gives before
    # more input or the end
    last = -1
    while last != out[0]:
        last = out[0]
        time.sleep(1.0)
    held = (len(pcm) - out[0]) / (8 * RATE) * 1000
    process.stdin.close()
    reader.join()
    process.wait()
    return held


def live_run_rss(
    raw: Path, work: Path, audio_filter: str, *, meter: bool = False
) -> dict[str, float]:
    """Peak RSS and CPU of the main rendition's live-shaped run (reading ``pipe:0``) with
    ``audio_filter`` opening its audio chain (``meter``: and the loudness meter closing it,
    as ``live_hls`` runs the main rendition)."""
    facts = probe_media(raw, trust_header=True)
    arguments = rendition_arguments(
        Path("pipe:0"), work, rendition=MAIN, facts=facts, loudness=Loudness(), meter=meter
    )
    chain = arguments.index("-filter_complex") + 1
    if audio_filter != REFERENCE:
        arguments[chain] = arguments[chain].replace("[0:a]", f"[0:a]{audio_filter},")
    (work / "hls").mkdir(parents=True, exist_ok=True)
    with raw.open("rb") as stdin:
        return timed_run(arguments, stdin=stdin)


def meter_pass(work: Path, *, minutes: float) -> dict[str, Any]:
    """What measuring the finished main rendition's audio after the bell would cost instead
    of the meter in its run: ``LOUDNESS_METER`` over ``minutes`` of 96 kbit/s AAC (one
    minute of the quiet source, encoded and looped by stream copy)."""
    minute = work / "minute.mp4"
    speech_source(work / "minute.webm", seconds=60, lufs=SOURCES["quiet"])
    subprocess.run(
        ["ffmpeg", "-v", "error", "-y", "-i", str(work / "minute.webm"), "-c:a", "aac",
         "-b:a", "96k", str(minute)],
        check=True,
    )  # fmt: skip
    long = work / "long.mp4"
    subprocess.run(
        ["ffmpeg", "-v", "error", "-y", "-stream_loop", str(round(minutes) - 1), "-i",
         str(minute), "-c", "copy", str(long)],
        check=True,
    )  # fmt: skip
    meter = ["-i", str(long), "-map", "0:a:0", "-af", LOUDNESS_METER, "-f", "null", "-"]
    figures = timed_run(meter)
    return {"run": "meter pass over the main rendition's AAC", "minutes": minutes, **figures}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--seconds", type=float, default=120)
    parser.add_argument("--height", type=int, default=720)
    parser.add_argument("--filters", help="';'-separated filters instead of the candidates")
    parser.add_argument("--no-rss", action="store_true", help="skip the live-shaped runs")
    parser.add_argument(
        "--meter-minutes", type=float, default=0, help="time a meter pass over this much AAC"
    )
    args = parser.parse_args(argv)
    filters = args.filters.split(";") if args.filters else candidates()
    if REFERENCE not in filters:
        filters.insert(0, REFERENCE)
    without_huge_pages()
    with tempfile.TemporaryDirectory(prefix="tongke-live-loudness-") as scratch:
        work = Path(scratch)
        sources = {
            name: speech_source(work / f"{name}.webm", seconds=args.seconds, lufs=lufs)
            for name, lufs in SOURCES.items()
        }
        raw = work / "raw.webm"
        if not args.no_rss:
            synthetic_lesson(raw, seconds=args.seconds, height=args.height)
        reference: dict[str, Any] = {}
        for audio_filter in filters:
            figures: dict[str, Any] = {"filter": audio_filter}
            cpu = 0.0
            for name, source in sources.items():
                measured = level(source, audio_filter)
                figures[name] = {"lufs": measured["lufs"], "peak": measured["peak"]}
                cpu += measured["cpu_s"]
            figures["delay_ms"] = round(held_back_ms(sources["quiet"], audio_filter))
            if audio_filter == REFERENCE:
                reference = {"cpu_s": cpu, "delay_ms": figures["delay_ms"]}
            figures["cpu_s"] = round((cpu - reference["cpu_s"]) / len(sources), 2)
            figures["delay_ms"] -= reference["delay_ms"]
            if not args.no_rss:
                figures["live_main"] = live_run_rss(raw, work / "run", audio_filter)
            print(json.dumps(figures, ensure_ascii=False), flush=True)
        if not args.no_rss:
            live = live_run_rss(raw, work / "run", LIVE_NORMALISER, meter=True)
            print(json.dumps({"filter": f"{LIVE_NORMALISER} + meter", "live_main": live}))
        if args.meter_minutes:
            print(json.dumps(meter_pass(work, minutes=args.meter_minutes)), flush=True)


if __name__ == "__main__":
    main()
