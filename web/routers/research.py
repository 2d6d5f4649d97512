"""教研 API beyond plain CRUD: term plans, rotation, attendance, minutes, invitations, quotas."""

from __future__ import annotations

from datetime import date, datetime

from fastapi import APIRouter
from fastapi.responses import Response
from sqlalchemy.orm import Session

from common.accounts.permissions import Principal
from common.alliance import service as crud
from research import schemas as s
from research import service
from research.invitations import session_invite
from research.models import Attendance, ResearchGroup, ResearchSession
from research.quotas import quota_report
from research.resources import RESEARCH_GROUPS, RESEARCH_SESSIONS, group_out
from web.deps import CurrentPrincipal, DbSession

router = APIRouter(prefix="/api", tags=["research"])


def _group(session: Session, principal: Principal, row_id: int) -> ResearchGroup:
    group: ResearchGroup = crud.get(session, principal, RESEARCH_GROUPS, row_id)
    return group


def _session(
    session: Session, principal: Principal, row_id: int
) -> tuple[ResearchGroup, ResearchSession]:
    row: ResearchSession = crud.get(session, principal, RESEARCH_SESSIONS, row_id)
    return session.get_one(ResearchGroup, row.group_id), row


def _session_out(row: ResearchSession) -> s.ResearchSessionOut:
    return s.ResearchSessionOut.model_validate(row)


def _attendance_out(row: Attendance) -> s.AttendanceOut:
    return s.AttendanceOut(
        teacher_id=row.teacher_id,
        teacher_name=row.teacher.name,
        joined_at=service.as_utc(row.joined_at),
        left_at=service.as_utc(row.left_at),
        seconds=row.seconds,
    )


@router.put("/research-groups/{row_id}/slot", response_model=s.ResearchGroupOut)
def set_slot(
    row_id: int, body: s.WeeklySlot, principal: CurrentPrincipal, session: DbSession
) -> s.ResearchGroupOut:
    """The leader picks the group's weekly time and online room."""
    group = _group(session, principal, row_id)
    service.authorize_lead(principal, group)
    service.set_slot(session, group=group, slot=body)
    session.flush()
    return group_out(group)


@router.post("/research-groups/{row_id}/plan", response_model=s.TermPlanOut)
def plan_term(
    row_id: int, body: s.TermPlanRequest, principal: CurrentPrincipal, session: DbSession
) -> s.TermPlanOut:
    """期初规划: (re)plan the term's sessions; held and cancelled sessions are kept."""
    group = _group(session, principal, row_id)
    service.authorize_lead(principal, group)
    plan = service.plan_term(
        session,
        group=group,
        term_id=body.term_id,
        topics=body.topics,
        absences=body.absences,
        swaps=[(swap.first, swap.second) for swap in body.swaps],
    )
    return s.TermPlanOut(
        group_id=group.id,
        term_id=body.term_id,
        kept=[_session_out(r) for r in plan.kept],
        planned=[_session_out(r) for r in plan.planned],
        removed=plan.removed,
    )


@router.get("/research-groups/{row_id}/rotation", response_model=s.RotationOut)
def rotation(
    row_id: int, principal: CurrentPrincipal, session: DbSession, term_id: int | None = None
) -> s.RotationOut:
    """轮流主办 so far: sessions each member hosted and is still to host."""
    group = _group(session, principal, row_id)
    return s.RotationOut(
        group_id=group.id,
        term_id=term_id,
        hosts=[
            s.HostTally(
                teacher_id=count.teacher.id,
                teacher_name=count.teacher.name,
                school_id=count.teacher.school_id,
                held=count.held,
                planned=count.planned,
                last_hosted=count.last_hosted,
            )
            for count in service.rotation(session, group=group, term_id=term_id)
        ],
    )


@router.get("/research-sessions/{row_id}/attendance", response_model=list[s.AttendanceOut])
def attendance(
    row_id: int, principal: CurrentPrincipal, session: DbSession
) -> list[s.AttendanceOut]:
    _, row = _session(session, principal, row_id)
    return [_attendance_out(a) for a in service.attendance_of(session, row.id)]


@router.post("/research-sessions/{row_id}/attendance", response_model=list[s.AttendanceOut])
def record_attendance(
    row_id: int, body: s.AttendanceReport, principal: CurrentPrincipal, session: DbSession
) -> list[s.AttendanceOut]:
    """Join/leave records (from the meeting); each teacher's time accumulates."""
    group, row = _session(session, principal, row_id)
    service.authorize_run(principal, group, row)
    for record in sorted(body.records, key=lambda r: r.joined_at):
        service.record_attendance(
            session, row.id, record.teacher_id, record.joined_at, record.left_at
        )
    return [_attendance_out(a) for a in service.attendance_of(session, row.id)]


@router.post("/research-sessions/{row_id}/minutes", response_model=s.ResearchSessionOut)
def write_minutes(
    row_id: int, body: s.SessionMinutes, principal: CurrentPrincipal, session: DbSession
) -> s.ResearchSessionOut:
    """The host's 纪要 after the session, and whether it was held or cancelled."""
    group, row = _session(session, principal, row_id)
    service.authorize_run(principal, group, row)
    service.write_minutes(session, row=row, minutes=body)
    session.flush()
    return _session_out(row)


@router.get("/research-sessions/{row_id}/invite.ics")
def invite(row_id: int, principal: CurrentPrincipal, session: DbSession) -> Response:
    group, row = _session(session, principal, row_id)
    return Response(
        session_invite(group, row),
        media_type="text/calendar; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="research-{row.id}.ics"'},
    )


@router.get("/quotas", response_model=s.QuotaReport)
def quotas(
    principal: CurrentPrincipal,
    session: DbSession,
    term_id: int | None = None,
    school_id: int | None = None,
    as_of: date | None = None,
) -> s.QuotaReport:
    """跟班听课 per teacher per month and 指导 per subject leader per member school."""
    return quota_report(
        session,
        principal,
        term_id=term_id,
        school_id=school_id,
        as_of=as_of or datetime.now(service.TIMEZONE).date(),
    )
