"""Materials of 教研 sessions: upload (members), list, download, delete."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, File, UploadFile
from fastapi.responses import FileResponse
from sqlalchemy.orm import Session

from common.accounts.permissions import Principal
from common.alliance import service as crud
from common.errors import NotFoundError
from research import materials
from research.materials import ResearchMaterial
from research.models import ResearchGroup, ResearchSession
from research.resources import RESEARCH_SESSIONS
from web.deps import CurrentPrincipal, DbSession, SettingsDep

router = APIRouter(prefix="/api", tags=["research"])


def _session(
    session: Session, principal: Principal, session_id: int
) -> tuple[ResearchGroup, ResearchSession]:
    row: ResearchSession = crud.get(session, principal, RESEARCH_SESSIONS, session_id)
    return session.get_one(ResearchGroup, row.group_id), row


def _material(
    session: Session, principal: Principal, material_id: int
) -> tuple[ResearchGroup, ResearchSession, ResearchMaterial]:
    material = session.get(ResearchMaterial, material_id)
    if material is None:
        raise NotFoundError(f"资料 {material_id} 不存在")
    group, row = _session(session, principal, material.session_id)
    return group, row, material


def material_out(material: ResearchMaterial) -> dict[str, Any]:
    return {
        "id": material.id,
        "session_id": material.session_id,
        "filename": material.filename,
        "content_type": material.content_type,
        "size": material.size,
        "sha256": material.sha256,
        "uploaded_by": material.uploaded_by,
        "uploaded_at": material.created_at.isoformat(),
        "url": f"/api/research-materials/{material.id}",
    }


@router.get("/research-sessions/{session_id}/materials")
def list_materials(
    session_id: int, principal: CurrentPrincipal, session: DbSession
) -> list[dict[str, Any]]:
    _, row = _session(session, principal, session_id)
    return [material_out(m) for m in materials.materials_of(session, row.id)]


@router.post("/research-sessions/{session_id}/materials", status_code=201)
def upload_material(
    session_id: int,
    principal: CurrentPrincipal,
    session: DbSession,
    settings: SettingsDep,
    file: Annotated[UploadFile, File(description="PDF、Word、PowerPoint 或 Excel，50 MB 以内")],
) -> dict[str, Any]:
    group, row = _session(session, principal, session_id)
    material = materials.add_material(
        session,
        principal=principal,
        group=group,
        research_session=row,
        filename=file.filename or "",
        stream=file.file,
        media_root=settings.media_root,
    )
    try:
        session.commit()
    except BaseException:
        (settings.media_root / material.path).unlink(missing_ok=True)
        raise
    return material_out(material)


@router.get("/research-materials/{material_id}")
def download_material(
    material_id: int, principal: CurrentPrincipal, session: DbSession, settings: SettingsDep
) -> FileResponse:
    _, _, material = _material(session, principal, material_id)
    path = settings.media_root / material.path
    if not path.is_file():
        raise NotFoundError(f"资料「{material.filename}」的文件已不存在")
    return FileResponse(
        path,
        media_type=material.content_type,
        headers={"Content-Disposition": f"attachment; filename*=UTF-8''{quote(material.filename)}"},
    )


@router.delete("/research-materials/{material_id}", status_code=204)
def delete_material(
    material_id: int, principal: CurrentPrincipal, session: DbSession, settings: SettingsDep
) -> None:
    group, row, material = _material(session, principal, material_id)
    relative: Path = materials.remove_material(
        session, principal=principal, group=group, research_session=row, material=material
    )
    session.commit()
    (settings.media_root / relative).unlink(missing_ok=True)
