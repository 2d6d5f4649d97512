"""Processing: a recorded lesson becomes an H.264/AAC MP4 with a poster and chapters, as a job."""

from __future__ import annotations

import asyncio
import shutil
import time
from pathlib import Path

import av
import pytest
from sqlalchemy.orm import Session, sessionmaker

from common.jobs import InProcessJobQueue
from common.settings import Settings
from recordings import service
from recordings.capture import LessonRecorder
from recordings.models import Recording
from recordings.processing import PROCESS_JOB, process_recording, register_jobs
from tests.conftest import DemoDatabase

pytestmark = pytest.mark.timeout(120)


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
    rooms, classrooms, eventually, sqlite_db: DemoDatabase, tmp_path: Path
):
    capture_dir = tmp_path / "capture"
    room = await rooms.open("sync-1", kind="lesson")
    recorder = LessonRecorder(room, capture_dir / "raw.webm")
    recorder.start()
    classrooms.start("lead", "lead")
    remote = classrooms.start("remote-1", "remote")
    await eventually(lambda: recorder.tap_packets > 0, timeout=15)
    await asyncio.sleep(1.0)
    await remote.raise_hand()
    await asyncio.sleep(2.5)
    summary = await recorder.stop()

    media_root = tmp_path / "media"
    recording_id = _new_recording(sqlite_db.sessions, media_root, capture_dir / "raw.webm")
    reports: list[tuple[float, str]] = []

    async def report(progress: float, message: str) -> None:
        reports.append((progress, message))

    started = time.monotonic()
    outputs = await process_recording(
        sqlite_db.sessions, media_root=media_root, recording_id=recording_id, report=report
    )
    seconds = time.monotonic() - started
    print(f"processing: {seconds:.2f} s for {summary.duration_s:.1f} s of media")

    out_dir = media_root / "recordings" / str(recording_id)
    with av.open(str(out_dir / "lesson.mp4")) as mp4:
        assert mp4.format.name.startswith("mov,mp4")
        assert mp4.streams.video[0].codec_context.name == "h264"
        assert mp4.streams.audio[0].codec_context.name == "aac"
        frames = sum(1 for _ in mp4.decode(video=0))
    assert frames > 30
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

    # idempotent: a second run replaces the outputs whole and leaves no partial files behind
    again = await process_recording(
        sqlite_db.sessions, media_root=media_root, recording_id=recording_id
    )
    assert again["duration_s"] == outputs["duration_s"]
    assert sorted(p.name for p in out_dir.iterdir()) == [
        "events.json",
        "lesson.mp4",
        "poster.jpg",
        "raw.webm",
    ]


async def test_the_job_retries_and_then_marks_the_recording_failed(
    sqlite_db: DemoDatabase, tmp_path: Path
):
    media_root = tmp_path / "media"
    broken = tmp_path / "broken.webm"
    broken.write_bytes(b"\x1a\x45\xdf\xa3 this is not a recording")
    recording_id = _new_recording(sqlite_db.sessions, media_root, broken)
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
