"""Recording an online 教研 meeting into the library, over the web app's real WebSocket with
real aiortc bots: a member who is not the host is refused, the host starts, everyone sees
录制中, two members speak in turn, the host stops; the composition job runs in process and
the recording is ready, as long as the recorded span, with sound and picture, chapters for
the speakers, linked to the session; pupils and other alliances' teachers get 403.

Run in a private network namespace (only loopback), as CI does:
    unshare -n sh -c 'ip link set lo up && .venv/bin/pytest tests/integration/streaming'
"""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path

import av
import httpx
import numpy as np
import pytest
from fastapi import FastAPI
from sqlalchemy import select

from common.accounts import service as accounts
from common.accounts.models import Account
from recordings.meeting_capture import TIMELINE_NAME, MeetingTimeline
from recordings.models import Recording
from research.models import ResearchGroup, ResearchSession
from tests.conftest import DemoDatabase
from tests.integration.streaming.test_meeting_socket import (
    Meeting,
    attend,
    meeting,  # noqa: F401 - fixture
    server,  # noqa: F401 - fixture
    until,
)

pytestmark = pytest.mark.timeout(240)


def _recording_of(db: DemoDatabase, session_id: int) -> Recording | None:
    with db.sessions() as session:
        return session.scalars(
            select(Recording).where(Recording.research_session_id == session_id)
        ).one_or_none()


def ffprobe_duration(path: Path) -> float:
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-show_entries", "format=duration", "-of", "csv=p=0", path],
        check=True,
        capture_output=True,
        text=True,
    )
    return float(out.stdout.strip())


def _loudest(path: Path) -> float:
    """The largest sample of the file's sound (decoded here, after the fact)."""
    peak = 0.0
    with av.open(str(path)) as container:
        for frame in container.decode(audio=0):
            peak = max(peak, float(np.abs(frame.to_ndarray()).max()))
    return peak


def _token_of(db: DemoDatabase, *, role: str, alliance_id: int, same: bool) -> str:
    with db.sessions() as session, session.begin():
        condition = (
            Account.alliance_id == alliance_id if same else Account.alliance_id != alliance_id
        )
        account = session.scalars(
            select(Account).where(Account.role == role, condition).order_by(Account.id)
        ).first()
        assert account is not None, (role, same)
        return accounts.issue_token(session, account=account, kind="api", lifetime=None)[0]


async def test_a_meeting_recorded_into_the_library(
    server: tuple[str, FastAPI],  # noqa: F811
    meeting: Meeting,  # noqa: F811
    sqlite_db: DemoDatabase,
) -> None:
    base, app = server
    host_member, first_member, second_member = meeting.members
    first_pid, second_pid = (f"teacher-{m.teacher_id}" for m in (first_member, second_member))
    host = await attend(base, meeting, host_member, amplitude=0.0)
    first = await attend(base, meeting, first_member, amplitude=0.0)
    second = await attend(base, meeting, second_member, amplitude=0.0)
    attendees = [host, first, second]
    try:
        for attendee in attendees:
            await until(attendee.bot.connected.is_set, within=15, what="connected")
        room = await app.state.rooms.registry().get(f"research-{meeting.session_id}")
        assert room is not None

        # a member who is not the host may not record
        await first.bot.send({"type": "start_recording"})
        await until(lambda: bool(first.bot.errors), within=5, what="refusal")
        assert first.bot.errors[-1]["code"] == "not_host"
        assert not room.recording and _recording_of(sqlite_db, meeting.session_id) is None

        await host.bot.send({"type": "start_recording"})
        for attendee in attendees:  # everyone is told they are being recorded
            await until(
                lambda a=attendee: any(  # type: ignore[misc]
                    m["type"] == "meeting" and m.get("recording") for m in a.bot.messages
                ),
                within=5,
                what="the 录制中 indicator",
            )
        await host.bot.send({"type": "start_recording"})  # a second start is refused
        await until(lambda: len(host.bot.errors) == 1, within=5, what="already recording")
        assert host.bot.errors[0]["code"] == "already_recording"

        # one speaks, then the other (more than the chapters' 5 s apart)
        for speaking, silent, pid in ((first, second, first_pid), (second, first, second_pid)):
            assert speaking.bot.tone is not None and silent.bot.tone is not None
            silent.bot.tone.amplitude = 0.0
            speaking.bot.tone.amplitude = 0.3
            await until(lambda p=pid: room.speakers.active == p, within=10, what="speaker")  # type: ignore[misc]
            await asyncio.sleep(6.5)
        await host.bot.send({"type": "stop_recording"})
        await until(
            lambda: any(
                m["type"] == "meeting" and m.get("recording") is False for m in second.bot.messages
            ),
            within=10,
            what="recording stopped for everyone",
        )
    finally:
        for attendee in attendees:
            await attendee.stop()

    def processed() -> bool:
        found = _recording_of(sqlite_db, meeting.session_id)
        return found is not None and (
            found.status == "failed" or (found.outputs or {}).get("renditions") == "ready"
        )

    await until(processed, within=150, what="composed and processed")
    recording = _recording_of(sqlite_db, meeting.session_id)
    assert recording is not None
    assert recording.status == "ready", recording.status_message
    media_root: Path = app.state.settings.media_root
    raw = media_root / recording.raw_path
    timeline = MeetingTimeline.read(raw.parent / TIMELINE_NAME)
    assert timeline.duration_s is not None and timeline.duration_s > 13
    assert abs(ffprobe_duration(raw) - timeline.duration_s) <= 0.5
    assert abs(ffprobe_duration(raw.parent / "lesson.mp4") - timeline.duration_s) <= 0.5
    with av.open(str(raw)) as container:
        assert container.streams.video and container.streams.audio
    assert _loudest(raw) > 0.1  # the speakers' tones, mixed
    outputs = recording.outputs
    assert outputs["poster"] == "poster.jpg" and (raw.parent / "poster.jpg").exists()
    titles = [chapter["title"] for chapter in outputs["chapters"]]
    assert titles[0] == "会议开始"
    # chapters say who spoke, by the name they joined with
    first_name, second_name = (timeline.participants[p].name for p in (first_pid, second_pid))
    assert f"{first_name}发言" in titles and f"{second_name}发言" in titles
    assert titles.index(f"{first_name}发言") < titles.index(f"{second_name}发言")
    # the picture followed the speakers
    shown = [segment["source"] for segment in outputs["segments"]]
    assert f"{first_pid}:camera" in shown and f"{second_pid}:camera" in shown

    with sqlite_db.sessions() as session:
        row = session.get_one(ResearchSession, meeting.session_id)
        group = session.get_one(ResearchGroup, row.group_id)
        assert row.recording_id == recording.id
        assert recording.alliance_id == group.alliance_id
        assert recording.subject_id == group.subject_id
        assert recording.teacher_id == row.host_id == host_member.teacher_id
        assert recording.date == row.day and recording.topic == row.topic
        assert recording.title.startswith(f"教研：{group.name} ")
        alliance_id = group.alliance_id

    # who may watch it: the alliance's teachers; never a pupil, nor another alliance
    http = base.replace("ws://", "http://")
    member_token = host_member.token
    pupil = await asyncio.to_thread(
        _token_of, sqlite_db, role="student", alliance_id=alliance_id, same=True
    )  # product code (issue_token): off the loop the app shares
    stranger = await asyncio.to_thread(
        _token_of, sqlite_db, role="teacher", alliance_id=alliance_id, same=False
    )  # product code (issue_token): off the loop the app shares
    async with httpx.AsyncClient(base_url=http, timeout=10) as client:
        allowed = {"Authorization": f"Bearer {member_token}"}
        assert (await client.get(f"/api/recordings/{recording.id}", headers=allowed)).is_success
        listed = await client.get("/api/recordings", headers=allowed)
        assert recording.id in {r["id"] for r in listed.json()}
        replay = await client.get(f"/replays/{recording.id}", headers=allowed)
        assert replay.status_code == 200 and "教研：" in replay.text
        for token in (pupil, stranger):
            headers = {"Authorization": f"Bearer {token}"}
            for url in (
                f"/api/recordings/{recording.id}",
                f"/api/recordings/{recording.id}/media?rendition=raw",
                f"/replays/{recording.id}",
            ):
                assert (await client.get(url, headers=headers)).status_code == 403, url
            listed = await client.get("/api/recordings", headers=headers)
            assert recording.id not in {r["id"] for r in listed.json()}
