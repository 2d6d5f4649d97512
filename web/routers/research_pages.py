"""教研 page: a teacher's research groups, the term's sessions (四定), minutes, and quotas."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy import select
from sqlalchemy.orm import Session, joinedload

from common.accounts.permissions import Principal
from common.alliance import service as registry
from common.alliance.models import Teacher
from common.alliance.timetable import current_term_id
from common.errors import AppError
from research import service
from research.materials import ResearchMaterial, may_share
from research.models import ResearchGroup, ResearchSession
from research.quotas import quota_report
from research.resources import RESEARCH_GROUPS
from streaming.access import (
    meeting_identity,
    meeting_room_id,
)
from web.deps import DbSession, MaybeAuth
from web.page_shell import denied, lesson_clock, render
from web.routers.pages import DAY_LABELS, meeting_open

router = APIRouter(include_in_schema=False)

STATUS_LABELS = {"planned": "计划", "held": "已举行", "cancelled": "已取消"}


def _my_groups(session: Session, principal: Principal) -> list[ResearchGroup]:
    groups = registry.list_rows(session, principal, RESEARCH_GROUPS, limit=1000)
    if principal.role != "teacher":
        return groups
    mine = principal.teacher_id
    return [g for g in groups if g.leader_id == mine or any(m.id == mine for m in g.members)]


def _session_rows(
    session: Session,
    principal: Principal,
    groups: list[ResearchGroup],
    today: date,
    now: datetime | None = None,
) -> list[dict[str, Any]]:
    by_id = {g.id: g for g in groups}
    term_ids = {current_term_id(session, g.alliance_id) for g in groups}
    rows = session.scalars(
        select(ResearchSession)
        .where(ResearchSession.group_id.in_(by_id), ResearchSession.term_id.in_(term_ids))
        .options(joinedload(ResearchSession.host))
        .order_by(ResearchSession.day, ResearchSession.start_time)
    ).all()
    shared: dict[int, list[ResearchMaterial]] = {}
    for material in session.scalars(
        select(ResearchMaterial)
        .where(ResearchMaterial.session_id.in_([row.id for row in rows]))
        .order_by(ResearchMaterial.created_at, ResearchMaterial.id)
    ):
        shared.setdefault(material.session_id, []).append(material)
    out = []
    for row in rows:
        group = by_id[row.group_id]
        may_run = service.may_run_session(principal, group, row)
        out.append(
            {
                "id": row.id,
                "day": row.day,
                "weekday": DAY_LABELS[
                    ("mon", "tue", "wed", "thu", "fri", "sat", "sun")[row.day.weekday()]
                ],
                "start": row.start_time.strftime("%H:%M"),
                "minutes": row.minutes,
                "group": group.name,
                "topic": row.topic,
                "host": row.host.name if row.host else "",
                "host_is_me": principal.teacher_id is not None
                and row.host_id == principal.teacher_id,
                "place": row.place or group.online_room,
                "status": row.status,
                "status_label": STATUS_LABELS.get(row.status, row.status),
                "minutes_text": row.minutes_text,
                "upcoming": row.day >= today,
                "may_run": may_run,
                "materials": [
                    {"id": m.id, "filename": m.filename, "kb": max(1, m.size // 1024)}
                    for m in shared.get(row.id, [])
                ],
                "may_share": may_share(principal, group, row),
                # the meeting's recording in the library (pupils never see research recordings)
                "recording_id": row.recording_id
                if principal.role not in ("student", "terminal")
                else None,
                "meeting_open": now is not None
                and principal.role not in ("student", "terminal")
                and meeting_open(row, may_run=may_run, now=now),
            }
        )
    return out


@router.get("/research", response_class=HTMLResponse)
def research_page(request: Request, auth: MaybeAuth, session: DbSession) -> Response:
    if auth is None:
        return RedirectResponse("/login", status_code=303)
    principal = auth.principal
    if principal.role in ("student", "terminal"):
        return denied(request, session, auth, "教研活动面向教师和管理人员。")
    try:
        groups = _my_groups(session, principal)
    except AppError as exc:
        return denied(request, session, auth, exc.message)
    now = lesson_clock(request).now()
    today = now.date()
    sessions = _session_rows(session, principal, groups, today, now) if groups else []
    quotas = None
    if principal.role == "teacher" and principal.alliance_id is not None:
        try:
            report = quota_report(session, principal, term_id=None, as_of=today)
        except AppError:
            report = None
        if report is not None:
            mine = principal.teacher_id
            quotas = {
                "sit_in": [q for q in report.sit_in if q.teacher_id == mine],
                "guidance": [q for q in report.guidance if q.teacher_id == mine],
            }
    teacher = (
        session.get(Teacher, principal.teacher_id) if principal.teacher_id is not None else None
    )
    return render(
        request,
        session,
        auth,
        "research.html",
        {
            "groups": [
                {
                    "name": g.name,
                    "grade_band": g.grade_band,
                    "leader": g.leader.name if g.leader else "",
                    "members": len(g.members),
                    "slot": f"{DAY_LABELS.get(g.weekday, g.weekday)} "
                    f"{g.start_time.strftime('%H:%M')}（{g.minutes} 分钟）",
                    "room": g.online_room,
                    "i_lead": teacher is not None and g.leader_id == teacher.id,
                }
                for g in groups
            ],
            "upcoming": [s for s in sessions if s["upcoming"]],
            "past": [s for s in sessions if not s["upcoming"]][::-1],
            "quotas": quotas,
        },
    )


@router.get("/research/sessions/{session_id}/meeting", response_class=HTMLResponse)
def meeting_page(
    request: Request, session_id: int, auth: MaybeAuth, session: DbSession
) -> Response:
    """The online 教研 meeting: everyone's tiles, the active speaker large, host controls."""
    if auth is None:
        return RedirectResponse("/login", status_code=303)
    try:
        identity = meeting_identity(
            session,
            auth.principal,
            session_id,
            display_name=auth.account.display_name,
            now=lesson_clock(request).now(),
        )
    except AppError as exc:
        return denied(request, session, auth, exc.message)
    row = session.get_one(ResearchSession, session_id)
    group = session.get_one(ResearchGroup, row.group_id)
    return render(
        request,
        session,
        auth,
        "meeting.html",
        {
            "meeting": {
                "id": row.id,
                "room": meeting_room_id(row.id),
                "group": group.name,
                "topic": row.topic,
                "host": row.host.name if row.host else "",
                "day": row.day,
                "start": row.start_time.strftime("%H:%M"),
                "minutes": row.minutes,
                "place": row.place or group.online_room,
            },
            "my_role": identity.role,
            "is_host": identity.host,
        },
    )
