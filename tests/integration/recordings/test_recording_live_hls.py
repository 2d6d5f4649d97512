"""H.264/HLS made while the lesson is recorded: a real bot through the real SFU and recorder,
the live transcoder's real ffmpeg runs, then the real processing job, checked with ffprobe."""

from __future__ import annotations

import asyncio
import json
import socket
import struct
import subprocess
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.orm import Session, sessionmaker

from common.jobs import InProcessJobQueue, JobContext
from recordings import service
from recordings.bench_live_loudness import SOURCES, speech_source
from recordings.capture import LessonRecorder
from recordings.ffmpeg_memory import ffmpeg_run_name
from recordings.live_hls import (
    LIVE_DIR,
    STATE_NAME,
    HostSlot,
    LiveHlsPolicy,
    LiveTranscoder,
    renditions_from_live,
)
from recordings.models import Recording
from recordings.processing import (
    LIVE_NORMALISER,
    PROCESS_JOB,
    make_playable,
    metered_lufs,
    process_recording,
)
from streaming.sfu import InProcessRoomRegistry
from tests.conftest import DemoDatabase
from tests.fixtures.classrooms import Classrooms
from tests.fixtures.recordings import LoggedFfmpeg, write_test_webm
from tests.integration.streaming.test_meeting_recording import ffprobe_duration

pytestmark = pytest.mark.timeout(180)

Eventually = Callable[..., Awaitable[float]]
LESSON_S = 14.0
# A speech-like lesson (recordings.bench_live_loudness) long enough for the live normaliser's
# 2 s frames to settle; it reaches -16.8 LUFS from -35 over 60 s, a little less over this:
# it aims each frame's RMS, which the pauses between syllables pull down, not gated loudness.
LEVEL_LESSON_S = 24.0
LEVEL_BAND_LU = 2.0


def _top_level_boxes(path: Path) -> list[str]:
    boxes = []
    with path.open("rb") as mp4:
        while header := mp4.read(8):
            size, kind = struct.unpack(">I4s", header)
            if size == 1:
                size = struct.unpack(">Q", mp4.read(8))[0] - 8
            boxes.append(kind.decode("latin-1"))
            mp4.seek(size - 8, 1)
    return boxes


def _segments(playlist: Path) -> list[float]:
    return [
        float(line.removeprefix("#EXTINF:").split(",")[0])
        for line in playlist.read_text("utf-8").splitlines()
        if line.startswith("#EXTINF:")
    ]


def _policy(tmp_path: Path) -> LiveHlsPolicy:
    # not niced: a test shares a loaded machine, and niceness is not what it checks
    return LiveHlsPolicy(slots_dir=tmp_path / "slots", nice=0)


class Lesson:
    """A sync group's recording made through ``service.record_into`` with live HLS on, and the
    processing job it queues at the stop (the real ``process_recording``, its progress kept)."""

    def __init__(self, db: DemoDatabase, media_root: Path, policy: LiveHlsPolicy) -> None:
        self.sessions: sessionmaker[Session] = db.sessions
        self.media_root = media_root
        self.active = service.ActiveRecordings(live_hls=policy)
        self.jobs = InProcessJobQueue(max_retries=0)
        self.messages: list[str] = []
        self.slots_dir = policy.slots_dir

        async def job(ctx: JobContext, *, recording_id: int) -> dict[str, Any]:
            async def report(progress: float, message: str) -> None:
                self.messages.append(message)

            return await process_recording(
                self.sessions,
                media_root=media_root,
                recording_id=recording_id,
                report=report,
                ffmpeg=policy.ffmpeg,
            )

        self.jobs.register(PROCESS_JOB, job)
        with db.sessions() as session:
            row = service.new_recording_for_sync_group(session, sync_group_id=4)
            session.commit()
            self.recording_id = row.id
        self.folder = media_root / "recordings" / str(self.recording_id)

    async def processed(self) -> dict[str, Any]:
        with self.sessions() as session:
            job_id = session.get_one(Recording, self.recording_id).job_id
        assert job_id is not None
        status = await self.jobs.wait(job_id, timeout=150)
        assert status.state == "complete", status
        with self.sessions() as session:
            row = session.get_one(Recording, self.recording_id)
            assert row.status == "ready" and row.outputs is not None, row.status_message
            return dict(row.outputs)


def _check_outputs(folder: Path, outputs: dict[str, Any]) -> None:
    """What Safari, iPad and WeChat get: the MP4 and both renditions as long as the raw file,
    segments aligned across renditions, the MP4's index before its media."""
    raw_s = outputs["raw_duration_s"]
    mp4 = folder / "lesson.mp4"
    assert abs(ffprobe_duration(mp4) - raw_s) <= 0.5, (raw_s, outputs)
    boxes = _top_level_boxes(mp4)
    assert boxes.index("moov") < boxes.index("mdat"), boxes
    main = _segments(folder / "hls" / "main" / "index.m3u8")
    low = _segments(folder / "hls" / "low" / "index.m3u8")
    assert len(main) >= 3 and len(main) == len(low)
    assert all(abs(a - b) < 0.1 for a, b in zip(main, low, strict=True)), (main, low)
    for name in ("main", "low"):
        playlist = folder / "hls" / name / "index.m3u8"
        assert abs(ffprobe_duration(playlist) - raw_s) <= 0.5, name
        assert "#EXT-X-ENDLIST" in playlist.read_text("utf-8")
    master = (folder / "hls" / "master.m3u8").read_text("utf-8")
    assert master.count("#EXT-X-STREAM-INF:") == 2 and "AVERAGE-BANDWIDTH=" in master
    thumbs = outputs["thumbnails"]
    # a tile on each key frame of the low rendition: one a segment (the last one if 0.5 s long)
    assert thumbs["interval_s"] == 4 and thumbs["count"] in (len(low) - 1, len(low)), thumbs
    assert (folder / "thumbs.jpg").stat().st_size > 0
    assert not (folder / LIVE_DIR).exists() and not (folder / ".renditions.partial").exists()


@pytest.fixture
def lesson(sqlite_db: DemoDatabase, tmp_path: Path, logged_ffmpeg: LoggedFfmpeg) -> Lesson:
    # the live runs and the job's with the ffmpeg configured (TONGKE_RECORDING_FFMPEG)
    policy = replace(_policy(tmp_path), ffmpeg=str(logged_ffmpeg.path))
    return Lesson(sqlite_db, tmp_path / "media", policy)


async def _record(
    lesson: Lesson, rooms: InProcessRoomRegistry, classrooms: Classrooms, eventually: Eventually
) -> LessonRecorder:
    room = await rooms.open("sync-1", kind="lesson")
    recorder = await service.record_into(
        room,
        recording_id=lesson.recording_id,
        sync_group_id=4,
        sessions=lesson.sessions,
        media_root=lesson.media_root,
        jobs=lesson.jobs,
        active=lesson.active,
    )
    classrooms.start("lead", "lead", width=640, height=360, fps=15)
    await eventually(lambda: recorder.tap_packets > 0, timeout=20)
    return recorder


async def test_renditions_are_made_during_the_lesson_and_only_finished_after_it(
    lesson: Lesson,
    rooms: InProcessRoomRegistry,
    classrooms: Classrooms,
    eventually: Eventually,
    logged_ffmpeg: LoggedFfmpeg,
) -> None:
    recorder = await _record(lesson, rooms, classrooms, eventually)
    transcoder = lesson.active.transcoders[lesson.recording_id]
    segments = lesson.folder / LIVE_DIR / "hls" / "low"
    started = time.monotonic()
    # while the lesson goes on, segments of both renditions land
    await eventually(lambda: len(list(segments.glob("seg_*.m4s"))) >= 2, timeout=60)
    assert list((lesson.folder / LIVE_DIR / "hls" / "main").glob("seg_*.m4s"))
    assert recorder.running
    await asyncio.sleep(max(LESSON_S - (time.monotonic() - started), 0))
    assert transcoder.media_s > 4.0  # the encoders follow the lesson
    await recorder.stop()

    outputs = await lesson.processed()
    assert transcoder.outcome == "done"
    assert outputs["renditions_from"] == "live"
    # a live run encodes before the whole lesson's loudness is known: a streaming normaliser
    level = outputs["loudness"]
    assert level["mode"] == "live-dynaudnorm" and level["filter"] == LIVE_NORMALISER, level
    assert isinstance(level["achieved_lufs"], float), level
    # no full transcode ran: its runs report "转码 x/y 秒"
    assert not [m for m in lesson.messages if m.startswith("转码")], lesson.messages
    assert outputs["renditions"] == "ready" and outputs["raw_duration_s"] > 8
    _check_outputs(lesson.folder, outputs)
    assert lesson.recording_id not in lesson.active.transcoders
    # every ffmpeg run was the configured one's: the two live encoders, then the job's
    live = [run for run in logged_ffmpeg.runs if "pipe:0" in run]
    assert sorted(ffmpeg_run_name(["ffmpeg", *run]) for run in live) == ["low", "main"]
    assert len(logged_ffmpeg.runs) == 5, logged_ffmpeg.runs  # + poster, sprite, MP4


async def test_a_killed_live_transcoder_falls_back_to_the_full_transcode(
    lesson: Lesson, rooms: InProcessRoomRegistry, classrooms: Classrooms, eventually: Eventually
) -> None:
    recorder = await _record(lesson, rooms, classrooms, eventually)
    transcoder = lesson.active.transcoders[lesson.recording_id]
    await eventually(lambda: transcoder.media_s > 4.0, timeout=60)
    transcoder.kill_encoders()
    await eventually(lambda: transcoder.outcome is not None, timeout=10)
    assert transcoder.outcome is not None and transcoder.outcome.startswith("failed")
    # the lesson goes on: recording is untouched, and the host's slot is free again
    assert recorder.running
    await asyncio.sleep(6)
    await recorder.stop()

    outputs = await lesson.processed()
    assert outputs["renditions_from"] == "full"
    assert outputs["loudness"]["mode"] == "linear"  # the full transcode measures first
    assert [m for m in lesson.messages if m.startswith("转码")]
    _check_outputs(lesson.folder, outputs)
    # slot 0 was the killed transcoder's: given back
    slot = HostSlot.acquire(LiveHlsPolicy(max_per_host=1, slots_dir=lesson.slots_dir))
    assert slot is not None
    slot.release()


async def test_beyond_the_hosts_cap_a_lesson_is_transcoded_after_the_end(
    rooms: InProcessRoomRegistry,
    classrooms: Classrooms,
    eventually: Eventually,
    sqlite_db: DemoDatabase,
    tmp_path: Path,
) -> None:
    policy = LiveHlsPolicy(max_per_host=1, slots_dir=tmp_path / "slots", nice=0)
    held = HostSlot.acquire(policy)  # another lesson of this host transcodes live
    assert held is not None and HostSlot.acquire(policy) is None
    try:
        lesson = await asyncio.to_thread(Lesson, sqlite_db, tmp_path / "media", policy)
        recorder = await _record(lesson, rooms, classrooms, eventually)
        assert lesson.active.transcoders == {}
        await asyncio.sleep(3)
        await recorder.stop()
        outputs = await lesson.processed()
    finally:
        held.release()
    assert outputs["renditions_from"] == "full"
    assert not (lesson.folder / LIVE_DIR).exists()


@pytest.mark.parametrize("owner", ["stale heartbeat", "dead process"])
async def test_a_live_run_whose_process_died_is_not_waited_for(tmp_path: Path, owner: str) -> None:
    """A recorder's process killed mid-lesson leaves a "running" state nobody updates: the job
    (queued by the resume logic) sees its owner is gone and transcodes in full."""
    raw = write_test_webm(tmp_path / "raw.webm", 5)
    work = tmp_path / LIVE_DIR
    (work / "hls" / "main").mkdir(parents=True)
    state: dict[str, Any] = {"state": "running", "heartbeat": time.time() - 60}
    if owner == "dead process":
        dead = subprocess.Popen(["true"])
        dead.wait()
        # a heartbeat that never goes stale: only the pid can tell
        state = {"state": "running", "heartbeat": time.time() + 3600, "pid": dead.pid}
        state["host"] = socket.gethostname()
    (work / STATE_NAME).write_text(json.dumps({**state, "loudness": "off"}))
    facts, _ = await make_playable(raw, out_dir=tmp_path)
    assert await renditions_from_live(raw, out_dir=tmp_path, facts=facts, loudness="off") is None
    assert not work.exists()


def _integrated_lufs(media: Path) -> float:
    stderr = subprocess.run(
        ["ffmpeg", "-hide_banner", "-nostdin", "-nostats", "-i", str(media), "-map", "0:a:0",
         "-af", "ebur128=framelog=verbose", "-f", "null", "-"],
        capture_output=True, text=True, check=True,
    ).stderr  # fmt: skip
    measured = metered_lufs(stderr)
    assert measured is not None, stderr[-300:]
    return measured


@pytest.mark.parametrize("source", ["quiet", "silent"])
async def test_a_lesson_transcoded_live_comes_out_at_the_target_level(
    tmp_path: Path, source: str
) -> None:
    """A rural classroom's far microphone (speech-like at -35 LUFS over a -70 dBFS hiss) comes
    out of the live run near -16 LUFS, like a lesson transcoded after the bell; a silent one
    (the hiss alone) is not pumped up."""
    raw = await asyncio.to_thread(
        speech_source, tmp_path / "raw.webm", seconds=LEVEL_LESSON_S, lufs=SOURCES[source]
    )
    transcoder = LiveTranscoder(raw, policy=_policy(tmp_path))
    transcoder.start()
    transcoder.finish()  # the recorder had closed it: fed whole, then the encoders end
    await transcoder.wait()
    assert transcoder.outcome == "done"
    facts, _ = await make_playable(raw, out_dir=tmp_path)
    outputs = await renditions_from_live(raw, out_dir=tmp_path, facts=facts, loudness="linear")
    assert outputs is not None and outputs["renditions_from"] == "live"
    before = await asyncio.to_thread(_integrated_lufs, raw)
    after = await asyncio.to_thread(_integrated_lufs, tmp_path / "lesson.mp4")
    level = outputs["loudness"]
    if source == "quiet":  # measured -35.2 -> -16.6
        assert abs(after - -16.0) <= LEVEL_BAND_LU, (before, after)
    assert level["mode"] == "live-dynaudnorm" and level["filter"] == LIVE_NORMALISER, level
    if source == "quiet":
        # the meter in the main run reads what the MP4 (its remux) holds, AAC coding aside
        assert abs(level["achieved_lufs"] - after) <= 0.3, (level, after)
    else:
        assert after <= before + 1.0 and after < -60.0, (before, after)
        assert level["achieved_lufs"] < -60.0, level
