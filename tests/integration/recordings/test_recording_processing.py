"""Processing: a recorded lesson becomes an H.264/AAC MP4 with a poster and chapters, as a job."""

from __future__ import annotations

import asyncio
import itertools
import json
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest
from sqlalchemy.orm import Session, sessionmaker

from common.jobs import InProcessJobQueue
from common.settings import Settings
from recordings import service
from recordings.capture import LessonRecorder
from recordings.ffmpeg_memory import ffmpeg_run_name
from recordings.models import Recording
from recordings.processing import (
    HLS_DIR,
    MAIN,
    PROCESS_JOB,
    Loudness,
    complete_playlist,
    encoder_budget,
    make_playable,
    make_renditions,
    probe_media,
    process_recording,
    register_jobs,
    rendition_arguments,
    run_ffmpeg,
)
from streaming.timecode import read_timecode
from tests.conftest import DemoDatabase
from tests.integration.streaming.test_meeting_recording import ffprobe_duration

pytestmark = pytest.mark.timeout(120)


def _integrated_lufs(path: Path) -> float:
    """The integrated loudness of a file's first audio stream, as ebur128 measures it."""
    measured = subprocess.run(
        ["ffmpeg", "-hide_banner", "-nostats", "-i", str(path), "-map", "0:a:0",
         "-af", "ebur128=framelog=verbose", "-f", "null", "-"],
        check=True, capture_output=True, text=True,
    )  # fmt: skip
    summary = measured.stderr[measured.stderr.rfind("Summary:") :]
    return float(summary.split("I:")[1].split()[0])


# lavfi's sine is at 1/8 of full scale: -21.8 LUFS as Opus; these give a quiet room, a loud one
LESSON_S = 20.0  # issue 6's test: a bot's 20 s lesson, recorded through the SFU and processed
QUIET_TONE = "sine=f=440:r=48000,volume=-13.2dB"  # -35 LUFS
LOUD_TONE = "sine=f=440:r=48000,volume=11.8dB"  # -10 LUFS
SILENCE = "anullsrc=r=48000:cl=stereo"


def _new_recording(sessions: sessionmaker[Session], media_root: Path, raw: Path) -> int:
    with sessions() as session:
        recording = service.new_recording_for_sync_group(session, sync_group_id=4)
        session.commit()
        target = media_root / recording.raw_path
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(raw, target)
    if raw.with_name("events.json").exists():
        shutil.copy(raw.with_name("events.json"), target.with_name("events.json"))
    return recording.id


async def test_a_recorded_lesson_is_processed_into_a_playable_mp4(
    rooms, classrooms, eventually, sqlite_db: DemoDatabase, tmp_path: Path, logged_ffmpeg
):
    capture_dir = tmp_path / "capture"
    room = await rooms.open("sync-1", kind="lesson")
    recorder = LessonRecorder(room, capture_dir / "raw.webm")
    recorder.start()
    classrooms.start("lead", "lead")
    remote = classrooms.start("remote-1", "remote")
    await eventually(lambda: recorder.tap_packets > 0, timeout=15)
    began = time.monotonic()
    await asyncio.sleep(1.0)
    await remote.raise_hand()
    await asyncio.sleep(LESSON_S - (time.monotonic() - began))
    summary = await recorder.stop()

    media_root = tmp_path / "media"
    recording_id = await asyncio.to_thread(
        _new_recording, sqlite_db.sessions, media_root, capture_dir / "raw.webm"
    )
    reports: list[tuple[float, str]] = []

    async def report(progress: float, message: str) -> None:
        reports.append((progress, message))

    started = time.monotonic()
    outputs = await process_recording(
        sqlite_db.sessions,
        media_root=media_root,
        recording_id=recording_id,
        report=report,
        ffmpeg=str(logged_ffmpeg.path),  # TONGKE_RECORDING_FFMPEG
    )
    seconds = time.monotonic() - started
    print(f"processing: {seconds:.2f} s for {summary.duration_s:.1f} s of media")

    out_dir = media_root / "recordings" / str(recording_id)
    with av.open(str(out_dir / "lesson.mp4")) as mp4:
        assert mp4.format.name.startswith("mov,mp4")
        assert mp4.streams.video[0].codec_context.name == "h264"
        assert mp4.streams.audio[0].codec_context.name == "aac"
        # the wall clock the lead's camera drew into each frame (streaming/timecode.py)
        stamps = [
            read_timecode(np.asarray(frame.to_ndarray(format="gray"), dtype=np.uint8))
            for frame in mp4.decode(video=0)
        ]
    # a 20 s lesson through the SFU: ffprobe gives its length, every frame's clock is read
    # back and they run in order, one lesson's worth of them
    assert ffprobe_duration(out_dir / "lesson.mp4") == pytest.approx(LESSON_S, abs=0.5)
    read = [stamp for stamp in stamps if stamp is not None]
    assert len(stamps) > 10 * LESSON_S and len(read) >= 0.95 * len(stamps), (len(stamps), read)
    assert all(earlier < later for earlier, later in itertools.pairwise(read)), read
    assert (read[-1] - read[0]) / 1000 == pytest.approx(summary.duration_s, abs=0.5)
    assert abs(outputs["duration_s"] - outputs["raw_duration_s"]) < 0.3, outputs
    assert abs(outputs["raw_duration_s"] - summary.duration_s) < 0.3, (outputs, summary)
    with av.open(str(out_dir / "poster.jpg")) as poster:
        assert poster.streams.video[0].codec_context.name == "mjpeg"
    assert [c["kind"] for c in outputs["chapters"]][:1] == ["start"]
    assert "hand_raised" in {c["kind"] for c in outputs["chapters"]}
    # progress came from ffmpeg's own count, in order, up to the end
    shares = [p for p, _ in reports]
    assert shares == sorted(shares) and shares[-1] > 0.85, reports
    with sqlite_db.sessions() as session:
        row = session.get_one(Recording, recording_id)
        assert row.status == "ready" and row.processed_at is not None
        assert row.outputs["mp4"] == "lesson.mp4"
        # normalised by default, the measured level and the gain kept with the recording
        assert row.outputs["loudness"] == outputs["loudness"]
        assert outputs["loudness"]["mode"] == "linear", outputs["loudness"]
    # every run was the configured ffmpeg's: poster, loudness, renditions, sprite, MP4
    assert sorted(ffmpeg_run_name(["ffmpeg", *run]) for run in logged_ffmpeg.runs) == [
        "loudness", "low", "main", "mp4", "sprite", "sprite",
    ], logged_ffmpeg.runs  # fmt: skip
    assert logged_ffmpeg.runs[0][-1].endswith(".jpg")  # the poster, first

    # idempotent: a second run replaces the outputs whole and leaves no partial files behind
    again = await process_recording(
        sqlite_db.sessions, media_root=media_root, recording_id=recording_id
    )
    assert again["duration_s"] == outputs["duration_s"]
    # measured again from the raw capture, never from the last run's output: the same gain
    assert again["loudness"] == outputs["loudness"]
    assert sorted(p.name for p in out_dir.iterdir()) == [
        "events.json",
        "hls",
        "lesson.mp4",
        "poster.jpg",
        "raw.webm",
        "thumbs.jpg",
        "thumbs.vtt",
    ]
    assert sorted(p.name for p in (out_dir / "hls").iterdir()) == ["low", "main", "master.m3u8"]


async def test_hls_renditions_thumbnails_and_the_quick_playable_step(tmp_path: Path):
    """HLS: a master playlist with the main and a low-bitrate rendition, ~4 s fMP4 segments
    aligned across them; a thumbnail sprite with its WebVTT index; a quiet room's -35 LUFS
    brought to -16 in both renditions."""
    raw = tmp_path / "raw.webm"
    subprocess.run(
        [
            "ffmpeg", "-v", "error", "-y",
            "-f", "lavfi", "-i", "testsrc2=size=854x480:rate=25",
            "-f", "lavfi", "-i", QUIET_TONE,
            "-t", "9", "-c:v", "libvpx", "-deadline", "realtime", "-cpu-used", "8",
            "-b:v", "1500k", "-c:a", "libopus", str(raw),
        ],
        check=True,
    )  # fmt: skip
    reports: list[float] = []

    async def report(progress: float, message: str) -> None:
        reports.append(progress)

    facts, playable = await make_playable(raw, out_dir=tmp_path, report=report)
    assert playable["playable"] == "raw" and playable["poster"] == "poster.jpg"
    assert abs(playable["duration_s"] - 9) < 0.2
    outputs = await make_renditions(raw, out_dir=tmp_path, facts=facts, report=report)
    assert reports == sorted(reports)

    master = (tmp_path / "hls" / "master.m3u8").read_text()
    variants = [line for line in master.splitlines() if line.startswith("#EXT-X-STREAM-INF")]
    assert [v.split("RESOLUTION=")[1].split(",")[0] for v in variants] == ["854x480", "640x360"]
    bandwidth = [int(v.split("BANDWIDTH=")[1].split(",")[0]) for v in variants]
    assert bandwidth[1] < 500_000 < bandwidth[0], master  # the low one fits a weak link
    for name in ("main", "low"):
        playlist = (tmp_path / "hls" / name / "index.m3u8").read_text()
        lengths = [float(line[8:].split(",")[0]) for line in playlist.splitlines()
                   if line.startswith("#EXTINF:")]  # fmt: skip
        assert lengths[:2] == [4.0, 4.0], playlist
        assert abs(sum(lengths) - 9) < 0.5
    with av.open(str(tmp_path / "hls" / "master.m3u8")) as hls:
        assert hls.duration is not None and abs(hls.duration / 1e6 - 9) < 0.5
    with av.open(str(tmp_path / "lesson.mp4")) as mp4:
        assert mp4.streams.video[0].codec_context.name == "h264"
        assert mp4.streams.video[0].codec_context.height == 480
    assert abs(outputs["duration_s"] - 9) < 0.5

    thumbs = outputs["thumbnails"]
    # a tile on each key frame of the low rendition (one every 4 s segment)
    assert thumbs["count"] == 3 and thumbs["interval_s"] == 4
    with av.open(str(tmp_path / "thumbs.jpg")) as sprite:
        frame = next(sprite.decode(video=0))
        assert (frame.width, frame.height) == (10 * 160, 90)
    cues = (tmp_path / "thumbs.vtt").read_text().split("\n\n")
    assert cues[0] == "WEBVTT"
    assert cues[1] == "00:00:00.000 --> 00:00:04.000\nthumbs.jpg#xywh=0,0,160,90"
    timing, tile = cues[3].strip().split("\n")
    assert timing.startswith("00:00:08.000 --> 00:00:09.0") and tile.endswith("#xywh=320,0,160,90")
    # the MP4 is the main rendition remuxed; the low one is HLS of its own run
    for rendition in (tmp_path / "lesson.mp4", tmp_path / "hls" / "low" / "index.m3u8"):
        assert abs(_integrated_lufs(rendition) + 16) <= 1, rendition
    level = outputs["loudness"]
    assert level["mode"] == "linear" and abs(level["measured_lufs"] + 35) < 1, level
    assert abs(level["gain_db"] - 19) < 1 and level["true_peak_dbtp"] < -25, level


async def test_the_job_retries_and_then_marks_the_recording_failed(
    sqlite_db: DemoDatabase, tmp_path: Path
):
    media_root = tmp_path / "media"
    broken = tmp_path / "broken.webm"
    broken.write_bytes(b"\x1a\x45\xdf\xa3 this is not a recording")
    recording_id = await asyncio.to_thread(_new_recording, sqlite_db.sessions, media_root, broken)
    settings = Settings(environment="test", database_url=sqlite_db.url, media_root=media_root)
    queue = InProcessJobQueue(retry_backoff=0.01)
    register_jobs(queue, settings)
    try:
        job_id = await queue.enqueue(PROCESS_JOB, recording_id=recording_id)
        status = await queue.wait(job_id, timeout=60)
    finally:
        await queue.close()
    assert status.state == "failed" and status.attempts == 3
    with sqlite_db.sessions() as session:
        row = session.get_one(Recording, recording_id)
        assert row.status == "failed"
        assert row.status_message.startswith("处理失败：无法读取原始录像"), row.status_message


def _ffprobe_streams(path: Path) -> list[dict[str, Any]]:
    found = subprocess.run(
        ["ffprobe", "-v", "error", "-show_entries", "stream=codec_name,width,height",
         "-of", "json", str(path)],
        check=True, capture_output=True, text=True,
    )  # fmt: skip
    streams: list[dict[str, Any]] = json.loads(found.stdout)["streams"]
    return streams


def _x264_settings(folder: Path) -> str:
    """The options x264 writes into the stream (its SEI), from a rendition's first segment."""
    text = (folder / "seg_00000.m4s").read_bytes().decode("latin-1")
    start = text.index("x264 - core")
    return text[start : text.index("\x00", start)]


@pytest.mark.parametrize(
    ("width", "height", "sound"),
    [(1280, 720, LOUD_TONE), (1920, 1080, SILENCE)],
    ids=["720p-loud", "1080p-silent"],
)
async def test_hd_sources_get_aligned_renditions_within_their_memory_budget(
    tmp_path: Path, width: int, height: int, sound: str
) -> None:
    """A 720p or 1080p lesson: H.264/AAC main at the source's size and a 360p rendition,
    segments on the same 4 s marks, each encoded with the settings of its memory budget; a
    loud room's -10 LUFS brought down to -16, a silent one left alone."""
    raw = tmp_path / "raw.webm"
    subprocess.run(
        [
            "ffmpeg", "-v", "error", "-y",
            "-f", "lavfi", "-i", f"testsrc2=size={width}x{height}:rate=10",
            "-f", "lavfi", "-i", sound,
            "-t", "5", "-c:v", "libvpx", "-deadline", "realtime", "-cpu-used", "8",
            "-b:v", "2000k", "-c:a", "libopus", str(raw),
        ],
        check=True,
    )  # fmt: skip
    facts, _ = await make_playable(raw, out_dir=tmp_path)
    outputs = await make_renditions(raw, out_dir=tmp_path, facts=facts)

    hls = tmp_path / "hls"
    sizes = {"main": (width, height), "low": (640, 360)}
    marks: dict[str, list[str]] = {}
    for name, size in sizes.items():
        streams = _ffprobe_streams(hls / name / "index.m3u8")
        assert [s["codec_name"] for s in streams] == ["h264", "aac"], streams
        assert (streams[0]["width"], streams[0]["height"]) == size
        playlist = (hls / name / "index.m3u8").read_text()
        marks[name] = [line for line in playlist.splitlines() if line.startswith("#EXTINF:")]
        budget = encoder_budget(source_height=height, output_height=size[1])
        settings = _x264_settings(hls / name)
        for option in budget.x264_params.replace("-", "_").split(":"):
            assert f" {option} " in f" {settings} ", (option, settings)
    assert marks["main"] == marks["low"]  # the same key frames: a player switches anywhere
    assert [float(mark[8:].split(",")[0]) for mark in marks["main"]][:1] == [4.0]
    assert _ffprobe_streams(tmp_path / "lesson.mp4")[0]["height"] == height
    assert abs(outputs["duration_s"] - 5) < 0.5
    if sound == SILENCE:
        assert _integrated_lufs(tmp_path / "lesson.mp4") == -70
        level = outputs["loudness"]
        assert level["measured_lufs"] == -70 and level["gain_db"] == 0, level
    else:
        assert abs(_integrated_lufs(tmp_path / "lesson.mp4") + 16) <= 1
        level = outputs["loudness"]
        assert abs(level["measured_lufs"] + 10) < 1 and abs(level["gain_db"] + 6) < 1, level


# The clock drawn into the test lesson: second k is a flat grey of level 16 + 15 * (k mod 13).
GREY_PERIOD_S = 13


def _grey_clock_lesson(raw: Path, *, seconds: int) -> None:
    grey = f"16+15*mod(floor(T),{GREY_PERIOD_S})"
    picture = f"nullsrc=s=320x180:r=25,format=yuv420p,geq=lum='{grey}':cb=128:cr=128"
    inputs = ["-f", "lavfi", "-i", picture, "-f", "lavfi", "-i", "sine=f=440:r=48000"]
    vp8 = ["-c:v", "libvpx", "-deadline", "realtime", "-cpu-used", "8", "-b:v", "300k"]
    command = ["ffmpeg", "-v", "error", "-y", *inputs, "-t", str(seconds), *vp8]
    subprocess.run([*command, "-c:a", "libopus", str(raw)], check=True)


async def test_the_sprite_of_a_short_lesson_shows_each_cue_s_own_moment(tmp_path: Path):
    """A 45 s lesson: 12 tiles on two rows of the 10-column sprite, one every 4 s (the low
    rendition's key frames), each showing the picture of its cue's start: the greys of seconds
    0, 4, 8, ... (mod 13: all different) in that order, so a tile a second early or late, or
    from another tile's time, shows up as a wrong order."""
    raw = tmp_path / "raw.webm"
    _grey_clock_lesson(raw, seconds=45)
    facts, _ = await make_playable(raw, out_dir=tmp_path)
    # the tiles are what this checks: no loudness measure (a second of the suite's time)
    outputs = await make_renditions(raw, out_dir=tmp_path, facts=facts, loudness="off")

    thumbs = outputs["thumbnails"]
    assert (thumbs["interval_s"], thumbs["count"], thumbs["columns"]) == (4, 12, 10)
    assert (thumbs["width"], thumbs["height"]) == (160, 90)
    with av.open(str(tmp_path / "thumbs.jpg")) as sprite:
        picture = next(sprite.decode(video=0)).to_ndarray(format="gray")
    assert picture.shape == (2 * 90, 10 * 160)
    cues = (tmp_path / "thumbs.vtt").read_text().strip().split("\n\n")[1:]
    assert len(cues) == 12
    greys = []
    for index, cue in enumerate(cues):
        timing, tile = cue.split("\n")
        start = index * 4
        assert timing.startswith(f"00:00:{start:02d}.000 --> "), cue
        x, y, w, h = (int(v) for v in tile.split("#xywh=")[1].split(","))
        assert (x, y, w, h) == ((index % 10) * 160, (index // 10) * 90, 160, 90)
        greys.append(float(picture[y + 10 : y + h - 10, x + 10 : x + w - 10].mean()))
    seconds = [(index * 4) % GREY_PERIOD_S for index in range(12)]
    # the tiles' greys rank as the drawn seconds do, each step clearly apart
    assert sorted(range(12), key=greys.__getitem__) == sorted(range(12), key=seconds.__getitem__)
    ordered = sorted(greys)
    assert min(b - a for a, b in itertools.pairwise(ordered)) > 8, greys
    # the tiles beyond the 12th are the tile filter's black padding
    assert picture[90 + 10 : 180 - 10, 2 * 160 + 10 :].mean() < 20


def _playlist_entries(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("#EXTINF:") or "seg_" in line]


async def test_a_rendition_run_keeps_one_segment_and_its_playlist_is_made_whole(tmp_path: Path):
    """ffmpeg's HLS muxer keeps a record of every segment its playlist lists until the end
    (~9 KiB each: memory growing with the lesson), so a rendition's run lists only its last
    one; the playlist made whole afterwards is, to the byte, the VOD playlist ffmpeg writes
    when it keeps them all: a 9 s lesson at a camera's 29.97 fps (so segments are not all
    exactly 4 s) with B-frames, whose playlist plays for its 9 s."""
    raw = tmp_path / "raw.webm"
    subprocess.run(
        [
            "ffmpeg", "-v", "error", "-y",
            "-f", "lavfi", "-i", "testsrc2=size=320x180:rate=30000/1001",
            "-f", "lavfi", "-i", "sine=f=440:r=48000",
            "-t", "9", "-c:v", "libvpx", "-deadline", "realtime",
            "-cpu-used", "8", "-b:v", "300k", "-c:a", "libopus", str(raw),
        ],
        check=True,
    )  # fmt: skip
    facts = probe_media(raw, trust_header=True)
    runs: dict[str, Path] = {}
    for name in ("window", "vod"):
        work = tmp_path / name
        (work / HLS_DIR).mkdir(parents=True)
        arguments = rendition_arguments(raw, work, rendition=MAIN, facts=facts, loudness=Loudness())
        if name == "vod":  # the reference: ffmpeg keeping every segment for its playlist
            at = arguments.index("-hls_list_size")
            arguments[at : at + 2] = ["-hls_playlist_type", "vod"]
        await run_ffmpeg(arguments, duration_s=facts.duration_s, report=None)
        runs[name] = work / HLS_DIR / MAIN.name / "index.m3u8"

    left = runs["window"].read_text()
    assert _playlist_entries(left)[-2:] == _playlist_entries(left), left  # only the last
    assert "#EXT-X-MEDIA-SEQUENCE:2" in left and "#EXT-X-ENDLIST" in left
    complete_playlist(runs["window"])
    whole = runs["window"].read_text()
    assert whole == runs["vod"].read_text()
    lengths = [float(line[8:].split(",")[0]) for line in _playlist_entries(whole)[::2]]
    assert len(lengths) == 3 and lengths[:2] != [4.0, 4.0], whole
    with av.open(str(runs["window"])) as hls:
        assert hls.duration is not None and abs(hls.duration / 1e6 - 9) < 0.5
