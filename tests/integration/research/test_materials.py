"""Materials of a 教研 session: real documents in, anything else refused, nothing half-saved."""

from __future__ import annotations

import hashlib
import io
import zipfile
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from common.accounts.models import Account
from research import materials
from research.materials import ResearchMaterial
from research.models import ResearchGroup, ResearchSession
from tests.conftest import DemoDatabase, bearer

PDF = b"%PDF-1.4\n1 0 obj<</Type/Catalog>>endobj\ntrailer<</Root 1 0 R>>\n%%EOF\n" * 20


def docx() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("[Content_Types].xml", "<Types/>")
        archive.writestr("word/document.xml", "<w:document/>")
    return buffer.getvalue()


def math_session(db: DemoDatabase) -> tuple[int, int, set[int]]:
    """(session id, group id, member teacher ids) of the 实验集团数学教研组 (teacher-ye leads)."""
    with db.sessions() as session:
        group = session.scalars(
            select(ResearchGroup).where(ResearchGroup.name == "实验集团数学教研组")
        ).one()
        row = session.scalars(
            select(ResearchSession).where(ResearchSession.group_id == group.id)
        ).first()
        assert row is not None
        return row.id, group.id, {m.id for m in group.members} | {group.leader_id or 0}


def outsider_teacher(db: DemoDatabase, members: set[int], alliance_of: str) -> str:
    """A teacher login of the same alliance as teacher-ye but not in the group."""
    with db.sessions() as session:
        ye = session.scalars(select(Account).where(Account.username == alliance_of)).one()
        for account in session.scalars(select(Account).order_by(Account.id)):
            if (
                account.role == "teacher"
                and account.alliance_id == ye.alliance_id
                and account.teacher_id not in members
            ):
                return account.username
    pytest.skip("every demo teacher of the alliance is in the group")


def upload(
    client: TestClient, session_id: int, headers: dict[str, str], name: str, data: bytes
) -> httpx.Response:
    response: httpx.Response = client.post(
        f"/api/research-sessions/{session_id}/materials",
        files={"file": (name, data, "application/octet-stream")},
        headers=headers,
    )
    return response


def stored_files(app: FastAPI) -> list[Path]:
    root = Path(app.state.settings.media_root) / "materials"
    return sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []


def rows(db: DemoDatabase) -> int:
    with db.sessions() as session:
        return session.scalar(select(func.count()).select_from(ResearchMaterial)) or 0


def test_a_member_shares_documents_that_members_download_intact(
    app: FastAPI, client: TestClient, db: DemoDatabase
) -> None:
    session_id, _, _ = math_session(db)
    ye = bearer(client, "teacher-ye")
    response = upload(client, session_id, ye, "教案：图形的运动.pdf", PDF)
    assert response.status_code == 201, response.text
    shared = response.json()
    assert shared["filename"] == "教案：图形的运动.pdf"
    assert shared["size"] == len(PDF) and shared["content_type"] == "application/pdf"
    assert shared["sha256"] == hashlib.sha256(PDF).hexdigest()
    word = upload(client, session_id, ye, "../../作业设计.docx", docx())
    assert word.status_code == 201, word.text
    assert word.json()["filename"] == "作业设计.docx"  # no folders in a stored name

    listed = client.get(f"/api/research-sessions/{session_id}/materials", headers=ye).json()
    assert [m["filename"] for m in listed] == ["教案：图形的运动.pdf", "作业设计.docx"]
    download = client.get(shared["url"], headers=ye)
    assert download.status_code == 200 and download.content == PDF
    assert "filename*=UTF-8''" in download.headers["content-disposition"]
    assert len(stored_files(app)) == 2


@pytest.mark.parametrize(
    ("name", "data", "message"),
    [
        ("setup.exe", b"MZ\x90\x00" * 100, "不支持的文件类型"),
        ("假的.pdf", b"MZ\x90\x00" * 100, "不是有效的 PDF"),
        ("假的.docx", PDF, "不是有效的 Word"),
        ("空的.pdf", b"", "文件是空的"),
        ("旧版.ppt", b"not an ole2 file at all", "不是有效的 PowerPoint"),
    ],
)
def test_anything_but_a_real_document_is_refused_and_nothing_remains(
    app: FastAPI, client: TestClient, db: DemoDatabase, name: str, data: bytes, message: str
) -> None:
    session_id, _, _ = math_session(db)
    response = upload(client, session_id, bearer(client, "teacher-ye"), name, data)
    assert response.status_code == 422, response.text
    assert message in response.json()["error"]["message"]
    assert response.json()["error"]["field"] == "file"
    assert rows(db) == 0 and stored_files(app) == []


def test_an_oversize_upload_stops_at_the_limit_and_leaves_nothing(
    app: FastAPI, client: TestClient, db: DemoDatabase, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(materials, "MAX_MATERIAL_BYTES", 64 * 1024)
    monkeypatch.setattr(materials, "CHUNK", 16 * 1024)
    session_id, _, _ = math_session(db)
    big = PDF + b"0" * (200 * 1024)
    response = upload(client, session_id, bearer(client, "teacher-ye"), "大文件.pdf", big)
    assert response.status_code == 422 and "超过" in response.json()["error"]["message"]
    assert rows(db) == 0 and stored_files(app) == []


def test_who_may_share_read_and_delete(app: FastAPI, client: TestClient, db: DemoDatabase) -> None:
    session_id, _, members = math_session(db)
    ye = bearer(client, "teacher-ye")  # the group's leader
    outsider = bearer(client, outsider_teacher(db, members, "teacher-ye"))
    refused = upload(client, session_id, outsider, "不是组员.pdf", PDF)
    assert refused.status_code == 403
    shared = upload(client, session_id, ye, "教案.pdf", PDF).json()
    # Staff of the alliance read the group's materials; pupils and other alliances do not.
    assert client.get(shared["url"], headers=outsider).status_code == 200
    for username in ("student-dj-4-1", "admin-wck"):
        headers = bearer(client, username)
        listed = client.get(f"/api/research-sessions/{session_id}/materials", headers=headers)
        assert listed.status_code in (403, 404), (username, listed.status_code)
        assert client.get(shared["url"], headers=headers).status_code in (403, 404)
    assert client.delete(shared["url"], headers=outsider).status_code == 403
    assert client.get(shared["url"]).status_code == 401
    assert client.delete(shared["url"], headers=ye).status_code == 204
    assert rows(db) == 0 and stored_files(app) == []
    assert client.get(shared["url"], headers=ye).status_code == 404
