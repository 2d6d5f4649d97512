"""The frame every server-rendered page shares: templates, the navigation by role, rendering
with the account's header, the refusal page, and the clock lesson rooms open by.

Routers of pages import these from here (not from one another).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import Response
from fastapi.templating import Jinja2Templates
from sqlalchemy.orm import Session

from common.accounts.models import Account
from common.alliance.models import Alliance, School, SchoolClass
from streaming.lifecycle import LessonClock
from web.deps import Authenticated

templates = Jinja2Templates(directory=Path(__file__).parent / "templates")

ROLE_LABELS = {
    "bureau": "教育局",
    "alliance_admin": "教联体管理员",
    "school_admin": "学校管理员",
    "teacher": "教师",
    "terminal": "教室终端",
    "student": "学生",
}
ADMIN_ROLES = frozenset({"bureau", "alliance_admin", "school_admin"})
PASSWORD_ROLES = frozenset(ROLE_LABELS) - {"terminal"}


@dataclass(frozen=True)
class NavItem:
    href: str
    label: str
    roles: frozenset[str]


NAV = (
    NavItem("/", "我的课表", frozenset({"teacher", "student", "terminal"})),
    NavItem("/", "概况", ADMIN_ROLES),
    NavItem("/admin/schools", "学校与校区", ADMIN_ROLES),
    NavItem("/admin/rooms", "教室与终端", ADMIN_ROLES),
    NavItem("/admin/lessons", "教学任务", ADMIN_ROLES),
    NavItem("/admin/bells", "作息时间", ADMIN_ROLES),
    NavItem("/admin/accounts", "账号", ADMIN_ROLES),
    NavItem("/admin/roster", "导入花名册", frozenset({"alliance_admin", "school_admin"})),
    NavItem("/admin/sync-groups", "同步课堂设置", frozenset({"alliance_admin"})),
    NavItem("/admin/solve", "课表求解", frozenset({"alliance_admin"})),
    NavItem("/admin/adjust", "调课", frozenset({"alliance_admin"})),
    NavItem("/lessons", "同步课堂", frozenset({"teacher"})),
    NavItem("/research", "教研", frozenset({"teacher"}) | ADMIN_ROLES),
    NavItem("/patrol", "巡课", ADMIN_ROLES),
    NavItem("/dashboard", "数据看板", ADMIN_ROLES),
    NavItem("/replays", "录像回放", frozenset({"teacher"}) | ADMIN_ROLES),
    NavItem("/password", "修改密码", PASSWORD_ROLES),
)


def _scope_names(session: Session, account: Account) -> list[str]:
    names = (
        session.get_one(Alliance, account.alliance_id).name if account.alliance_id else None,
        session.get_one(School, account.school_id).name if account.school_id else None,
        session.get_one(SchoolClass, account.class_id).name if account.class_id else None,
    )
    return [name for name in names if name]


def render(
    request: Request,
    session: Session,
    auth: Authenticated,
    template: str,
    context: dict[str, Any],
    *,
    status_code: int = 200,
) -> Response:
    role = auth.account.role
    path = request.url.path
    nav = [
        {
            "href": item.href,
            "label": item.label,
            "current": item.href == path or (item.href != "/" and path.startswith(item.href + "/")),
        }
        for item in NAV
        if role in item.roles
    ]
    return templates.TemplateResponse(
        request,
        template,
        {
            "account": auth.account,
            "role_label": ROLE_LABELS.get(role, role),
            "scope_names": _scope_names(session, auth.account),
            "nav": nav,
            "csrf_token": auth.token.csrf_token or "",
            **context,
        },
        status_code=status_code,
    )


def denied(request: Request, session: Session, auth: Authenticated, message: str) -> Response:
    return render(
        request,
        session,
        auth,
        "denied.html",
        {"title": "没有权限", "message": message},
        status_code=403,
    )


def lesson_clock(request: Request) -> LessonClock:
    """The clock rooms open by: the app's (tests fix it), else the scheduler's, else real time."""
    state = request.app.state
    for clock in (
        getattr(state, "lesson_clock", None),
        getattr(getattr(state, "lesson_scheduler", None), "clock", None),
    ):
        if isinstance(clock, LessonClock):
            return clock
    return LessonClock()
