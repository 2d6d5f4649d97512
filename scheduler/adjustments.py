"""调课 applied: a computed absence plan stored as dated changes, judged against the week first.

``apply_plan`` re-reads the week of the absence as it stands (the weekly timetable with the
adjustments already applied), checks that every occurrence the plan touches is still where
the plan found it, that the absent teacher is then free that day, and that the adjusted week
passes the checker with every substitute free and qualified (``repair.validate_repair``).
Anything stale or conflicting is a 409 naming the lesson or teacher; otherwise the
adjustment and its items are added in the caller's transaction (all or nothing).
``revoke_adjustment`` returns the dates to the weekly timetable.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime

from sqlalchemy import select
from sqlalchemy.orm import Session, joinedload, selectinload

from common.alliance.adjustments import (
    DatedPlacement,
    adjusted_dates,
    applied_adjustments,
    dated_placements,
    timetable_weekday,
    week_dates,
)
from common.alliance.models import (
    Lesson,
    Room,
    SchoolClass,
    SyncGroup,
    Teacher,
    Term,
    TimetableAdjustment,
    TimetableAdjustmentItem,
)
from common.errors import ConflictError, NotFoundError, ValidationFailedError
from scheduler import domain as d
from scheduler.alliance_bridge import current_solution, lesson_key, problem_from_alliance
from scheduler.repair import DAY_NAMES, RepairResult, Substitution, validate_repair
from scheduler.views import ViewEntry, ViewKind, entries


@dataclass(frozen=True)
class MoveIn:
    lesson_id: int
    old_date: date
    old_period: int
    new_date: date
    new_period: int
    new_room_code: str


@dataclass(frozen=True)
class SubstitutionIn:
    lesson_id: int
    date: date
    period: int
    substitute_id: int


@dataclass(frozen=True)
class CancellationIn:
    lesson_id: int
    date: date
    period: int


def load_term(session: Session, term_id: int, *, lock: bool = False) -> Term:
    """The term with its calendar; ``lock`` holds its row (PostgreSQL) so that two admins
    applying or revoking 调课 of one term are judged one after the other."""
    stmt = select(Term).where(Term.id == term_id).options(selectinload(Term.calendar_days))
    term = session.scalars(stmt.with_for_update(of=Term) if lock else stmt).first()
    if term is None:
        raise NotFoundError(f"学期 {term_id} 不存在")
    return term


def week_of(term: Term, day: date) -> dict[str, date]:
    """Timetable weekday -> the date of ``day``'s week that runs it (``day`` itself wins when a
    make-up day runs a weekday that also falls in the week)."""
    dates: dict[str, date] = {}
    for other in week_dates(day):
        weekday = timetable_weekday(term, other)
        if weekday is not None:
            dates.setdefault(weekday, other)
    weekday = timetable_weekday(term, day)
    if weekday is not None:
        dates[weekday] = day
    return dates


def week_solution(
    session: Session,
    term: Term,
    day: date,
    *,
    adjustments: list[TimetableAdjustment] | None = None,
) -> d.Solution:
    """The week of ``day`` as a timetable solution: teaching dates with their applied
    adjustments; a weekday with no teaching date that week (a holiday) keeps the weekly
    pattern, so that no plan moves a lesson onto it."""
    dates = week_of(term, day)
    rooms = dict(session.execute(select(Room.id, Room.code)).all())
    placements = dated_placements(session, term, dates.values(), adjustments=adjustments)
    lessons = [
        d.Placement(lesson_key(p.lesson_id), p.weekday, p.period, rooms.get(p.room_id or 0, ""))
        for p in placements
        if dates.get(p.weekday) == p.day
    ]
    lessons += [p for p in current_solution(session, term_id=term.id).lessons if p.day not in dates]
    return d.Solution(lessons=lessons)


def _label(day: date, period: int) -> str:
    return f"{day.month}月{day.day}日{DAY_NAMES[date_weekday(day)]}第{period}节"


def date_weekday(day: date) -> str:
    return ("mon", "tue", "wed", "thu", "fri", "sat", "sun")[day.weekday()]


def _lesson_name(lesson: Lesson) -> str:
    return f"{lesson.school_class.name} {lesson.subject.name}（{lesson.teacher.name}）"


def _lessons(session: Session, lesson_ids: set[int]) -> dict[int, Lesson]:
    return {
        lesson.id: lesson
        for lesson in session.scalars(
            select(Lesson)
            .where(Lesson.id.in_(lesson_ids))
            .options(
                joinedload(Lesson.school_class),
                joinedload(Lesson.subject),
                joinedload(Lesson.teacher),
            )
        ).unique()
    }


def _in_chinese(session: Session, term_id: int, problems: list[str]) -> str:
    """Checker messages name lessons (L12) and teachers by code: name them as admins do."""
    lessons = _lessons(
        session, {int(m) for text in problems for m in re.findall(r"\bL(\d+)\b", text)}
    )
    teachers = dict(
        session.execute(
            select(Teacher.code, Teacher.name)
            .join(Lesson, Lesson.teacher_id == Teacher.id)
            .where(Lesson.term_id == term_id)
        ).all()
    )

    def name(text: str) -> str:
        text = re.sub(
            r"\bL(\d+)\b",
            lambda m: _lesson_name(lessons[int(m[1])]) if int(m[1]) in lessons else m[0],
            text,
        )
        for code, teacher in teachers.items():
            text = re.sub(rf"(?<![\w-]){re.escape(code)}(?![\w-])", teacher, text)
        return text

    return "；".join(name(p) for p in problems[:3])


def _item(
    kind: str,
    lesson: Lesson,
    sync_groups: dict[int, int],
    *,
    old: DatedPlacement,
    **values: object,
) -> TimetableAdjustmentItem:
    return TimetableAdjustmentItem(
        kind=kind,
        lesson_id=lesson.id,
        sync_group_id=sync_groups.get(lesson.id),
        old_date=old.day,
        old_period=old.period,
        old_room_id=old.room_id,
        **values,
    )


def apply_plan(
    session: Session,
    *,
    term_id: int,
    teacher_id: int,
    day: date,
    reason: str,
    created_by: int | None,
    moves: Sequence[MoveIn],
    substitutions: Sequence[SubstitutionIn],
    cancellations: Sequence[CancellationIn] = (),
) -> TimetableAdjustment:
    """Store a plan for ``teacher_id``'s absence on ``day`` after judging it against the week
    as it stands. ValidationFailedError for malformed plans, ConflictError (409) for stale or
    conflicting ones; nothing is stored then."""
    term = load_term(session, term_id, lock=True)
    teacher = session.get(Teacher, teacher_id)
    if teacher is None:
        raise NotFoundError(f"教师 {teacher_id} 不存在")
    own = _teacher_lessons(session, term_id, teacher_id)
    if not own:
        raise ValidationFailedError(
            f"{teacher.name} 本学期在「{term.name}」没有课，无需调课", field="teacher_id"
        )
    weekday = timetable_weekday(term, day)
    if weekday is None:
        raise ValidationFailedError(f"{day.isoformat()} 不是本学期的上课日", field="date")
    if not (moves or substitutions or cancellations):
        raise ValidationFailedError("方案里没有任何调整", field="moves")
    dates = week_of(term, day)
    teaching = set(dates.values())
    for when in (
        [m.old_date for m in moves]
        + [m.new_date for m in moves]
        + [s.date for s in substitutions]
        + [c.date for c in cancellations]
    ):
        if when not in teaching:
            raise ValidationFailedError(
                f"{when.isoformat()} 不是 {day.isoformat()} 所在周的上课日", field="moves"
            )
    lesson_ids = (
        {m.lesson_id for m in moves}
        | {s.lesson_id for s in substitutions}
        | {c.lesson_id for c in cancellations}
    )
    lessons = _lessons(session, lesson_ids)
    if any(
        lesson_id not in lessons or lessons[lesson_id].term_id != term_id
        for lesson_id in lesson_ids
    ):
        raise ValidationFailedError("方案中有不属于本学期的课", field="moves")
    rooms = dict(session.execute(select(Room.code, Room.id)).all())
    for move in moves:
        if move.new_room_code not in rooms:
            raise ValidationFailedError(f"教室 {move.new_room_code} 不存在", field="moves")
    substitutes = {
        t.id: t
        for t in session.scalars(
            select(Teacher).where(Teacher.id.in_({s.substitute_id for s in substitutions}))
        )
    }
    if len(substitutes) != len({s.substitute_id for s in substitutions}):
        raise ValidationFailedError("代课教师不存在", field="substitutions")

    existing = applied_adjustments(session, term_id=term_id, days=teaching)
    now = {(p.lesson_id, p.day, p.period): p for p in dated_placements(session, term, teaching)}

    def still_there(lesson_id: int, when: date, period: int) -> DatedPlacement:
        found = now.get((lesson_id, when, period))
        if found is None:
            raise ConflictError(
                f"方案已过期：{_lesson_name(lessons[lesson_id])} 在 {_label(when, period)} "
                "已不在原位置（课表或已应用的调课有变化），请重新计算方案"
            )
        return found

    for sub in substitutions:
        taken = still_there(sub.lesson_id, sub.date, sub.period)
        if taken.substitute_id is not None:
            raise ConflictError(
                f"方案已过期：{_lesson_name(lessons[sub.lesson_id])} 在 "
                f"{_label(sub.date, sub.period)} 已有代课安排"
            )
    for adjustment in existing:
        for item in adjustment.items:
            if (
                item.kind == "substitute"
                and item.old_date == day
                and item.substitute_teacher_id == teacher_id
            ):
                raise ConflictError(
                    f"{teacher.name} 在 {_label(day, item.old_period)} 已被安排代课，"
                    "请先撤销那次调课"
                )

    sync_groups = dict(
        session.execute(
            select(SyncGroup.lead_lesson_id, SyncGroup.id).where(SyncGroup.term_id == term_id)
        ).all()
    )
    for group in session.scalars(
        select(SyncGroup)
        .where(SyncGroup.term_id == term_id)
        .options(selectinload(SyncGroup.members))
    ):
        for member in group.members:
            sync_groups.setdefault(member.lesson_id, group.id)
    candidate = TimetableAdjustment(
        term_id=term_id,
        day=day,
        absent_teacher_id=teacher_id,
        reason=reason.strip(),
        created_by=created_by,
        status="applied",
    )
    items: list[TimetableAdjustmentItem] = []
    for move in moves:
        old = still_there(move.lesson_id, move.old_date, move.old_period)
        items.append(
            _item(
                "move",
                lessons[move.lesson_id],
                sync_groups,
                old=old,
                new_date=move.new_date,
                new_period=move.new_period,
                new_room_id=rooms[move.new_room_code],
            )
        )
    for cancel in cancellations:
        old = still_there(cancel.lesson_id, cancel.date, cancel.period)
        items.append(_item("cancel", lessons[cancel.lesson_id], sync_groups, old=old))
    for sub in substitutions:
        old = now[sub.lesson_id, sub.date, sub.period]
        items.append(
            _item(
                "substitute",
                lessons[sub.lesson_id],
                sync_groups,
                old=old,
                substitute_teacher_id=sub.substitute_id,
            )
        )
    candidate.items = items

    after = dated_placements(session, term, teaching, adjustments=[*existing, candidate])
    left = [p for p in after if p.day == day and p.substitute_id is None and p.lesson_id in own]
    if left:
        first = left[0]
        raise ConflictError(
            f"方案已过期：{teacher.name} 在 {_label(day, first.period)} 仍有课"
            f"（{_lesson_name(_lessons(session, {first.lesson_id})[first.lesson_id])}），"
            "请重新计算方案"
        )

    problem = problem_from_alliance(session, term_id=term_id).problem
    solution = week_solution(session, term, day, adjustments=[*existing, candidate])
    teacher_codes = dict(session.execute(select(Teacher.id, Teacher.code)).all())
    room_codes = {room_id: code for code, room_id in rooms.items()}
    covers = [
        Substitution(
            lesson=lesson_key(p.lesson_id),
            subject=problem.lessons[lesson_key(p.lesson_id)].subject,
            class_id=problem.lessons[lesson_key(p.lesson_id)].class_id,
            day=p.weekday,
            period=p.period,
            room=room_codes.get(p.room_id or 0, ""),
            absent=problem.lessons[lesson_key(p.lesson_id)].teacher,
            substitute=teacher_codes[p.substitute_id],
        )
        for p in after
        if p.day == day and p.substitute_id is not None
    ]
    problems = validate_repair(
        problem,
        solution,
        RepairResult(solution, True, substitutions=covers),
        teacher.code,
        weekday,
    )
    if problems:
        raise ConflictError(
            "方案与当前课表冲突：" + _in_chinese(session, term_id, problems),
            detail=problems,
        )
    session.add(candidate)
    session.flush()
    return candidate


def _teacher_lessons(session: Session, term_id: int, teacher_id: int) -> set[int]:
    return set(
        session.scalars(
            select(Lesson.id).where(Lesson.term_id == term_id, Lesson.teacher_id == teacher_id)
        )
    )


def list_adjustments(
    session: Session,
    *,
    term_id: int,
    first: date | None = None,
    last: date | None = None,
    include_revoked: bool = True,
) -> list[TimetableAdjustment]:
    """The term's adjustments (by absence date), newest date first, items loaded."""
    stmt = (
        select(TimetableAdjustment)
        .where(TimetableAdjustment.term_id == term_id)
        .options(
            joinedload(TimetableAdjustment.absent_teacher),
            selectinload(TimetableAdjustment.items).options(
                joinedload(TimetableAdjustmentItem.lesson).options(
                    joinedload(Lesson.school_class).joinedload(SchoolClass.campus),
                    joinedload(Lesson.subject),
                    joinedload(Lesson.teacher),
                ),
                joinedload(TimetableAdjustmentItem.substitute_teacher),
            ),
        )
        .order_by(TimetableAdjustment.day.desc(), TimetableAdjustment.id.desc())
    )
    if first is not None:
        stmt = stmt.where(TimetableAdjustment.day >= first)
    if last is not None:
        stmt = stmt.where(TimetableAdjustment.day <= last)
    if not include_revoked:
        stmt = stmt.where(TimetableAdjustment.status == "applied")
    return list(session.scalars(stmt).unique())


def describe_item(item: TimetableAdjustmentItem, rooms: dict[int, str]) -> str:
    """One item as the announcement prints it."""
    lesson = item.lesson
    what = f"{lesson.school_class.name} {lesson.subject.name}"
    old = _label(item.old_date, item.old_period)
    if item.kind == "move" and item.new_date is not None and item.new_period is not None:
        room = rooms.get(item.new_room_id or 0, "")
        return (
            f"{what}（{lesson.teacher.name}）：{old} → "
            f"{_label(item.new_date, item.new_period)}（{room}）"
        )
    if item.kind == "substitute" and item.substitute_teacher is not None:
        return f"{what}：{old} 由 {item.substitute_teacher.name} 代课"
    return f"{what}（{lesson.teacher.name}）：{old} 停课"


def revoke_adjustment(session: Session, *, adjustment: TimetableAdjustment) -> None:
    """Back to the weekly timetable on the adjustment's dates. A later adjustment of the same
    week may rely on it: that one is revoked first (409 naming it)."""
    term = load_term(session, adjustment.term_id, lock=True)
    session.refresh(adjustment)
    if adjustment.status != "applied":
        raise ConflictError("这次调课已经撤销")
    week = set(week_of(term, adjustment.day).values())
    later = [
        other
        for other in applied_adjustments(session, term_id=term.id, days=week)
        if other.id > adjustment.id
    ]
    if later:
        other = later[0]
        raise ConflictError(
            f"同一周之后还应用了 {other.day.month}月{other.day.day}日"
            f"{other.absent_teacher.name}的调课，请先撤销那次调课"
        )
    adjustment.status = "revoked"
    adjustment.revoked_at = datetime.now(UTC)
    session.flush()


def dated_view_entries(
    session: Session,
    term: Term,
    problem: d.Problem,
    kind: ViewKind,
    key: str,
    days: Iterable[date] | None = None,
) -> dict[date, list[ViewEntry]]:
    """For ``days`` (default: each date an applied adjustment changes), what one
    class/teacher/room/campus has that day (for ``to_ics(dated=...)`` and dated exports):
    moved lessons at their new period, a substituted lesson with the substitute (in the
    substitute's calendar, not the absent teacher's)."""
    days = sorted(adjusted_dates(session, term_id=term.id) if days is None else set(days))
    placements = dated_placements(session, term, days)
    rooms = dict(session.execute(select(Room.id, Room.code)).all())
    teachers = {t.id: t for t in session.scalars(select(Teacher))}
    moved_from: dict[tuple[int, date, int], str] = {}
    for adjustment in applied_adjustments(session, term_id=term.id, days=days):
        for item in adjustment.items:
            if item.kind == "move" and item.new_date is not None and item.new_period is not None:
                moved_from[item.lesson_id, item.new_date, item.new_period] = (
                    f"调课：原{_label(item.old_date, item.old_period)}"
                )
    result: dict[date, list[ViewEntry]] = {}
    for day in days:
        on_day = [p for p in placements if p.day == day]
        solution = d.Solution(
            lessons=[
                d.Placement(
                    lesson_key(p.lesson_id), p.weekday, p.period, rooms.get(p.room_id or 0, "")
                )
                for p in on_day
            ]
        )
        substitutes = {
            (lesson_key(p.lesson_id), p.period): teachers[p.substitute_id]
            for p in on_day
            if p.substitute_id is not None and p.substitute_id in teachers
        }
        found = entries(problem, solution, kind, key)
        if kind == "teacher":
            found = [
                e
                for e in found
                if (cover := substitutes.get((e.lesson or "", e.period or 0))) is None
                or cover.code == key
            ]
            for (lesson, period), substitute in substitutes.items():
                if substitute.code == key and problem.lessons[lesson].teacher != key:
                    class_id = problem.lessons[lesson].class_id
                    found += [
                        e
                        for e in entries(problem, solution, "class", class_id)
                        if e.lesson == lesson and e.period == period
                    ]
        changed: list[ViewEntry] = []
        for entry in found:
            lesson_id = int(entry.lesson.removeprefix("L")) if entry.lesson else 0
            cover = substitutes.get((entry.lesson or "", entry.period or 0))
            note = moved_from.get((lesson_id, day, entry.period or 0))
            if cover is not None:
                entry = replace(entry, teacher=cover.name)
                note = f"代课：{cover.name}" + (f"；{note}" if note else "")
            changed.append(replace(entry, change=note) if note else entry)
        result[day] = changed
    return result


def teaching_week(
    problem: d.Problem, solution: d.Solution, weekdays: Collection[str]
) -> tuple[d.Problem, d.Solution]:
    """The problem and week without the weekdays that have no teaching date that week (a
    holiday): their occurrences are dropped and their lessons' weekly counts lowered, so a
    repair of that week cannot move a lesson onto the holiday."""
    off = [day for day in problem.days if day not in weekdays]
    if not off:
        return problem, solution
    dropped = Counter(p.lesson for p in solution.lessons if p.day in off)
    lessons = {
        key: replace(lesson, per_week=lesson.per_week - dropped[key]) if dropped[key] else lesson
        for key, lesson in problem.lessons.items()
    }
    return (
        replace(
            problem, days=tuple(day for day in problem.days if day in weekdays), lessons=lessons
        ),
        d.Solution(lessons=[p for p in solution.lessons if p.day not in off]),
    )


def dated_week_entries(
    session: Session, term: Term, problem: d.Problem, kind: ViewKind, key: str, day: date
) -> dict[str, list[ViewEntry]]:
    """The week of ``day`` for a dated export: weekday -> entries of that week's date (a
    weekday without school that week has none)."""
    dates = week_of(term, day)
    on_dates = dated_view_entries(session, term, problem, kind, key, dates.values())
    return {
        weekday: on_dates.get(dates[weekday], []) if weekday in dates else []
        for weekday in problem.days
    }
