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
from common.alliance.models import Lesson, Room, Teacher, Term, TimetableAdjustment
from common.alliance.resources import TERMS
from common.errors import NotFoundError, ValidationFailedError
from scheduler import adjustments
from scheduler.absence import AbsencePlan, Slot, Substitute, plan_absence
from web.deps import CurrentPrincipal, DbSession, MaybeAuth
from web.page_shell import denied, render

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
    Computed on the week as it stands (applied 调课 included); nothing is stored until the
    plan is applied (``absence-plan/apply``)."""
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


class MoveBody(BaseModel):
    model_config = ConfigDict(extra="ignore")
    lesson_id: int = Field(ge=1)
    old_date: date
    old_period: int = Field(ge=1)
    new_date: date
    new_period: int = Field(ge=1)
    new_room_code: str = Field(min_length=1, max_length=40)


class SubstitutionBody(BaseModel):
    model_config = ConfigDict(extra="ignore")
    lesson_id: int = Field(ge=1)
    date: date
    period: int = Field(ge=1)
    substitute_id: int = Field(ge=1)


class CancellationBody(BaseModel):
    model_config = ConfigDict(extra="ignore")
    lesson_id: int = Field(ge=1)
    date: date
    period: int = Field(ge=1)


class ApplyIn(BaseModel):
    """A computed plan (from ``absence-plan``) to store: each move, substitution and
    cancellation by lesson, date and the campus's period."""

    model_config = ConfigDict(extra="forbid")
    teacher_id: int = Field(ge=1)
    date: date
    reason: str = Field(default="", max_length=200)
    moves: list[MoveBody] = Field(default_factory=list, max_length=200)
    substitutions: list[SubstitutionBody] = Field(default_factory=list, max_length=200)
    cancellations: list[CancellationBody] = Field(default_factory=list, max_length=200)


def _adjustment_out(session: Session, adjustment: TimetableAdjustment) -> dict[str, Any]:
    rooms = dict(session.execute(select(Room.id, Room.name)).all())
    return {
        "id": adjustment.id,
        "term_id": adjustment.term_id,
        "date": adjustment.day.isoformat(),
        "teacher_id": adjustment.absent_teacher_id,
        "teacher": adjustment.absent_teacher.name,
        "reason": adjustment.reason,
        "status": adjustment.status,
        "created_by": adjustment.created_by,
        "created_at": adjustment.created_at.isoformat(),
        "items": [
            {
                "kind": item.kind,
                "lesson_id": item.lesson_id,
                "sync_group_id": item.sync_group_id,
                "old_date": item.old_date.isoformat(),
                "old_period": item.old_period,
                "new_date": item.new_date.isoformat() if item.new_date else None,
                "new_period": item.new_period,
                "new_room": rooms.get(item.new_room_id or 0),
                "substitute_id": item.substitute_teacher_id,
                "substitute": item.substitute_teacher.name if item.substitute_teacher else None,
                "description": adjustments.describe_item(item, rooms),
            }
            for item in adjustment.items
        ],
    }


def _reloaded(session: Session, adjustment: TimetableAdjustment) -> dict[str, Any]:
    found = adjustments.list_adjustments(
        session, term_id=adjustment.term_id, first=adjustment.day, last=adjustment.day
    )
    return _adjustment_out(session, next(a for a in found if a.id == adjustment.id))


@router.post("/api/terms/{term_id}/timetable/absence-plan/apply", status_code=201)
def apply_absence_plan(
    term_id: int, body: ApplyIn, principal: CurrentPrincipal, session: DbSession
) -> dict[str, Any]:
    """Store a computed plan as dated changes of the week (调课 applied). The plan is judged
    against the week as it stands now: stale or conflicting plans are refused (409)."""
    authorize(principal, Action.MANAGE, Kind.TIMETABLE, _term_scope(session, term_id))
    adjustment = adjustments.apply_plan(
        session,
        term_id=term_id,
        teacher_id=body.teacher_id,
        day=body.date,
        reason=body.reason,
        created_by=principal.account_id,
        moves=[adjustments.MoveIn(**m.model_dump()) for m in body.moves],
        substitutions=[adjustments.SubstitutionIn(**s.model_dump()) for s in body.substitutions],
        cancellations=[adjustments.CancellationIn(**c.model_dump()) for c in body.cancellations],
    )
    return _reloaded(session, adjustment)


@router.get("/api/terms/{term_id}/timetable/adjustments")
def list_adjustments(
    term_id: int,
    principal: CurrentPrincipal,
    session: DbSession,
    start: date | None = None,
    end: date | None = None,
) -> dict[str, Any]:
    """The term's applied and revoked adjustments whose absence date is in ``start`` … ``end``."""
    authorize(principal, Action.MANAGE, Kind.TIMETABLE, _term_scope(session, term_id))
    if start is not None and end is not None and start > end:
        raise ValidationFailedError("开始日期不能晚于结束日期", field="start")
    found = adjustments.list_adjustments(session, term_id=term_id, first=start, last=end)
    return {"adjustments": [_adjustment_out(session, a) for a in found]}


@router.delete("/api/terms/{term_id}/timetable/adjustments/{adjustment_id}")
def revoke_adjustment(
    term_id: int, adjustment_id: int, principal: CurrentPrincipal, session: DbSession
) -> dict[str, Any]:
    """撤销: the dates of this adjustment return to the weekly timetable."""
    authorize(principal, Action.MANAGE, Kind.TIMETABLE, _term_scope(session, term_id))
    adjustment = session.get(TimetableAdjustment, adjustment_id)
    if adjustment is None or adjustment.term_id != term_id:
        raise NotFoundError(f"调课记录 {adjustment_id} 不存在")
    adjustments.revoke_adjustment(session, adjustment=adjustment)
    return _reloaded(session, adjustment)


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
        return denied(request, session, auth, "只有教联体管理员可以为本教联体调课。")
    term_ids = [t.id for t in terms]
    teachers = session.execute(
        select(Teacher.id, Teacher.name, Teacher.code, Lesson.term_id)
        .join(Lesson, Lesson.teacher_id == Teacher.id)
        .where(Lesson.term_id.in_(term_ids))
        .distinct()
        .order_by(Teacher.name)
    ).all()
    return render(
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
