"""Materials of a 教研 session: the lesson plan, slides, worksheets shared before or after it.

A file is accepted only when its content is what its name says (PDF, Word, PowerPoint,
Excel: the modern zip formats and the legacy OLE2 ones) and it is at most
``MAX_MATERIAL_BYTES``. The upload streams to a temporary file under the media root while
its size and SHA-256 are taken, and becomes visible only when both the file is in place and
its row is committed: a rejected or interrupted upload leaves neither behind.
"""

from __future__ import annotations

import hashlib
import os
import re
import uuid
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from sqlalchemy import ForeignKey, Integer, String, func, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from common.accounts.permissions import Action, Kind, Principal, can
from common.db import Base, TimestampMixin
from common.errors import PermissionDeniedError, ValidationFailedError
from research import service
from research.models import ResearchGroup, ResearchSession

MAX_MATERIAL_BYTES = 50 * 1024 * 1024
MAX_MATERIALS_PER_SESSION = 30
CHUNK = 1024 * 1024
OLE2_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"


@dataclass(frozen=True)
class DocumentType:
    label: str
    content_type: str
    zip_folder: str | None  # the folder an OOXML file must contain; None: not a zip format


DOCUMENT_TYPES: dict[str, DocumentType] = {
    ".pdf": DocumentType("PDF", "application/pdf", None),
    ".docx": DocumentType(
        "Word",
        "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        "word/",
    ),
    ".pptx": DocumentType(
        "PowerPoint",
        "application/vnd.openxmlformats-officedocument.presentationml.presentation",
        "ppt/",
    ),
    ".xlsx": DocumentType(
        "Excel", "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet", "xl/"
    ),
    ".doc": DocumentType("Word", "application/msword", None),
    ".ppt": DocumentType("PowerPoint", "application/vnd.ms-powerpoint", None),
    ".xls": DocumentType("Excel", "application/vnd.ms-excel", None),
}
ALLOWED_LABEL = "PDF、Word（doc/docx）、PowerPoint（ppt/pptx）、Excel（xls/xlsx）"


class ResearchMaterial(TimestampMixin, Base):
    """One file attached to a research session."""

    __tablename__ = "research_materials"

    id: Mapped[int] = mapped_column(primary_key=True)
    session_id: Mapped[int] = mapped_column(
        ForeignKey("research_sessions.id", ondelete="CASCADE"), index=True
    )
    filename: Mapped[str] = mapped_column(String(200))
    content_type: Mapped[str] = mapped_column(String(100))
    size: Mapped[int] = mapped_column(Integer)
    sha256: Mapped[str] = mapped_column(String(64))
    # Relative to the media root, e.g. materials/12/3f2a….pdf
    path: Mapped[str] = mapped_column(String(300))
    uploaded_by: Mapped[int | None] = mapped_column(
        ForeignKey("accounts.id", ondelete="SET NULL"), default=None
    )


def _extension(filename: str) -> str:
    return os.path.splitext(filename)[1].lower()


def clean_filename(filename: str) -> str:
    """The name shown and offered on download: no folders, no control characters."""
    name = re.sub(r"[\x00-\x1f\x7f/\\]", "", os.path.basename(filename.replace("\\", "/")))
    name = name.strip().strip(".") or "资料"
    if len(name) > 150:
        stem, ext = os.path.splitext(name)
        name = stem[: 150 - len(ext)] + ext
    return name


def document_type(filename: str) -> DocumentType:
    found = DOCUMENT_TYPES.get(_extension(filename))
    if found is None:
        raise ValidationFailedError(
            f"不支持的文件类型「{_extension(filename) or '无扩展名'}」：只能上传 {ALLOWED_LABEL}",
            field="file",
        )
    return found


def _check_content(path: Path, filename: str, kind: DocumentType) -> None:
    """The bytes must be the format the name claims (a renamed .exe is not a PDF)."""
    with path.open("rb") as handle:
        head = handle.read(8)
    ext = _extension(filename)
    if ext == ".pdf":
        ok = head.startswith(b"%PDF-")
    elif kind.zip_folder is not None:
        ok = False
        if head.startswith(b"PK\x03\x04") and zipfile.is_zipfile(path):
            try:
                with zipfile.ZipFile(path) as archive:
                    names = archive.namelist()
                ok = "[Content_Types].xml" in names and any(
                    n.startswith(kind.zip_folder) for n in names
                )
            except zipfile.BadZipFile:
                ok = False
    else:
        ok = head == OLE2_MAGIC
    if not ok:
        raise ValidationFailedError(
            f"文件内容不是有效的 {kind.label} 文件（{filename}），请确认文件没有损坏或改过扩展名",
            field="file",
        )


def may_read(principal: Principal, group: ResearchGroup) -> bool:
    return can(principal, Action.READ, Kind.RESEARCH, service.group_scope(group))


def may_share(
    principal: Principal, group: ResearchGroup, research_session: ResearchSession
) -> bool:
    """Members of the group share materials; so do those who may run the session."""
    if not may_read(principal, group):
        return False
    if service.may_run_session(principal, group, research_session):
        return True
    return principal.teacher_id is not None and any(
        member.id == principal.teacher_id for member in group.members
    )


def _chunks(stream: BinaryIO) -> Iterator[bytes]:
    while chunk := stream.read(CHUNK):
        yield chunk


def add_material(
    session: Session,
    *,
    principal: Principal,
    group: ResearchGroup,
    research_session: ResearchSession,
    filename: str,
    stream: BinaryIO,
    media_root: Path,
) -> ResearchMaterial:
    """Store the upload and its row (the caller commits); on any error nothing remains."""
    if not may_share(principal, group, research_session):
        raise PermissionDeniedError("只有本教研组成员、主持人和管理员可以上传资料")
    name = clean_filename(filename)
    kind = document_type(name)
    count = session.scalar(
        select(func.count())
        .select_from(ResearchMaterial)
        .where(ResearchMaterial.session_id == research_session.id)
    )
    if (count or 0) >= MAX_MATERIALS_PER_SESSION:
        raise ValidationFailedError(
            f"每次教研最多 {MAX_MATERIALS_PER_SESSION} 份资料，请先删除不用的", field="file"
        )
    folder = media_root / "materials" / str(research_session.id)
    folder.mkdir(parents=True, exist_ok=True)
    final = folder / f"{uuid.uuid4().hex}{_extension(name)}"
    partial = final.with_name(final.name + ".part")
    digest = hashlib.sha256()
    size = 0
    try:
        with partial.open("wb") as out:
            for chunk in _chunks(stream):
                size += len(chunk)
                if size > MAX_MATERIAL_BYTES:
                    raise ValidationFailedError(
                        f"文件超过 {MAX_MATERIAL_BYTES // (1024 * 1024)} MB", field="file"
                    )
                digest.update(chunk)
                out.write(chunk)
        if size == 0:
            raise ValidationFailedError("文件是空的", field="file")
        _check_content(partial, name, kind)
        os.replace(partial, final)
        row = ResearchMaterial(
            session_id=research_session.id,
            filename=name,
            content_type=kind.content_type,
            size=size,
            sha256=digest.hexdigest(),
            path=str(final.relative_to(media_root)),
            uploaded_by=principal.account_id,
        )
        session.add(row)
        session.flush()
    except BaseException:
        partial.unlink(missing_ok=True)
        final.unlink(missing_ok=True)
        raise
    return row


def materials_of(session: Session, research_session_id: int) -> list[ResearchMaterial]:
    return list(
        session.scalars(
            select(ResearchMaterial)
            .where(ResearchMaterial.session_id == research_session_id)
            .order_by(ResearchMaterial.created_at, ResearchMaterial.id)
        )
    )


def remove_material(
    session: Session,
    *,
    principal: Principal,
    group: ResearchGroup,
    research_session: ResearchSession,
    material: ResearchMaterial,
) -> Path:
    """Delete the row (the caller commits, then removes the returned file)."""
    own = material.uploaded_by is not None and material.uploaded_by == principal.account_id
    if not (own or service.may_run_session(principal, group, research_session)):
        raise PermissionDeniedError("只有上传者、主持人、教研组长或管理员可以删除资料")
    session.delete(material)
    session.flush()
    return Path(material.path)
