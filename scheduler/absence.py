"""调课 for the app: a teacher is absent on a date; plan the fewest changes to that week.

The stored term timetable is the weekly solution; ``plan_absence`` converts it and the
alliance to the timetabling problem (``alliance_bridge``), runs the minimal-perturbation
``repair`` for the weekday that the date runs (the term calendar decides: holidays have
none, a make-up day runs the weekday it follows), and describes every change in the names
admins use — class, subject, teacher, the campus's period and the date it falls on.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Literal

from sqlalchemy import select
from sqlalchemy.orm import Session, joinedload

from common.alliance.adjustments import timetable_weekday
from common.alliance.models import WEEKDAYS, Lesson, Room, SchoolClass, Teacher, Term
from common.errors import ConflictError, NotFoundError, ValidationFailedError
from scheduler.adjustments import teaching_week, week_of, week_solution
from scheduler.alliance_bridge import problem_from_alliance
from scheduler.repair import DAY_NAMES, RepairError, repair

Substitute = Literal["auto", "none"]


@dataclass(frozen=True)
class Slot:
    date: date
    weekday: str
    period: int
    room: str  # the room's name
    room_code: str

    @property
    def label(self) -> str:
        return f"{self.date.month}月{self.date.day}日{DAY_NAMES[self.weekday]}第{self.period}节"


@dataclass(frozen=True)
class PlannedMove:
    lesson_id: int
    school_class: str
    subject: str
    teacher: str
    old: Slot
    new: Slot

    @property
    def description(self) -> str:
        room = (
            self.new.room if self.new.room == self.old.room else f"{self.old.room}→{self.new.room}"
        )
        return (
            f"{self.school_class} {self.subject}（{self.teacher}）："
            f"{self.old.label} → {self.new.label}（{room}）"
        )


@dataclass(frozen=True)
class PlannedSubstitution:
    lesson_id: int
    school_class: str
    subject: str
    slot: Slot
    absent: str
    substitute: str
    substitute_id: int = 0

    @property
    def description(self) -> str:
        return (
            f"{self.school_class} {self.subject}：{self.slot.label}（{self.slot.room}）"
            f"由 {self.substitute} 代课"
        )


@dataclass
class AbsencePlan:
    teacher: str
    date: date
    weekday: str
    must_move: int
    moves: list[PlannedMove] = field(default_factory=list)
    substitutions: list[PlannedSubstitution] = field(default_factory=list)
    missed_sessions: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    seconds: float = 0.0


def _weekday_of(term: Term, day: date) -> str:
    """The timetable weekday that ``day`` runs, or a 422 naming why it runs none."""
    if not term.start_date <= day <= term.end_date:
        raise ValidationFailedError(
            f"{day.isoformat()} 不在学期「{term.name}」内"
            f"（{term.start_date.isoformat()} 至 {term.end_date.isoformat()}）",
            field="date",
        )
    for calendar_day in term.calendar_days:
        if calendar_day.day == day:
            if calendar_day.kind == "holiday":
                raise ValidationFailedError(f"{day.isoformat()} 是假期，不上课", field="date")
            if calendar_day.kind == "makeup" and calendar_day.follows_weekday:
                return calendar_day.follows_weekday
    weekday = WEEKDAYS[day.weekday()]
    if weekday in ("sat", "sun"):
        raise ValidationFailedError(f"{day.isoformat()} 是周末，不上课", field="date")
    return weekday


def plan_absence(
    session: Session,
    *,
    term_id: int,
    teacher_id: int,
    day: date,
    substitute: Substitute = "none",
    time_limit: float = 5.0,
) -> AbsencePlan:
    """The fewest changes to the week of ``day`` so that the teacher teaches nothing that day.

    Raises NotFoundError for an unknown term or teacher, ValidationFailedError for a date on
    which no lessons run or a teacher of another alliance, ConflictError when no feasible
    repair exists (with the solver's reason).
    """
    term = session.scalars(
        select(Term).where(Term.id == term_id).options(joinedload(Term.calendar_days))
    ).first()
    if term is None:
        raise NotFoundError(f"学期 {term_id} 不存在")
    teacher = session.get(Teacher, teacher_id)
    if teacher is None:
        raise NotFoundError(f"教师 {teacher_id} 不存在")
    weekday = _weekday_of(term, day)
    conversion = problem_from_alliance(session, term_id=term_id)
    problem = conversion.problem
    if teacher.code not in problem.teachers:
        raise ValidationFailedError(
            f"{teacher.name} 本学期在「{term.name}」没有课，无需调课", field="teacher_id"
        )
    # The week as it stands on that date: earlier 调课 of the week already applied.
    problem, solution = teaching_week(
        problem, week_solution(session, term, day), week_of(term, day).keys()
    )
    try:
        result = repair(
            problem,
            solution,
            absent_teacher=teacher.code,
            day=weekday,
            substitute=substitute,
            time_limit=time_limit,
        )
    except RepairError as error:  # the inputs were checked above; this is a bug if reached
        raise ValidationFailedError(str(error)) from error
    if not result.feasible:
        raise ConflictError(f"无法为 {teacher.name} 的请假调课：{result.reason}")

    # Dates of the week that `day` falls in, for each timetable weekday.
    monday = day - timedelta(days=day.weekday())
    week_dates = {name: monday + timedelta(days=i) for i, name in enumerate(WEEKDAYS)}
    week_dates[weekday] = day  # a make-up day runs another weekday's timetable
    lesson_ids = {int(c.lesson.removeprefix("L")) for c in result.changes} | {
        int(s.lesson.removeprefix("L")) for s in result.substitutions
    }
    lessons = {
        lesson.id: lesson
        for lesson in session.scalars(
            select(Lesson)
            .where(Lesson.id.in_(lesson_ids))
            .options(
                joinedload(Lesson.school_class).joinedload(SchoolClass.campus),
                joinedload(Lesson.subject),
                joinedload(Lesson.teacher),
            )
        ).unique()
    }
    room_names: dict[str, str] = {
        code: name for code, name in session.execute(select(Room.code, Room.name))
    }
    teacher_names = {code: t.name for code, t in problem.teachers.items()}
    teacher_ids = dict(session.execute(select(Teacher.code, Teacher.id)).all())

    def slot(weekday_name: str, period: int, room: str) -> Slot:
        return Slot(
            week_dates[weekday_name], weekday_name, period, room_names.get(room, room), room
        )

    plan = AbsencePlan(
        teacher=teacher.name,
        date=day,
        weekday=weekday,
        must_move=result.must_move,
        missed_sessions=list(result.missed_sessions),
        warnings=list(conversion.warnings),
        seconds=result.wall_time,
    )
    for change in result.changes:
        lesson = lessons[int(change.lesson.removeprefix("L"))]
        plan.moves.append(
            PlannedMove(
                lesson_id=lesson.id,
                school_class=lesson.school_class.name,
                subject=lesson.subject.name,
                teacher=lesson.teacher.name,
                old=slot(change.old_day, change.old_period, change.old_room),
                new=slot(change.new_day, change.new_period, change.new_room),
            )
        )
    for sub in result.substitutions:
        lesson = lessons[int(sub.lesson.removeprefix("L"))]
        plan.substitutions.append(
            PlannedSubstitution(
                lesson_id=lesson.id,
                school_class=lesson.school_class.name,
                subject=lesson.subject.name,
                slot=slot(sub.day, sub.period, sub.room),
                absent=teacher_names.get(sub.absent, sub.absent),
                substitute=teacher_names.get(sub.substitute, sub.substitute),
                substitute_id=teacher_ids.get(sub.substitute, 0),
            )
        )
    plan.moves.sort(key=lambda m: (m.old.date, m.old.period, m.school_class))
    # The repair sees a weekly pattern: a holiday of that week still looks like a school day.
    off = next((m for m in plan.moves if timetable_weekday(term, m.new.date) is None), None)
    if off is not None:
        raise ConflictError(
            f"无法为 {teacher.name} 的请假调课：需要把 {off.school_class} {off.subject} "
            f"调到 {off.new.label}，那天不上课。请选择代课，或换一天重新计算"
        )
    return plan
