"""Retention per alliance (files deleted past N days unless kept; rows stay), editing entries,
and downloads — each behind the same permission checks."""

from __future__ import annotations

import re
from datetime import date, timedelta
from pathlib import Path
from urllib.parse import quote

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import select

from common.alliance.models import Alliance
from recordings import service
from recordings.models import Recording
from tests.conftest import DemoDatabase, bearer

pytestmark = pytest.mark.timeout(120)

WCK_EN_4 = 4  # 王村口 4-1 English, shown to student-cy-4-1
WCK_EN_3 = 2


def _recording(db: DemoDatabase, media_root: Path, *, group: int, age_days: int) -> int:
    with db.sessions() as session:
        recording = service.new_recording_for_sync_group(session, sync_group_id=group)
        recording.date = date.today() - timedelta(days=age_days)
        recording.status = "ready"
        recording.outputs = {"poster": "poster.jpg", "duration_s": 2.0}
        session.commit()
        folder = (media_root / recording.raw_path).parent
    folder.mkdir(parents=True)
    (folder / "raw.webm").write_bytes(b"\x1a\x45\xdf\xa3" + b"\0" * 2000)
    (folder / "poster.jpg").write_bytes(b"\xff\xd8 poster")
    return recording.id


def _wck(db: DemoDatabase) -> int:
    with db.sessions() as session:
        return session.scalars(
            select(Alliance.id).where(Alliance.name == "王村口老区教育联盟")
        ).one()


def test_only_the_alliances_admins_set_its_retention(client: TestClient, db: DemoDatabase) -> None:
    wck = _wck(db)
    url = f"/api/recordings/retention/{wck}"
    admin = bearer(client, "admin-wck")
    assert client.get(url, headers=admin).json() == {"alliance_id": wck, "keep_days": None}
    for username in ("principal-cy", "student-cy-4-1", "admin-sy", "bureau"):
        refused = client.put(url, json={"keep_days": 30}, headers=bearer(client, username))
        assert refused.status_code == 403, username
    assert client.put(url, json={"keep_days": 0}, headers=admin).status_code == 422
    assert client.put(url, json={"keep_days": 30}, headers=admin).json()["keep_days"] == 30
    assert client.get(url, headers=bearer(client, "principal-cy")).json()["keep_days"] == 30
    assert client.get(url, headers=bearer(client, "admin-sy")).status_code == 403
    assert client.put(url, json={"keep_days": None}, headers=admin).json()["keep_days"] is None


def test_expired_recordings_lose_their_files_but_keep_their_rows(
    client: TestClient, app: FastAPI, db: DemoDatabase
) -> None:
    media_root: Path = app.state.settings.media_root
    old = _recording(db, media_root, group=WCK_EN_4, age_days=40)
    kept = _recording(db, media_root, group=WCK_EN_4, age_days=40)
    recent = _recording(db, media_root, group=WCK_EN_4, age_days=5)
    admin = bearer(client, "admin-wck")
    student = bearer(client, "student-cy-4-1")
    assert (
        client.patch(f"/api/recordings/{kept}", json={"keep": True}, headers=student).status_code
        == 403
    )
    assert client.patch(f"/api/recordings/{kept}", json={"keep": True}, headers=admin).json()[
        "keep"
    ]
    client.put(f"/api/recordings/retention/{_wck(db)}", json={"keep_days": 30}, headers=admin)

    expired = service.expire_recordings(db.sessions, media_root=media_root, remote=None)
    assert expired == [old]
    assert not (media_root / f"recordings/{old}").exists()
    for alive in (kept, recent):
        assert (media_root / f"recordings/{alive}/raw.webm").exists()
    body = client.get(f"/api/recordings/{old}", headers=student).json()
    assert body["status"] == "expired" and body["media_deleted_at"] is not None
    assert body["media"] == {
        "mp4": None,
        "raw": None,
        "poster": None,
        "hls": None,
        "thumbnails": None,
    }
    for rendition in ("raw", "poster"):
        gone = client.get(f"/api/recordings/{old}/media?rendition={rendition}", headers=student)
        assert gone.status_code == 404
    assert (
        client.get(f"/api/recordings/{kept}/media?rendition=poster", headers=student).status_code
        == 200
    )
    # the row is still there to be counted; running again changes nothing
    listed = {r["id"] for r in client.get("/api/recordings", headers=admin).json()}
    assert {old, kept, recent} <= listed
    assert service.expire_recordings(db.sessions, media_root=media_root, remote=None) == []
    # a month later the recent one goes too, the kept one never
    later = date.today() + timedelta(days=30)
    assert service.expire_recordings(
        db.sessions, media_root=media_root, remote=None, today=later
    ) == [recent]
    with db.sessions() as session:
        assert session.get_one(Recording, kept).media_deleted_at is None


def test_edits_follow_permissions_and_search(
    client: TestClient, app: FastAPI, db: DemoDatabase
) -> None:
    recording = _recording(db, app.state.settings.media_root, group=WCK_EN_4, age_days=1)
    teacher_of_other_lesson = bearer(client, "principal-cy")  # sees it, does not run its school
    assert (
        client.patch(
            f"/api/recordings/{recording}", json={"topic": "x"}, headers=teacher_of_other_lesson
        ).status_code
        == 403
    )
    admin = bearer(client, "admin-wck")
    edited = client.patch(
        f"/api/recordings/{recording}", json={"topic": "勾股定理的证明"}, headers=admin
    )
    assert edited.status_code == 200 and edited.json()["topic"] == "勾股定理的证明"
    found = client.get("/api/recordings", params={"q": "勾股"}, headers=admin).json()
    assert [r["id"] for r in found] == [recording]
    assert (
        client.patch(f"/api/recordings/{recording}", json={"title": ""}, headers=admin).status_code
        == 422
    )


def test_downloads_are_attachments_named_after_the_lesson(
    client: TestClient, app: FastAPI, db: DemoDatabase
) -> None:
    media_root: Path = app.state.settings.media_root
    mine = _recording(db, media_root, group=WCK_EN_4, age_days=1)
    other = _recording(db, media_root, group=WCK_EN_3, age_days=1)
    student = bearer(client, "student-cy-4-1")
    saved = client.get(f"/api/recordings/{mine}/download", headers=student)
    assert saved.status_code == 200
    assert saved.content == (media_root / f"recordings/{mine}/raw.webm").read_bytes()
    with db.sessions() as session:
        title = session.get_one(Recording, mine).title
    expected = re.sub(r"\s+", "_", title) + ".webm"
    disposition = saved.headers["content-disposition"]
    assert disposition == f"attachment; filename*=utf-8''{quote(expected)}", disposition
    assert client.get(f"/api/recordings/{other}/download", headers=student).status_code == 403
