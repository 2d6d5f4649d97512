"""HLS playlists, segments and thumbnails through the library: same permission checks as the
MP4 (a pupil only what is shown to their class), Range on segments, nothing else reachable."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from recordings import service
from recordings.processing import process_files
from tests.conftest import DemoDatabase, bearer

pytestmark = pytest.mark.timeout(120)

WCK_EN_4 = 4  # shown to student-cy-4-1
WCK_EN_3 = 2  # not shown to student-cy-4-1


@pytest.fixture(scope="module")
def processed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    """One short lesson run through the real processing (both steps), reused per test."""
    folder = tmp_path_factory.mktemp("processed")
    subprocess.run(
        [
            "ffmpeg", "-v", "error", "-y",
            "-f", "lavfi", "-i", "testsrc=size=320x180:rate=15",
            "-f", "lavfi", "-i", "sine=f=440:r=48000",
            "-t", "6", "-c:v", "libvpx", "-b:v", "200k", "-c:a", "libopus",
            str(folder / "raw.webm"),
        ],
        check=True,
    )  # fmt: skip
    outputs = asyncio.run(process_files(folder / "raw.webm", out_dir=folder))
    return folder, outputs


def _recording(
    db: DemoDatabase, media_root: Path, processed: tuple[Path, dict[str, Any]], group: int
) -> int:
    folder, outputs = processed
    with db.sessions() as session:
        recording = service.new_recording_for_sync_group(session, sync_group_id=group)
        recording.status = "ready"
        recording.outputs = outputs
        session.commit()
        target = (media_root / recording.raw_path).parent
    shutil.copytree(folder, target)
    return recording.id


def test_hls_and_thumbnails_follow_the_recordings_permissions(
    client: TestClient, app: FastAPI, db: DemoDatabase, processed: tuple[Path, dict[str, Any]]
) -> None:
    media_root = app.state.settings.media_root
    mine = _recording(db, media_root, processed, WCK_EN_4)
    other = _recording(db, media_root, processed, WCK_EN_3)
    student = bearer(client, "student-cy-4-1")

    media = client.get(f"/api/recordings/{mine}", headers=student).json()["media"]
    assert media["hls"] == f"/api/recordings/{mine}/hls/master.m3u8"
    master = client.get(media["hls"], headers=student)
    assert master.status_code == 200
    assert master.headers["content-type"].startswith("application/vnd.apple.mpegurl")
    variants = [line for line in master.text.splitlines() if line and not line.startswith("#")]
    assert variants == ["main/index.m3u8", "low/index.m3u8"]
    # relative URIs resolve under the same route, each request checked again
    for variant in variants:
        playlist = client.get(f"/api/recordings/{mine}/hls/{variant}", headers=student)
        assert playlist.status_code == 200, variant
        folder = variant.split("/")[0]
        segments = [ln for ln in playlist.text.splitlines() if ln and not ln.startswith("#")]
        assert len(segments) == 2  # 6 s in ~4 s segments
        init = playlist.text.split('URI="')[1].split('"')[0]
        for name in (init, *segments):
            part = client.get(f"/api/recordings/{mine}/hls/{folder}/{name}", headers=student)
            assert part.status_code == 200 and len(part.content) > 100, name
    segment = f"/api/recordings/{mine}/hls/main/seg_00000.m4s"
    whole = client.get(segment, headers=student).content
    ranged = client.get(segment, headers={**student, "Range": "bytes=10-99"})
    assert ranged.status_code == 206 and ranged.content == whole[10:100]

    vtt = client.get(media["thumbnails"], headers=student)
    assert vtt.status_code == 200 and vtt.headers["content-type"].startswith("text/vtt")
    assert vtt.text.startswith("WEBVTT") and "thumbs.jpg#xywh=0,0,160,90" in vtt.text
    sprite = client.get(f"/api/recordings/{mine}/thumbnails/thumbs.jpg", headers=student)
    assert sprite.status_code == 200 and sprite.content[:2] == b"\xff\xd8"

    # another class's lesson: nothing of it, whatever the file
    for path in ("hls/master.m3u8", "hls/main/index.m3u8", "hls/low/seg_00000.m4s"):
        assert client.get(f"/api/recordings/{other}/{path}", headers=student).status_code == 403
    assert (
        client.get(f"/api/recordings/{other}/thumbnails/thumbs.vtt", headers=student).status_code
        == 403
    )
    # only our own file names: the raw capture, the sidecar or a climb out are not HLS
    for path in ("hls/raw.webm", "hls/../raw.webm", "hls/main/../../events.json", "hls/x/y/z.m4s"):
        assert client.get(f"/api/recordings/{mine}/{path}", headers=student).status_code == 404, (
            path
        )
    assert (
        client.get(f"/api/recordings/{mine}/thumbnails/events.json", headers=student).status_code
        == 404
    )
    # staff of the alliance see it too
    admin = bearer(client, "admin-wck")
    assert client.get(f"/api/recordings/{other}/hls/master.m3u8", headers=admin).status_code == 200


def test_a_recording_not_yet_processed_has_no_hls(
    client: TestClient, app: FastAPI, db: DemoDatabase
) -> None:
    with db.sessions() as session:
        recording = service.new_recording_for_sync_group(session, sync_group_id=WCK_EN_4)
        session.commit()
        recording_id = recording.id
    student = bearer(client, "student-cy-4-1")
    body = client.get(f"/api/recordings/{recording_id}", headers=student).json()
    assert body["media"]["hls"] is None and body["media"]["thumbnails"] is None
    missing = client.get(f"/api/recordings/{recording_id}/hls/master.m3u8", headers=student)
    assert missing.status_code == 404
