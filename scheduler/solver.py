"""Solve a tongke-timetable/1 problem: CP-SAT to a first timetable, then large-neighbourhood
search (LNS) on the soft terms.

Phase 1 first builds a timetable constructively (`_Greedy`: sync groups at starts the
bells pair, then the scarcest lessons, with one-step ejections) and keeps it when the
checker passes it; otherwise it solves the lessons without objective in CP-SAT (presolve
off, both workers racing, rooms as counts when the candidate rooms nest, hinted with what
the greedy placed). Then it places the research sessions against those lessons in a small
model; only if that fails is the joint model solved.

Phase 2 repeatedly frees a neighbourhood — the classes with main-subject lessons after
noon, the classes of a teacher on the days they idle most, a campus over two days, a few
random classes — and builds a small model of just that part
(`constraints.Background`: the rest of the timetable enters as constants), so a round
costs tens of milliseconds rather than a re-read of the full model. Neighbourhood sizes
adapt to whether sub-solves finish within their budget. With two workers two lanes search
side by side; a lane's result is merged when nothing it relied on changed meanwhile.

Determinism: each sub-solve is single-threaded with a fixed seed and a deterministic-time
limit, and neighbourhoods come from a seeded generator, so with workers=1 a run is
reproducible for a seed as long as the same number of LNS rounds completes; the wall-clock
limit can cut a run after a different round on a busier machine.
"""

from __future__ import annotations

import itertools
import logging
import random
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ortools.sat.python import cp_model

from scheduler.checker import check
from scheduler.constraints import (
    HARD_FAMILIES,
    LESSON_FAMILIES,
    Background,
    Guard,
    ModelContext,
    Slot,
    add_rooms,
    build_model,
    counted_teacher,
    facts,
    research_starts,
    slots_conflict,
    sync_compatible,
)
from scheduler.domain import NOON, Interval, Placement, Problem, ResearchPlacement, Solution

log = logging.getLogger(__name__)

LATE_WEIGHT = 300  # one main-subject lesson after noon weighs as much as 300 idle minutes
IDLE_WEIGHT = 1
PROGRESS_EVERY = 1.0  # seconds between progress lines when nothing improves
GREEDY_ATTEMPTS = 4  # constructive restarts before phase 1 falls back to CP-SAT
GREEDY_SECONDS = 0.8  # ... or until this much time has gone
SUB_DTIME = 0.03  # deterministic-time budget of one neighbourhood's sub-solve

LessonDay = tuple[str, int]
Occurrence = tuple[str, int, int]  # (lesson, day index, period)


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
    status: str  # "feasible", "optimal", "infeasible", "unknown" or "stopped"
    feasible: bool
    objective: dict[str, int] = field(default_factory=dict)
    wall_time: float = 0.0
    first_feasible_seconds: float | None = None
    explanation: list[str] = field(default_factory=list)
    lns_rounds: int = 0


# --- scoring (the spec's soft terms, computed on a solution) --------------------------------


def _day_idle(problem: Problem, lessons: list[tuple[Interval, str]]) -> int:
    if len(lessons) < 2:
        return 0
    lessons.sort(key=lambda item: item[0].start)
    idle = 0
    for (a, ca), (b, cb) in itertools.pairwise(lessons):
        idle += max(0, b.start - a.end - (problem.travel_minutes(ca, cb) or 0))
    return idle


def _teacher_days(
    problem: Problem, occurrences: Iterable[Occurrence]
) -> dict[tuple[str, int], list[tuple[Interval, str]]]:
    by_teacher_day: dict[tuple[str, int], list[tuple[Interval, str]]] = defaultdict(list)
    for lesson_id, day, period in occurrences:
        teacher = counted_teacher(problem, lesson_id)
        if teacher is not None:
            campus = problem.campus_of(lesson_id)
            by_teacher_day[teacher, day].append((campus.interval(period), campus.id))
    return by_teacher_day


def _late(problem: Problem, lesson_id: str, period: int) -> bool:
    return (
        problem.lessons[lesson_id].prefer_morning and problem.slot(lesson_id, period).start >= NOON
    )


def _score(problem: Problem, occurrences: Iterable[Occurrence]) -> dict[str, int]:
    occurrences = list(occurrences)
    late = sum(1 for lesson_id, _, period in occurrences if _late(problem, lesson_id, period))
    idle = sum(_day_idle(problem, v) for v in _teacher_days(problem, occurrences).values())
    return {
        "idle_minutes": idle,
        "late_main": late,
        "score": LATE_WEIGHT * late + IDLE_WEIGHT * idle,
    }


def soft_terms(problem: Problem, solution: Solution) -> dict[str, int]:
    """The spec's idle minutes and late main-subject lessons of a solution."""
    return _score(
        problem, ((p.lesson, problem.days.index(p.day), p.period) for p in solution.lessons)
    )


# --- the incumbent --------------------------------------------------------------------------


@dataclass
class _Incumbent:
    x_on: set[Occurrence]
    w_on: set[tuple[str, int, int]]
    rooms: dict[Occurrence, str]
    objective: int = 10**9
    version: int = 0

    def placed(self) -> dict[LessonDay, tuple[int, ...]]:
        by_pair: dict[LessonDay, list[int]] = defaultdict(list)
        for lesson_id, day, period in self.x_on:
            by_pair[lesson_id, day].append(period)
        return {key: tuple(sorted(periods)) for key, periods in by_pair.items()}


def _extract(
    problem: Problem,
    x_on: set[Occurrence],
    w_on: set[tuple[str, int, int]],
    rooms: dict[Occurrence, str],
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


def _rooms_from(solver: cp_model.CpSolver, ctx: ModelContext) -> dict[Occurrence, str]:
    return {
        (lesson_id, day, period): room_id
        for (lesson_id, day, period, room_id), var in ctx.room.items()
        if solver.boolean_value(var)
    }


def background_of(
    problem: Problem,
    x_on: Iterable[Occurrence],
    w_on: Iterable[tuple[str, int, int]],
    rooms: dict[Occurrence, str],
    *,
    free: Iterable[LessonDay],
    free_sessions: Iterable[str] = (),
) -> Background:
    """The fixed rest of a timetable around the free (lesson, day) pairs and sessions."""
    by_pair: dict[LessonDay, list[int]] = defaultdict(list)
    for lesson_id, day, period in x_on:
        by_pair[lesson_id, day].append(period)
    released = set(free_sessions)
    return Background(
        free=frozenset(free),
        placed={key: tuple(periods) for key, periods in by_pair.items()},
        rooms=rooms,
        sessions={sid: (day, start) for sid, day, start in w_on if sid not in released},
    )


def close_under_sync(problem: Problem, pairs: set[LessonDay]) -> set[LessonDay]:
    """Add the sync partners of every freed (lesson, day): a group moves together."""
    for lesson_id, day in list(pairs):
        group = problem.sync_group_of.get(lesson_id)
        if group is not None:
            pairs.update((other, day) for other in group.lessons)
    return pairs


# --- phase 1 ---------------------------------------------------------------------------------


class _FirstSolution(cp_model.CpSolverSolutionCallback):
    def __init__(self, should_stop: Callable[[], bool] | None) -> None:
        super().__init__()
        self.found = False
        self.should_stop = should_stop

    def on_solution_callback(self) -> None:
        self.found = True
        self.stop_search()


def _place_research(
    problem: Problem, x_on: set[Occurrence], seed: int, limit: float
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
    rooms: dict[Occurrence, str],
) -> tuple[str, set[Occurrence], set[tuple[str, int, int]]]:
    """('found' | 'infeasible' | 'unknown', lessons on, research on); fills `rooms`."""
    started = time.perf_counter()
    room_sets = _laminar_room_sets(problem)
    complete, greedy_on = (
        (False, set()) if hint is not None else _greedy_lessons(problem, room_sets, seed)
    )
    if complete:
        greedy_rooms = _match_rooms(problem, greedy_on)
        remaining = max(0.05, deadline - time.perf_counter())
        w_on = _place_research(problem, greedy_on, seed, remaining)
        if w_on is not None:
            report = check(problem, _extract(problem, greedy_on, w_on, greedy_rooms))
            log.info(
                "phase 1 greedy",
                extra={"seconds": round(time.perf_counter() - started, 3), "hard": report.hard},
            )
            if report.feasible:
                rooms.update(greedy_rooms)
                return "found", greedy_on, w_on
            log.warning("greedy timetable breaks rules", extra={"first": str(report.violations[0])})
    lessons = ModelContext(problem)
    for family in LESSON_FAMILIES:
        if family is add_rooms and room_sets is not None:
            _add_room_counts(lessons, room_sets)
        else:
            family(lessons)
    if hint is not None:
        _add_hint(problem, lessons, hint)
    else:
        for key in sorted(greedy_on):  # what the greedy placed, as a partial hint
            lessons.model.add_hint(lessons.x[key], 1)
    solver = cp_model.CpSolver()
    params = solver.parameters
    params.num_workers = max(1, workers)
    params.random_seed = seed
    params.cp_model_presolve = False
    params.linearization_level = 0
    params.symmetry_level = 0  # symmetry detection costs more than it saves on a first solution
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
    callback = _FirstSolution(None)
    built = time.perf_counter()
    status = solver.solve(lessons.model, callback)
    log.info(
        "phase 1 lessons",
        extra={
            "build_seconds": round(built - started, 3),
            "search_seconds": round(time.perf_counter() - built, 3),
            "variables": len(lessons.model.proto.variables),
        },
    )
    if status == cp_model.INFEASIBLE:
        return "infeasible", set(), set()
    if not callback.found and status not in (cp_model.OPTIMAL, cp_model.FEASIBLE):
        return "unknown", set(), set()
    x_on = {key for key, var in lessons.x.items() if solver.boolean_value(var)}
    if room_sets is None:
        rooms.update(_rooms_from(solver, lessons))
    else:
        rooms.update(_match_rooms(problem, x_on))
    remaining = max(0.05, deadline - time.perf_counter())
    w_on = _place_research(problem, x_on, seed, remaining)
    if w_on is not None:
        return "found", x_on, w_on
    # The sessions do not fit around these lessons: solve lessons and sessions together.
    joint = ModelContext(problem)
    for family in HARD_FAMILIES:
        family(joint)
    for key, var in joint.x.items():
        joint.model.add_hint(var, key in x_on)
    solver = cp_model.CpSolver()
    solver.parameters.num_workers = max(1, workers)
    solver.parameters.random_seed = seed
    solver.parameters.max_time_in_seconds = max(0.05, deadline - time.perf_counter())
    callback = _FirstSolution(None)
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


class _Greedy:
    """A one-pass constructive timetable: sync-group occurrences first (lead and members
    at starts the bells pair within the tolerance), then fixed lessons, then the rest,
    scarcest first, each occurrence in the best slot that breaks no hard rule. No
    backtracking: it either places everything or stops; phase 1 then gives what it placed
    to CP-SAT as a hint."""

    def __init__(
        self, problem: Problem, room_sets: dict[frozenset[str], list[str]], seed: int
    ) -> None:
        self.problem = problem
        self.rng = random.Random(seed)
        self.days = range(len(problem.days))
        known = facts(problem)
        self.counted = {lid: counted_teacher(problem, lid) for lid in problem.lessons}
        self.campus = {lid: problem.campus_of(lid) for lid in problem.lessons}
        # teacher -> slot -> the slots (itself included) it rules out on the same day
        self.clashes: dict[str, dict[Slot, list[Slot]]] = {}
        for teacher, slots in known.slots_of.items():
            self.clashes[teacher] = {
                a: [b for b in slots if slots_conflict(problem, a, b)] for a in slots
            }
        # lesson -> the room sets (with their sizes) whose counts it raises
        sets = list(room_sets)
        self.room_chain: dict[str, list[tuple[frozenset[str], int]]] = {}
        for room_set, lesson_ids in room_sets.items():
            chain = [(other, len(other)) for other in sets if room_set <= other]
            for lid in lesson_ids:
                self.room_chain[lid] = chain
        self.unavailable: set[Occurrence] = set()
        for lid, lesson in problem.lessons.items():
            campus = self.campus[lid]
            for block in problem.teachers[lesson.teacher].unavailable:
                day = problem.days.index(block.day)
                for p in campus.periods:
                    if campus.interval(p).overlaps(block.interval):
                        self.unavailable.add((lid, day, p))
        self.class_busy: set[tuple[str, int, int]] = set()
        self.teacher_blocked: dict[tuple[str, int], Counter[Slot]] = defaultdict(Counter)
        self.teacher_day: Counter[tuple[str, int]] = Counter()
        self.lesson_day: Counter[tuple[str, int]] = Counter()
        self.room_load: Counter[tuple[frozenset[str], int, int]] = Counter()
        self.placed: set[Occurrence] = set()
        self.stuck: str | None = None  # the lesson it could not place

    def fits(self, lid: str, day: int, p: int) -> bool:
        lesson = self.problem.lessons[lid]
        if (lesson.class_id, day, p) in self.class_busy or (lid, day, p) in self.unavailable:
            return False
        if self.lesson_day[lid, day] >= lesson.max_per_day:
            return False
        teacher = self.counted[lid]
        if teacher is not None:
            if self.teacher_blocked[teacher, day][self.campus[lid].id, p]:
                return False
            limit = self.problem.teachers[teacher].max_lessons_per_day
            if limit is not None and self.teacher_day[teacher, day] >= limit:
                return False
        return all(self.room_load[c, day, p] < size for c, size in self.room_chain[lid])

    def place(self, lid: str, day: int, p: int, sign: int = 1) -> None:
        class_slot = (self.problem.lessons[lid].class_id, day, p)
        if sign > 0:
            self.class_busy.add(class_slot)
        else:
            self.class_busy.discard(class_slot)
        teacher = self.counted[lid]
        if teacher is not None:
            blocked = self.teacher_blocked[teacher, day]
            for slot in self.clashes[teacher][self.campus[lid].id, p]:
                blocked[slot] += sign
            self.teacher_day[teacher, day] += sign
        self.lesson_day[lid, day] += sign
        for room_set, _ in self.room_chain[lid]:
            self.room_load[room_set, day, p] += sign
        if sign > 0:
            self.placed.add((lid, day, p))
        else:
            self.placed.discard((lid, day, p))

    def cost(self, lid: str, day: int, p: int) -> float:
        """Spread a lesson over the week, main subjects in the morning, and a teacher's
        lessons of a day next to each other (idle minutes)."""
        lesson = self.problem.lessons[lid]
        late = lesson.prefer_morning and self.campus[lid].interval(p).start >= NOON
        cost = 3 * self.lesson_day[lid, day] + 2 * late + self.rng.random()
        teacher = self.counted[lid]
        if teacher is not None and self.teacher_day[teacher, day]:
            campus = self.campus[lid].id
            blocked = self.teacher_blocked[teacher, day]
            if not (blocked[campus, p - 1] or blocked[campus, p + 1]):
                cost += 1.5
        return cost

    def run(self, fixed: Sequence[tuple[str, int, int]]) -> bool:
        problem = self.problem
        pinned: dict[str, list[tuple[int, int]]] = defaultdict(list)
        for lid, day, p in fixed:
            pinned[lid].append((day, p))
        for lid, slots in pinned.items():
            if lid in problem.sync_group_of:
                continue
            for day, p in slots:
                if not self.fits(lid, day, p):
                    return False
                self.place(lid, day, p)
        # Sync groups: the occurrences fixed entries pin first (for every group), then the rest.
        todo: dict[str, int] = {}
        for group in problem.sync_groups:
            pairs = {m: sync_compatible(problem, group.lead, m) for m in group.members}
            pins: dict[int, dict[str, int]] = defaultdict(dict)
            for lid in group.lessons:
                for day, p in pinned.get(lid, ()):
                    if lid in pins[day]:
                        return False  # two fixed occurrences a day: leave it to CP-SAT
                    pins[day][lid] = p
            todo[group.id] = problem.lessons[group.lead].per_week - len(pins)
            for day, pinned_here in sorted(pins.items()):
                forced = {m: q for m, q in pinned_here.items() if m != group.lead}
                options = [
                    (day, p)
                    for p in self.campus[group.lead].periods
                    if pinned_here.get(group.lead, p) == p
                    and all((p, q) in pairs[m] for m, q in forced.items())
                ]
                if not self._place_group(group.lead, pairs, options, forced):
                    return False
        for group in problem.sync_groups:
            pairs = {m: sync_compatible(problem, group.lead, m) for m in group.members}
            for _ in range(todo[group.id]):
                options = sorted(
                    ((day, p) for day in self.days for p in self.campus[group.lead].periods),
                    key=lambda slot: self.cost(group.lead, *slot),
                )
                if not self._place_group(group.lead, pairs, options, {}):
                    self.stuck = self.stuck or group.lead
        order = [lid for lid in problem.lessons if lid not in problem.sync_group_of]
        self.rng.shuffle(order)
        order.sort(key=self._scarcity)
        for lid in order:
            for _ in range(problem.lessons[lid].per_week - len(pinned.get(lid, ()))):
                best = min(
                    (
                        (self.cost(lid, day, p), day, p)
                        for day in self.days
                        for p in self.campus[lid].periods
                        if self.fits(lid, day, p)
                    ),
                    default=None,
                )
                if best is not None:
                    self.place(lid, best[1], best[2])
                elif not self._eject_and_place(lid, frozen={*problem.sync_group_of, *pinned}):
                    self.stuck = self.stuck or lid
                    break  # the rest of this lesson is left to CP-SAT
        return self.stuck is None

    def _eject_and_place(self, lid: str, frozen: set[str]) -> bool:
        """Place one occurrence of `lid` by moving one occurrence in its way (of its class
        in that slot, or of its teacher that day) to another slot that fits."""
        problem = self.problem
        class_id = problem.lessons[lid].class_id
        teacher = self.counted[lid]
        by_class_slot = {(problem.lessons[o].class_id, d, p): (o, d, p) for o, d, p in self.placed}
        by_teacher_day: dict[int, list[Occurrence]] = defaultdict(list)
        if teacher is not None:
            for o, d, p in self.placed:
                if self.counted[o] == teacher:
                    by_teacher_day[d].append((o, d, p))
        slots = [(d, p) for d in self.days for p in self.campus[lid].periods]
        self.rng.shuffle(slots)
        for day, p in slots:
            if (lid, day, p) in self.unavailable:
                continue
            blockers = (
                [by_class_slot[class_id, day, p]] if (class_id, day, p) in by_class_slot else []
            )
            blockers += by_teacher_day.get(day, [])
            for other, d, q in blockers:
                if other in frozen or other == lid:
                    continue
                self.place(other, d, q, -1)
                if self.fits(lid, day, p):
                    self.place(lid, day, p)
                    moved = next(
                        (
                            (d2, q2)
                            for d2 in self.days
                            for q2 in self.campus[other].periods
                            if (d2, q2) != (d, q) and self.fits(other, d2, q2)
                        ),
                        None,
                    )
                    if moved is not None:
                        self.place(other, *moved)
                        return True
                    self.place(lid, day, p, -1)
                self.place(other, d, q)
        return False

    def _scarcity(self, lid: str) -> tuple[int, int, int, int]:
        """Teachers who travel between campuses first, then scarce rooms, short weeks."""
        lesson = self.problem.lessons[lid]
        teacher = self.counted[lid]
        travels = teacher is not None and len({c for c, _ in self.clashes[teacher]}) > 1
        rooms = min((size for _, size in self.room_chain[lid]), default=99)
        slack = len(self.campus[lid].bell) * len(self.problem.days)
        scarce_room = rooms if len(self.room_chain[lid]) > 1 else 99
        return (0 if travels else 1, scarce_room, slack, -lesson.per_week)

    def _place_group(
        self,
        lead: str,
        pairs: dict[str, list[tuple[int, int]]],
        options: Iterable[tuple[int, int]],
        forced: dict[str, int],
    ) -> bool:
        for day, p in options:
            if not self.fits(lead, day, p):
                continue
            self.place(lead, day, p)
            done = [(lead, p)]
            for member, compatible in pairs.items():
                q = next(
                    (
                        q
                        for pp, q in compatible
                        if pp == p and forced.get(member, q) == q and self.fits(member, day, q)
                    ),
                    None,
                )
                if q is None:
                    break
                self.place(member, day, q)
                done.append((member, q))
            if len(done) == 1 + len(pairs):
                return True
            for lid, period in done:
                self.place(lid, day, period, -1)
        return False


def _greedy_lessons(
    problem: Problem, room_sets: dict[frozenset[str], list[str]] | None, seed: int
) -> tuple[bool, set[Occurrence]]:
    """(complete?, occurrences placed) of `_Greedy`; nothing without room counts."""
    if room_sets is None:
        return False, set()
    fixed = [(f.lesson, problem.days.index(f.day), f.period) for f in problem.fixed]
    best: set[Occurrence] = set()
    until = time.perf_counter() + GREEDY_SECONDS
    for attempt in range(GREEDY_ATTEMPTS):
        greedy = _Greedy(problem, room_sets, seed * GREEDY_ATTEMPTS + attempt)
        if greedy.run(fixed):
            return True, greedy.placed
        if len(greedy.placed) > len(best):
            best = greedy.placed
        if time.perf_counter() > until:
            break
    return False, best


def _laminar_room_sets(problem: Problem) -> dict[frozenset[str], list[str]] | None:
    """Lessons by their set of candidate rooms, when any two such sets are nested or
    disjoint (then rooms need no variables in phase 1, see `_add_room_counts`); else None."""
    by_set: dict[frozenset[str], list[str]] = defaultdict(list)
    for lesson_id in problem.lessons:
        by_set[frozenset(problem.room_candidates(lesson_id))].append(lesson_id)
    sets = list(by_set)
    for a, b in itertools.combinations(sets, 2):
        if a & b and not (a <= b or b <= a):
            return None
    for room_set, lesson_ids in by_set.items():
        if not room_set or len({problem.campus_of(lid).id for lid in lesson_ids}) > 1:
            return None
    return dict(by_set)


def _add_room_counts(ctx: ModelContext, by_set: dict[frozenset[str], list[str]]) -> None:
    """(4) rooms as counts: in every slot, the lessons whose candidate rooms lie within a
    set C number at most |C|. With nested-or-disjoint candidate sets this is Hall's
    condition, so `_match_rooms` can always give each lesson a room afterwards."""
    problem, model = ctx.problem, ctx.model
    for room_set, _ in sorted(by_set.items(), key=lambda item: sorted(item[0])):
        within = [lid for other, ids in by_set.items() if other <= room_set for lid in ids]
        if len({problem.lessons[lid].class_id for lid in within}) < 2:
            continue  # one class: the class clash already allows one lesson per slot
        campus = problem.campus_of(within[0])
        for day in range(len(problem.days)):
            for p in campus.periods:
                terms = [ctx.x[lid, day, p] for lid in within if (lid, day, p) in ctx.x]
                if len(terms) > len(room_set):
                    model.add(sum(terms) <= len(room_set))


def _match_rooms(problem: Problem, x_on: set[Occurrence]) -> dict[Occurrence, str]:
    """Rooms for lessons with a choice, slot by slot, smallest candidate set first (exact
    for nested-or-disjoint candidate sets under `_add_room_counts`)."""
    # Rooms belong to one campus, so (day, period) keys suffice to keep campuses apart.
    choosing: dict[tuple[int, int], list[Occurrence]] = defaultdict(list)
    taken_in: dict[tuple[int, int], set[str]] = defaultdict(set)
    candidates_of = {lid: problem.room_candidates(lid) for lid in {key[0] for key in x_on}}
    for key in x_on:
        candidates = candidates_of[key[0]]
        if len(candidates) > 1:
            choosing[key[1], key[2]].append(key)
        else:
            taken_in[key[1], key[2]].update(candidates)
    rooms: dict[Occurrence, str] = {}
    for slot, keys in choosing.items():
        taken = taken_in[slot]
        for key in sorted(keys, key=lambda k: (len(candidates_of[k[0]]), k)):
            free = [r for r in candidates_of[key[0]] if r not in taken]
            if free:
                rooms[key] = free[0]
                taken.add(free[0])
    return rooms


def _difficulty(problem: Problem, lesson_id: str) -> tuple[int, int]:
    """Sync lessons first, then lessons of the busiest teachers."""
    lesson = problem.lessons[lesson_id]
    return (0 if lesson_id in problem.sync_group_of else 1, -lesson.per_week)


def _add_hint(problem: Problem, ctx: ModelContext, hint: Solution) -> None:
    on = {(p.lesson, problem.days.index(p.day), p.period) for p in hint.lessons}
    for key, var in ctx.x.items():
        ctx.model.add_hint(var, key in on)


# --- phase 2: large-neighbourhood search ----------------------------------------------------


@dataclass(frozen=True)
class _Pick:
    kind: str
    freed: frozenset[LessonDay]
    sessions: frozenset[str]


class _Neighbourhoods:
    """Seeded choice of which (lesson, day) pairs to free in one LNS step, aimed at where the
    incumbent loses score; each kind's size adapts to whether its sub-solves finish."""

    KINDS = ("late", "idle", "campus_days", "classes", "teacher")

    def __init__(self, problem: Problem, seed: int) -> None:
        self.problem = problem
        self.rng = random.Random(seed)
        self.day_count = len(problem.days)
        self.class_lessons: dict[str, list[str]] = defaultdict(list)
        self.teacher_classes: dict[str, set[str]] = defaultdict(set)
        self.campus_classes: dict[str, list[str]] = defaultdict(list)
        for lesson_id, lesson in problem.lessons.items():
            self.class_lessons[lesson.class_id].append(lesson_id)
            self.teacher_classes[lesson.teacher].add(lesson.class_id)
        for class_id in sorted(self.class_lessons):
            self.campus_classes[problem.classes[class_id].campus].append(class_id)
        self.classes = sorted(self.class_lessons)
        self.teachers = sorted(self.teacher_classes)
        self.campuses = sorted(self.campus_classes)
        cap = float(len(self.classes))
        self.size = {
            "late": min(3.0, cap),
            "idle": 2.0,
            "campus_days": min(6.0, cap),
            "classes": min(3.0, cap),
            "teacher": 1.0,
        }
        self.limit = {
            "late": cap,
            "idle": float(self.day_count),
            "campus_days": cap,
            "classes": cap,
            "teacher": float(len(self.teachers)),
        }
        self.late_classes: list[tuple[str, int]] = []
        self.late_teachers: dict[str, set[str]] = defaultdict(set)
        self.idle_days: list[tuple[tuple[str, int], int]] = []

    def observe(self, x_on: set[Occurrence]) -> None:
        """Where the incumbent loses score: classes with late main lessons, idle teacher-days."""
        late: dict[str, int] = defaultdict(int)
        self.late_teachers = defaultdict(set)
        for lesson_id, _, period in x_on:
            if _late(self.problem, lesson_id, period):
                lesson = self.problem.lessons[lesson_id]
                late[lesson.class_id] += 1
                self.late_teachers[lesson.class_id].add(lesson.teacher)
        self.late_classes = sorted(late.items())
        self.idle_days = sorted(
            (key, idle)
            for key, lessons in _teacher_days(self.problem, x_on).items()
            if (idle := _day_idle(self.problem, lessons)) > 0
        )

    def adapt(self, kind: str, finished: bool) -> None:
        factor = 1.08 if finished else 0.85
        self.size[kind] = min(max(self.size[kind] * factor, 1.0), self.limit[kind])

    def pick(self) -> _Pick:
        weights = {
            "late": 4 if self.late_classes else 0,
            "idle": 4 if self.idle_days else 0,
            "campus_days": 1,
            "classes": 1,
            "teacher": 1,
        }
        kind = self.rng.choices(self.KINDS, weights=[weights[k] for k in self.KINDS])[0]
        count = max(1, round(self.size[kind]))
        days = list(range(self.day_count))
        classes: set[str] = set()
        if kind == "late":
            first = self.rng.choices(
                [c for c, _ in self.late_classes], weights=[w for _, w in self.late_classes]
            )[0]
            classes = {first}
            pool = sorted(
                {c for t in self.late_teachers[first] for c in self.teacher_classes[t]} - classes
            )
            classes |= set(self.rng.sample(pool, min(len(pool), count - 1)))
        elif kind == "idle":
            keys = [k for k, _ in self.idle_days]
            index = self.rng.choices(range(len(keys)), weights=[w for _, w in self.idle_days])[0]
            teacher, day = keys[index]
            classes = set(self.teacher_classes[teacher])
            others = [d for d in days if d != day]
            days = [day, *self.rng.sample(others, min(len(others), count - 1))]
        elif kind == "campus_days":
            campus = self.rng.choice(self.campuses)
            days = self.rng.sample(days, min(2, len(days)))
            pool = self.campus_classes[campus]
            classes = set(self.rng.sample(pool, min(len(pool), count)))
        elif kind == "classes":
            classes = set(self.rng.sample(self.classes, min(count, len(self.classes))))
        else:
            for teacher in self.rng.sample(self.teachers, min(count, len(self.teachers))):
                classes |= self.teacher_classes[teacher]
        freed = {(lid, d) for c in sorted(classes) for lid in self.class_lessons[c] for d in days}
        close_under_sync(self.problem, freed)
        sessions: frozenset[str] = frozenset()
        if self.problem.research_sessions and self.rng.random() < 0.1:
            teachers = {self.problem.lessons[lid].teacher for lid, _ in freed}
            touched = [s.id for s in self.problem.research_sessions if teachers & set(s.members)]
            sessions = frozenset(self.rng.sample(touched, min(3, len(touched))))
        return _Pick(kind, frozenset(freed), sessions)


def _touches(problem: Problem, pick: _Pick) -> set[tuple[str, str, int]]:
    """What a neighbourhood's sub-model relies on: classes, teachers and rooms per day, lessons."""
    keys: set[tuple[str, str, int]] = set()
    for lesson_id, day in pick.freed:
        lesson = problem.lessons[lesson_id]
        keys.add(("lesson", lesson_id, -1))
        keys.add(("class", lesson.class_id, day))
        keys.add(("teacher", lesson.teacher, day))
        for room_id in problem.room_candidates(lesson_id):
            keys.add(("room", room_id, day))
    sessions = {s.id: s for s in problem.research_sessions}
    for session_id in pick.sessions:
        keys.add(("session", session_id, -1))
        for member in sessions[session_id].members:
            keys.update(("teacher", member, day) for day in range(len(problem.days)))
    return keys


@dataclass
class _SubResult:
    finished: bool
    x_new: set[Occurrence]
    rooms_new: dict[Occurrence, str]
    w_new: set[tuple[str, int, int]]


def _sub_solve(
    problem: Problem,
    incumbent: _Incumbent,
    pick: _Pick,
    *,
    seed: int,
    dtime: float,
    wall: float,
) -> _SubResult | None:
    """Re-place the neighbourhood's lessons (and sessions) against the fixed rest."""
    background = background_of(
        problem,
        incumbent.x_on,
        incumbent.w_on,
        incumbent.rooms,
        free=pick.freed,
        free_sessions=pick.sessions,
    )
    ctx, late, idle = build_model(
        problem, late_weight=LATE_WEIGHT, idle_weight=IDLE_WEIGHT, background=background
    )
    model = ctx.model
    model.minimize(sum(t.weight * t.expression for t in (*late, *idle)))
    for key, var in ctx.x.items():
        model.add_hint(var, key in incumbent.x_on)
    for (lesson_id, day, period, room_id), var in ctx.room.items():
        model.add_hint(var, incumbent.rooms.get((lesson_id, day, period)) == room_id)
    for key, var in ctx.w.items():
        model.add_hint(var, key in incumbent.w_on)
    solver = cp_model.CpSolver()
    params = solver.parameters
    params.num_workers = 1
    params.random_seed = seed
    params.max_deterministic_time = dtime
    params.max_time_in_seconds = max(0.01, wall)
    params.linearization_level = 2  # the idle model is LP-tight; the LP bound pays off
    status = solver.solve(model)
    if status not in (cp_model.OPTIMAL, cp_model.FEASIBLE):
        return None
    return _SubResult(
        status == cp_model.OPTIMAL,
        {key for key, var in ctx.x.items() if solver.boolean_value(var)},
        _rooms_from(solver, ctx),
        {key for key, var in ctx.w.items() if solver.boolean_value(var)},
    )


class _Search:
    """The LNS state shared by the lanes: the incumbent, its change log, progress reports."""

    def __init__(
        self,
        problem: Problem,
        best: _Incumbent,
        *,
        deadline: float,
        started: float,
        report: Callable[[str], object],
        should_stop: Callable[[], bool] | None,
    ) -> None:
        self.problem = problem
        self.best = best
        self.deadline = deadline
        self.started = started
        self.report = report
        self.should_stop = should_stop
        self.lock = threading.Lock()
        self.changes: list[tuple[int, set[tuple[str, str, int]]]] = []
        self.rounds = 0
        self.last_report = time.perf_counter()
        self.stopped = False
        self.trimmed = 0  # changes up to this version are no longer in the log
        self.optimal = False
        self.all_pairs = len(problem.lessons) * len(problem.days)

    def running(self) -> bool:
        if self.stopped or self.optimal or self.best.objective == 0:
            return False
        if self.should_stop is not None and self.should_stop():
            self.stopped = True
            return False
        return time.perf_counter() < self.deadline - 0.02

    def lane(self, seed: int) -> None:
        problem = self.problem
        neighbourhoods = _Neighbourhoods(problem, seed)
        with self.lock:
            neighbourhoods.observe(self.best.x_on)
            seen = self.best.version
        round_no = 0
        while self.running():
            with self.lock:
                snapshot = _Incumbent(
                    self.best.x_on,
                    self.best.w_on,
                    self.best.rooms,
                    self.best.objective,
                    self.best.version,
                )
                if snapshot.version != seen:
                    neighbourhoods.observe(snapshot.x_on)
                    seen = snapshot.version
            pick = neighbourhoods.pick()
            result = _sub_solve(
                problem,
                snapshot,
                pick,
                seed=seed * 1_000_003 + round_no,
                dtime=SUB_DTIME,
                wall=self.deadline - time.perf_counter(),
            )
            round_no += 1
            neighbourhoods.adapt(pick.kind, result is not None and result.finished)
            if result is not None and result.finished and len(pick.freed) == self.all_pairs:
                self.optimal = True  # the whole week was solved to optimality
            with self.lock:
                self.rounds += 1
                improved = result is not None and self._merge(snapshot, pick, result)
                now = time.perf_counter()
                if improved or now - self.last_report >= PROGRESS_EVERY:
                    self.last_report = now
                    self.report("lns")

    def _merge(self, snapshot: _Incumbent, pick: _Pick, result: _SubResult) -> bool:
        """Apply a sub-solve to the current incumbent when nothing it relied on changed;
        True when the score improved."""
        problem, best = self.problem, self.best
        keys = _touches(problem, pick)
        if best.version != snapshot.version and (
            snapshot.version < self.trimmed
            or any(v > snapshot.version and keys & k for v, k in self.changes)
        ):
            return False
        x_on = {o for o in best.x_on if (o[0], o[1]) not in pick.freed} | result.x_new
        if x_on == best.x_on and not pick.sessions:
            return False
        score = _score(problem, x_on)["score"]
        if score > best.objective:
            return False
        rooms = {k: r for k, r in best.rooms.items() if (k[0], k[1]) not in pick.freed}
        rooms.update(result.rooms_new)
        w_on = {w for w in best.w_on if w[0] not in pick.sessions} | result.w_new
        improved = score < best.objective
        best.x_on, best.w_on, best.rooms, best.objective = x_on, w_on, rooms, score
        best.version += 1
        self.changes.append((best.version, keys))
        if len(self.changes) > 256:
            self.trimmed = self.changes[127][0]
            del self.changes[:128]
        return improved


# --- the entry point ----------------------------------------------------------------------


def solve(
    problem: Problem,
    *,
    time_limit: float,
    seed: int = 0,
    workers: int = 2,
    progress: Callable[[Progress], None] | None = None,
    hint: Solution | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> SolveResult:
    """Best timetable found within `time_limit` seconds (see the module docstring).

    `progress` is called on every improvement and at least once a second; `should_stop`
    is polled between search rounds and ends the search early with the best timetable."""
    started = time.perf_counter()
    deadline = started + time_limit
    problems = _precheck(problem)
    if problems:
        return SolveResult(None, "infeasible", False, wall_time=0.0, explanation=problems)
    rooms: dict[Occurrence, str] = {}
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
    best = _Incumbent(x_on, w_on, rooms)
    best.objective = _score(problem, x_on)["score"]

    def report(phase: str) -> None:
        if progress is None:
            return
        terms = _score(problem, best.x_on)
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

    report("first")
    search = _Search(
        problem, best, deadline=deadline, started=started, report=report, should_stop=should_stop
    )
    if best.objective > 0:
        lanes = [
            threading.Thread(target=search.lane, args=(seed * 7 + i,), daemon=True)
            for i in range(1, max(1, workers))
        ]
        for lane in lanes:
            lane.start()
        search.lane(seed * 7)
        for lane in lanes:
            lane.join()
    solution = _extract(problem, best.x_on, best.w_on, best.rooms)
    terms = soft_terms(problem, solution)
    if search.stopped:
        log.info("solve stopped on request", extra={"rounds": search.rounds})
    return SolveResult(
        solution,
        "optimal" if best.objective == 0 else "feasible",
        True,
        objective=terms,
        wall_time=time.perf_counter() - started,
        first_feasible_seconds=first_feasible,
        lns_rounds=search.rounds,
    )


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
    for family in HARD_FAMILIES:
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
