"""Recordings on S3-compatible storage, against a real S3 HTTP server (moto, on loopback):
streamed multipart uploads, Range reads, the library serving from the bucket, deletion."""

from __future__ import annotations

import asyncio
import os
import tracemalloc
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from common.settings import Settings
from recordings.models import Recording
from recordings.processing import process_recording
from recordings.storage import MULTIPART_BYTES, S3Storage, remote_storage
from tests.conftest import DemoDatabase, bearer, make_test_app
from tests.fixtures.recordings import WCK_EN_3, WCK_EN_4, make_recording, place_raw

pytestmark = pytest.mark.timeout(120)


def _s3_settings(endpoint: str, **overrides: object) -> dict[str, object]:
    return {
        "s3_bucket": f"tongke-{uuid.uuid4().hex[:12]}",
        "s3_endpoint_url": endpoint,
        "s3_access_key_id": "testing",
        "s3_secret_access_key": "testing",
        "s3_prefix": "county/",
        **overrides,
    }


@pytest.fixture
def bucket(s3_endpoint: str, tmp_path: Path) -> Iterator[S3Storage]:
    settings = Settings(environment="test", media_root=tmp_path, **_s3_settings(s3_endpoint))  # type: ignore[arg-type]
    storage = remote_storage(settings)
    assert storage is not None
    storage.client.create_bucket(Bucket=storage.bucket)
    yield storage


def test_large_files_go_up_in_parts_without_being_held_in_memory(
    bucket: S3Storage, tmp_path: Path
) -> None:
    source = tmp_path / "raw.webm"
    size = 4 * MULTIPART_BYTES + 12345  # five parts
    with source.open("wb") as file:
        for _ in range(size // (1 << 20)):
            file.write(os.urandom(1 << 20))
        file.write(os.urandom(size % (1 << 20)))
    tracemalloc.start()
    try:
        bucket.upload("recordings/7/raw.webm", source, content_type="video/webm")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    head = bucket.client.head_object(Bucket=bucket.bucket, Key="county/recordings/7/raw.webm")
    assert head["ContentLength"] == size
    assert head["ContentType"] == "video/webm"
    assert head["ETag"].strip('"').endswith("-5"), head["ETag"]  # a multipart upload's ETag
    # a few parts in flight at most, never the 64 MiB file
    assert peak < 3 * MULTIPART_BYTES, peak / (1 << 20)

    data = source.read_bytes()
    assert bucket.size("recordings/7/raw.webm") == size
    assert bucket.size("recordings/7/missing.mp4") is None
    start, end = MULTIPART_BYTES - 10, MULTIPART_BYTES + 300_000
    assert b"".join(bucket.read_range("recordings/7/raw.webm", start, end)) == data[start : end + 1]

    back = tmp_path / "back" / "raw.webm"
    bucket.download("recordings/7/raw.webm", back)
    assert back.read_bytes() == data


def test_deleting_a_recordings_prefix_leaves_its_neighbours(
    bucket: S3Storage, tmp_path: Path
) -> None:
    small = tmp_path / "poster.jpg"
    small.write_bytes(b"jpeg")
    for key in ("recordings/1/poster.jpg", "recordings/1/hls/a.m4s", "recordings/12/poster.jpg"):
        bucket.upload(key, small, content_type="image/jpeg")
    assert bucket.delete_prefix("recordings/1/") == 2
    assert bucket.size("recordings/1/poster.jpg") is None
    assert bucket.size("recordings/1/hls/a.m4s") is None
    assert bucket.size("recordings/12/poster.jpg") == 4


async def test_processed_recordings_are_served_from_the_bucket_with_ranges_and_deleted(
    s3_endpoint: str, sqlite_db: DemoDatabase, tmp_path: Path, sample_webm: Path
) -> None:
    app = make_test_app(sqlite_db, tmp_path, **_s3_settings(s3_endpoint))
    settings: Settings = app.state.settings
    remote = remote_storage(settings)
    assert remote is not None
    remote.client.create_bucket(Bucket=remote.bucket)
    ids = {}
    for name, group in (("mine", WCK_EN_4), ("other", WCK_EN_3)):
        ids[name] = await asyncio.to_thread(make_recording, sqlite_db, group, status="recording")
        raw = place_raw(sqlite_db, ids[name], settings.media_root, sample_webm)
        raw_key = raw.relative_to(settings.media_root).as_posix()
        outputs = await process_recording(
            sqlite_db.sessions,
            media_root=settings.media_root,
            recording_id=ids[name],
            remote=remote,
            keep_local=False,
        )
        assert outputs["stored"] == "s3"
        # everything went up, nothing stayed on the app's disk
        assert not any(p.is_file() for p in raw.parent.rglob("*"))
        assert remote.size(raw_key) == sample_webm.stat().st_size
        assert remote.size(raw_key.replace("raw.webm", "lesson.mp4")) == outputs["size_bytes"]

    mine = ids["mine"]
    with TestClient(app) as client:
        student = bearer(client, "student-cy-4-1")
        listed = client.get(f"/api/recordings/{mine}", headers=student).json()
        assert listed["media"]["raw"] and listed["media"]["mp4"], listed
        whole = client.get(f"/api/recordings/{mine}/media?rendition=mp4", headers=student)
        assert whole.status_code == 200
        assert whole.headers["content-type"] == "video/mp4"
        mp4 = whole.content
        assert len(mp4) == int(whole.headers["content-length"]) > 10_000
        ranged = client.get(
            f"/api/recordings/{mine}/media?rendition=mp4",
            headers={**student, "Range": "bytes=100-4099"},
        )
        assert ranged.status_code == 206
        assert ranged.headers["content-range"] == f"bytes 100-4099/{len(mp4)}"
        assert ranged.content == mp4[100:4100]
        tail = client.get(
            f"/api/recordings/{mine}/media?rendition=raw",
            headers={**student, "Range": "bytes=-1000"},
        )
        assert tail.status_code == 206
        assert tail.content == sample_webm.read_bytes()[-1000:]
        beyond = client.get(
            f"/api/recordings/{mine}/media?rendition=mp4",
            headers={**student, "Range": f"bytes={len(mp4)}-"},
        )
        assert beyond.status_code == 416
        # the permission check comes first, whatever the storage
        other = client.get(f"/api/recordings/{ids['other']}/media", headers=student)
        assert other.status_code == 403

        # a student cannot delete; the alliance admin can, and every object goes
        assert client.delete(f"/api/recordings/{mine}", headers=student).status_code == 403
        admin = bearer(client, "admin-wck")
        assert client.delete(f"/api/recordings/{mine}", headers=admin).status_code == 204
        assert client.get(f"/api/recordings/{mine}", headers=admin).status_code == 404
    assert remote.size(f"recordings/{mine}/lesson.mp4") is None
    assert remote.size(f"recordings/{mine}/raw.webm") is None
    assert remote.size(f"recordings/{ids['other']}/lesson.mp4") is not None
    with sqlite_db.sessions() as session:
        assert session.get(Recording, mine) is None


async def test_reprocessing_fetches_the_raw_capture_back_from_the_bucket(
    s3_endpoint: str, sqlite_db: DemoDatabase, tmp_path: Path, sample_webm: Path
) -> None:
    settings = Settings(
        environment="test",
        database_url=sqlite_db.url,
        media_root=tmp_path / "media",
        **_s3_settings(s3_endpoint),  # type: ignore[arg-type]
    )
    remote = remote_storage(settings)
    assert remote is not None  # no bucket yet: the first upload makes it
    recording_id = await asyncio.to_thread(make_recording, sqlite_db, WCK_EN_4, status="recording")
    raw = place_raw(sqlite_db, recording_id, settings.media_root, sample_webm)
    raw_key = raw.relative_to(settings.media_root).as_posix()
    first = await process_recording(
        sqlite_db.sessions, media_root=settings.media_root, recording_id=recording_id, remote=remote
    )
    assert not raw.exists()
    again = await process_recording(
        sqlite_db.sessions, media_root=settings.media_root, recording_id=recording_id, remote=remote
    )
    assert again["duration_s"] == first["duration_s"]
    assert remote.size(raw_key) == sample_webm.stat().st_size
    with sqlite_db.sessions() as session:
        assert session.get_one(Recording, recording_id).status == "ready"


async def test_an_unreachable_bucket_is_a_clear_503_and_loses_nothing(
    s3_endpoint: str, sqlite_db: DemoDatabase, tmp_path: Path, sample_webm: Path
) -> None:
    overrides = _s3_settings(s3_endpoint)
    app = make_test_app(sqlite_db, tmp_path, **overrides)
    settings: Settings = app.state.settings
    remote = remote_storage(settings)
    assert remote is not None
    remote.client.create_bucket(Bucket=remote.bucket)
    recording_id = await asyncio.to_thread(make_recording, sqlite_db, WCK_EN_4, status="recording")
    place_raw(sqlite_db, recording_id, settings.media_root, sample_webm)
    await process_recording(
        sqlite_db.sessions,
        media_root=settings.media_root,
        recording_id=recording_id,
        remote=remote,
        keep_local=False,
    )
    # The same library, but the storage server is down (nothing listens on port 9 here).
    down = make_test_app(
        sqlite_db, tmp_path, **{**overrides, "s3_endpoint_url": "http://127.0.0.1:9"}
    )
    with TestClient(down) as client:
        student = bearer(client, "student-cy-4-1")
        response = client.get(f"/api/recordings/{recording_id}/media", headers=student)
        assert response.status_code == 503, response.text
        error = response.json()["error"]
        assert error["code"] == "storage_unavailable" and "录像存储暂时无法访问" in error["message"]
        # the permission check still comes first, and the library itself keeps working
        assert client.get(f"/api/recordings/{recording_id}", headers=student).status_code == 200
    # back up: the recording is intact
    with TestClient(app) as client:
        student = bearer(client, "student-cy-4-1")
        whole = client.get(f"/api/recordings/{recording_id}/media", headers=student)
        assert whole.status_code == 200 and len(whole.content) > 10_000
