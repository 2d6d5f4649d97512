"""A recording disk that fills up during a lesson: the alert, the file, the live lesson.

The disk is real: a 768 KiB tmpfs mounted in a private mount namespace (``unshare -m``, root
only) for a child process that runs the SFU, a lead classroom bot, a remote classroom bot and
the recorder writing onto that tmpfs. The kernel returns ENOSPC when it is full. The service
side (the alert on the recording row, kept through processing, shown on the 巡课 wall and in
the library) is tested in the same process with the alert the recorder raises.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from common.jobs import InProcessJobQueue
from common.settings import Settings
from recordings import service
from recordings.alerts import RecorderAlert
from recordings.capture import LessonRecorder
from recordings.meeting_capture import MeetingRecorder
from recordings.meetings import MeetingRecordings, new_recording_for_research_session
from recordings.models import Recording
from recordings.processing import process_recording
from research.models import ResearchSession
from streaming.bots import ClassroomBot, start_local
from streaming.sfu import InProcessRoomRegistry, ParticipantIdentity
from tests.conftest import DemoDatabase, bearer, make_test_app
from tests.fixtures.classrooms import eventually as wait_until
from tests.fixtures.recordings import WCK_EN_4, make_recording, place_raw

pytestmark = pytest.mark.timeout(120)

TMPFS_KIB = 768

CHILD = textwrap.dedent(
    """
    import asyncio, json, sys, time
    from pathlib import Path

    import av

    from recordings.capture import LessonRecorder
    from streaming.bots import ClassroomBot, start_local, use_loopback_only
    from streaming.sfu import InProcessRoomRegistry, ParticipantIdentity

    def say(**fields):
        print(json.dumps(fields), flush=True)

    async def main():
        use_loopback_only()
        path = Path(sys.argv[1])
        rooms = InProcessRoomRegistry()
        room = await rooms.open("sync-1", kind="lesson")
        # warn when less than half the disk is left
        recorder = LessonRecorder(room, path, min_free_bytes=int(sys.argv[2]))
        alerts = []
        recorder.on_alert.append(lambda _r, alert: alerts.append((alert, time.monotonic())))
        recorder.start()
        start_local(ClassroomBot(ParticipantIdentity("lead", "lead", "lead", "sync-1")), rooms)
        remote = ClassroomBot(ParticipantIdentity("remote", "remote", "remote", "sync-1"))
        start_local(remote, rooms)
        deadline = time.monotonic() + 60
        while not any(a.kind == "disk_full" for a, _ in alerts):
            assert time.monotonic() < deadline, "the disk never filled"
            await asyncio.sleep(0.1)
        full_at = time.monotonic()
        frames_at_full = remote.slot("lead_camera").frames
        dropped_at_full = recorder.dropped_packets
        # the lesson goes on: 20 more frames decoded (a loaded machine may starve this one
        # process of bots, SFU and recorder for a moment; a lesson the recorder stopped
        # never gets them)
        slot = remote.slot("lead_camera")
        deadline = time.monotonic() + 10
        while slot.frames - frames_at_full <= 20 and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        await asyncio.sleep(max(0.0, full_at + 3.0 - time.monotonic()))
        frames_after = slot.frames
        last_frame_age_s = round(time.monotonic() - (slot.last_frame_at or 0), 3)
        summary = await recorder.stop()
        with av.open(str(path)) as container:
            last = 0.0
            packets = 0
            for packet in container.demux():
                if packet.pts is not None and packet.stream.type == "video":
                    packets += 1
                    last = max(last, float(packet.pts * packet.time_base))
        say(
            alerts=[
                {"kind": a.kind, "message": a.message, "at_s": a.at_s,
                 "free_bytes": a.free_bytes, "after_full_s": round(t - full_at, 3)}
                for a, t in alerts
            ],
            frames_at_full=frames_at_full,
            frames_after=frames_after,
            last_frame_age_s=last_frame_age_s,
            dropped_at_full=dropped_at_full,
            dropped_after=recorder.dropped_packets,
            backlog=recorder.backlog,
            summary_duration_s=summary.duration_s,
            errors=len(summary.errors),
            file_video_packets=packets,
            file_last_video_s=round(last, 3),
            file_bytes=path.stat().st_size,
        )
        import os
        os._exit(0)  # the bots' tasks: nothing more to check

    asyncio.run(main())
    """
)


def _can_mount_tmpfs() -> bool:
    return os.geteuid() == 0 and shutil.which("unshare") is not None


@pytest.mark.skipif(not _can_mount_tmpfs(), reason="a private tmpfs needs root and unshare -m")
def test_a_full_disk_alerts_keeps_the_file_and_never_stops_the_lesson(tmp_path: Path) -> None:
    disk = tmp_path / "disk"
    disk.mkdir()
    min_free = TMPFS_KIB * 1024 // 2
    script = (
        f"mount -t tmpfs -o size={TMPFS_KIB}k tmpfs {disk} && "
        f'exec "{sys.executable}" -c "$0" {disk}/raw.webm {min_free}'
    )
    done = subprocess.run(
        ["unshare", "-m", "--", "sh", "-c", script, CHILD],
        capture_output=True,
        text=True,
        cwd=Path(__file__).resolve().parents[3],
        timeout=100,
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith('{"alerts"')]
    assert done.returncode == 0 and lines, (
        done.returncode,
        done.stdout[-2000:],
        done.stderr[-3000:],
    )
    result = json.loads(lines[-1])
    print("disk full:", json.dumps(result, ensure_ascii=False))
    kinds = [alert["kind"] for alert in result["alerts"]]
    # warned first (below half the disk), then full: each once
    assert kinds == ["low_disk", "disk_full"], result["alerts"]
    low, full = result["alerts"]
    assert low["free_bytes"] < min_free and "存储空间不足" in low["message"]
    assert "存储空间已满" in full["message"] and "直播课堂不受影响" in full["message"]
    # the live lesson went on: the remote classroom kept decoding the lead's picture
    assert result["frames_after"] - result["frames_at_full"] > 20, result
    assert result["last_frame_age_s"] < 1.0, result
    # the recorder let go: nothing queued, what came after the failure counted and dropped
    assert result["backlog"] == 0
    assert result["dropped_after"] > result["dropped_at_full"] >= 0, result
    # the file holds the lesson up to where the disk filled, and plays
    assert result["file_bytes"] > TMPFS_KIB * 1024 // 2
    assert result["file_video_packets"] > 10
    assert abs(result["file_last_video_s"] - full["at_s"]) < 2.0, result


async def test_the_alert_is_on_the_recording_the_wall_and_the_replay(
    sqlite_db: DemoDatabase, tmp_path: Path, sample_webm: Path
) -> None:
    app = make_test_app(sqlite_db, tmp_path)
    media_root = app.state.settings.media_root
    recording_id = await asyncio.to_thread(make_recording, sqlite_db, WCK_EN_4, status="recording")
    for alert in (
        RecorderAlert("low_disk", "录像存储空间不足：仅剩 800 MB", 60.0, 800 << 20),
        RecorderAlert("disk_full", "录像存储空间已满，录像止于 0:01:30", 90.0, 0),
    ):
        await asyncio.to_thread(
            service.note_alert, sqlite_db.sessions, recording_id=recording_id, alert=alert
        )

    def live_alert() -> str:
        with sqlite_db.sessions() as session:
            return service.live_recording_alert(session, WCK_EN_4)

    with sqlite_db.sessions() as session:
        recording = session.get_one(Recording, recording_id)
        assert recording.status_message == "录像存储空间已满，录像止于 0:01:30"
        assert [a["kind"] for a in recording.outputs["alerts"]] == ["low_disk", "disk_full"]
    assert await asyncio.to_thread(live_alert) == recording.status_message

    place_raw(sqlite_db, recording_id, media_root, sample_webm)
    await process_recording(sqlite_db.sessions, media_root=media_root, recording_id=recording_id)
    with sqlite_db.sessions() as session:
        recording = session.get_one(Recording, recording_id)
        assert recording.status == "ready"
        # processing kept the alerts, and says the recording stops short
        assert [a["kind"] for a in recording.outputs["alerts"]] == ["low_disk", "disk_full"]
        assert recording.status_message == "录像不完整：录像存储空间已满，录像止于 0:01:30"
        assert recording.outputs["mp4"]
    assert await asyncio.to_thread(live_alert) == ""  # over: no longer a live recording's alert

    with TestClient(app) as client:
        client.headers.update(bearer(client, "student-cy-4-1"))
        page = client.get(f"/replays/{recording_id}")
        assert page.status_code == 200
        assert "录像不完整：录像存储空间已满" in page.text
        listing = client.get("/replays")
        assert "可回放（不完整）" in listing.text


async def test_a_meeting_notes_each_kind_of_alert_once_on_its_recording(
    sqlite_db: DemoDatabase, tmp_path: Path
) -> None:
    """Every teacher's file of a 教研 meeting has its own recorder on the same disk: the
    meeting's recording gets one alert of each kind, whichever recorder raised it first."""

    def new_meeting_recording() -> int:
        with sqlite_db.sessions() as session, session.begin():
            research_session = session.scalars(select(ResearchSession).order_by(ResearchSession.id))
            return new_recording_for_research_session(
                session, research_session_id=next(iter(research_session)).id
            ).id

    recording_id = await asyncio.to_thread(new_meeting_recording)
    rooms = InProcessRoomRegistry()
    room = await rooms.open("research-1", kind="meeting")
    try:
        meeting = MeetingRecorder(room, tmp_path / "rec")
        tasks: set[asyncio.Future[None]] = set()
        meeting.on_alert.append(service.alerts_to_row(sqlite_db.sessions, recording_id, tasks))
        # two teachers' recorders warn, then one finds the disk full
        first = LessonRecorder(room, tmp_path / "rec" / "p1.webm")
        second = LessonRecorder(room, tmp_path / "rec" / "p2.webm")
        for recorder in (first, second):
            recorder.on_alert.append(meeting._recorder_alert)
        for recorder in (first, second):
            recorder._alert("low_disk", "录像存储空间不足：仅剩 0.5 GB", free_bytes=1 << 29)
        second._alert("disk_full", "录像存储空间已满，录像止于 0:02:00", free_bytes=0)
        await asyncio.gather(*tasks)
    finally:
        await rooms.close_all()
    assert [alert.kind for alert in meeting.alerts] == ["low_disk", "disk_full"]
    with sqlite_db.sessions() as session:
        recording = session.get_one(Recording, recording_id)
        assert [a["kind"] for a in recording.outputs["alerts"]] == ["low_disk", "disk_full"]
        assert recording.status_message == "录像存储空间已满，录像止于 0:02:00"


async def test_the_free_space_threshold_comes_from_settings_and_zero_turns_it_off(
    sqlite_db: DemoDatabase, tmp_path: Path
) -> None:
    recording_id = await asyncio.to_thread(make_recording, sqlite_db, WCK_EN_4, status="recording")
    rooms = InProcessRoomRegistry()
    room = await rooms.open(f"sync-{WCK_EN_4}", kind="lesson")
    try:
        for megabytes, warned in ((0, False), (10**9, True)):  # off; more than any disk has
            settings = Settings(media_root=tmp_path / "media", recording_min_free_mb=megabytes)
            active = service.ActiveRecordings.from_settings(settings)
            recorder = await service.record_into(
                room,
                recording_id=recording_id,
                sync_group_id=WCK_EN_4,
                sessions=sqlite_db.sessions,
                media_root=settings.media_root,
                jobs=InProcessJobQueue(),
                active=active,
            )
            assert recorder.min_free_bytes == megabytes * 1024 * 1024
            recorder.check_disk()
            assert [a.kind for a in recorder.alerts] == (["low_disk"] if warned else [])
            active.forget(recording_id)
            recorder.on_stopped.clear()  # nothing recorded: no processing to queue
            await recorder.stop()
            await asyncio.gather(*active.alert_tasks)
    finally:
        await rooms.close_all()


async def test_a_meetings_recorders_take_the_free_space_threshold_from_settings(
    sqlite_db: DemoDatabase, tmp_path: Path, rooms: InProcessRoomRegistry
) -> None:
    """TONGKE_RECORDING_MIN_FREE_MB reaches every teacher's recorder of a 教研 meeting (they
    used the built-in 1 GiB), as it reaches a lesson's (``ActiveRecordings.from_settings``)."""
    with sqlite_db.sessions() as session:
        ids = session.scalars(select(ResearchSession.id).order_by(ResearchSession.id))
        session_id = ids.first()
    room_id = f"research-{session_id}"
    host = ParticipantIdentity(
        participant_id="wang",
        display_name="王老师",
        role="meeting",
        room_id=room_id,
        room_kind="meeting",
        host=True,
    )
    bot = ClassroomBot(host, fps=10, amplitude=0.3)
    running = start_local(bot, rooms)
    try:
        await wait_until(bot.connected.is_set)
        room = await rooms.get(room_id)
        assert room is not None
        for megabytes, warned in ((0, False), (10**9, True)):  # off; more than any disk has
            settings = Settings(media_root=tmp_path / "media", recording_min_free_mb=megabytes)
            recordings = MeetingRecordings.from_settings(
                sqlite_db.sessions, settings, InProcessJobQueue()
            )
            await recordings.start(room, host)
            _, meeting = recordings.by_room[room_id]
            [camera] = meeting.recorders.values()
            assert camera.min_free_bytes == megabytes * 1024 * 1024
            camera.check_disk()
            assert [a.kind for a in meeting.alerts] == (["low_disk"] if warned else [])
            meeting.on_stopped.clear()  # no composition to queue here
            await meeting.stop()
            await asyncio.gather(*recordings.alert_tasks)
    finally:
        await running.stop()
