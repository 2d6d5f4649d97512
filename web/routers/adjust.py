"""调课: plan the fewest timetable changes for a teacher's absence on a date (API and page)."""

from __future__ import annotations

from dataclasses import asdict
from datetime import date
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select
from sqlalchemy.orm import Session

from common.accounts.permissions import Action, Kind, Principal, Scope, authorize, can
from common.alliance import service as registry
from common.alliance.models import Lesson, Teacher, Term
from common.alliance.resources import TERMS
from common.errors import NotFoundError
from scheduler.absence import AbsencePlan, Slot, Substitute, plan_absence
from web.deps import CurrentPrincipal, DbSession, MaybeAuth
from web.routers.pages import _denied, _render

router = APIRouter(tags=["timetable"])


class AbsenceIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    teacher_id: int = Field(ge=1)
    date: date
    substitute: Substitute = "none"
    time_limit: float = Field(default=5.0, ge=0.5, le=30.0)


def _slot_out(slot: Slot) -> dict[str, Any]:
    return asdict(slot) | {"date": slot.date.isoformat(), "label": slot.label}


def _plan_out(plan: AbsencePlan) -> dict[str, Any]:
    return {
        "teacher": plan.teacher,
        "date": plan.date.isoformat(),
        "weekday": plan.weekday,
        "must_move": plan.must_move,
        "moved": len(plan.moves),
        "moves": [
            asdict(m)
            | {"old": _slot_out(m.old), "new": _slot_out(m.new), "description": m.description}
            for m in plan.moves
        ],
        "substitutions": [
            asdict(s) | {"slot": _slot_out(s.slot), "description": s.description}
            for s in plan.substitutions
        ],
        "missed_sessions": plan.missed_sessions,
        "warnings": plan.warnings,
        "seconds": round(plan.seconds, 3),
    }


def _term_scope(session: Session, term_id: int) -> Scope:
    term = session.get(Term, term_id)
    if term is None:
        raise NotFoundError(f"学期 {term_id} 不存在")
    return Scope(alliance_id=term.alliance_id)


@router.post("/api/terms/{term_id}/timetable/absence-plan")
def absence_plan(
    term_id: int, body: AbsenceIn, principal: CurrentPrincipal, session: DbSession
) -> dict[str, Any]:
    """The fewest changes to the week of ``date`` so that the teacher teaches nothing that day
    (minimal perturbation; optionally a free colleague of the same subject substitutes).
    A plan to print and announce: the weekly timetable itself is not changed."""
    authorize(principal, Action.MANAGE, Kind.TIMETABLE, _term_scope(session, term_id))
    plan = plan_absence(
        session,
        term_id=term_id,
        teacher_id=body.teacher_id,
        day=body.date,
        substitute=body.substitute,
        time_limit=body.time_limit,
    )
    return _plan_out(plan)


def _managed_terms(session: Session, principal: Principal) -> list[Term]:
    terms = [
        term
        for term in registry.list_rows(session, principal, TERMS, limit=1000)
        if can(principal, Action.MANAGE, Kind.TIMETABLE, Scope(alliance_id=term.alliance_id))
    ]
    terms.sort(key=lambda t: (not t.is_current, -t.start_date.toordinal()))
    return terms


@router.get("/admin/adjust", response_class=HTMLResponse, include_in_schema=False)
def adjust_page(request: Request, auth: MaybeAuth, session: DbSession) -> Response:
    if auth is None:
        return RedirectResponse("/login", status_code=303)
    terms = _managed_terms(session, auth.principal)
    if not terms:
        return _denied(request, session, auth, "只有教联体管理员可以为本教联体调课。")
    term_ids = [t.id for t in terms]
    teachers = session.execute(
        select(Teacher.id, Teacher.name, Teacher.code, Lesson.term_id)
        .join(Lesson, Lesson.teacher_id == Teacher.id)
        .where(Lesson.term_id.in_(term_ids))
        .distinct()
        .order_by(Teacher.name)
    ).all()
    return _render(
        request,
        session,
        auth,
        "admin_adjust.html",
        {
            "terms": terms,
            "teachers": [
                {"id": t.id, "name": t.name, "code": t.code, "term_id": t.term_id} for t in teachers
            ],
            "today": date.today().isoformat(),
        },
    )
