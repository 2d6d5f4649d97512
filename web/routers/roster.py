"""Roster import: the xlsx template and the all-or-nothing upload."""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated, Any

from fastapi import APIRouter, File, Form, UploadFile
from fastapi.responses import Response

from common.accounts.permissions import Action, Kind, authorize
from common.alliance.resources import SCHOOLS
from common.alliance.roster import MAX_FILE_BYTES, import_roster, roster_template
from common.alliance.service import load_scoped
from common.errors import PermissionDeniedError, ValidationFailedError
from web.deps import CurrentPrincipal, DbSession

router = APIRouter(prefix="/api", tags=["roster"])

XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
ADMIN_ROLES = frozenset({"bureau", "alliance_admin", "school_admin"})
# Everything an import may write, each checked against the school's scope.
ROSTER_KINDS = (Kind.ROOM, Kind.CLASS, Kind.TEACHER, Kind.STUDENT)


@router.get("/roster/template")
def template(principal: CurrentPrincipal) -> Response:
    """The blank 花名册 workbook for a school admin to fill in."""
    if principal.role not in ADMIN_ROLES:
        raise PermissionDeniedError("只有管理员可以下载花名册模板")
    return Response(
        roster_template(),
        media_type=XLSX,
        headers={"Content-Disposition": "attachment; filename*=UTF-8''roster-template.xlsx"},
    )


@router.post("/schools/{school_id}/roster")
def upload(
    school_id: int,
    principal: CurrentPrincipal,
    session: DbSession,
    file: Annotated[UploadFile, File(description="填好的花名册 .xlsx")],
    create_accounts: Annotated[bool, Form()] = False,
    default_password: Annotated[str | None, Form(max_length=200)] = None,
) -> dict[str, Any]:
    """Import rooms, classes, teachers and students; any bad row rejects the whole file."""
    _, scope = load_scoped(session, SCHOOLS, school_id)
    for kind in ROSTER_KINDS:
        authorize(principal, Action.MANAGE, kind, scope)
    data = file.file.read(MAX_FILE_BYTES + 1)
    if len(data) > MAX_FILE_BYTES:
        raise ValidationFailedError("文件超过 5 MB", field="file")
    result = import_roster(
        session,
        school_id=school_id,
        data=data,
        create_accounts=create_accounts,
        default_password=default_password or None,
    )
    return asdict(result)
