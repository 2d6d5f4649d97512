"""调课: repair a timetable after a teacher's absence for a day, changing as little as possible.

The absent teacher's occurrences that day are first offered to substitute teachers (mode
"auto": someone who teaches the same subject, is free then with travel time to and from
their own lessons, not unavailable and under their daily limit); what is left must move.
Moving is a minimal-perturbation CP-SAT model over a neighbourhood that widens only when
it has to — the affected lessons, then their classes, then their teachers' lessons, then
the whole week — with every other occurrence fixed (`constraints.Background`) and the
objective "occurrences whose (day, period, room) differ from the original", hinted with
the original. A sync group led by the absent teacher moves as a whole; a member whose
assistant is absent needs a substitute or the group moves.

The interchange format has no substitute field: substitutions are returned beside the
solution, whose lessons stay where they were.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from ortools.sat.python import cp_model

from scheduler.checker import check
from scheduler.constraints import Background, build_model, counted_teacher
from scheduler.domain import Interval, Placement, Problem, ResearchPlacement, Solution, hhmm

log = logging.getLogger(__name__)

DAY_NAMES = {
    "mon": "周一",
    "tue": "周二",
    "wed": "周三",
    "thu": "周四",
    "fri": "周五",
    "sat": "周六",
    "sun": "周日",
}

Occurrence = tuple[str, int, int]


class RepairError(ValueError):
    """The repair request names something the problem does not have."""


@dataclass(frozen=True)
class Change:
    """One occurrence that moved: where it was and where it is now."""

    lesson: str
    subject: str
    class_id: str
    teacher: str
    old_day: str
    old_period: int
    old_room: str
    new_day: str
    new_period: int
    new_room: str


@dataclass(frozen=True)
class Substitution:
    """One occurrence that stays put and is taught by `substitute` instead of `absent`."""

    lesson: str
    subject: str
    class_id: str
    day: str
    period: int
    room: str
    absent: str
    substitute: str


@dataclass(frozen=True)
class SessionChange:
    id: str
    old_day: str
    old_start: int
    new_day: str
    new_start: int


@dataclass
class RepairResult:
    solution: Solution | None
    feasible: bool
    changes: list[Change] = field(default_factory=list)
    substitutions: list[Substitution] = field(default_factory=list)
    session_changes: list[SessionChange] = field(default_factory=list)
    missed_sessions: list[str] = field(default_factory=list)  # the absent teacher's meetings
    must_move: int = 0  # occurrences the absence forces off their slot (a lower bound)
    reason: str = ""
    stage: str = ""
    wall_time: float = 0.0

    @property
    def moved(self) -> int:
        return len(self.changes)


# --- substitutes ------------------------------------------------------------------------------


@dataclass
class _DayPlan:
    """What each teacher does on the absent day: lessons (campus, interval) and meetings."""

    lessons: dict[str, list[tuple[str, Interval]]]
    meetings: dict[str, list[Interval]]


def _day_plan(problem: Problem, solution: Solution, day: str) -> _DayPlan:
    lessons: dict[str, list[tuple[str, Interval]]] = defaultdict(list)
    for p in solution.lessons:
        if p.day != day:
            continue
        teacher = counted_teacher(problem, p.lesson)
        if teacher is not None:
            campus = problem.campus_of(p.lesson)
            lessons[teacher].append((campus.id, campus.interval(p.period)))
    meetings: dict[str, list[Interval]] = defaultdict(list)
    sessions = {s.id: s for s in problem.research_sessions}
    for r in solution.research_sessions:
        if r.day == day and r.id in sessions:
            for member in sessions[r.id].members:
                meetings[member].append(Interval(r.start, r.start + sessions[r.id].minutes))
    return _DayPlan(lessons, meetings)


def substitute_is_free(
    problem: Problem,
    plan: _DayPlan,
    teacher: str,
    day: str,
    campus: str,
    interval: Interval,
) -> bool:
    """`teacher` can take a lesson at `campus` during `interval` on `day`: no overlap, travel
    time to and from their own lessons, not unavailable, under max_lessons_per_day."""
    info = problem.teachers[teacher]
    if any(u.day == day and u.interval.overlaps(interval) for u in info.unavailable):
        return False
    own = plan.lessons.get(teacher, [])
    if info.max_lessons_per_day is not None and len(own) + 1 > info.max_lessons_per_day:
        return False
    if any(m.overlaps(interval) for m in plan.meetings.get(teacher, [])):
        return False
    for other_campus, other in own:
        travel = problem.travel_minutes(campus, other_campus)
        if travel is None or interval.gap_to(other) < travel:
            return False
    return True


def _find_substitutes(
    problem: Problem,
    solution: Solution,
    absent: str,
    day: str,
    affected: list[Placement],
) -> tuple[list[Substitution], list[Placement]]:
    """Greedy cover of the affected occurrences; returns (substitutions, still affected)."""
    plan = _day_plan(problem, solution, day)
    by_subject: dict[str, set[str]] = defaultdict(set)
    classes_of: dict[str, set[str]] = defaultdict(set)
    for lesson in problem.lessons.values():
        by_subject[lesson.subject].add(lesson.teacher)
        classes_of[lesson.teacher].add(lesson.class_id)
    substitutions: list[Substitution] = []
    covered_leads: dict[tuple[str, int], str] = {}
    uncovered: list[Placement] = []
    # Lead and counted lessons first, members taught with their lead afterwards.
    ordered = sorted(affected, key=lambda p: (counted_teacher(problem, p.lesson) is None, p.lesson))
    for placement in ordered:
        lesson = problem.lessons[placement.lesson]
        campus = problem.campus_of(lesson.id)
        if counted_teacher(problem, lesson.id) is None:
            # Taught by the lead teacher together with the lead: covered with the lead.
            group = problem.sync_group_of[lesson.id]
            lead_placements = [
                p for p in solution.lessons if p.lesson == group.lead and p.day == day
            ]
            cover = next(
                (
                    covered_leads[group.lead, lp.period]
                    for lp in lead_placements
                    if (group.lead, lp.period) in covered_leads
                    and abs(
                        problem.slot(group.lead, lp.period).start
                        - campus.interval(placement.period).start
                    )
                    <= problem.sync_tolerance
                ),
                None,
            )
            if cover is None:
                uncovered.append(placement)
                continue
            substitutions.append(_substitution(problem, placement, absent, cover))
            continue
        interval = campus.interval(placement.period)
        candidates = sorted(
            (
                teacher
                for teacher in by_subject[lesson.subject]
                if teacher != absent
                and substitute_is_free(problem, plan, teacher, day, campus.id, interval)
            ),
            key=lambda t: (
                lesson.class_id not in classes_of[t],
                all(c != campus.id for c, _ in plan.lessons.get(t, [])),
                len(plan.lessons.get(t, [])),
                t,
            ),
        )
        if not candidates:
            uncovered.append(placement)
            continue
        chosen = candidates[0]
        plan.lessons[chosen].append((campus.id, interval))
        covered_leads[lesson.id, placement.period] = chosen
        substitutions.append(_substitution(problem, placement, absent, chosen))
    return substitutions, uncovered


def _substitution(
    problem: Problem, placement: Placement, absent: str, substitute: str
) -> Substitution:
    lesson = problem.lessons[placement.lesson]
    return Substitution(
        lesson.id,
        lesson.subject,
        lesson.class_id,
        placement.day,
        placement.period,
        placement.room,
        absent,
        substitute,
    )


# --- moving -----------------------------------------------------------------------------------


def _stages(
    problem: Problem, moving: set[tuple[str, int]], absent: str
) -> list[tuple[str, set[str]]]:
    """Ever wider sets of lessons to free (on every day), smallest first."""
    lessons = {lesson_id for lesson_id, _ in moving}
    for lesson_id in list(lessons):
        group = problem.sync_group_of.get(lesson_id)
        if group is not None:
            lessons.update(group.lessons)
    classes = {problem.lessons[lid].class_id for lid in lessons}
    by_class = {lid for lid, lesson in problem.lessons.items() if lesson.class_id in classes}
    teachers = {problem.lessons[lid].teacher for lid in by_class} | {absent}
    by_teacher = by_class | {
        lid for lid, lesson in problem.lessons.items() if lesson.teacher in teachers
    }
    stages = [
        ("lessons", lessons),
        ("classes", by_class),
        ("teachers", by_teacher),
        ("week", set(problem.lessons)),
    ]
    widened: list[tuple[str, set[str]]] = []
    for name, stage in stages:
        closed = set(stage)
        for lesson_id in stage:
            group = problem.sync_group_of.get(lesson_id)
            if group is not None:
                closed.update(group.lessons)
        if not widened or closed != widened[-1][1]:
            widened.append((name, closed))
    return widened


@dataclass
class _Moved:
    x_on: set[Occurrence]
    rooms: dict[Occurrence, str]
    w_on: set[tuple[str, int, int]]
    changed: int
    optimal: bool


def _solve_stage(
    problem: Problem,
    *,
    x_on: set[Occurrence],
    rooms: dict[Occurrence, str],
    w_on: set[tuple[str, int, int]],
    free_lessons: set[str],
    free_sessions: set[str],
    absent: str,
    day: int,
    extra_busy: dict[tuple[str, int], list[tuple[str, Interval]]],
    seed: int,
    limit: float,
) -> _Moved | None:
    days = range(len(problem.days))
    by_pair: dict[tuple[str, int], list[int]] = defaultdict(list)
    for lesson_id, d, period in x_on:
        by_pair[lesson_id, d].append(period)
    background = Background(
        free=frozenset((lid, d) for lid in free_lessons for d in days),
        placed={key: tuple(periods) for key, periods in by_pair.items()},
        rooms=rooms,
        sessions={sid: (d, s) for sid, d, s in w_on if sid not in free_sessions},
        extra_busy=extra_busy,
    )
    ctx, _, _ = build_model(problem, background=background)
    model = ctx.model
    # The absent teacher teaches nothing that day.
    for (lesson_id, d, _), var in ctx.x.items():
        if d == day and problem.lessons[lesson_id].teacher == absent:
            model.add(var == 0)
    for (session_id, d, _), var in ctx.w.items():
        if d == day and session_id in free_sessions:
            model.add(var == 0)
    stays = []
    for lesson_id, d, period in x_on:
        if lesson_id not in free_lessons:
            continue
        room_var = ctx.room.get((lesson_id, d, period, rooms.get((lesson_id, d, period), "")))
        stays.append(room_var if room_var is not None else ctx.x[lesson_id, d, period])
    model.minimize(len(stays) - sum(stays))
    for key, var in ctx.x.items():
        model.add_hint(var, key in x_on)
    for (lesson_id, d, period, room_id), var in ctx.room.items():
        model.add_hint(var, rooms.get((lesson_id, d, period)) == room_id)
    for key, var in ctx.w.items():
        model.add_hint(var, key in w_on)
    solver = cp_model.CpSolver()
    solver.parameters.num_workers = 1
    solver.parameters.random_seed = seed
    solver.parameters.max_time_in_seconds = max(0.05, limit)
    status = solver.solve(model)
    if status not in (cp_model.OPTIMAL, cp_model.FEASIBLE):
        return None
    new_x = {key for key, var in ctx.x.items() if solver.boolean_value(var)}
    new_rooms = {
        (lid, d, p): r for (lid, d, p, r), var in ctx.room.items() if solver.boolean_value(var)
    }
    kept = {o for o in x_on if o[0] not in free_lessons}
    return _Moved(
        kept | new_x,
        {k: r for k, r in rooms.items() if k[0] not in free_lessons} | new_rooms,
        {w for w in w_on if w[0] not in free_sessions}
        | {key for key, var in ctx.w.items() if solver.boolean_value(var)},
        round(solver.objective_value),
        status == cp_model.OPTIMAL,
    )


# --- the entry point --------------------------------------------------------------------------


def repair(
    problem: Problem,
    solution: Solution,
    *,
    absent_teacher: str,
    day: str,
    substitute: Literal["auto", "none"] = "none",
    time_limit: float = 5.0,
    seed: int = 0,
) -> RepairResult:
    """A feasible timetable in which `absent_teacher` teaches nothing on `day`, as close to
    `solution` as possible (see the module docstring). Raises RepairError for an unknown
    teacher or day."""
    started = time.perf_counter()
    deadline = started + time_limit
    if absent_teacher not in problem.teachers:
        raise RepairError(f"unknown teacher {absent_teacher!r}")
    if day not in problem.days:
        raise RepairError(f"unknown day {day!r}: the problem's days are {', '.join(problem.days)}")
    report = check(problem, solution)
    if not report.feasible:
        return RepairResult(
            None,
            False,
            reason=f"the given timetable is not feasible: {report.violations[0]}",
            wall_time=time.perf_counter() - started,
        )
    day_index = problem.days.index(day)
    affected = sorted(
        (
            p
            for p in solution.lessons
            if p.day == day and problem.lessons[p.lesson].teacher == absent_teacher
        ),
        key=lambda p: (p.lesson, p.period),
    )
    substitutions: list[Substitution] = []
    if substitute == "auto":
        substitutions, affected = _find_substitutes(
            problem, solution, absent_teacher, day, affected
        )
    # A research session does not move for one absent member (everyone else still meets).
    missed = sorted(
        r.id
        for r in solution.research_sessions
        if r.day == day
        and any(s.id == r.id and absent_teacher in s.members for s in problem.research_sessions)
    )
    x_on = {(p.lesson, problem.days.index(p.day), p.period) for p in solution.lessons}
    rooms = {(p.lesson, problem.days.index(p.day), p.period): p.room for p in solution.lessons}
    w_on = {(r.id, problem.days.index(r.day), r.start) for r in solution.research_sessions}
    moving = {(p.lesson, day_index) for p in affected}
    must_move = _forced(problem, solution, affected, day)
    extra_busy: dict[tuple[str, int], list[tuple[str, Interval]]] = defaultdict(list)
    for sub in substitutions:
        if counted_teacher(problem, sub.lesson) is not None:
            campus = problem.campus_of(sub.lesson)
            extra_busy[sub.substitute, day_index].append((campus.id, campus.interval(sub.period)))
    best: _Moved | None = None
    stage_name = ""
    hopeless = _daily_lessons(problem, affected)
    if hopeless:
        return RepairResult(
            None,
            False,
            substitutions=substitutions,
            must_move=must_move,
            reason=hopeless,
            wall_time=time.perf_counter() - started,
        )
    if moving:
        for name, free_lessons in _stages(problem, moving, absent_teacher):
            remaining = deadline - time.perf_counter()
            if remaining <= 0.05:
                break
            moved = _solve_stage(
                problem,
                x_on=x_on,
                rooms=rooms,
                w_on=w_on,
                free_lessons=free_lessons,
                free_sessions=set(),
                absent=absent_teacher,
                day=day_index,
                extra_busy=extra_busy,
                seed=seed,
                limit=remaining * 0.6,
            )
            if moved is not None and (best is None or moved.changed < best.changed):
                best, stage_name = moved, name
            if best is not None and best.changed <= must_move:
                break  # nothing beyond the forced moves: no wider neighbourhood can do better
        if best is None:
            return RepairResult(
                None,
                False,
                substitutions=substitutions,
                must_move=must_move,
                reason=_daily_lessons(problem, affected)
                or (
                    f"no timetable without {absent_teacher} on {day} was found within "
                    f"{time_limit:g} s: the lessons that must move have no free slot that "
                    "suits their class, teachers, rooms and sync partners"
                ),
                wall_time=time.perf_counter() - started,
            )
    else:
        best = _Moved(x_on, rooms, w_on, 0, True)
    new_solution = _solution(problem, best)
    result = RepairResult(
        new_solution,
        True,
        changes=_changes(problem, solution, new_solution),
        substitutions=substitutions,
        session_changes=_session_changes(solution, new_solution),
        missed_sessions=missed,
        must_move=must_move,
        stage=stage_name,
        wall_time=time.perf_counter() - started,
    )
    problems = validate_repair(problem, new_solution, result, absent_teacher, day)
    if problems:
        result.feasible = False
        result.reason = "; ".join(problems)
    return result


def _daily_lessons(problem: Problem, affected: list[Placement]) -> str:
    """Why moving cannot work when a lesson takes place every day."""
    days = len(problem.days)
    for lesson_id in sorted({p.lesson for p in affected}):
        lesson = problem.lessons[lesson_id]
        if lesson.per_week > (days - 1) * lesson.max_per_day:
            return (
                f"lesson {lesson_id} ({lesson.subject}, class {lesson.class_id}) has "
                f"{lesson.per_week} lessons a week and at most {lesson.max_per_day} a day, so "
                "it cannot skip a day: it needs a substitute teacher (--substitute auto)"
            )
    return ""


def _forced(problem: Problem, solution: Solution, affected: list[Placement], day: str) -> int:
    """How many occurrences must leave their slot: the affected ones and their sync partners
    on that day."""
    lessons = {p.lesson for p in affected}
    for lesson_id in list(lessons):
        group = problem.sync_group_of.get(lesson_id)
        if group is not None:
            lessons.update(group.lessons)
    return sum(1 for p in solution.lessons if p.day == day and p.lesson in lessons)


def _solution(problem: Problem, moved: _Moved) -> Solution:
    lessons = []
    for lesson_id, d, period in sorted(moved.x_on):
        room = moved.rooms.get((lesson_id, d, period)) or problem.room_candidates(lesson_id)[0]
        lessons.append(Placement(lesson_id, problem.days[d], period, room))
    research = [
        ResearchPlacement(sid, problem.days[d], start) for sid, d, start in sorted(moved.w_on)
    ]
    return Solution(lessons, research)


def _changes(problem: Problem, old: Solution, new: Solution) -> list[Change]:
    """Pair each lesson's vanished placements with its new ones (same day first)."""
    before: dict[str, set[Placement]] = defaultdict(set)
    after: dict[str, set[Placement]] = defaultdict(set)
    for p in old.lessons:
        before[p.lesson].add(p)
    for p in new.lessons:
        after[p.lesson].add(p)
    changes = []
    order = {d: i for i, d in enumerate(problem.days)}
    for lesson_id in sorted(before):
        gone = sorted(before[lesson_id] - after[lesson_id], key=lambda p: (order[p.day], p.period))
        came = sorted(after[lesson_id] - before[lesson_id], key=lambda p: (order[p.day], p.period))
        came_same_day = [c for g in gone for c in came if c.day == g.day]
        lesson = problem.lessons[lesson_id]
        for g in gone:
            match = next((c for c in came_same_day if c.day == g.day and c in came), None)
            target = match if match is not None else came[0]
            came.remove(target)
            changes.append(
                Change(
                    lesson_id,
                    lesson.subject,
                    lesson.class_id,
                    lesson.teacher,
                    g.day,
                    g.period,
                    g.room,
                    target.day,
                    target.period,
                    target.room,
                )
            )
    return changes


def _session_changes(old: Solution, new: Solution) -> list[SessionChange]:
    placed = {r.id: r for r in new.research_sessions}
    return [
        SessionChange(r.id, r.day, r.start, placed[r.id].day, placed[r.id].start)
        for r in old.research_sessions
        if r.id in placed and (placed[r.id].day, placed[r.id].start) != (r.day, r.start)
    ]


def validate_repair(
    problem: Problem, solution: Solution, result: RepairResult, absent: str, day: str
) -> list[str]:
    """What the checker cannot see: the absent teacher is free that day (bar substituted
    occurrences) and every substitute is free, qualified and within travel and limits."""
    problems = [str(v) for v in check(problem, solution).violations]
    substituted = {(s.lesson, s.period) for s in result.substitutions}
    for p in solution.lessons:
        if (
            p.day == day
            and problem.lessons[p.lesson].teacher == absent
            and (p.lesson, p.period) not in substituted
        ):
            problems.append(f"{absent} still teaches {p.lesson} on {day} p{p.period}")
    placed = {(p.lesson, p.day, p.period) for p in solution.lessons}
    plan = _day_plan(problem, solution, day)
    subjects: dict[str, set[str]] = defaultdict(set)
    for lesson in problem.lessons.values():
        subjects[lesson.teacher].add(lesson.subject)
    for sub in result.substitutions:
        if (sub.lesson, sub.day, sub.period) not in placed:
            problems.append(f"substituted {sub.lesson} {sub.day} p{sub.period} is not placed")
        if sub.subject not in subjects[sub.substitute]:
            problems.append(f"substitute {sub.substitute} does not teach {sub.subject}")
        if counted_teacher(problem, sub.lesson) is None:
            continue
        campus = problem.campus_of(sub.lesson)
        interval = campus.interval(sub.period)
        if not substitute_is_free(problem, plan, sub.substitute, day, campus.id, interval):
            problems.append(f"substitute {sub.substitute} is not free for {sub.lesson}")
        plan.lessons[sub.substitute].append((campus.id, interval))
    return problems


# --- the CLI -----------------------------------------------------------------------------------


def slot_label(problem: Problem, day: str, period: int) -> str:
    return f"{DAY_NAMES.get(day, day)}第{period}节"


def describe_change(problem: Problem, change: Change) -> str:
    """'L0123 数学 dj-3-1: 周二第3节 → 周四第5节 (dj-101)'."""
    room = (
        change.new_room
        if change.new_room == change.old_room
        else (f"{change.old_room} → {change.new_room}")
    )
    return (
        f"{change.lesson} {change.subject} {change.class_id}: "
        f"{slot_label(problem, change.old_day, change.old_period)} → "
        f"{slot_label(problem, change.new_day, change.new_period)} ({room})"
    )


def describe_substitution(problem: Problem, sub: Substitution) -> str:
    name = problem.teachers[sub.substitute].name
    absent = problem.teachers[sub.absent].name
    return (
        f"{sub.lesson} {sub.subject} {sub.class_id}: "
        f"{slot_label(problem, sub.day, sub.period)} ({sub.room}) 代课 "
        f"{sub.substitute}（{name}）替 {sub.absent}（{absent}）"
    )


def run_repair(
    problem_path: str | Path,
    solution_path: str | Path,
    out_path: str | Path,
    absent: str,
    day: str,
    substitute: Literal["auto", "none"],
    time_limit: float,
) -> int:
    """`tongke timetable repair`: 0 repaired, 1 no feasible repair, 2 bad input."""
    import json

    from scheduler.io.timetable_json import (
        ProblemFormatError,
        dump_solution,
        load_problem,
        load_solution,
    )

    try:
        problem = load_problem(Path(problem_path))
        solution = load_solution(Path(solution_path), problem)
    except ProblemFormatError as error:
        print("malformed input:")
        for issue in error.issues:
            print(f"  {issue}")
        return 2
    except OSError as error:
        print(f"cannot read input: {error}")
        return 2
    try:
        result = repair(
            problem,
            solution,
            absent_teacher=absent,
            day=day,
            substitute=substitute,
            time_limit=time_limit,
        )
    except RepairError as error:
        print(f"调课请求有误: {error}")
        return 2
    if not result.feasible or result.solution is None:
        print(f"无法调课: {result.reason}")
        return 1
    teacher = problem.teachers[absent]
    print(f"{absent}（{teacher.name}）{DAY_NAMES.get(day, day)}请假：")
    for sub in result.substitutions:
        print("  代课 " + describe_substitution(problem, sub))
    for change in result.changes:
        print("  调课 " + describe_change(problem, change))
    for session in result.session_changes:
        print(
            f"  教研 {session.id}: {DAY_NAMES.get(session.old_day, session.old_day)} "
            f"{hhmm(session.old_start)} → {DAY_NAMES.get(session.new_day, session.new_day)} "
            f"{hhmm(session.new_start)}"
        )
    for session_id in result.missed_sessions:
        print(f"  教研 {session_id}: {absent} 缺席（教研活动照常）")
    print(
        f"moved {result.moved} occurrences (forced: {result.must_move}), "
        f"{len(result.substitutions)} substituted, {result.wall_time:.2f} s"
    )
    Path(out_path).write_text(
        json.dumps(dump_solution(result.solution), ensure_ascii=False, indent=1), encoding="utf-8"
    )
    return 0
