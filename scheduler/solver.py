"""Solve a tongke-timetable/1 problem: CP-SAT to a first timetable, then large-neighbourhood
search (LNS) on the soft terms.

Phase 1 solves the lessons without objective (presolve off, both workers racing), then
places the research sessions against those lessons in a small model; only if that fails
is the joint model solved. Phase 2 repeatedly frees a neighbourhood (a few classes, a
teacher's classes, one or two days of a campus, the research sessions), fixes every other
lesson by its variable domains in a private copy of the full model, and re-solves it with
a small deterministic-time budget; with two workers two neighbourhoods run side by side
and the better result is kept.

Determinism: each sub-solve is single-threaded with a fixed seed and a deterministic-time
limit, and neighbourhoods come from a seeded generator, so a run is reproducible for a
seed as long as phase 1 is (workers=1) and the same number of LNS rounds completes; the
wall-clock limit can cut a run after a different round on a busier machine.
"""

from __future__ import annotations

import itertools
import logging
import random
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ortools.sat.python import cp_model

from scheduler.constraints import (
    Guard,
    ModelContext,
    PenaltyTerm,
    add_class_clash,
    add_max_lessons_per_day,
    add_occurrences,
    add_research_sessions,
    add_rooms,
    add_sync_groups,
    add_teacher_clash,
    add_unavailability,
    build_model,
    counted_teacher,
    research_starts,
    sync_compatible,
)
from scheduler.domain import NOON, Interval, Placement, Problem, ResearchPlacement, Solution

log = logging.getLogger(__name__)

LATE_WEIGHT = 120  # one main-subject lesson after noon weighs as much as 120 idle minutes
IDLE_WEIGHT = 1


@dataclass(frozen=True)
class Progress:
    elapsed: float
    hard_violations: int
    soft_score: int
    idle_minutes: int
    late_main: int
    phase: str


@dataclass
class SolveResult:
    solution: Solution | None
    status: str  # "feasible", "optimal", "infeasible" or "unknown"
    feasible: bool
    objective: dict[str, int] = field(default_factory=dict)
    wall_time: float = 0.0
    first_feasible_seconds: float | None = None
    explanation: list[str] = field(default_factory=list)
    lns_rounds: int = 0


# --- scoring (the spec's soft terms, computed on a solution) --------------------------------


def soft_terms(problem: Problem, solution: Solution) -> dict[str, int]:
    """The spec's idle minutes and late main-subject lessons of a solution."""
    late = 0
    by_teacher_day: dict[tuple[str, str], list[tuple[Interval, str]]] = defaultdict(list)
    for placement in solution.lessons:
        interval = problem.slot(placement.lesson, placement.period)
        if problem.lessons[placement.lesson].prefer_morning and interval.start >= NOON:
            late += 1
        teacher = counted_teacher(problem, placement.lesson)
        if teacher is not None:
            campus = problem.campus_of(placement.lesson).id
            by_teacher_day[teacher, placement.day].append((interval, campus))
    idle = 0
    for lessons in by_teacher_day.values():
        if len(lessons) < 2:
            continue
        lessons.sort(key=lambda item: item[0].start)
        busy = sum(i.length for i, _ in lessons[1:-1])
        for (a, ca), (b, cb) in itertools.pairwise(lessons):
            busy += min(problem.travel_minutes(ca, cb) or 0, max(0, b.start - a.end))
        idle += max(0, lessons[-1][0].start - lessons[0][0].end - busy)
    return {"idle_minutes": idle, "late_main": late, "score": LATE_WEIGHT * late + idle}


# --- the full model and its variable layout -------------------------------------------------


@dataclass
class _Model:
    ctx: ModelContext
    x_keys: list[tuple[str, int, int]]
    x_index: list[int]
    w_keys: list[tuple[str, int, int]]
    w_index: list[int]
    objective_terms: list[PenaltyTerm]


def _full_model(problem: Problem) -> _Model:
    ctx, late, idle = build_model(problem, late_weight=LATE_WEIGHT, idle_weight=IDLE_WEIGHT)
    terms = late + idle
    ctx.model.minimize(sum(t.weight * t.expression for t in terms))
    x_keys = list(ctx.x)
    w_keys = list(ctx.w)
    return _Model(
        ctx,
        x_keys,
        [ctx.x[k].index for k in x_keys],
        w_keys,
        [ctx.w[k].index for k in w_keys],
        terms,
    )


def _lesson_model(problem: Problem) -> ModelContext:
    ctx = ModelContext(problem)
    for family in (
        add_occurrences,
        add_class_clash,
        add_teacher_clash,
        add_rooms,
        add_unavailability,
        add_max_lessons_per_day,
        add_sync_groups,
    ):
        family(ctx)
    return ctx


def _extract(
    problem: Problem,
    x_on: set[tuple[str, int, int]],
    w_on: set[tuple[str, int, int]],
    rooms: dict[tuple[str, int, int], str],
) -> Solution:
    lessons = []
    for lesson_id, day, period in sorted(x_on):
        candidates = problem.room_candidates(lesson_id)
        room = rooms.get((lesson_id, day, period), candidates[0] if candidates else "")
        lessons.append(Placement(lesson_id, problem.days[day], period, room))
    research = [
        ResearchPlacement(session_id, problem.days[day], start)
        for session_id, day, start in sorted(w_on)
    ]
    return Solution(lessons, research)


def _rooms_from(solver: cp_model.CpSolver, ctx: ModelContext) -> dict[tuple[str, int, int], str]:
    return {
        (lesson_id, day, period): room_id
        for (lesson_id, day, period, room_id), var in ctx.room.items()
        if solver.boolean_value(var)
    }


# --- phase 1 ---------------------------------------------------------------------------------


class _FirstSolution(cp_model.CpSolverSolutionCallback):
    def __init__(self) -> None:
        super().__init__()
        self.found = False

    def on_solution_callback(self) -> None:
        self.found = True
        self.stop_search()


def _place_research(
    problem: Problem, x_on: set[tuple[str, int, int]], seed: int, limit: float
) -> set[tuple[str, int, int]] | None:
    """Research sessions against fixed lessons: a small model over the w variables only."""
    if not problem.research_sessions:
        return set()
    busy: dict[tuple[str, int], list[Interval]] = defaultdict(list)
    for lesson_id, day, period in x_on:
        teacher = counted_teacher(problem, lesson_id)
        if teacher is not None:
            busy[teacher, day].append(problem.slot(lesson_id, period))
    model = cp_model.CpModel()
    w: dict[tuple[str, int, int], cp_model.IntVar] = {}
    durations = {s.id: s.minutes for s in problem.research_sessions}
    members = {s.id: s.members for s in problem.research_sessions}
    for session in problem.research_sessions:
        for day in range(len(problem.days)):
            for start in research_starts(problem, session):
                span = Interval(start, start + durations[session.id])
                if any(span.overlaps(i) for t in members[session.id] for i in busy[t, day]):
                    continue
                w[session.id, day, start] = model.new_bool_var(f"w[{session.id},{day},{start}]")
    for session in problem.research_sessions:
        model.add_exactly_one(v for (sid, _, _), v in w.items() if sid == session.id)
    # Unavailability and session-session overlaps: reuse the full model's rules by checking
    # the candidate pairs directly (tiny).
    by_session: dict[str, list[tuple[int, int, cp_model.IntVar]]] = defaultdict(list)
    for (sid, day, start), var in w.items():
        by_session[sid].append((day, start, var))
    sessions = problem.research_sessions
    for i, a in enumerate(sessions):
        for b in sessions[i + 1 :]:
            if not set(a.members) & set(b.members):
                continue
            for day_a, start_a, var_a in by_session[a.id]:
                for day_b, start_b, var_b in by_session[b.id]:
                    if day_a == day_b and Interval(start_a, start_a + a.minutes).overlaps(
                        Interval(start_b, start_b + b.minutes)
                    ):
                        model.add_bool_or([var_a.negated(), var_b.negated()])
    for session in sessions:
        for day, start, var in by_session[session.id]:
            span = Interval(start, start + session.minutes)
            for t in session.members:
                for block in problem.teachers[t].unavailable:
                    if block.day == problem.days[day] and block.interval.overlaps(span):
                        model.add(var == 0)
    solver = cp_model.CpSolver()
    solver.parameters.num_workers = 1
    solver.parameters.random_seed = seed
    solver.parameters.max_time_in_seconds = limit
    if solver.solve(model) not in (cp_model.OPTIMAL, cp_model.FEASIBLE):
        return None
    return {key for key, var in w.items() if solver.boolean_value(var)}


def _phase_one(
    problem: Problem,
    *,
    deadline: float,
    seed: int,
    workers: int,
    hint: Solution | None,
    rooms: dict[tuple[str, int, int], str],
) -> tuple[str, set[tuple[str, int, int]], set[tuple[str, int, int]]]:
    """('found' | 'infeasible' | 'unknown', lessons on, research on); fills `rooms`."""
    lessons = _lesson_model(problem)
    if hint is not None:
        _add_hint(problem, lessons, hint)
    solver = cp_model.CpSolver()
    params = solver.parameters
    params.num_workers = max(1, workers)
    params.random_seed = seed
    params.cp_model_presolve = False
    params.linearization_level = 0
    params.max_time_in_seconds = max(0.05, deadline - time.perf_counter())
    if workers <= 1:
        # One thread has no feasibility-jump worker: a seeded greedy branching instead.
        order = list(lessons.x.items())
        random.Random(seed).shuffle(order)
        order.sort(key=lambda item: _difficulty(problem, item[0][0]))
        lessons.model.add_decision_strategy(
            [v for _, v in order], cp_model.CHOOSE_FIRST, cp_model.SELECT_MAX_VALUE
        )
        params.search_branching = cp_model.FIXED_SEARCH
    callback = _FirstSolution()
    status = solver.solve(lessons.model, callback)
    if status == cp_model.INFEASIBLE:
        return "infeasible", set(), set()
    if not callback.found and status not in (cp_model.OPTIMAL, cp_model.FEASIBLE):
        return "unknown", set(), set()
    x_on = {key for key, var in lessons.x.items() if solver.boolean_value(var)}
    rooms.update(_rooms_from(solver, lessons))
    remaining = max(0.05, deadline - time.perf_counter())
    w_on = _place_research(problem, x_on, seed, remaining)
    if w_on is not None:
        return "found", x_on, w_on
    # The sessions do not fit around these lessons: solve lessons and sessions together.
    joint = ModelContext(problem)
    for family in (*_lesson_families(), add_research_sessions):
        family(joint)
    for key, var in joint.x.items():
        joint.model.add_hint(var, key in x_on)
    solver = cp_model.CpSolver()
    solver.parameters.num_workers = max(1, workers)
    solver.parameters.random_seed = seed
    solver.parameters.max_time_in_seconds = max(0.05, deadline - time.perf_counter())
    callback = _FirstSolution()
    status = solver.solve(joint.model, callback)
    if status == cp_model.INFEASIBLE:
        return "infeasible", set(), set()
    if not callback.found and status not in (cp_model.OPTIMAL, cp_model.FEASIBLE):
        return "unknown", set(), set()
    rooms.clear()
    rooms.update(_rooms_from(solver, joint))
    return (
        "found",
        {key for key, var in joint.x.items() if solver.boolean_value(var)},
        {key for key, var in joint.w.items() if solver.boolean_value(var)},
    )


def _lesson_families() -> tuple[Callable[[ModelContext], None], ...]:
    return (
        add_occurrences,
        add_class_clash,
        add_teacher_clash,
        add_rooms,
        add_unavailability,
        add_max_lessons_per_day,
        add_sync_groups,
    )


def _difficulty(problem: Problem, lesson_id: str) -> tuple[int, int]:
    """Sync lessons first, then lessons of the busiest teachers."""
    lesson = problem.lessons[lesson_id]
    return (0 if lesson_id in problem.sync_group_of else 1, -lesson.per_week)


def _add_hint(problem: Problem, ctx: ModelContext, hint: Solution) -> None:
    on = {(p.lesson, problem.days.index(p.day), p.period) for p in hint.lessons}
    for key, var in ctx.x.items():
        ctx.model.add_hint(var, key in on)


# --- phase 2: large-neighbourhood search ----------------------------------------------------


class _Neighbourhoods:
    """Seeded choice of which (lesson, day) pairs to free in one LNS step."""

    def __init__(self, problem: Problem, seed: int) -> None:
        self.problem = problem
        self.rng = random.Random(seed)
        self.days = range(len(problem.days))
        self.class_lessons: dict[str, list[str]] = defaultdict(list)
        self.teacher_classes: dict[str, set[str]] = defaultdict(set)
        self.campus_classes: dict[str, list[str]] = defaultdict(list)
        for lesson_id, lesson in problem.lessons.items():
            self.class_lessons[lesson.class_id].append(lesson_id)
            self.teacher_classes[lesson.teacher].add(lesson.class_id)
        for class_id, school_class in problem.classes.items():
            self.campus_classes[school_class.campus].append(class_id)
        self.classes = sorted(self.class_lessons)
        self.teachers = sorted(self.teacher_classes)
        self.size = 4.0  # classes freed, adapted to how often sub-solves finish

    def adapt(self, finished: bool) -> None:
        factor = 1.15 if finished else 0.87
        self.size = min(max(self.size * factor, 1.0), float(len(self.classes)))

    def pick(self) -> tuple[str, set[tuple[str, int]], bool]:
        """(kind, freed (lesson, day) pairs, whether research sessions are freed)."""
        kind = self.rng.choice(["classes", "teacher", "days", "classes", "teacher"])
        count = max(1, round(self.size))
        classes: set[str] = set()
        days: list[int] = list(self.days)
        if kind == "classes":
            classes = set(self.rng.sample(self.classes, min(count, len(self.classes))))
        elif kind == "teacher":
            while len(classes) < count:
                teacher = self.rng.choice(self.teachers)
                classes |= self.teacher_classes[teacher]
        else:
            days = self.rng.sample(list(self.days), min(2, len(self.days)))
            campus = self.rng.choice(sorted(self.campus_classes))
            pool = self.campus_classes[campus]
            classes = set(self.rng.sample(pool, min(len(pool), count * 3)))
        freed = {(lid, d) for c in classes for lid in self.class_lessons[c] for d in days}
        # Sync partners move together.
        for lesson_id, day in list(freed):
            group = self.problem.sync_group_of.get(lesson_id)
            if group is not None:
                freed |= {(other, day) for other in group.lessons}
        return kind, freed, self.rng.random() < 0.15


@dataclass
class _Incumbent:
    x_on: set[tuple[str, int, int]]
    w_on: set[tuple[str, int, int]]
    rooms: dict[tuple[str, int, int], str]
    objective: int


def _sub_solve(
    problem: Problem,
    model: _Model,
    incumbent: _Incumbent,
    freed: set[tuple[str, int]],
    free_research: bool,
    *,
    seed: int,
    dtime: float,
    wall: float,
) -> tuple[bool, _Incumbent | None]:
    """(finished within budget, the sub-solve's solution scored by `soft_terms`, or None)."""
    proto = model.ctx.model.proto
    variables = proto.variables
    for key, index in zip(model.x_keys, model.x_index, strict=True):
        domain = variables[index].domain
        if (key[0], key[1]) in freed:
            domain[0], domain[1] = 0, 1
        else:
            value = 1 if key in incumbent.x_on else 0
            domain[0], domain[1] = value, value
    for key, index in zip(model.w_keys, model.w_index, strict=True):
        domain = variables[index].domain
        if free_research:
            domain[0], domain[1] = 0, 1
        else:
            value = 1 if key in incumbent.w_on else 0
            domain[0], domain[1] = value, value
    model.ctx.model.clear_hints()  # type: ignore[no-untyped-call]
    for key in model.x_keys:
        if (key[0], key[1]) in freed:
            model.ctx.model.add_hint(model.ctx.x[key], key in incumbent.x_on)
    if free_research:
        for key in model.w_keys:
            model.ctx.model.add_hint(model.ctx.w[key], key in incumbent.w_on)
    solver = cp_model.CpSolver()
    params = solver.parameters
    params.num_workers = 1
    params.random_seed = seed
    params.max_deterministic_time = dtime
    params.max_time_in_seconds = max(0.01, wall)
    params.linearization_level = 2  # the idle model is LP-tight; the LP bound pays off
    status = solver.solve(model.ctx.model)
    if status not in (cp_model.OPTIMAL, cp_model.FEASIBLE):
        return status == cp_model.OPTIMAL, None
    x_on = {key for key, var in model.ctx.x.items() if solver.boolean_value(var)}
    w_on = {key for key, var in model.ctx.w.items() if solver.boolean_value(var)}
    rooms = _rooms_from(solver, model.ctx)
    score = soft_terms(problem, _extract(problem, x_on, w_on, rooms))["score"]
    return status == cp_model.OPTIMAL, _Incumbent(x_on, w_on, rooms, score)


# --- the entry point ----------------------------------------------------------------------


def solve(
    problem: Problem,
    *,
    time_limit: float,
    seed: int = 0,
    workers: int = 2,
    progress: Callable[[Progress], None] | None = None,
    hint: Solution | None = None,
) -> SolveResult:
    """Best timetable found within `time_limit` seconds (see the module docstring)."""
    started = time.perf_counter()
    deadline = started + time_limit
    problems = _precheck(problem)
    if problems:
        return SolveResult(None, "infeasible", False, wall_time=0.0, explanation=problems)
    rooms: dict[tuple[str, int, int], str] = {}
    status, x_on, w_on = _phase_one(
        problem, deadline=deadline, seed=seed, workers=workers, hint=hint, rooms=rooms
    )
    if status == "infeasible":
        explanation = explain_infeasibility(problem, time_limit=max(5.0, time_limit))
        return SolveResult(
            None,
            "infeasible",
            False,
            wall_time=time.perf_counter() - started,
            explanation=explanation,
        )
    if status == "unknown":
        return SolveResult(
            None,
            "unknown",
            False,
            wall_time=time.perf_counter() - started,
            explanation=[f"no feasible timetable found within {time_limit:g} s"],
        )
    first_feasible = time.perf_counter() - started
    best = _Incumbent(x_on, w_on, rooms, 10**9)

    def report(phase: str) -> dict[str, int]:
        terms = soft_terms(problem, _extract(problem, best.x_on, best.w_on, best.rooms))
        if progress is not None:
            progress(
                Progress(
                    elapsed=time.perf_counter() - started,
                    hard_violations=0,
                    soft_score=terms["score"],
                    idle_minutes=terms["idle_minutes"],
                    late_main=terms["late_main"],
                    phase=phase,
                )
            )
        return terms

    best.objective = report("first")["score"]
    rounds = 0
    # Building the full model costs about as much as phase 1; skip it when time is short.
    if deadline - time.perf_counter() > 2 * first_feasible + 0.3:
        full = _full_model(problem)
        rounds = _lns(
            problem,
            full,
            best,
            deadline=deadline,
            seed=seed,
            workers=workers,
            on_improve=lambda: report("lns"),
        )
    solution = _extract(problem, best.x_on, best.w_on, best.rooms)
    terms = soft_terms(problem, solution)
    return SolveResult(
        solution,
        "optimal" if best.objective == 0 else "feasible",
        True,
        objective=terms,
        wall_time=time.perf_counter() - started,
        first_feasible_seconds=first_feasible,
        lns_rounds=rounds,
    )


def _lns(
    problem: Problem,
    full: _Model,
    best: _Incumbent,
    *,
    deadline: float,
    seed: int,
    workers: int,
    on_improve: Callable[[], object],
) -> int:
    if best.objective == 0:
        return 0
    models = [full] + [
        _Model(
            ModelContext(
                problem,
                model=full.ctx.model.clone(),
                x=full.ctx.x,
                w=full.ctx.w,
                room=full.ctx.room,
            ),
            full.x_keys,
            full.x_index,
            full.w_keys,
            full.w_index,
            full.objective_terms,
        )
        for _ in range(max(1, workers) - 1)
    ]
    _rebind(models[1:], full)
    neighbourhoods = _Neighbourhoods(problem, seed)
    rounds = 0
    dtime = 0.5
    while time.perf_counter() < deadline - 0.02 and best.objective > 0:
        picks = [neighbourhoods.pick() for _ in models]
        results: list[tuple[bool, _Incumbent | None]] = [(False, None)] * len(models)

        round_seed = seed * 1_000_003 + rounds * len(models)

        def run(
            i: int,
            picks: Sequence[tuple[str, set[tuple[str, int]], bool]],
            results: list[tuple[bool, _Incumbent | None]],
            round_seed: int,
        ) -> None:
            _, freed, free_research = picks[i]
            results[i] = _sub_solve(
                problem,
                models[i],
                best,
                freed,
                free_research,
                seed=round_seed + i,
                dtime=dtime,
                wall=deadline - time.perf_counter(),
            )

        threads = [
            threading.Thread(target=run, args=(i, picks, results, round_seed))
            for i in range(1, len(models))
        ]
        for thread in threads:
            thread.start()
        run(0, picks, results, round_seed)
        for thread in threads:
            thread.join()
        rounds += 1
        improved = False
        for finished, candidate in results:
            neighbourhoods.adapt(finished)
            if candidate is not None and candidate.objective <= best.objective:
                if candidate.objective < best.objective:
                    improved = True
                best.x_on, best.w_on, best.rooms = candidate.x_on, candidate.w_on, candidate.rooms
                best.objective = candidate.objective
        if improved:
            on_improve()
    return rounds


def _rebind(copies: Sequence[_Model], full: _Model) -> None:
    """Variable handles of a cloned model (same indices, different proto)."""
    for copy in copies:
        model = copy.ctx.model
        copy.ctx.x = {
            k: model.get_bool_var_from_proto_index(v.index) for k, v in full.ctx.x.items()
        }
        copy.ctx.w = {
            k: model.get_bool_var_from_proto_index(v.index) for k, v in full.ctx.w.items()
        }
        copy.ctx.room = {
            k: model.get_bool_var_from_proto_index(v.index) for k, v in full.ctx.room.items()
        }


# --- infeasibility ----------------------------------------------------------------------------


def _precheck(problem: Problem) -> list[str]:
    """Impossible data that needs no search to see."""
    messages = []
    days = len(problem.days)
    for lesson_id, lesson in problem.lessons.items():
        campus = problem.campus_of(lesson_id)
        if lesson.per_week > min(days * lesson.max_per_day, days * len(campus.bell)):
            messages.append(
                f"lesson {lesson_id} ({lesson.subject}, class {lesson.class_id}) needs "
                f"{lesson.per_week} lessons a week but at most {lesson.max_per_day} a day fit"
            )
        if not problem.room_candidates(lesson_id):
            needed = ", ".join(sorted(problem.required_features(lesson_id)))
            messages.append(
                f"lesson {lesson_id} ({lesson.subject}, class {lesson.class_id}) needs a room "
                f"with {needed} on {campus.name} big enough for the class, and there is none"
            )
    for group in problem.sync_groups:
        for member in group.members:
            if not sync_compatible(problem, group.lead, member):
                lead_campus = problem.campus_of(group.lead)
                member_campus = problem.campus_of(member)
                messages.append(
                    f"sync group {group.id} (lead {group.lead} at {lead_campus.id}, member "
                    f"{member} at {member_campus.id}) has no common time: no period of "
                    f"{member_campus.name} starts within {problem.sync_tolerance} minutes of "
                    f"a period of {lead_campus.name}"
                )
    return messages


def explain_infeasibility(problem: Problem, *, time_limit: float = 10.0) -> list[str]:
    """Name the sync groups, teachers, classes, rooms, … whose rules cannot all hold."""
    ctx = ModelContext(problem, explain=True)
    for family in (*_lesson_families(), add_research_sessions):
        family(ctx)
    guards = sorted(ctx.guards.items(), key=lambda item: (item[0].family, item[0].item))
    literal_of = {var.index: key for key, var in guards}
    deadline = time.perf_counter() + time_limit

    def infeasible(assumed: Sequence[cp_model.IntVar]) -> tuple[bool, list[Guard]]:
        ctx.model.clear_assumptions()
        ctx.model.add_assumptions(list(assumed))
        solver = cp_model.CpSolver()
        solver.parameters.num_workers = 1
        solver.parameters.max_time_in_seconds = max(0.1, deadline - time.perf_counter())
        status = solver.solve(ctx.model)
        if status != cp_model.INFEASIBLE:
            return False, []
        core = [
            literal_of[i]
            for i in solver.sufficient_assumptions_for_infeasibility()
            if i in literal_of
        ]
        return True, core

    blocked, core = infeasible([var for _, var in guards])
    if not blocked:
        return ["no feasible timetable was found, but no single rule could be blamed in time"]
    if not core:
        return ["the lessons cannot all be placed even without clash rules: too many lessons"]
    # Deletion-based minimisation: drop each guard the infeasibility does not need.
    needed = list(core)
    for key in list(core):
        if time.perf_counter() > deadline:
            break
        trial = [g for g in needed if g != key]
        still, smaller = infeasible([ctx.guards[g] for g in trial])
        if still:
            needed = [g for g in trial if g in smaller] or trial
    return [_describe(problem, guard, needed) for guard in needed]


def _describe(problem: Problem, guard: Guard, core: Sequence[Guard]) -> str:
    others = ", ".join(f"{g.family} {g.item}" for g in core if g != guard)
    tail = f" (together with: {others})" if others else ""
    if guard.family == "sync":
        group = next(g for g in problem.sync_groups if g.id == guard.item)
        lead_campus = problem.campus_of(group.lead)
        members = [problem.campus_of(m) for m in group.members]
        pairs = {m: sync_compatible(problem, group.lead, m) for m in group.members}
        times = sorted({lead_campus.interval(p).start for m in group.members for p, _ in pairs[m]})
        rooms = sorted(
            {
                room.id
                for campus in [lead_campus, *members]
                for room in problem.rooms.values()
                if room.campus == campus.id and "sync" in room.features
            }
        )
        starts = ", ".join(f"{t // 60:02d}:{t % 60:02d}" for t in times)
        return (
            f"sync group {group.id} (lead {group.lead} at {lead_campus.id}, members at "
            f"{', '.join(c.id for c in members)}) has no common time: its "
            f"{problem.lessons[group.lead].per_week} weekly lessons can only start at {starts} "
            f"(where the bells agree within {problem.sync_tolerance} min), and the sync "
            f"rooms {', '.join(rooms)} (录播教室) or the teachers are taken then{tail}"
        )
    if guard.family == "room":
        room = problem.rooms[guard.item]
        campus = problem.campuses[room.campus].name
        return f"room {room.id} on {campus} is needed by more lessons than it has periods{tail}"
    if guard.family == "teacher":
        teacher = problem.teachers[guard.item]
        return (
            f"teacher {teacher.id} ({teacher.name}) cannot teach all lessons without clashes "
            f"or with enough travel time between campuses{tail}"
        )
    if guard.family == "max-per-day":
        teacher = problem.teachers[guard.item]
        limit = teacher.max_lessons_per_day
        return (
            f"teacher {teacher.id} ({teacher.name}): max_lessons_per_day {limit} is too low{tail}"
        )
    if guard.family == "unavailable":
        teacher = problem.teachers[guard.item]
        return (
            f"teacher {teacher.id} ({teacher.name}) is unavailable when lessons must happen{tail}"
        )
    if guard.family == "class":
        return f"class {guard.item} has more lessons than fit its timetable{tail}"
    if guard.family == "fixed":
        return f"fixed lesson {guard.item} cannot be honoured{tail}"
    if guard.family in ("research", "research-pair"):
        return f"research session {guard.item} has no time when all members are free{tail}"
    return f"{guard.family} {guard.item}{tail}"


# --- the CLI -----------------------------------------------------------------------------------


def run_solve(problem_path: str | Path, out_path: str | Path, time_limit: float, seed: int) -> int:
    """`tongke timetable solve`: 0 feasible, 1 infeasible, 2 malformed input."""
    import json

    from scheduler.io.timetable_json import ProblemFormatError, dump_solution, load_problem

    try:
        problem = load_problem(Path(problem_path))
    except (ProblemFormatError, ValueError, KeyError, TypeError, OSError) as error:
        print(f"malformed problem: {error}")
        return 2

    def show(p: Progress) -> None:
        print(
            f"{p.elapsed:7.2f}s  hard {p.hard_violations}  soft {p.soft_score}  "
            f"idle {p.idle_minutes} min  late main {p.late_main}",
            flush=True,
        )

    result = solve(problem, time_limit=time_limit, seed=seed, progress=show)
    if result.solution is None:
        print(f"no timetable ({result.status}):")
        for line in result.explanation:
            print(f"  - {line}")
        return 1
    Path(out_path).write_text(
        json.dumps(dump_solution(result.solution), ensure_ascii=False, indent=1), encoding="utf-8"
    )
    print("hard violations: 0")
    for name, value in result.objective.items():
        print(f"{name}: {value}")
    return 0
