"""Server-rendered pages: login and each role's home (the full UI grows with later issues)."""

from __future__ import annotations

import secrets
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from common.accounts import service as accounts
from common.accounts.models import Account
from common.alliance import timetable
from common.alliance.models import (
    WEEKDAYS,
    Alliance,
    ClassroomTerminal,
    Room,
    School,
    SchoolClass,
    Student,
    Teacher,
)
from common.errors import AppError
from web.deps import SESSION_COOKIE, DbSession, MaybeAuth, SettingsDep
from web.routers.auth import LoginIn, _login, set_session_cookie

router = APIRouter(include_in_schema=False)
templates = Jinja2Templates(directory=Path(__file__).parent.parent / "templates")

ROLE_LABELS = {
    "bureau": "教育局",
    "alliance_admin": "教联体管理员",
    "school_admin": "学校管理员",
    "teacher": "教师",
    "terminal": "教室终端",
    "student": "学生",
}
DAY_LABELS = dict(
    zip(WEEKDAYS, ["周一", "周二", "周三", "周四", "周五", "周六", "周日"], strict=True)
)


@router.get("/login", response_class=HTMLResponse)
def login_page(request: Request, auth: MaybeAuth) -> Response:
    if auth is not None:
        return RedirectResponse("/", status_code=303)
    return templates.TemplateResponse(request, "login.html", {"error": None, "username": ""})


@router.post("/login", response_class=HTMLResponse)
def login_submit(
    request: Request,
    session: DbSession,
    settings: SettingsDep,
    username: Annotated[str, Form(max_length=64)] = "",
    password: Annotated[str, Form(max_length=200)] = "",
) -> Response:
    try:
        if not username or not password:
            raise AppError("请输入用户名和密码")
        account = _login(request, session, LoginIn(username=username, password=password))
    except AppError as exc:
        session.commit()  # keep the failure count
        return templates.TemplateResponse(
            request,
            "login.html",
            {"error": exc.message, "username": username},
            status_code=exc.status_code if exc.status_code != 400 else 422,
        )
    secret, _ = accounts.issue_token(
        session, account=account, kind="session", lifetime=timedelta(hours=settings.session_hours)
    )
    response = RedirectResponse("/", status_code=303)
    set_session_cookie(response, secret, settings)
    return response


@router.post("/logout")
def logout_submit(
    request: Request, session: DbSession, csrf_token: Annotated[str, Form()] = ""
) -> Response:
    # A form post carries its CSRF token in the body, so the cookie is checked here by hand.
    secret = request.cookies.get(SESSION_COOKIE)
    found = accounts.resolve_token(session, secret) if secret else None
    if found is not None:
        token = found[1]
        if not token.csrf_token or not secrets.compare_digest(csrf_token, token.csrf_token):
            return RedirectResponse("/", status_code=303)
        accounts.revoke_token(session, token)
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


def _count(session: Session, stmt: Any) -> int:
    return int(session.scalar(select(func.count()).select_from(stmt.subquery())) or 0)


def _overview(session: Session, account: Account) -> list[dict[str, Any]]:
    """Per-school counts for the schools this account administers or oversees."""
    stmt = select(School).order_by(School.alliance_id, School.id)
    if account.role == "alliance_admin":
        stmt = stmt.where(School.alliance_id == account.alliance_id)
    elif account.role == "school_admin":
        stmt = stmt.where(School.id == account.school_id)
    rows = []
    for school in session.scalars(stmt):
        rows.append(
            {
                "alliance": session.get_one(Alliance, school.alliance_id).name,
                "school": school.name,
                "classes": _count(
                    session, select(SchoolClass).where(SchoolClass.school_id == school.id)
                ),
                "teachers": _count(session, select(Teacher).where(Teacher.school_id == school.id)),
                "students": _count(
                    session,
                    select(Student).join(SchoolClass).where(SchoolClass.school_id == school.id),
                ),
                "sync_rooms": sum(
                    1
                    for room in session.scalars(
                        select(Room).join(Room.campus).where(Room.campus.has(school_id=school.id))
                    )
                    if "sync" in room.features
                ),
            }
        )
    return rows


def _my_week(session: Session, account: Account, principal: Any) -> timetable.Week | None:
    if account.role == "teacher" and account.teacher_id:
        return timetable.week(session, principal, teacher_id=account.teacher_id)
    if account.role == "student" and account.class_id:
        return timetable.week(session, principal, class_id=account.class_id)
    if account.role == "terminal" and account.terminal_id:
        terminal = session.get_one(ClassroomTerminal, account.terminal_id)
        return timetable.week(session, principal, room_id=terminal.room_id)
    return None


@router.get("/", response_class=HTMLResponse)
def home(request: Request, auth: MaybeAuth, session: DbSession) -> Response:
    if auth is None:
        return RedirectResponse("/login", status_code=303)
    account = auth.account
    scope_names = [
        name
        for name in (
            session.get_one(Alliance, account.alliance_id).name if account.alliance_id else None,
            session.get_one(School, account.school_id).name if account.school_id else None,
            session.get_one(SchoolClass, account.class_id).name if account.class_id else None,
        )
        if name
    ]
    week = _my_week(session, account, auth.principal)
    grid: dict[str, list[Any]] = {}
    if week is not None:
        for entry in week.entries:
            grid.setdefault(entry.day, []).append(entry)
    overview = (
        _overview(session, account)
        if account.role in ("bureau", "alliance_admin", "school_admin")
        else []
    )
    return templates.TemplateResponse(
        request,
        "home.html",
        {
            "account": account,
            "role_label": ROLE_LABELS.get(account.role, account.role),
            "scope_names": scope_names,
            "week": week,
            "grid": grid,
            "days": [d for d in WEEKDAYS[:5]],
            "day_labels": DAY_LABELS,
            "overview": overview,
            "csrf_token": auth.token.csrf_token or "",
        },
    )
