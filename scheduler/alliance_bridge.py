"""Convert between the app's alliance (database) and the timetabling problem and solution.

Ids in the problem are the codes admins see (campus `dj`, room `dj-lb`, teacher
`t-dj-001`, class `dj-4-1`); lessons are `L{id}` of the `lessons` table.

The interchange format has one bell per campus; a campus whose bells differ on some
weekdays (e.g. a Monday flag-raising schedule) is aligned on the bell used by most days,
and the differing days are reported as warnings.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from sqlalchemy import delete, select
from sqlalchemy.orm import Session, joinedload

from common.alliance.models import (
    BellSchedule,
    Campus,
    Lesson,
    Room,
    School,
    SchoolClass,
    SyncGroup,
    Teacher,
    Term,
    TimetableEntry,
    TravelTime,
)
from common.errors import NotFoundError, ValidationFailedError
from scheduler import domain as d

TEACHING_DAYS = ("mon", "tue", "wed", "thu", "fri")


@dataclass
class Conversion:
    problem: d.Problem
    warnings: list[str] = field(default_factory=list)


def lesson_key(lesson_id: int) -> str:
    return f"L{lesson_id}"


def _main_bell(campus: Campus, warnings: list[str]) -> tuple[d.Interval, ...]:
    schedules = [s for s in campus.bell_schedules if s.periods]
    if not schedules:
        raise ValidationFailedError(f"校区 {campus.name} 还没有作息时间")
    usage = Counter({s.id: len(set(s.weekdays) & set(TEACHING_DAYS)) for s in schedules})
    main = next(s for s in schedules if s.id == usage.most_common(1)[0][0])
    for other in schedules:
        if other.id != main.id and set(other.weekdays) & set(TEACHING_DAYS):
            days = "、".join(day for day in other.weekdays if day in TEACHING_DAYS)
            warnings.append(
                f"{campus.name} 的「{other.name}」作息（{days}）与常规作息不同，"
                f"按「{main.name}」对齐"
            )
    return tuple(
        d.Interval(
            p.start_time.hour * 60 + p.start_time.minute, p.end_time.hour * 60 + p.end_time.minute
        )
        for p in main.periods
    )


def problem_from_alliance(session: Session, *, term_id: int) -> Conversion:
    """The term's timetabling problem for its alliance."""
    term = session.get(Term, term_id)
    if term is None:
        raise NotFoundError(f"学期 {term_id} 不存在")
    warnings: list[str] = []
    campuses = (
        session.scalars(
            select(Campus)
            .join(School, Campus.school_id == School.id)
            .where(School.alliance_id == term.alliance_id)
            .options(joinedload(Campus.bell_schedules).joinedload(BellSchedule.periods))
            .order_by(Campus.id)
        )
        .unique()
        .all()
    )
    campus_code = {c.id: c.code for c in campuses}
    problem_campuses = {c.code: d.Campus(c.code, c.name, _main_bell(c, warnings)) for c in campuses}
    travel: dict[tuple[str, str], int] = {}
    for pair in session.scalars(select(TravelTime).where(TravelTime.campus_a_id.in_(campus_code))):
        if pair.campus_b_id in campus_code:
            a, b = campus_code[pair.campus_a_id], campus_code[pair.campus_b_id]
            travel[(a, b)] = travel[(b, a)] = pair.minutes
    rooms = {
        r.code: d.Room(r.code, campus_code[r.campus_id], r.capacity, frozenset(r.features))
        for r in session.scalars(
            select(Room).where(Room.campus_id.in_(campus_code)).order_by(Room.id)
        )
    }
    room_code = {
        r.id: r.code for r in session.scalars(select(Room).where(Room.campus_id.in_(campus_code)))
    }
    lessons = session.scalars(
        select(Lesson)
        .where(Lesson.term_id == term_id)
        .options(
            joinedload(Lesson.school_class).joinedload(SchoolClass.grade),
            joinedload(Lesson.subject),
            joinedload(Lesson.teacher),
        )
        .order_by(Lesson.id)
    ).all()
    classes: dict[str, d.SchoolClass] = {}
    teachers: dict[str, d.Teacher] = {}
    problem_lessons: dict[str, d.Lesson] = {}
    for lesson in lessons:
        school_class = lesson.school_class
        if school_class.home_room_id is None:
            raise ValidationFailedError(
                f"班级 {school_class.name} 没有固定教室", field="home_room_id"
            )
        classes[school_class.code] = d.SchoolClass(
            school_class.code,
            campus_code[school_class.campus_id],
            school_class.grade.level,
            school_class.size,
            room_code[school_class.home_room_id],
        )
        teacher: Teacher = lesson.teacher
        teachers[teacher.code] = d.Teacher(teacher.code, teacher.name, teacher.max_lessons_per_day)
        problem_lessons[lesson_key(lesson.id)] = d.Lesson(
            id=lesson_key(lesson.id),
            class_id=school_class.code,
            subject=lesson.subject.name,
            teacher=teacher.code,
            per_week=lesson.per_week,
            max_per_day=lesson.max_per_day
            or d.default_max_per_day(lesson.per_week, len(TEACHING_DAYS)),
            room_features=frozenset(lesson.room_features),
            prefer_morning=lesson.prefer_morning,
            explicit=frozenset({"max_per_day"} if lesson.max_per_day else set())
            | ({"room_features"} if lesson.room_features else set())
            | ({"prefer_morning"} if lesson.prefer_morning else set()),
        )
    groups = session.scalars(
        select(SyncGroup)
        .where(SyncGroup.term_id == term_id)
        .options(joinedload(SyncGroup.members))
        .order_by(SyncGroup.id)
    ).unique()
    sync_groups = tuple(
        d.SyncGroup(
            g.code, lesson_key(g.lead_lesson_id), tuple(lesson_key(m.lesson_id) for m in g.members)
        )
        for g in groups
    )
    bells = [i for c in problem_campuses.values() for i in c.bell]
    problem = d.Problem(
        name=term.name,
        days=TEACHING_DAYS,
        sync_tolerance=5,
        research_window=d.Interval(min(b.start for b in bells), max(b.end for b in bells)),
        campuses=problem_campuses,
        travel=travel,
        rooms=rooms,
        teachers=teachers,
        classes=classes,
        lessons=problem_lessons,
        sync_groups=sync_groups,
        present=frozenset({"travel_minutes", "sync_groups"}),
    )
    return Conversion(problem, warnings)


def current_solution(session: Session, *, term_id: int) -> d.Solution:
    """The term's stored timetable as a solution."""
    entries = session.scalars(
        select(TimetableEntry)
        .where(TimetableEntry.term_id == term_id)
        .options(joinedload(TimetableEntry.room))
        .order_by(TimetableEntry.lesson_id, TimetableEntry.day, TimetableEntry.period)
    ).all()
    return d.Solution(
        lessons=[
            d.Placement(lesson_key(e.lesson_id), e.day, e.period, e.room.code if e.room else "")
            for e in entries
        ]
    )


def store_solution(session: Session, *, term_id: int, solution: d.Solution) -> int:
    """Replace the term's timetable with `solution` (in the caller's transaction)."""
    rooms = {code: room_id for room_id, code in session.execute(select(Room.id, Room.code))}
    lesson_ids = set(session.scalars(select(Lesson.id).where(Lesson.term_id == term_id)))
    session.execute(delete(TimetableEntry).where(TimetableEntry.term_id == term_id))
    for placement in solution.lessons:
        lesson_id = int(placement.lesson.removeprefix("L"))
        if lesson_id not in lesson_ids:
            raise ValidationFailedError(f"课程 {placement.lesson} 不属于本学期")
        if placement.room not in rooms:
            raise ValidationFailedError(f"教室 {placement.room} 不存在")
        session.add(
            TimetableEntry(
                term_id=term_id,
                lesson_id=lesson_id,
                day=placement.day,
                period=placement.period,
                room_id=rooms[placement.room],
            )
        )
    session.flush()
    return len(solution.lessons)
