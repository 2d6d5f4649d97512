"""A 教研 meeting's recording in the library (SQLite and PostgreSQL): tagged with its session,
seen by the alliance's teachers, never by pupils nor other alliances; re-processing it
composes it again from the teachers' files."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import ColumnElement, select, update

from common.accounts import service as accounts
from common.accounts.models import Account
from recordings.meetings import (
    FINISH_LEASE_S,
    claim_to_finish,
    new_recording_for_research_session,
)
from recordings.models import Recording
from research.models import ResearchGroup, ResearchSession
from tests.conftest import DemoDatabase, make_test_app

pytestmark = pytest.mark.timeout(120)


def _token(db: DemoDatabase, *conditions: ColumnElement[bool]) -> dict[str, str]:
    with db.sessions() as session, session.begin():
        account = session.scalars(select(Account).where(*conditions).order_by(Account.id)).first()
        assert account is not None
        token = accounts.issue_token(session, account=account, kind="api", lifetime=None)[0]
    return {"Authorization": f"Bearer {token}"}


def _meeting_recording(db: DemoDatabase) -> tuple[int, int, int]:
    """(recording, alliance, host teacher) of a session hosted by a teacher with a login."""
    with db.sessions() as session, session.begin():
        hosts = {a.teacher_id for a in session.scalars(select(Account)) if a.teacher_id}
        row = next(
            r
            for r in session.scalars(select(ResearchSession).order_by(ResearchSession.id))
            if r.host_id in hosts
        )
        group = session.get_one(ResearchGroup, row.group_id)
        recording = new_recording_for_research_session(session, research_session_id=row.id)
        recording.status = "failed"
        assert row.recording_id == recording.id and row.host_id is not None
        assert recording.title.startswith(f"教研：{group.name} ")
        assert (recording.subject_id, recording.teacher_id) == (group.subject_id, row.host_id)
        return recording.id, group.alliance_id, row.host_id


def test_a_meeting_recording_is_for_teachers_only(client: TestClient, db: DemoDatabase) -> None:
    recording_id, alliance_id, host_id = _meeting_recording(db)
    host = _token(db, Account.teacher_id == host_id)
    pupil = _token(db, Account.role == "student", Account.alliance_id == alliance_id)
    stranger = _token(db, Account.role == "teacher", Account.alliance_id != alliance_id)
    assert client.get(f"/api/recordings/{recording_id}", headers=host).status_code == 200
    for refused in (pupil, stranger):
        assert client.get(f"/api/recordings/{recording_id}", headers=refused).status_code == 403
        listed = client.get("/api/recordings", headers=refused).json()
        assert recording_id not in {r["id"] for r in listed}
        again = client.post(f"/api/recordings/{recording_id}/process", headers=refused)
        assert again.status_code == 403


def _compose_until_it_fails(
    client: TestClient, recording_id: int, host: dict[str, str]
) -> dict[str, Any]:
    """Ask for the composition (重新处理) and return the recording once it says it failed."""
    assert client.post(f"/api/recordings/{recording_id}/process", headers=host).is_success
    deadline = time.monotonic() + 30
    while True:
        shown: dict[str, Any] = client.get(f"/api/recordings/{recording_id}", headers=host).json()
        if "会议录像合成失败" in shown["status_message"]:
            return shown
        assert time.monotonic() < deadline, shown
        time.sleep(0.2)


def test_reprocessing_a_meeting_composes_it_again(sqlite_db: DemoDatabase, tmp_path: Path) -> None:
    # SQLite only: the job opens its own connection, which sees only committed rows
    recording_id, _, host_id = _meeting_recording(sqlite_db)
    host = _token(sqlite_db, Account.teacher_id == host_id)
    with sqlite_db.sessions() as session, session.begin():  # left 录制中 by a killed process
        session.get_one(Recording, recording_id).status = "recording"
    assert claim_to_finish(sqlite_db.sessions, recording_id=recording_id)  # a finisher, alive
    with TestClient(make_test_app(sqlite_db, tmp_path)) as client:
        # its preview being made: a composition now would run beside it
        refused = client.post(f"/api/recordings/{recording_id}/process", headers=host)
        assert refused.status_code == 409, refused.text
        assert refused.json()["error"]["message"] == "正在处理中，请等待完成后再重新处理"
        with sqlite_db.sessions() as session, session.begin():  # the finisher died long ago
            session.execute(
                update(Recording)
                .where(Recording.id == recording_id)
                .values(updated_at=datetime.now(UTC) - timedelta(seconds=FINISH_LEASE_S + 5))
            )
        # here without any files: the composition fails, and says why
        message = _compose_until_it_fails(client, recording_id, host)
    assert "meeting.json" in message["status_message"]


def test_a_failed_composition_leaves_the_preview_playable(
    sqlite_db: DemoDatabase, tmp_path: Path
) -> None:
    recording_id, _, host_id = _meeting_recording(sqlite_db)
    with sqlite_db.sessions() as session, session.begin():
        recording = session.get_one(Recording, recording_id)
        recording.status = "ready"  # as publish_preview leaves it
        recording.outputs = {"meeting_version": "preview", "preview": "preview/preview.webm"}
        preview = tmp_path / "media" / Path(recording.raw_path).parent / "preview/preview.webm"
    preview.parent.mkdir(parents=True)
    preview.write_bytes(b"\x1a\x45\xdf\xa3 preview")
    host = _token(sqlite_db, Account.teacher_id == host_id)
    with TestClient(make_test_app(sqlite_db, tmp_path)) as client:
        # no teachers' files: the composition fails, and the preview stays
        shown = _compose_until_it_fails(client, recording_id, host)
        assert "仍可播放预览版" in shown["status_message"]
        assert shown["status"] == "ready" and shown["meeting_version"] == "preview"
        media = client.get(shown["media"]["raw"], headers=host)
        assert media.status_code == 200 and media.content == preview.read_bytes()
