"""教研 operations: groups, sessions, term plans, attendance and visits.

The permission table (`common.accounts.permissions`) is the base; on top of it a group's
leader, and a session's host, may run that session (plan, write minutes, record who joined)
without being an administrator: `may_run_session` / `authorize_run`.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.orm import Session

from common.accounts.permissions import Action, Kind, Principal, Scope, authorize, can
from common.alliance.models import Alliance, School, Subject, Teacher, Term
from common.errors import ConflictError, PermissionDeniedError, ValidationFailedError
from research import schemas as s
from research.models import (
    Attendance,
    ResearchGroup,
    ResearchSession,
    Visit,
    research_group_members,
)
from research.schedule import PlannedSession, TermDays, plan_sessions

logger = logging.getLogger(__name__)

# The alliances are county schools in China; session times are wall-clock times there.
TIMEZONE = ZoneInfo("Asia/Shanghai")


def _hhmm(moment: time) -> str:
    return moment.strftime("%H:%M")


def starts_at(research_session: ResearchSession) -> datetime:
    """The session's start as an aware datetime."""
    return datetime.combine(research_session.day, research_session.start_time, TIMEZONE)


def as_utc(moment: datetime) -> datetime:
    # SQLite hands back naive datetimes; they were stored in UTC.
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


# --- permissions beyond the table ------------------------------------------------------------
def group_scope(group: ResearchGroup) -> Scope:
    return Scope(alliance_id=group.alliance_id)


def may_lead_group(principal: Principal, group: ResearchGroup) -> bool:
    """Administrators per the table, and the group's own leader."""
    if can(principal, Action.MANAGE, Kind.RESEARCH, group_scope(group)):
        return True
    return (
        principal.teacher_id is not None
        and principal.alliance_id == group.alliance_id
        and principal.teacher_id == group.leader_id
    )


def may_run_session(
    principal: Principal, group: ResearchGroup, research_session: ResearchSession
) -> bool:
    """Those who may lead the group, and the session's host."""
    if may_lead_group(principal, group):
        return True
    return (
        principal.teacher_id is not None
        and principal.alliance_id == group.alliance_id
        and principal.teacher_id == research_session.host_id
    )


def authorize_lead(principal: Principal, group: ResearchGroup) -> None:
    authorize(principal, Action.READ, Kind.RESEARCH, group_scope(group))
    if not may_lead_group(principal, group):
        raise PermissionDeniedError("只有教研组长或教联体管理员可以安排本组教研")


def authorize_run(
    principal: Principal, group: ResearchGroup, research_session: ResearchSession
) -> None:
    authorize(principal, Action.READ, Kind.RESEARCH, group_scope(group))
    if not may_run_session(principal, group, research_session):
        raise PermissionDeniedError("只有本次教研的主持人、教研组长或教联体管理员可以操作")


# --- groups -----------------------------------------------------------------------------------
def _alliance_teachers(
    session: Session, alliance_id: int, teacher_ids: Iterable[int], *, field_name: str
) -> list[Teacher]:
    wanted = list(dict.fromkeys(teacher_ids))
    found = {
        t.id: (t, alliance)
        for t, alliance in session.execute(
            select(Teacher, School.alliance_id)
            .join(School, Teacher.school_id == School.id)
            .where(Teacher.id.in_(wanted))
        ).all()
    }
    teachers: list[Teacher] = []
    for teacher_id in wanted:
        if teacher_id not in found:
            raise ValidationFailedError(f"教师 {teacher_id} 不存在", field=field_name)
        teacher, alliance = found[teacher_id]
        if alliance != alliance_id:
            raise ValidationFailedError(f"教师 {teacher.name} 不属于本教联体", field=field_name)
        teachers.append(teacher)
    return teachers


def _subject_in(session: Session, alliance_id: int, subject_id: int | None) -> None:
    if subject_id is None:
        return
    subject = session.get(Subject, subject_id)
    if subject is None:
        raise ValidationFailedError(f"学科 {subject_id} 不存在", field="subject_id")
    if subject.alliance_id != alliance_id:
        raise ValidationFailedError(f"学科 {subject.name} 不属于本教联体", field="subject_id")


def create_group(session: Session, *, payload: s.ResearchGroupCreate) -> ResearchGroup:
    if session.get(Alliance, payload.alliance_id) is None:
        raise ValidationFailedError(f"教联体 {payload.alliance_id} 不存在", field="alliance_id")
    _subject_in(session, payload.alliance_id, payload.subject_id)
    # The leader is always a member.
    members = _alliance_teachers(
        session,
        payload.alliance_id,
        [payload.leader_id, *payload.member_ids],
        field_name="member_ids",
    )
    group = ResearchGroup(
        alliance_id=payload.alliance_id,
        subject_id=payload.subject_id,
        name=payload.name,
        grade_band=payload.grade_band,
        leader_id=payload.leader_id,
        weekday=payload.weekday,
        start_time=payload.start_time,
        minutes=payload.minutes,
        online_room=payload.online_room or f"教研-{payload.name}",
        members=members,
    )
    session.add(group)
    return group


def update_group(session: Session, *, group: ResearchGroup, payload: s.ResearchGroupUpdate) -> None:
    leader_id = payload.leader_id if payload.leader_id is not None else group.leader_id
    member_ids = (
        payload.member_ids if payload.member_ids is not None else [m.id for m in group.members]
    )
    if leader_id is not None and leader_id not in member_ids:
        member_ids = [leader_id, *member_ids]
    members = _alliance_teachers(session, group.alliance_id, member_ids, field_name="member_ids")
    if {m.id for m in members} != {m.id for m in group.members}:
        _check_hosts_stay_members(session, group, {m.id for m in members})
        upcoming = _open_sessions(session, group.id)
        check_overlaps(
            session,
            candidates=[_Slot(r.day, r.start_time, r.minutes) for r in upcoming],
            member_ids=[m.id for m in members],
            group_name=group.name,
            exclude_ids={r.id for r in upcoming},
        )
        group.members = members
    for name in ("name", "grade_band", "weekday", "start_time", "minutes", "online_room"):
        if name in payload.model_fields_set and getattr(payload, name) is not None:
            setattr(group, name, getattr(payload, name))
    group.leader_id = leader_id


def set_slot(session: Session, *, group: ResearchGroup, slot: s.WeeklySlot) -> None:
    """The leader's weekly slot; planned sessions move with the next (re-)plan."""
    group.weekday = slot.weekday
    group.start_time = slot.start_time
    group.minutes = slot.minutes
    if slot.online_room is not None:
        group.online_room = slot.online_room


def _check_hosts_stay_members(session: Session, group: ResearchGroup, members: set[int]) -> None:
    for row in _open_sessions(session, group.id):
        if row.host_id is not None and row.host_id not in members:
            host = session.get_one(Teacher, row.host_id)
            raise ValidationFailedError(
                f"{host.name} 仍是 {row.day} 教研的主持人，请先重新排期再移出教研组",
                field="member_ids",
            )


def _open_sessions(session: Session, group_id: int) -> list[ResearchSession]:
    return list(
        session.scalars(
            select(ResearchSession)
            .where(ResearchSession.group_id == group_id, ResearchSession.status == "planned")
            .order_by(ResearchSession.day)
        )
    )


# --- overlaps ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Slot:
    day: date
    start: time
    minutes: int

    def bounds(self) -> tuple[datetime, datetime]:
        begin = datetime.combine(self.day, self.start)
        return begin, begin + timedelta(minutes=self.minutes)


def check_overlaps(
    session: Session,
    *,
    candidates: Sequence[_Slot],
    member_ids: Collection[int],
    group_name: str,
    exclude_ids: Collection[int] = (),
) -> None:
    """409 when a member would sit in two sessions at once (any group, cancelled ones aside)."""
    if not candidates or not member_ids:
        return
    days = {c.day for c in candidates}
    rows = session.execute(
        select(ResearchSession, ResearchGroup.name, research_group_members.c.teacher_id)
        .join(ResearchGroup, ResearchSession.group_id == ResearchGroup.id)
        .join(
            research_group_members,
            research_group_members.c.research_group_id == ResearchGroup.id,
        )
        .where(
            ResearchSession.day.in_(days),
            ResearchSession.status != "cancelled",
            research_group_members.c.teacher_id.in_(list(member_ids)),
        )
    ).all()
    by_day: dict[date, list[tuple[ResearchSession, str, int]]] = {}
    for other, other_group, teacher_id in rows:
        if other.id not in exclude_ids:
            by_day.setdefault(other.day, []).append((other, other_group, teacher_id))
    clashes: list[dict[str, str]] = []
    for candidate in candidates:
        begin, end = candidate.bounds()
        for other, other_group, teacher_id in by_day.get(candidate.day, []):
            other_begin, other_end = _Slot(other.day, other.start_time, other.minutes).bounds()
            if begin < other_end and other_begin < end:
                clashes.append(
                    {
                        "teacher": session.get_one(Teacher, teacher_id).name,
                        "day": candidate.day.isoformat(),
                        "time": f"{_hhmm(other.start_time)}",
                        "group": other_group,
                    }
                )
    if clashes:
        first = clashes[0]
        more = f"等 {len(clashes)} 处冲突" if len(clashes) > 1 else ""
        raise ConflictError(
            f"时间冲突：{first['teacher']} 在 {first['day']} {first['time']} 已有"
            f"「{first['group']}」的教研，不能同时参加「{group_name}」{more}",
            detail=clashes,
        )


# --- sessions ---------------------------------------------------------------------------------
def _term_of(session: Session, group: ResearchGroup, term_id: int) -> Term:
    term = session.get(Term, term_id)
    if term is None:
        raise ValidationFailedError(f"学期 {term_id} 不存在", field="term_id")
    if term.alliance_id != group.alliance_id:
        raise ValidationFailedError(f"学期「{term.name}」不属于本教联体", field="term_id")
    return term


def _check_in_term(term: Term, day: date, *, field_name: str = "day") -> None:
    if not term.start_date <= day <= term.end_date:
        raise ValidationFailedError(
            f"日期 {day} 不在学期「{term.name}」（{term.start_date} 至 {term.end_date}）内",
            field=field_name,
        )


def _check_host(session: Session, group: ResearchGroup, host_id: int | None) -> None:
    if host_id is None:
        return
    if host_id not in {m.id for m in group.members}:
        host = session.get(Teacher, host_id)
        name = host.name if host else str(host_id)
        raise ValidationFailedError(f"主持人 {name} 不是「{group.name}」的成员", field="host_id")


def create_session(session: Session, *, payload: s.ResearchSessionCreate) -> ResearchSession:
    group = session.get_one(ResearchGroup, payload.group_id)
    term = _term_of(session, group, payload.term_id)
    _check_in_term(term, payload.day)
    _check_host(session, group, payload.host_id)
    row = ResearchSession(
        group_id=group.id,
        term_id=term.id,
        day=payload.day,
        start_time=payload.start_time or group.start_time,
        minutes=payload.minutes or group.minutes,
        topic=payload.topic,
        host_id=payload.host_id,
        place=payload.place if payload.place is not None else group.online_room,
        status="planned",
    )
    check_overlaps(
        session,
        candidates=[_Slot(row.day, row.start_time, row.minutes)],
        member_ids=[m.id for m in group.members],
        group_name=group.name,
    )
    session.add(row)
    return row


def update_session(
    session: Session, *, row: ResearchSession, payload: s.ResearchSessionUpdate
) -> None:
    group = session.get_one(ResearchGroup, row.group_id)
    term = session.get_one(Term, row.term_id)
    day = payload.day or row.day
    start = payload.start_time or row.start_time
    minutes = payload.minutes or row.minutes
    status = payload.status or row.status
    _check_in_term(term, day)
    host_id = payload.host_id if "host_id" in payload.model_fields_set else row.host_id
    _check_host(session, group, host_id)
    if status != "cancelled":
        check_overlaps(
            session,
            candidates=[_Slot(day, start, minutes)],
            member_ids=[m.id for m in group.members],
            group_name=group.name,
            exclude_ids={row.id},
        )
    row.day, row.start_time, row.minutes, row.status, row.host_id = (
        day,
        start,
        minutes,
        status,
        host_id,
    )
    for name in ("topic", "place", "minutes_text", "recording_id"):
        if name in payload.model_fields_set:
            value = getattr(payload, name)
            if value is None and name != "recording_id":
                raise ValidationFailedError("此字段不能为空", field=name)
            setattr(row, name, value)


def write_minutes(
    session: Session, *, row: ResearchSession, minutes: s.SessionMinutes
) -> ResearchSession:
    """The host's 纪要, and the session's outcome (held / cancelled)."""
    if minutes.status == "cancelled" and session.scalar(
        select(Attendance.id).where(Attendance.session_id == row.id).limit(1)
    ):
        raise ConflictError("已有参会记录的教研不能取消")
    row.minutes_text = minutes.minutes_text
    if minutes.status is not None:
        row.status = minutes.status
    return row


# --- term plan --------------------------------------------------------------------------------
@dataclass(frozen=True)
class TermPlan:
    kept: list[ResearchSession]
    planned: list[ResearchSession]
    removed: int


def host_history(session: Session, group_id: int) -> tuple[Counter[int], dict[int, date]]:
    """How often and when last each teacher hosted a held session of the group (all terms)."""
    counts: Counter[int] = Counter()
    last: dict[int, date] = {}
    for host_id, day in session.execute(
        select(ResearchSession.host_id, ResearchSession.day).where(
            ResearchSession.group_id == group_id,
            ResearchSession.status == "held",
            ResearchSession.host_id.is_not(None),
        )
    ).all():
        if host_id is not None:
            counts[host_id] += 1
            last[host_id] = max(day, last.get(host_id, date.min))
    return counts, last


def plan_term(
    session: Session,
    *,
    group: ResearchGroup,
    term_id: int,
    topics: Sequence[str] = (),
    absences: Mapping[date, Collection[int]] | None = None,
    swaps: Sequence[tuple[date, date]] = (),
) -> TermPlan:
    """期初规划: the term's weekly sessions at the group's slot, hosts rotated fairly.

    Planned sessions are replaced; held and cancelled ones stay (they are history) and their
    dates are not planned again. Everything is checked before anything is written.
    """
    term = _term_of(session, group, term_id)
    days_of_term = TermDays.of(term)
    for day in absences or {}:
        _check_in_term(term, day, field_name="absences")
    for first, second in swaps:
        _check_in_term(term, first, field_name="swaps")
        _check_in_term(term, second, field_name="swaps")
    existing = list(
        session.scalars(
            select(ResearchSession)
            .where(ResearchSession.group_id == group.id, ResearchSession.term_id == term.id)
            .order_by(ResearchSession.day)
        )
    )
    kept = [r for r in existing if r.status != "planned"]
    replaced = [r for r in existing if r.status == "planned"]
    taken = {r.day for r in kept}
    days = [d for d in days_of_term.dates_for(group.weekday) if d not in taken]
    members = [m.id for m in group.members]
    counts, last = host_history(session, group.id)
    plan: list[PlannedSession] = plan_sessions(
        days=days,
        member_ids=members,
        topics=topics,
        absences=absences,
        swaps=swaps,
        history=counts,
        last_hosted=last,
    )
    check_overlaps(
        session,
        candidates=[_Slot(p.day, group.start_time, group.minutes) for p in plan],
        member_ids=members,
        group_name=group.name,
        exclude_ids={r.id for r in replaced},
    )
    for r in replaced:
        session.delete(r)
    # Deletes must reach the database before inserts reuse the same (group, day, time).
    session.flush()
    created = [
        ResearchSession(
            group_id=group.id,
            term_id=term.id,
            day=p.day,
            start_time=group.start_time,
            minutes=group.minutes,
            topic=p.topic,
            host_id=p.host_id,
            place=group.online_room,
            status="planned",
        )
        for p in plan
    ]
    session.add_all(created)
    session.flush()
    logger.info(
        "research term planned",
        extra={"group_id": group.id, "term_id": term.id, "planned": len(created)},
    )
    return TermPlan(kept=kept, planned=created, removed=len(replaced))


@dataclass(frozen=True)
class HostCount:
    teacher: Teacher
    held: int
    planned: int
    last_hosted: date | None


def rotation(session: Session, *, group: ResearchGroup, term_id: int | None) -> list[HostCount]:
    """轮流主办 so far: per member, sessions hosted (held) and still to host (planned)."""
    stmt = select(ResearchSession.host_id, ResearchSession.status, ResearchSession.day).where(
        ResearchSession.group_id == group.id, ResearchSession.host_id.is_not(None)
    )
    if term_id is not None:
        stmt = stmt.where(ResearchSession.term_id == term_id)
    held: Counter[int] = Counter()
    planned: Counter[int] = Counter()
    last: dict[int, date] = {}
    for host_id, status, day in session.execute(stmt).all():
        if host_id is None:
            continue
        if status == "held":
            held[host_id] += 1
            last[host_id] = max(day, last.get(host_id, date.min))
        elif status == "planned":
            planned[host_id] += 1
    return [
        HostCount(member, held[member.id], planned[member.id], last.get(member.id))
        for member in group.members
    ]


# --- attendance -------------------------------------------------------------------------------
def record_attendance(
    session: Session,
    research_session_id: int,
    teacher_id: int,
    joined_at: datetime,
    left_at: datetime,
) -> Attendance:
    """Add one join/leave interval to a teacher's attendance of a session.

    Reports may arrive once per reconnect; time already counted (an interval that overlaps
    the previous one) is not counted twice. A session someone attended counts as held.
    """
    row = session.get(ResearchSession, research_session_id)
    if row is None:
        raise ValidationFailedError(f"教研活动 {research_session_id} 不存在")
    if row.status == "cancelled":
        raise ConflictError("该教研活动已取消，不能记录参会")
    group = session.get_one(ResearchGroup, row.group_id)
    _alliance_teachers(session, group.alliance_id, [teacher_id], field_name="teacher_id")
    joined, left = as_utc(joined_at), as_utc(left_at)
    if left < joined:
        raise ValidationFailedError("离开时间早于加入时间", field="left_at")
    if joined.astimezone(TIMEZONE).date() != row.day:
        raise ValidationFailedError(
            f"加入时间 {joined.astimezone(TIMEZONE):%Y-%m-%d %H:%M} 不在本次教研当天（{row.day}）",
            field="joined_at",
        )
    attendance = session.scalar(
        select(Attendance).where(
            Attendance.session_id == row.id, Attendance.teacher_id == teacher_id
        )
    )
    if attendance is None:
        attendance = Attendance(
            session_id=row.id,
            teacher_id=teacher_id,
            joined_at=joined,
            left_at=left,
            seconds=int((left - joined).total_seconds()),
        )
        session.add(attendance)
    else:
        first, last = as_utc(attendance.joined_at), as_utc(attendance.left_at)
        counted_from = max(joined, last)
        if left > counted_from:
            attendance.seconds += int((left - counted_from).total_seconds())
        attendance.joined_at = min(first, joined)
        attendance.left_at = max(last, left)
    if row.status == "planned":
        row.status = "held"
    session.flush()
    return attendance


def attendance_of(session: Session, research_session_id: int) -> list[Attendance]:
    return list(
        session.scalars(
            select(Attendance)
            .where(Attendance.session_id == research_session_id)
            .order_by(Attendance.teacher_id)
        )
    )


# --- visits -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class _VisitFacts:
    kind: str
    teacher: Teacher
    to_school_id: int
    day: date
    subject_id: int | None


def _check_visit(session: Session, facts: _VisitFacts) -> School:
    """The visit makes sense for its kind; returns the visiting teacher's school."""
    home = session.get_one(School, facts.teacher.school_id)
    alliance = session.get_one(Alliance, home.alliance_id)
    target = session.get(School, facts.to_school_id)
    if target is None:
        raise ValidationFailedError(f"学校 {facts.to_school_id} 不存在", field="to_school_id")
    if target.id == home.id:
        raise ValidationFailedError(
            f"{facts.teacher.name} 是{home.name}的教师，不能到本校跟班听课或指导",
            field="to_school_id",
        )
    if target.alliance_id != alliance.id:
        raise ValidationFailedError(f"{target.name} 不属于本教联体", field="to_school_id")
    lead = alliance.lead_school_id
    if facts.kind == "sit_in" and target.id != lead:
        raise ValidationFailedError("跟班听课应到牵头校（核心校）", field="to_school_id")
    if facts.kind == "guidance":
        if home.id != lead:
            raise ValidationFailedError(
                f"指导由牵头校的学科带头人或教研组长进行，{facts.teacher.name} 不在牵头校",
                field="teacher_id",
            )
        leads_group = session.scalar(
            select(ResearchGroup.id).where(ResearchGroup.leader_id == facts.teacher.id).limit(1)
        )
        if not facts.teacher.is_subject_leader and leads_group is None:
            raise ValidationFailedError(
                f"{facts.teacher.name} 不是学科带头人或教研组长", field="teacher_id"
            )
    if not any(
        t.start_date <= facts.day <= t.end_date
        for t in session.scalars(select(Term).where(Term.alliance_id == alliance.id))
    ):
        raise ValidationFailedError(f"日期 {facts.day} 不在本教联体的任何学期内", field="day")
    _subject_in(session, alliance.id, facts.subject_id)
    return home


def create_visit(session: Session, *, payload: s.VisitCreate) -> Visit:
    teacher = session.get(Teacher, payload.teacher_id)
    if teacher is None:
        raise ValidationFailedError(f"教师 {payload.teacher_id} 不存在", field="teacher_id")
    home = _check_visit(
        session,
        _VisitFacts(payload.kind, teacher, payload.to_school_id, payload.day, payload.subject_id),
    )
    visit = Visit(
        kind=payload.kind,
        teacher_id=teacher.id,
        from_school_id=home.id,
        to_school_id=payload.to_school_id,
        day=payload.day,
        subject_id=payload.subject_id,
        mode=payload.mode,
        note=payload.note,
    )
    session.add(visit)
    return visit


def update_visit(session: Session, *, visit: Visit, payload: s.VisitUpdate) -> None:
    sent = payload.model_fields_set
    for name in ("kind", "to_school_id", "day", "mode", "note"):
        if name in sent and getattr(payload, name) is None:
            raise ValidationFailedError("此字段不能为空", field=name)
    facts = _VisitFacts(
        kind=payload.kind or visit.kind,
        teacher=session.get_one(Teacher, visit.teacher_id),
        to_school_id=payload.to_school_id or visit.to_school_id,
        day=payload.day or visit.day,
        subject_id=payload.subject_id if "subject_id" in sent else visit.subject_id,
    )
    _check_visit(session, facts)
    visit.kind, visit.to_school_id, visit.day, visit.subject_id = (
        facts.kind,
        facts.to_school_id,
        facts.day,
        facts.subject_id,
    )
    if payload.mode is not None:
        visit.mode = payload.mode
    if payload.note is not None:
        visit.note = payload.note


def sessions_soon(
    session: Session, *, teacher_id: int, now: datetime, within: timedelta
) -> list[ResearchSession]:
    """Sessions of the teacher's groups (led or joined) that start within ``within`` of ``now``
    or are running at ``now``; cancelled ones are left out."""
    led = select(ResearchGroup.id).where(ResearchGroup.leader_id == teacher_id)
    joined = select(research_group_members.c.research_group_id).where(
        research_group_members.c.teacher_id == teacher_id
    )
    horizon = now + within
    rows = session.scalars(
        select(ResearchSession)
        .where(
            ResearchSession.group_id.in_(led.union(joined)),
            ResearchSession.status != "cancelled",
            ResearchSession.day >= (now - timedelta(days=1)).date(),
            ResearchSession.day <= horizon.date(),
        )
        .order_by(ResearchSession.day, ResearchSession.start_time)
    ).all()
    return [
        row
        for row in rows
        if starts_at(row) <= horizon and starts_at(row) + timedelta(minutes=row.minutes) > now
    ]
