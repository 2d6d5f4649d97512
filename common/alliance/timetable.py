"""The weekly timetable as people read it: wall-clock times from each campus's bells."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, time

from sqlalchemy import select
from sqlalchemy.orm import Session, joinedload, selectinload

from common.accounts.permissions import Action, Kind, Principal, Scope, authorize
from common.alliance.adjustments import DatedPlacement, dated_placements, week_dates
from common.alliance.models import (
    WEEKDAYS,
    BellSchedule,
    Campus,
    Lesson,
    Room,
    School,
    SchoolClass,
    SyncGroup,
    SyncGroupMember,
    Teacher,
    Term,
    TimetableEntry,
)
from common.errors import NotFoundError, ValidationFailedError


@dataclass(frozen=True)
class SyncInfo:
    group_id: int
    code: str
    kind: str
    role: str  # "lead" or "remote"
    lead_class: str
    lead_teacher: str
    classes: list[str]
    # Each classroom of the lesson with its school's campus, lead first.
    classrooms: list[dict[str, str]] = field(default_factory=list)


@dataclass(frozen=True)
class WeekEntry:
    day: str
    period: int
    start: time | None
    end: time | None
    campus: str
    class_id: int
    class_name: str
    subject: str
    teacher_id: int
    teacher: str
    room_id: int | None
    room: str | None
    sync: SyncInfo | None = None
    # A dated week (``week(..., week_of=...)``): the date, and what 调课 changed on it.
    date: date | None = None
    adjusted: bool = False  # moved here from another period by an applied adjustment
    substitute_id: int | None = None
    substitute: str | None = None  # who teaches it instead of ``teacher`` that day


@dataclass
class Week:
    term_id: int
    title: str
    entries: list[WeekEntry] = field(default_factory=list)
    week_of: date | None = None  # the Monday of a dated week; None for the weekly pattern


def bells_for(session: Session, campus_id: int) -> dict[str, dict[int, tuple[time, time]]]:
    """weekday -> period number -> (start, end) for one campus."""
    table: dict[str, dict[int, tuple[time, time]]] = {}
    schedules = session.scalars(
        select(BellSchedule)
        .where(BellSchedule.campus_id == campus_id)
        .options(joinedload(BellSchedule.periods))
    ).unique()
    for schedule in schedules:
        periods = {p.number: (p.start_time, p.end_time) for p in schedule.periods}
        for day in schedule.weekdays:
            table[day] = periods
    return table


def current_term_id(session: Session, alliance_id: int) -> int:
    term_id = session.scalar(
        select(Term.id)
        .where(Term.alliance_id == alliance_id)
        .order_by(Term.is_current.desc(), Term.start_date.desc())
    )
    if term_id is None:
        raise NotFoundError("本教联体还没有学期")
    return term_id


def _sync_index(session: Session, term_id: int) -> dict[int, tuple[SyncGroup, str]]:
    """lesson id -> (its sync group, "lead" | "remote")."""
    index: dict[int, tuple[SyncGroup, str]] = {}
    groups = session.scalars(
        select(SyncGroup)
        .where(SyncGroup.term_id == term_id)
        .options(
            joinedload(SyncGroup.members)
            .joinedload(SyncGroupMember.lesson)
            .joinedload(Lesson.school_class)
            .joinedload(SchoolClass.campus),
            joinedload(SyncGroup.lead_lesson)
            .joinedload(Lesson.school_class)
            .joinedload(SchoolClass.campus),
            joinedload(SyncGroup.lead_lesson).joinedload(Lesson.teacher),
        )
    ).unique()
    for group in groups:
        index[group.lead_lesson_id] = (group, "lead")
        for member in group.members:
            index[member.lesson_id] = (group, "remote")
    return index


def _sync_info(group: SyncGroup, role: str) -> SyncInfo:
    lead = group.lead_lesson
    return SyncInfo(
        group_id=group.id,
        code=group.code,
        kind=group.kind,
        role=role,
        lead_class=lead.school_class.name,
        lead_teacher=lead.teacher.name,
        classes=[lead.school_class.name] + [m.lesson.school_class.name for m in group.members],
        classrooms=[
            {
                "campus": lead.school_class.campus.name,
                "class_name": lead.school_class.name,
                "role": "lead",
            }
        ]
        + [
            {
                "campus": m.lesson.school_class.campus.name,
                "class_name": m.lesson.school_class.name,
                "role": "remote",
            }
            for m in group.members
        ],
    )


def week(
    session: Session,
    principal: Principal,
    *,
    class_id: int | None = None,
    teacher_id: int | None = None,
    room_id: int | None = None,
    term_id: int | None = None,
    week_of: date | None = None,
) -> Week:
    """One class's, teacher's or room's week, after checking the principal may read it:
    the weekly timetable, or with ``week_of`` the dated week that day falls in (applied
    调课 included: moved lessons at their new period, substitutes named)."""
    chosen = [v for v in (class_id, teacher_id, room_id) if v is not None]
    if len(chosen) != 1:
        raise ValidationFailedError("请指定且只指定一个：class_id、teacher_id 或 room_id")
    stmt = select(TimetableEntry).join(Lesson, TimetableEntry.lesson_id == Lesson.id)
    if class_id is not None:
        school_class = session.get(SchoolClass, class_id)
        if school_class is None:
            raise NotFoundError(f"班级 {class_id} 不存在")
        school = session.get_one(School, school_class.school_id)
        scope = Scope(alliance_id=school.alliance_id, school_id=school.id, class_id=class_id)
        stmt = stmt.where(Lesson.class_id == class_id)
        title = f"{school.name} {school_class.name}"
    elif teacher_id is not None:
        teacher = session.get(Teacher, teacher_id)
        if teacher is None:
            raise NotFoundError(f"教师 {teacher_id} 不存在")
        school = session.get_one(School, teacher.school_id)
        scope = Scope(alliance_id=school.alliance_id, school_id=school.id)
        stmt = stmt.where(Lesson.teacher_id == teacher_id)
        title = f"{teacher.name}老师"
    else:
        room = session.get(Room, room_id)
        if room is None:
            raise NotFoundError(f"教室 {room_id} 不存在")
        school = session.get_one(School, session.get_one(Campus, room.campus_id).school_id)
        scope = Scope(alliance_id=school.alliance_id, school_id=school.id)
        stmt = stmt.where(TimetableEntry.room_id == room_id)
        title = room.name
    authorize(principal, Action.READ, Kind.TIMETABLE, scope)
    term = term_id if term_id is not None else current_term_id(session, school.alliance_id)
    if week_of is not None:
        return _dated_week(
            session,
            term,
            title,
            week_of,
            class_id=class_id,
            teacher_id=teacher_id,
            room_id=room_id,
        )
    rows = session.scalars(
        stmt.where(TimetableEntry.term_id == term).options(
            joinedload(TimetableEntry.lesson)
            .joinedload(Lesson.school_class)
            .joinedload(SchoolClass.campus),
            joinedload(TimetableEntry.lesson).joinedload(Lesson.subject),
            joinedload(TimetableEntry.lesson).joinedload(Lesson.teacher),
            joinedload(TimetableEntry.room),
        )
    ).all()
    result = Week(term_id=term, title=title)
    build = _EntryBuilder(session, term)
    for entry in rows:
        result.entries.append(build(entry.lesson, entry.day, entry.day, entry.period, entry.room))
    result.entries.sort(key=_in_week_order)
    return result


def _in_week_order(entry: WeekEntry) -> tuple[int, date, time, int]:
    return (WEEKDAYS.index(entry.day), entry.date or date.min, entry.start or time(), entry.period)


class _EntryBuilder:
    """Week entries with bells (per campus, read once) and sync partners."""

    def __init__(self, session: Session, term_id: int) -> None:
        self._session = session
        self._sync = _sync_index(session, term_id)
        self._bells: dict[int, dict[str, dict[int, tuple[time, time]]]] = {}

    def __call__(
        self,
        lesson: Lesson,
        day: str,
        bell_day: str,
        period: int,
        room: Room | None,
        **dated: object,
    ) -> WeekEntry:
        campus = lesson.school_class.campus
        if campus.id not in self._bells:
            self._bells[campus.id] = bells_for(self._session, campus.id)
        start_end = self._bells[campus.id].get(bell_day, {}).get(period)
        found = self._sync.get(lesson.id)
        return WeekEntry(
            day=day,
            period=period,
            start=start_end[0] if start_end else None,
            end=start_end[1] if start_end else None,
            campus=campus.name,
            class_id=lesson.class_id,
            class_name=lesson.school_class.name,
            subject=lesson.subject.name,
            teacher_id=lesson.teacher_id,
            teacher=lesson.teacher.name,
            room_id=room.id if room else None,
            room=room.name if room else None,
            sync=_sync_info(*found) if found else None,
            **dated,  # type: ignore[arg-type]
        )


def _dated_week(
    session: Session,
    term_id: int,
    title: str,
    week_of: date,
    *,
    class_id: int | None,
    teacher_id: int | None,
    room_id: int | None,
) -> Week:
    """The week of ``week_of`` as it happens: the weekly timetable with its applied 调课."""
    term = session.scalars(
        select(Term).where(Term.id == term_id).options(selectinload(Term.calendar_days))
    ).one()
    dates = week_dates(week_of)
    placements = dated_placements(session, term, dates)
    lessons = {
        lesson.id: lesson
        for lesson in session.scalars(
            select(Lesson)
            .where(Lesson.id.in_({p.lesson_id for p in placements}))
            .options(
                joinedload(Lesson.school_class).joinedload(SchoolClass.campus),
                joinedload(Lesson.subject),
                joinedload(Lesson.teacher),
            )
        ).unique()
    }

    def wanted(p: DatedPlacement) -> bool:
        lesson = lessons[p.lesson_id]
        if class_id is not None:
            return lesson.class_id == class_id
        if teacher_id is not None:
            return teacher_id in (lesson.teacher_id, p.substitute_id)
        return p.room_id == room_id

    chosen = [p for p in placements if wanted(p)]
    rooms = {
        room.id: room
        for room in session.scalars(
            select(Room).where(Room.id.in_({p.room_id for p in chosen if p.room_id}))
        )
    }
    names = dict(
        session.execute(
            select(Teacher.id, Teacher.name).where(
                Teacher.id.in_({p.substitute_id for p in chosen if p.substitute_id})
            )
        ).all()
    )
    result = Week(term_id=term_id, title=title, week_of=dates[0])
    build = _EntryBuilder(session, term_id)
    for p in chosen:
        result.entries.append(
            build(
                lessons[p.lesson_id],
                WEEKDAYS[p.day.weekday()],
                p.weekday,
                p.period,
                rooms.get(p.room_id or 0),
                date=p.day,
                adjusted=p.moved,
                substitute_id=p.substitute_id,
                substitute=names.get(p.substitute_id or 0),
            )
        )
    result.entries.sort(key=_in_week_order)
    return result
