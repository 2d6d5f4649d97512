"""Weekly timetables: read, export (xlsx / ICS / printable HTML), and calendar feeds for phones."""

from __future__ import annotations

import secrets
from dataclasses import asdict
from datetime import date, timedelta
from typing import Any, Literal

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from common.accounts import service as accounts
from common.accounts.models import Account, AuthToken
from common.accounts.permissions import Action, Kind, Principal, Scope, authorize
from common.alliance import timetable
from common.alliance.models import (
    Campus,
    ClassroomTerminal,
    Room,
    School,
    SchoolClass,
    Teacher,
    Term,
)
from common.errors import AuthenticationError, NotFoundError, ValidationFailedError
from common.jobs import JobQueue
from scheduler.adjustments import dated_view_entries, dated_week_entries, load_term
from scheduler.alliance_bridge import current_solution, problem_from_alliance
from scheduler.io.exports import TermCalendar, to_html, to_ics, to_xlsx
from scheduler.service import SOLVE_JOB, solve_job_id, term_of_job
from web.deps import Auth, CurrentPrincipal, DbSession, principal_of

router = APIRouter(tags=["timetable"])

ExportKind = Literal["class", "teacher", "room", "campus"]
ExportFormat = Literal["xlsx", "ics", "html"]
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
FEED_LIFETIME = timedelta(days=400)


@router.get("/api/timetable/week")
def week(
    principal: CurrentPrincipal,
    session: DbSession,
    class_id: int | None = None,
    teacher_id: int | None = None,
    room_id: int | None = None,
    term_id: int | None = None,
    week: date | None = None,
) -> dict[str, Any]:
    """A class's, teacher's or room's week with wall-clock times and sync partners; with
    ``week`` (any date of it) the dated week with its applied 调课
    (``adjusted``, ``substitute``)."""
    result = timetable.week(
        session,
        principal,
        class_id=class_id,
        teacher_id=teacher_id,
        room_id=room_id,
        term_id=term_id,
        week_of=week,
    )
    return asdict(result)


def _scope_of_code(session: Session, kind: ExportKind, code: str) -> Scope:
    """Where a class/teacher/room/campus (by its code) lives, for the permission check."""
    if kind == "class":
        school_class = session.scalar(select(SchoolClass).where(SchoolClass.code == code))
        if school_class is None:
            raise NotFoundError(f"班级 {code} 不存在")
        school = session.get_one(School, school_class.school_id)
        return Scope(school.alliance_id, school.id, class_id=school_class.id)
    if kind == "teacher":
        teacher = session.scalar(select(Teacher).where(Teacher.code == code))
        if teacher is None:
            raise NotFoundError(f"教师 {code} 不存在")
        school = session.get_one(School, teacher.school_id)
        return Scope(school.alliance_id, school.id)
    if kind == "room":
        room = session.scalar(select(Room).where(Room.code == code))
        if room is None:
            raise NotFoundError(f"教室 {code} 不存在")
        school = session.get_one(School, session.get_one(Campus, room.campus_id).school_id)
        return Scope(school.alliance_id, school.id)
    campus = session.scalar(select(Campus).where(Campus.code == code))
    if campus is None:
        raise NotFoundError(f"校区 {code} 不存在")
    school = session.get_one(School, campus.school_id)
    return Scope(school.alliance_id, school.id)


def term_calendar(term: Term) -> TermCalendar:
    return TermCalendar(
        start=term.start_date,
        end=term.end_date,
        holidays=frozenset(d.day for d in term.calendar_days if d.kind == "holiday"),
        makeup={
            d.day: d.follows_weekday
            for d in term.calendar_days
            if d.kind == "makeup" and d.follows_weekday
        },
    )


def _export(
    session: Session,
    principal: Principal,
    *,
    kind: ExportKind,
    key: str,
    fmt: ExportFormat,
    term_id: int | None,
    week: date | None = None,
) -> Response:
    scope = _scope_of_code(session, kind, key)
    authorize(principal, Action.READ, Kind.TIMETABLE, scope)
    assert scope.alliance_id is not None
    term = session.get(
        Term,
        term_id if term_id is not None else timetable.current_term_id(session, scope.alliance_id),
    )
    if term is None or term.alliance_id != scope.alliance_id:
        raise NotFoundError("学期不存在")
    problem = problem_from_alliance(session, term_id=term.id).problem
    solution = current_solution(session, term_id=term.id)
    filename = f"timetable-{kind}-{key}"
    # One dated week (applied 调课 included) instead of the weekly pattern.
    dated = (
        {key: dated_week_entries(session, load_term(session, term.id), problem, kind, key, week)}
        if week is not None
        else None
    )
    if dated is not None:
        filename += f"-{week}"
    if fmt == "xlsx":
        return Response(
            to_xlsx(problem, solution, kind, [key], dated),
            media_type=XLSX,
            headers={"Content-Disposition": f'attachment; filename="{filename}.xlsx"'},
        )
    if fmt == "ics":
        on_dates = dated_view_entries(session, load_term(session, term.id), problem, kind, key)
        return Response(
            to_ics(problem, solution, kind, key, term_calendar(term), on_dates),
            media_type="text/calendar; charset=utf-8",
            headers={"Content-Disposition": f'attachment; filename="{filename}.ics"'},
        )
    return HTMLResponse(to_html(problem, solution, kind, [key], dated))


@router.get("/api/timetable/export")
def export(
    principal: CurrentPrincipal,
    session: DbSession,
    kind: ExportKind,
    key: str,
    format: ExportFormat = "xlsx",
    term_id: int | None = None,
    week: date | None = None,
) -> Response:
    """The stored timetable of one class/teacher/room/campus (by code) as xlsx, ICS or HTML;
    xlsx/HTML with ``week`` (any date of it) print that dated week with its applied 调课.
    The ICS calendar always carries every applied 调课 on its dates."""
    return _export(session, principal, kind=kind, key=key, fmt=format, term_id=term_id, week=week)


def _feed_subject(session: Session, account: Account) -> tuple[ExportKind, str]:
    if account.role == "teacher" and account.teacher_id:
        return "teacher", session.get_one(Teacher, account.teacher_id).code
    if account.role == "student" and account.class_id:
        return "class", session.get_one(SchoolClass, account.class_id).code
    if account.role == "terminal" and account.terminal_id:
        room = session.get_one(
            Room, session.get_one(ClassroomTerminal, account.terminal_id).room_id
        )
        return "room", room.code
    raise ValidationFailedError("只有教师、学生和教室终端有个人课表订阅")


@router.post("/api/calendar/feed")
def create_feed(request: Request, auth: Auth, session: DbSession) -> dict[str, str]:
    """A private calendar URL for a phone; asking again replaces (and revokes) the old one."""
    _feed_subject(session, auth.account)
    for old in session.scalars(
        select(AuthToken).where(
            AuthToken.account_id == auth.account.id, AuthToken.kind == "calendar"
        )
    ):
        old.revoked = True
    secret, _ = accounts.issue_token(
        session, account=auth.account, kind="calendar", lifetime=FEED_LIFETIME
    )
    return {"url": str(request.url_for("calendar_feed", token=f"{secret}.ics"))}


@router.get("/calendar/{token}", name="calendar_feed", include_in_schema=False)
def calendar_feed(token: str, session: DbSession) -> Response:
    """The subscribed calendar. The URL is the credential: it reads one timetable, nothing else."""
    found = accounts.resolve_token(session, token.removesuffix(".ics"))
    if found is None or found[1].kind != "calendar":
        raise AuthenticationError("订阅链接无效或已失效，请在课表页面重新生成")
    account = found[0]
    kind, key = _feed_subject(session, account)
    return _export(session, principal_of(account), kind=kind, key=key, fmt="ics", term_id=None)


class SolveIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    time_limit: float = Field(default=30.0, ge=1.0, le=600.0)
    seed: int = Field(default=0, ge=0)


def _term_scope(session: Session, term_id: int) -> Scope:
    term = session.get(Term, term_id)
    if term is None:
        raise NotFoundError(f"学期 {term_id} 不存在")
    return Scope(alliance_id=term.alliance_id)


@router.post("/api/terms/{term_id}/timetable/solve", status_code=202)
async def start_solve(
    request: Request, term_id: int, body: SolveIn, principal: CurrentPrincipal, session: DbSession
) -> dict[str, Any]:
    """Start solving the term's timetable in the background; poll the job for progress."""
    scope = await run_in_threadpool(_term_scope, session, term_id)  # off the SFU's loop
    authorize(principal, Action.MANAGE, Kind.TIMETABLE, scope)
    queue: JobQueue = request.app.state.jobs
    job_id = await queue.enqueue(
        SOLVE_JOB,
        job_id=solve_job_id(term_id, secrets.token_hex(6)),
        term_id=term_id,
        time_limit=body.time_limit,
        seed=body.seed,
    )
    return {"job_id": job_id, "status_url": f"/api/jobs/{job_id}"}


def _job_scope(session: Session, job_id: str) -> Scope:
    term_id = term_of_job(job_id)
    if term_id is None:
        raise NotFoundError("任务不存在")
    return _term_scope(session, term_id)


@router.get("/api/jobs/{job_id}")
async def job_status(
    request: Request, job_id: str, principal: CurrentPrincipal, session: DbSession
) -> dict[str, Any]:
    """A background job's state, progress (0..1), message, ETA and result."""
    scope = await run_in_threadpool(_job_scope, session, job_id)
    authorize(principal, Action.READ, Kind.TIMETABLE, scope)
    queue: JobQueue = request.app.state.jobs
    status = await queue.status(job_id)
    return status.model_dump(mode="json")


@router.post("/api/jobs/{job_id}/cancel")
async def cancel_job(
    request: Request, job_id: str, principal: CurrentPrincipal, session: DbSession
) -> dict[str, Any]:
    scope = await run_in_threadpool(_job_scope, session, job_id)
    authorize(principal, Action.MANAGE, Kind.TIMETABLE, scope)
    queue: JobQueue = request.app.state.jobs
    return {"cancelled": await queue.cancel(job_id)}
