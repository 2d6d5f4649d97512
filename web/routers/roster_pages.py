"""花名册导入 page: a school admin uploads the filled-in workbook and sees every bad row."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from common.accounts.permissions import Action, Scope, can
from common.alliance import service as registry
from common.alliance.resources import SCHOOLS
from common.alliance.roster import MAX_FILE_BYTES
from web.deps import DbSession, MaybeAuth
from web.page_shell import denied, render
from web.routers.roster import ROSTER_KINDS

router = APIRouter(include_in_schema=False)


@router.get("/admin/roster", response_class=HTMLResponse)
def roster_page(request: Request, auth: MaybeAuth, session: DbSession) -> Response:
    if auth is None:
        return RedirectResponse("/login", status_code=303)
    principal = auth.principal
    schools = [
        school
        for school in registry.list_rows(session, principal, SCHOOLS, limit=1000)
        if all(
            can(
                principal,
                Action.MANAGE,
                kind,
                Scope(alliance_id=school.alliance_id, school_id=school.id),
            )
            for kind in ROSTER_KINDS
        )
    ]
    if not schools:
        return denied(request, session, auth, "只有学校或教联体管理员可以导入花名册。")
    return render(
        request,
        session,
        auth,
        "admin_roster.html",
        {"schools": schools, "max_mb": MAX_FILE_BYTES // (1024 * 1024)},
    )
