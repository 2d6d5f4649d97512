"""Server-rendered pages: login, each role's home, admin pages, password change, the kiosk.

Pages read through the same permission-filtered service as the JSON API; every change a page
makes goes through the API from a small ES module (session cookie + X-CSRF-Token).
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable
from datetime import date, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy import func, select
from sqlalchemy.orm import Session, joinedload

from common.accounts import service as accounts
from common.accounts.models import Account
from common.accounts.permissions import GRANTABLE_ROLES, Action, Kind, Principal, Scope, can
from common.alliance import service as registry
from common.alliance import timetable
from common.alliance.models import (
    WEEKDAYS,
    Alliance,
    Campus,
    ClassroomTerminal,
    Lesson,
    Room,
    School,
    SchoolClass,
    Student,
    SyncGroup,
    SyncGroupMember,
    Teacher,
    Term,
)
from common.alliance.resources import (
    ACCOUNTS,
    BELLS,
    CAMPUSES,
    CLASSES,
    ROOMS,
    SCHOOLS,
    SUBJECTS,
    TEACHERS,
    TERMINALS,
    TERMS,
    sync_codes_by_room,
    sync_groups_of_lessons,
)
from common.errors import AppError
from research import review
from research import service as research
from research.models import ResearchGroup, ResearchSession
from streaming.access import (
    INSPECTOR_ROLES,
    MEETING_CLOSES_AFTER,
    MEETING_HOST_OPENS_BEFORE,
    MEETING_OPENS_BEFORE,
    lesson_identity,
)
from streaming.ice import browser_ice_servers
from streaming.lifecycle import lesson_occurrences
from web.deps import (
    SESSION_COOKIE,
    Authenticated,
    CurrentPrincipal,
    DbSession,
    MaybeAuth,
    SettingsDep,
)
from web.page_shell import (
    ADMIN_ROLES,
    PASSWORD_ROLES,
    ROLE_LABELS,
    denied,
    lesson_clock,
    render,
    templates,
)
from web.routers.auth import PAIRING_MINUTES, LoginIn, _login, set_session_cookie

router = APIRouter(include_in_schema=False)

DAY_LABELS = dict(
    zip(WEEKDAYS, ["周一", "周二", "周三", "周四", "周五", "周六", "周日"], strict=True)
)
STAGE_LABELS = {"primary": "小学", "junior": "初中", "senior": "高中", "nine_year": "九年一贯制"}
FEATURE_LABELS = {
    "sync": "录播",
    "music": "音乐",
    "computer": "计算机",
    "art": "美术",
    "lab": "实验",
}
SYNC_KIND_LABELS = {"sync": "同步课堂", "delivered": "专递课堂", "master": "名师课堂"}
# Roles an admin page offers to create; the API decides in the end (GRANTABLE_ROLES).
CREATABLE_ROLES = ("teacher", "student")


# --- login / logout -----------------------------------------------------------------------------
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


# --- home ---------------------------------------------------------------------------------------
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


def _my_week(
    session: Session, account: Account, principal: Principal, today: date
) -> timetable.Week | None:
    """The account's week as it runs this week (applied 调课 and holidays included) while
    the term lasts, else the weekly timetable."""
    class_id = teacher_id = room_id = None
    if account.role == "teacher" and account.teacher_id:
        teacher_id = account.teacher_id
    elif account.role == "student" and account.class_id:
        class_id = account.class_id
    elif account.role == "terminal" and account.terminal_id:
        room_id = session.get_one(ClassroomTerminal, account.terminal_id).room_id
    else:
        return None
    weekly = timetable.week(
        session, principal, class_id=class_id, teacher_id=teacher_id, room_id=room_id
    )
    term = session.get_one(Term, weekly.term_id)
    if not term.start_date <= today <= term.end_date:
        return weekly
    return timetable.week(
        session,
        principal,
        class_id=class_id,
        teacher_id=teacher_id,
        room_id=room_id,
        term_id=term.id,
        week_of=today,
    )


def _classroom_label(lesson: Lesson) -> str:
    school_class = lesson.school_class
    return f"{school_class.campus.name} {school_class.name}"


def _sync_partners(session: Session, group_ids: Iterable[int]) -> dict[int, dict[str, Any]]:
    """group id -> the lead classroom and the remote classrooms, named with their campus."""
    ids = sorted(set(group_ids))
    if not ids:
        return {}
    groups = session.scalars(
        select(SyncGroup)
        .where(SyncGroup.id.in_(ids))
        .options(
            joinedload(SyncGroup.lead_lesson)
            .joinedload(Lesson.school_class)
            .joinedload(SchoolClass.campus),
            joinedload(SyncGroup.members)
            .joinedload(SyncGroupMember.lesson)
            .joinedload(Lesson.school_class)
            .joinedload(SchoolClass.campus),
        )
    ).unique()
    return {
        group.id: {
            "kind": SYNC_KIND_LABELS.get(group.kind, group.kind),
            "lead": _classroom_label(group.lead_lesson),
            "remotes": [_classroom_label(member.lesson) for member in group.members],
        }
        for group in groups
    }


def _export_subject(session: Session, account: Account) -> tuple[str, str] | None:
    """(kind, code) of the timetable a teacher or student may export as their own."""
    if account.role == "teacher" and account.teacher_id:
        return "teacher", session.get_one(Teacher, account.teacher_id).code
    if account.role == "student" and account.class_id:
        return "class", session.get_one(SchoolClass, account.class_id).code
    return None


def _todays_lessons(
    session: Session, principal: Principal, now: datetime, open_before: timedelta
) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """(the synchronized lesson the principal can join now, the next one today).

    A lesson is joinable from ``open_before`` ahead of its bell (when its room opens) until
    it ends; the next one is the earliest of today's lessons not yet joinable.
    """
    if principal.role != "teacher":
        return None, None
    groups = {group.id: group for group in _visible_groups(session, principal)}
    if not groups:
        return None, None
    current: dict[str, Any] | None = None
    upcoming: dict[str, Any] | None = None
    for occurrence in lesson_occurrences(session, now.date()):
        group = groups.get(occurrence.sync_group_id)
        if group is None or now >= occurrence.ends_at:
            continue
        row = group_rows(session, [group])[0]
        identity = lesson_identity(session, principal, group.id, display_name="")
        row |= {
            "role": identity.role,
            "starts": occurrence.starts_at.strftime("%H:%M"),
            "ends": occurrence.ends_at.strftime("%H:%M"),
            "starts_at": occurrence.starts_at.isoformat(),
            "minutes_to_start": max(0, int((occurrence.starts_at - now).total_seconds() // 60)),
        }
        if now >= occurrence.starts_at - open_before:
            current = current or row
        elif upcoming is None:
            upcoming = row
    return current, upcoming


def meeting_open(row: ResearchSession, *, may_run: bool, now: datetime) -> bool:
    """Live or about to start: the window in which ``meeting_identity`` lets one in."""
    if row.status == "cancelled":
        return False
    starts = research.starts_at(row)
    opens = starts - (MEETING_HOST_OPENS_BEFORE if may_run else MEETING_OPENS_BEFORE)
    return opens <= now <= starts + timedelta(minutes=row.minutes) + MEETING_CLOSES_AFTER


def _research_soon(session: Session, principal: Principal, now: datetime) -> list[dict[str, Any]]:
    """The teacher's 教研 sessions of the next 24 hours (or running now), for the home page."""
    if principal.role != "teacher" or principal.teacher_id is None:
        return []
    rows = []
    for row in research.sessions_soon(
        session, teacher_id=principal.teacher_id, now=now, within=timedelta(hours=24)
    ):
        group = session.get_one(ResearchGroup, row.group_id)
        may_run = research.may_run_session(principal, group, row)
        starts = research.starts_at(row)
        rows.append(
            {
                "id": row.id,
                "when": f"{'今天' if starts.date() == now.date() else '明天'} "
                f"{starts.strftime('%H:%M')}",
                "starts_at": starts.isoformat(),
                "group": group.name,
                "topic": row.topic,
                "host": row.host.name if row.host else "",
                "host_is_me": row.host_id == principal.teacher_id,
                "meeting_open": meeting_open(row, may_run=may_run, now=now),
            }
        )
    return rows


def _my_comments(session: Session, principal: Principal) -> list[dict[str, Any]]:
    """The teacher's latest 评语, each linking to its moment in the replay."""
    if principal.role != "teacher":
        return []
    return [
        {
            "recording": recording.title,
            "at": review.format_moment(comment.at_seconds),
            "href": f"/replays/{recording.id}?t={int(comment.at_seconds)}",
            "body": comment.body,
            "is_reply": comment.parent_id is not None,
        }
        for comment, recording in review.recent_comments_by(session, principal)
    ]


@router.get("/", response_class=HTMLResponse)
def home(request: Request, auth: MaybeAuth, session: DbSession) -> Response:
    if auth is None:
        return RedirectResponse("/login", status_code=303)
    account = auth.account
    week = _my_week(session, account, auth.principal, lesson_clock(request).now().date())
    grid: dict[str, list[Any]] = {}
    partners: dict[int, dict[str, Any]] = {}
    if week is not None:
        for entry in week.entries:
            grid.setdefault(entry.day, []).append(entry)
        partners = _sync_partners(session, (e.sync.group_id for e in week.entries if e.sync))
    overview = _overview(session, account) if account.role in ADMIN_ROLES else []
    settings = request.app.state.settings
    now = lesson_clock(request).now()
    current, upcoming = _todays_lessons(
        session,
        auth.principal,
        now,
        timedelta(minutes=settings.lesson_open_before_minutes),
    )
    return render(
        request,
        session,
        auth,
        "home.html",
        {
            "week": week,
            "grid": grid,
            "partners": partners,
            "days": list(WEEKDAYS[:5]),
            "today": WEEKDAYS[date.today().weekday()],
            "day_labels": DAY_LABELS,
            "overview": overview,
            "export": _export_subject(session, account),
            "can_subscribe": account.role in ("teacher", "student"),
            "current_lesson": current,
            "next_lesson": upcoming,
            "research_soon": _research_soon(session, auth.principal, now),
            "my_comments": _my_comments(session, auth.principal),
        },
    )


# --- password -------------------------------------------------------------------------------------
@router.get("/password", response_class=HTMLResponse)
def password_page(request: Request, auth: MaybeAuth, session: DbSession) -> Response:
    if auth is None:
        return RedirectResponse("/login", status_code=303)
    if auth.account.role not in PASSWORD_ROLES:
        return denied(request, session, auth, "教室终端没有密码，需要时请重新配对。")
    return render(request, session, auth, "password.html", {})


# --- admin pages ----------------------------------------------------------------------------------
def _admin(auth: Authenticated | None) -> Authenticated | Response:
    if auth is None:
        return RedirectResponse("/login", status_code=303)
    return auth


def _admin_only(
    request: Request, session: Session, auth: Authenticated | None, message: str
) -> Authenticated | Response:
    """The signed-in admin or bureau account, else the login redirect or a 403 page."""
    found = _admin(auth)
    if isinstance(found, Response) or found.account.role in ADMIN_ROLES:
        return found
    return denied(request, session, found, message)


def _school_scopes(session: Session) -> dict[int, Scope]:
    return {
        school.id: Scope(alliance_id=school.alliance_id, school_id=school.id)
        for school in session.scalars(select(School))
    }


@router.get("/admin/schools", response_class=HTMLResponse)
def schools_page(request: Request, auth: MaybeAuth, session: DbSession) -> Response:
    found = _admin_only(request, session, auth, "只有管理员和教育局可以查看学校管理页面。")
    if isinstance(found, Response):
        return found
    principal = found.principal
    schools = registry.list_rows(session, principal, SCHOOLS, limit=1000)
    campuses = registry.list_rows(session, principal, CAMPUSES, limit=1000)
    bells: dict[int, list[str]] = {}
    for schedule in registry.list_rows(session, principal, BELLS, limit=1000):
        bells.setdefault(schedule.campus_id, []).append(schedule.name)
    scopes = _school_scopes(session)
    by_school: dict[int, list[dict[str, Any]]] = {}
    for campus in campuses:
        by_school.setdefault(campus.school_id, []).append(
            {
                "campus": campus,
                "bells": "、".join(bells.get(campus.id, [])),
                "editable": can(principal, Action.MANAGE, Kind.CAMPUS, scopes[campus.school_id]),
            }
        )
    alliances = {a.id: a for a in session.scalars(select(Alliance))}
    rows = [
        {
            "school": school,
            "alliance": alliances[school.alliance_id].name,
            "is_lead": alliances[school.alliance_id].lead_school_id == school.id,
            "stage": STAGE_LABELS.get(school.stage, school.stage),
            "campuses": by_school.get(school.id, []),
            "editable": can(principal, Action.MANAGE, Kind.SCHOOL, scopes[school.id]),
        }
        for school in schools
    ]
    alliance_id = found.account.alliance_id
    may_found = alliance_id is not None and can(
        principal, Action.MANAGE, Kind.SCHOOL, Scope(alliance_id=alliance_id)
    )
    return render(
        request,
        session,
        found,
        "admin_schools.html",
        {
            "rows": rows,
            "stages": list(STAGE_LABELS.items()),
            "new_school_alliance": alliance_id if may_found else None,
        },
    )


@router.get("/admin/rooms", response_class=HTMLResponse)
def rooms_page(request: Request, auth: MaybeAuth, session: DbSession) -> Response:
    found = _admin_only(request, session, auth, "只有管理员和教育局可以查看教室与终端。")
    if isinstance(found, Response):
        return found
    principal = found.principal
    rooms = registry.list_rows(session, principal, ROOMS, limit=1000)
    terminals = {
        t.room_id: t for t in registry.list_rows(session, principal, TERMINALS, limit=1000)
    }
    campuses = {c.id: c for c in session.scalars(select(Campus).options(joinedload(Campus.school)))}
    groups: dict[int, dict[str, Any]] = {}

    def group_of(campus: Campus) -> dict[str, Any]:
        scope = Scope(alliance_id=campus.school.alliance_id, school_id=campus.school_id)
        return groups.setdefault(
            campus.id,
            {
                "campus": campus,
                "school": campus.school.name,
                "rooms": [],
                "scope": scope,
                "editable": can(principal, Action.MANAGE, Kind.ROOM, scope),
            },
        )

    in_sync = sync_codes_by_room(session, [room.id for room in rooms])
    # Every visible campus gets its section, so a campus without rooms can get its first one.
    for campus in registry.list_rows(session, principal, CAMPUSES, limit=1000):
        group_of(campuses[campus.id])
    for room in rooms:
        group = group_of(campuses[room.campus_id])
        terminal = terminals.get(room.id)
        group["rooms"].append(
            {
                "room": room,
                "is_sync": "sync" in room.features,
                "terminal": terminal,
                "can_pair": terminal is not None
                and can(principal, Action.MANAGE, Kind.TERMINAL, group["scope"]),
                "editable": group["editable"],
                "sync_codes": in_sync.get(room.id, []),
            }
        )
    # Rooms with a terminal first: those are what an admin comes here for.
    for group in groups.values():
        group["rooms"].sort(key=lambda r: (r["terminal"] is None, r["room"].id))
    return render(
        request,
        session,
        found,
        "admin_rooms.html",
        {
            "groups": list(groups.values()),
            "pairing_minutes": PAIRING_MINUTES,
            "feature_labels": FEATURE_LABELS,
        },
    )


@router.get("/admin/lessons", response_class=HTMLResponse)
def lessons_admin_page(
    request: Request, auth: MaybeAuth, session: DbSession, campus_id: int | None = None
) -> Response:
    """教学任务 of one campus's classes in the current term: who teaches what, how often."""
    found = _admin_only(request, session, auth, "只有管理员和教育局可以查看教学任务。")
    if isinstance(found, Response):
        return found
    principal = found.principal
    campuses = session.scalars(
        select(Campus)
        .where(Campus.id.in_([c.id for c in registry.list_rows(session, principal, CAMPUSES)]))
        .options(joinedload(Campus.school))
        .order_by(Campus.school_id, Campus.id)
    ).all()
    if not campuses:
        return render(request, session, found, "admin_lessons.html", {"campus": None})
    campus = next((c for c in campuses if c.id == campus_id), campuses[0])
    alliance_id = campus.school.alliance_id
    try:
        term = session.get_one(Term, timetable.current_term_id(session, alliance_id))
    except AppError as exc:
        return render(
            request,
            session,
            found,
            "admin_lessons.html",
            {"campus": None, "message": f"{exc.message}，请先设置学期。"},
        )
    classes = registry.list_rows(
        session, principal, CLASSES, filters={"campus_id": campus.id}, limit=1000
    )
    lessons = session.scalars(
        select(Lesson)
        .where(Lesson.term_id == term.id, Lesson.class_id.in_([c.id for c in classes]))
        .options(joinedload(Lesson.subject), joinedload(Lesson.teacher))
        .order_by(Lesson.class_id, Lesson.subject_id)
    ).all()
    synced: dict[int, list[str]] = {}
    for group in sync_groups_of_lessons(session, [lesson.id for lesson in lessons]):
        for lesson_id in (group.lead_lesson_id, *(m.lesson_id for m in group.members)):
            synced.setdefault(lesson_id, []).append(group.code)
    school_names = {s.id: s.name for s in session.scalars(select(School))}
    teachers = [
        (t.id, f"{t.name}（{school_names[t.school_id]}）")
        for t in registry.list_rows(session, principal, TEACHERS, limit=5000)
        if session.get_one(School, t.school_id).alliance_id == alliance_id
    ]
    subjects = [
        (s.id, s.name)
        for s in registry.list_rows(
            session, principal, SUBJECTS, filters={"alliance_id": alliance_id}, limit=1000
        )
    ]
    by_class: dict[int, list[Lesson]] = {}
    for lesson in lessons:
        by_class.setdefault(lesson.class_id, []).append(lesson)
    scope = Scope(alliance_id=alliance_id, school_id=campus.school_id)
    return render(
        request,
        session,
        found,
        "admin_lessons.html",
        {
            "campus": campus,
            "campuses": [(c.id, f"{c.school.name} · {c.name}") for c in campuses],
            "term": term,
            "classes": [{"row": c, "lessons": by_class.get(c.id, [])} for c in classes],
            "class_options": [(c.id, c.name) for c in classes],
            "synced": synced,
            "teachers": teachers,
            "subjects": subjects,
            "editable": can(principal, Action.MANAGE, Kind.LESSON, scope),
        },
    )


@router.get("/admin/bells", response_class=HTMLResponse)
def bells_page(request: Request, auth: MaybeAuth, session: DbSession) -> Response:
    found = _admin_only(request, session, auth, "只有管理员和教育局可以查看作息时间。")
    if isinstance(found, Response):
        return found
    principal = found.principal
    schedules = registry.list_rows(session, principal, BELLS, limit=1000)
    campuses = {c.id: c for c in session.scalars(select(Campus).options(joinedload(Campus.school)))}
    groups: dict[int, dict[str, Any]] = {}
    for schedule in schedules:
        campus = campuses[schedule.campus_id]
        group = groups.setdefault(campus.id, {"campus": campus, "schedules": []})
        scope = Scope(alliance_id=campus.school.alliance_id, school_id=campus.school_id)
        group["schedules"].append(
            {
                "id": schedule.id,
                "name": schedule.name,
                "days": "、".join(DAY_LABELS.get(d, d) for d in schedule.weekdays),
                "periods": sorted(schedule.periods, key=lambda p: p.number),
                "editable": can(principal, Action.MANAGE, Kind.BELLS, scope),
            }
        )
    return render(request, session, found, "admin_bells.html", {"groups": list(groups.values())})


@router.get("/admin/accounts", response_class=HTMLResponse)
def accounts_page(request: Request, auth: MaybeAuth, session: DbSession) -> Response:
    found = _admin_only(request, session, auth, "只有管理员和教育局可以管理账号。")
    if isinstance(found, Response):
        return found
    principal = found.principal
    rows = registry.list_rows(session, principal, ACCOUNTS, limit=1000)
    schools = {s.id: s.name for s in session.scalars(select(School))}
    grantable = [
        role for role in CREATABLE_ROLES if role in GRANTABLE_ROLES.get(principal.role, frozenset())
    ]
    scopes = _school_scopes(session)
    linked_teachers = {a.teacher_id for a in session.scalars(select(Account)) if a.teacher_id}
    teachers = [
        t
        for t in registry.list_rows(session, principal, TEACHERS, limit=1000)
        if t.id not in linked_teachers
        and can(principal, Action.MANAGE, Kind.ACCOUNT, scopes[t.school_id])
    ]
    classes = [
        c
        for c in registry.list_rows(session, principal, CLASSES, limit=1000)
        if can(principal, Action.MANAGE, Kind.STUDENT, scopes[c.school_id])
    ]
    return render(
        request,
        session,
        found,
        "admin_accounts.html",
        {
            "rows": [
                {
                    "account": a,
                    "role": ROLE_LABELS.get(a.role, a.role),
                    "school": schools.get(a.school_id, "") if a.school_id else "",
                }
                for a in rows
            ],
            "grantable": [(role, ROLE_LABELS[role]) for role in grantable],
            "teachers": teachers,
            "classes": classes,
            "school_names": schools,
        },
    )


@router.get("/admin/solve", response_class=HTMLResponse)
def solve_page(request: Request, auth: MaybeAuth, session: DbSession) -> Response:
    found = _admin(auth)
    if isinstance(found, Response):
        return found
    principal = found.principal
    terms = [
        term
        for term in registry.list_rows(session, principal, TERMS, limit=1000)
        if can(principal, Action.MANAGE, Kind.TIMETABLE, Scope(alliance_id=term.alliance_id))
    ]
    if not terms:
        return denied(request, session, found, "只有教联体管理员可以求解本教联体的课表。")
    terms.sort(key=lambda t: (not t.is_current, -t.start_date.toordinal()))
    alliance_ids = {t.alliance_id for t in terms}
    campuses = session.scalars(
        select(Campus)
        .join(School, Campus.school_id == School.id)
        .where(School.alliance_id.in_(alliance_ids))
        .options(joinedload(Campus.school))
        .order_by(School.id, Campus.id)
    ).all()
    return render(
        request,
        session,
        found,
        "admin_solve.html",
        {
            "terms": terms,
            "campuses": [
                {
                    "code": c.code,
                    "name": c.name,
                    "school": c.school.name,
                    "alliance_id": c.school.alliance_id,
                }
                for c in campuses
            ],
            "term_alliance": {t.id: t.alliance_id for t in terms},
        },
    )


# --- classroom terminal kiosk ---------------------------------------------------------------------
@router.get("/terminal", response_class=HTMLResponse)
def terminal_page(request: Request) -> Response:
    """The classroom screen: paired once by code, then it reads its room's timetable by itself."""
    return templates.TemplateResponse(request, "terminal.html", {})


# --- live synchronized lessons --------------------------------------------------------------------
def group_rows(session: Session, groups: Iterable[SyncGroup]) -> list[dict[str, Any]]:
    """What a page shows about a sync group: subject, kind, the lead and remote classrooms."""
    rows = []
    for group in groups:
        lead = group.lead_lesson
        members = [member.lesson for member in group.members]
        schools = [
            lead.school_class.campus.school,
            *(m.school_class.campus.school for m in members),
        ]
        rows.append(
            {
                "id": group.id,
                "code": group.code,
                "kind": SYNC_KIND_LABELS.get(group.kind, group.kind),
                "subject": lead.subject.name,
                "teacher": lead.teacher.name,
                "lead": _classroom_label(lead),
                "remotes": [_classroom_label(m) for m in members],
                "schools": list(dict.fromkeys(school.name for school in schools)),
            }
        )
    return rows


def sync_groups(session: Session, where: Any = None) -> list[SyncGroup]:
    """Every sync group (matching ``where``), with what `group_rows` reads loaded at once."""
    stmt = select(SyncGroup).order_by(SyncGroup.id)
    if where is not None:
        stmt = stmt.where(where)
    return list(
        session.scalars(
            stmt.options(
                joinedload(SyncGroup.lead_lesson).joinedload(Lesson.subject),
                joinedload(SyncGroup.lead_lesson).joinedload(Lesson.teacher),
                joinedload(SyncGroup.lead_lesson)
                .joinedload(Lesson.school_class)
                .joinedload(SchoolClass.campus)
                .joinedload(Campus.school),
                joinedload(SyncGroup.members)
                .joinedload(SyncGroupMember.lesson)
                .joinedload(Lesson.school_class)
                .joinedload(SchoolClass.campus)
                .joinedload(Campus.school),
            )
        ).unique()
    )


def _visible_groups(session: Session, principal: Principal) -> list[SyncGroup]:
    """The sync groups of current terms the principal could join (in any role)."""
    groups = []
    for group in sync_groups(session):
        try:
            lesson_identity(session, principal, group.id, display_name="")
        except AppError:
            continue
        groups.append(group)
    return groups


@router.get("/api/webrtc/ice-servers")
async def ice_servers(
    principal: CurrentPrincipal, settings: SettingsDep, response: Response
) -> list[dict[str, Any]]:
    """The STUN/TURN servers for a browser's RTCPeerConnection (signed-in only), with TURN
    credentials minted for this user (``streaming.ice``); never cached on the way."""
    response.headers["Cache-Control"] = "no-store"
    return browser_ice_servers(settings, principal)


@router.get("/lessons", response_class=HTMLResponse)
def lessons_page(request: Request, auth: MaybeAuth, session: DbSession) -> Response:
    """A teacher's synchronized lessons, each with a button to start or join it live."""
    if auth is None:
        return RedirectResponse("/login", status_code=303)
    principal = auth.principal
    if principal.role != "teacher":
        if principal.role in INSPECTOR_ROLES:
            return RedirectResponse("/patrol", status_code=303)
        return denied(request, session, auth, "同步课堂由主讲和远端教师、教室终端加入。")
    rows = []
    for row in group_rows(session, _visible_groups(session, principal)):
        identity = lesson_identity(session, principal, row["id"], display_name="")
        rows.append({**row, "role": identity.role})
    return render(request, session, auth, "lessons.html", {"groups": rows})


@router.get("/lessons/{group_id}", response_class=HTMLResponse)
def lesson_page(request: Request, group_id: int, auth: MaybeAuth, session: DbSession) -> Response:
    """One synchronized lesson live: lead, remote or inspector view (chosen by the server)."""
    if auth is None:
        return RedirectResponse("/login", status_code=303)
    try:
        identity = lesson_identity(
            session, auth.principal, group_id, display_name=auth.account.display_name
        )
    except AppError as exc:
        return denied(request, session, auth, exc.message)
    group = group_rows(session, sync_groups(session, SyncGroup.id == group_id))[0]
    back = "/patrol" if identity.role == "inspector" else "/lessons"
    return render(
        request,
        session,
        auth,
        "lesson.html",
        {"group": group, "my_role": identity.role, "back": back},
    )


@router.get("/patrol", response_class=HTMLResponse)
def patrol_page(request: Request, auth: MaybeAuth, session: DbSession) -> Response:
    """巡课 wall: every live lesson the principal or bureau may look in on, as muted tiles."""
    if auth is None:
        return RedirectResponse("/login", status_code=303)
    if auth.account.role not in INSPECTOR_ROLES:
        return denied(request, session, auth, "只有校长、教联体管理员和教育局可以巡课。")
    groups = group_rows(session, _visible_groups(session, auth.principal))
    schools = sorted({school for g in groups for school in g["schools"]})
    subjects = sorted({g["subject"] for g in groups})
    return render(
        request,
        session,
        auth,
        "patrol.html",
        {"groups": groups, "schools": schools, "subjects": subjects},
    )
