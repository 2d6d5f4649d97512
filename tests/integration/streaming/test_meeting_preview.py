"""A recorded 教研 meeting plays seconds after the stop, as its preview, before the composition
is done; then the composed version replaces it. Over the web app's real meeting WebSocket with
real aiortc bots and the real in-process job queue: the mics are mixed into 4 s chunks while
the meeting runs, one chunk is lost as a crash would lose it and is made again at the stop,
and pupils still get 403. The app's free-space floor (TONGKE_RECORDING_MIN_FREE_MB) reaches
the meeting's recorders: set above any disk's size, the recording carries a low_disk alert.

Run in a private network namespace (only loopback), as CI does:
    unshare -n sh -c 'ip link set lo up && .venv/bin/pytest tests/integration/streaming'
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

import av
import httpx
import pytest
from fastapi import FastAPI

from common.jobs import InProcessJobQueue, JobContext
from recordings.meeting_capture import TIMELINE_NAME, MeetingTimeline
from recordings.meeting_preview import PREVIEW_DIR, PREVIEW_NAME, chunk_path
from recordings.service import retire_previews
from tests.conftest import DemoDatabase
from tests.fixtures.loop_guard import in_process_loop_guard  # noqa: F401 - fixture
from tests.integration.streaming.test_meeting_recording import (
    _loudest,
    _recording_of,
    _token_of,
    ffprobe_duration,
)
from tests.integration.streaming.test_meeting_socket import (
    Meeting,
    attend,
    meeting,  # noqa: F401 - fixture
    server,  # noqa: F401 - fixture
    until,
)
from web.jobs import register_all

pytestmark = [
    pytest.mark.timeout(240),
    pytest.mark.usefixtures("in_process_loop_guard"),  # product code runs on the test's loop
]

CHUNK_S = 4.0
LOUD = 0.05  # a tone is there (silence decodes to ~0; the bots' tones peak at 0.3)
SETTINGS = {"recording_meeting_chunk_seconds": CHUNK_S, "recording_min_free_mb": 10**12}


@pytest.mark.parametrize("server", [SETTINGS], indirect=True)
async def test_the_preview_plays_before_the_composed_version_replaces_it(
    server: tuple[str, FastAPI],  # noqa: F811
    meeting: Meeting,  # noqa: F811
    sqlite_db: DemoDatabase,
) -> None:
    base, app = server
    # the app's real job queue, with one slot: the composition waits while the test holds it
    jobs = InProcessJobQueue(max_jobs=1)
    register_all(jobs, app.state.settings)
    released = asyncio.Event()

    async def hold(_ctx: JobContext) -> dict[str, Any]:
        await released.wait()
        return {}

    jobs.register("hold_the_queue", hold, max_retries=0)
    app.state.jobs = jobs
    app.state.meeting_recordings.jobs = jobs  # the process's one MeetingRecordings queues here
    media_root: Path = app.state.settings.media_root

    attendees = [await attend(base, meeting, m, amplitude=0.3) for m in meeting.members]
    try:
        for attendee in attendees:
            await until(attendee.bot.connected.is_set, within=15, what="connected")
        await attendees[0].bot.send({"type": "start_recording"})
        await until(
            lambda: _recording_of(sqlite_db, meeting.session_id) is not None,
            within=10,
            what="the recording row",
        )
        recording = _recording_of(sqlite_db, meeting.session_id)
        assert recording is not None
        folder = (media_root / recording.raw_path).parent
        # the first two minutes' worth (4 s each) are mixed while the meeting goes on
        await until(
            lambda: chunk_path(folder, 1).exists(), within=30, what="chunks during the meeting"
        )
        # a crash loses a chunk (and leaves the one it was making half written)
        chunk_path(folder, 0).unlink()
        (folder / PREVIEW_DIR / ".chunk-0002.webm.partial").write_bytes(b"\x1a\x45")
        await asyncio.sleep(2.0)
        await jobs.enqueue("hold_the_queue")
        await attendees[0].bot.send({"type": "stop_recording"})

        def on_preview() -> bool:
            found = _recording_of(sqlite_db, meeting.session_id)
            return found is not None and (found.outputs or {}).get("meeting_version") == "preview"

        await until(on_preview, within=30, what="the preview")
    finally:
        for attendee in attendees:
            await attendee.stop()

    recording = _recording_of(sqlite_db, meeting.session_id)
    assert recording is not None
    assert recording.status == "ready", recording.status_message
    outputs = recording.outputs or {}
    assert "composed_duration_s" not in outputs and not (folder / "raw.webm").exists()
    # the lost chunk made again at the stop, with the teachers' tones in it (its loudest
    # sample measured 0.19, 0.23, 0.61 in three runs; silence decodes to ~0)
    assert outputs["preview_chunks_remade"] >= 1 and _loudest(chunk_path(folder, 0)) > LOUD
    assert outputs["preview_after_s"] < 30  # the stop does one chunk and a stream copy
    assert any(alert["kind"] == "low_disk" for alert in outputs.get("alerts", []))
    timeline = MeetingTimeline.read(folder / TIMELINE_NAME)
    assert timeline.duration_s is not None and timeline.duration_s > 2 * CHUNK_S
    preview = folder / PREVIEW_DIR / PREVIEW_NAME
    assert abs(ffprobe_duration(preview) - timeline.duration_s) <= 0.5
    with av.open(str(preview)) as container:
        assert container.streams.audio and container.streams.video
    assert _loudest(preview) > LOUD  # the teachers' tones, mixed
    titles = [chapter["title"] for chapter in outputs["chapters"]]
    assert titles[0] == "会议开始" and any(title.endswith("发言") for title in titles[1:])

    http = base.replace("ws://", "http://")
    alliance_id = recording.alliance_id
    member = {"Authorization": f"Bearer {meeting.members[1].token}"}
    pupil_token = await asyncio.to_thread(
        _token_of, sqlite_db, role="student", alliance_id=alliance_id, same=True
    )  # product code (issue_token): off the loop the app shares
    pupil = {"Authorization": f"Bearer {pupil_token}"}
    media_url = f"/api/recordings/{recording.id}/media?rendition=preview"
    raw_url = f"/api/recordings/{recording.id}/media?rendition=raw"
    async with httpx.AsyncClient(base_url=http, timeout=10) as client:
        shown = (await client.get(f"/api/recordings/{recording.id}", headers=member)).json()
        assert shown["meeting_version"] == "preview" and shown["media"]["raw"].endswith(
            "rendition=preview"
        )
        ranged = await client.get(media_url, headers={**member, "Range": "bytes=0-99"})
        assert ranged.status_code == 206 and ranged.content == preview.read_bytes()[:100]
        page = await client.get(f"/replays/{recording.id}", headers=member)
        assert "正在生成完整版（含共享屏幕与发言人切换）" in page.text
        for url in (f"/api/recordings/{recording.id}", media_url, f"/replays/{recording.id}"):
            assert (await client.get(url, headers=pupil)).status_code == 403, url

        released.set()  # the composition runs, and replaces the preview

        def composed() -> bool:
            found = _recording_of(sqlite_db, meeting.session_id)
            return found is not None and (found.outputs or {}).get("renditions") == "ready"

        await until(composed, within=150, what="composed and processed")
        recording = _recording_of(sqlite_db, meeting.session_id)
        assert recording is not None and recording.status == "ready"
        assert recording.outputs["meeting_version"] == "composed"
        raw = folder / "raw.webm"
        assert abs(ffprobe_duration(raw) - timeline.duration_s) <= 0.5
        shown = (await client.get(f"/api/recordings/{recording.id}", headers=member)).json()
        assert shown["media"]["raw"].endswith("rendition=raw")
        served = await client.get(raw_url, headers={**member, "Range": "bytes=0-99"})
        assert served.status_code == 206 and served.content == raw.read_bytes()[:100]
        # a browser still playing the preview goes on getting the preview's bytes
        ranged = await client.get(media_url, headers={**member, "Range": "bytes=100-199"})
        assert ranged.status_code == 206 and ranged.content == preview.read_bytes()[100:200]
        page = await client.get(f"/replays/{recording.id}", headers=member)
        assert page.status_code == 200 and "正在生成完整版" not in page.text
        assert (await client.get(media_url, headers=pupil)).status_code == 403
        # the daily retention deletes the preview a day after the composed version came
        sessions = sqlite_db.sessions
        soon = datetime.now(UTC) + timedelta(hours=1)
        # product code (the daily job's): off the loop the app shares, as the job runs it
        retire = partial(retire_previews, sessions, media_root=media_root, remote=None)
        assert await asyncio.to_thread(retire, now=soon) == []
        later = datetime.now(UTC) + timedelta(days=1, minutes=1)
        retired = await asyncio.to_thread(retire, now=later)
        assert retired == [recording.id] and not preview.exists() and raw.exists()
        gone = await client.get(media_url, headers=member)
        assert gone.status_code == 404 and "预览版已删除" in gone.text
        assert (await client.get(raw_url, headers=member)).status_code == 200
