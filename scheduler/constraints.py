"""The CP-SAT model of a tongke-timetable/1 problem, one small function per constraint family.

Each `add_*` function takes a `ModelContext`, adds its constraints and returns its penalty
terms (soft families) or nothing (hard families). The objective is assembled in
`scheduler/solver.py`. Decision variables: `x[lesson, day, period]` (the lesson takes place
in that slot of its campus's bell) and `w[session, day, start]` (a research session starts
then). Everything else is derived from those two tables.

A model covers either the whole week or, given a `Background`, only some (lesson, day)
pairs and research sessions: the rest of the timetable is then fixed and enters as
constants (taken periods of classes and rooms, busy slots of teachers, lessons already
counted against a teacher's day), so a neighbourhood of large-neighbourhood search or a
repair is a small model of its own rather than a copy of the full one.

When `ModelContext.explain` is set, every hard family except the occurrence counts is
guarded by an enforcement literal per named item (a sync group, a teacher, a room, …) so
that an infeasible model can be explained by the literals that cannot all hold.
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property

from ortools.sat.python import cp_model

from scheduler.domain import NOON, Interval, Problem, ResearchSession

LinearExpr = cp_model.LinearExprT
Slot = tuple[str, int]  # (campus id, period)
Busy = cp_model.IntVar | int  # a teacher-slot indicator: a variable, or fixed by the background
# Research sessions may start on this grid (and at any bell end) inside the research window.
RESEARCH_STEP_MINUTES = 30


@dataclass(frozen=True)
class PenaltyTerm:
    """One named soft term: `weight * expression` goes into the objective."""

    name: str
    expression: LinearExpr
    weight: int


@dataclass(frozen=True)
class Guard:
    """What an enforcement literal stands for, in words an admin understands."""

    family: str
    item: str


@dataclass
class Background:
    """The fixed rest of a timetable around a sub-model.

    `free` are the (lesson, day index) pairs the sub-model places; every other occurrence
    stays where `placed` puts it ((lesson, day) -> periods, rooms in `rooms` where the lesson
    has a choice). `sessions` holds the research sessions that stay put (id -> (day, start));
    the others are free. `extra_busy` adds (teacher, day) -> [(campus, interval)] teaching
    the problem does not know about (a substitute's cover lessons).
    """

    free: frozenset[tuple[str, int]]
    placed: Mapping[tuple[str, int], tuple[int, ...]]
    rooms: Mapping[tuple[str, int, int], str]
    sessions: Mapping[str, tuple[int, int]]
    extra_busy: Mapping[tuple[str, int], Sequence[tuple[str, Interval]]] = field(
        default_factory=dict
    )

    @cached_property
    def free_days(self) -> dict[str, list[int]]:
        days: dict[str, list[int]] = defaultdict(list)
        for lesson_id, day in sorted(self.free):
            days[lesson_id].append(day)
        return days


@dataclass
class ModelContext:
    """The model under construction, the problem, and the variable tables."""

    problem: Problem
    model: cp_model.CpModel = field(default_factory=cp_model.CpModel)
    explain: bool = False
    background: Background | None = None
    # (lesson, day index, period) -> bool, for the free (lesson, day) pairs
    x: dict[tuple[str, int, int], cp_model.IntVar] = field(default_factory=dict)
    # (session, day index, start minute) -> bool, for the free sessions
    w: dict[tuple[str, int, int], cp_model.IntVar] = field(default_factory=dict)
    # (lesson, day index, period, room) -> bool, only where a lesson has a choice of rooms
    room: dict[tuple[str, int, int, str], cp_model.IntVar] = field(default_factory=dict)
    # (teacher, day index, campus, period) -> the teacher teaches then (var or constant), for
    # the teacher-days the model decides
    busy: dict[tuple[str, int, str, int], Busy] = field(default_factory=dict)
    # teacher -> the (campus, period) slots of the campuses the teacher teaches at
    slots_of: dict[str, list[Slot]] = field(default_factory=dict)
    guards: dict[Guard, cp_model.IntVar] = field(default_factory=dict)

    def guard(self, family: str, item: str) -> list[cp_model.IntVar]:
        """Enforcement literals for one named item ([] unless explaining)."""
        if not self.explain:
            return []
        key = Guard(family, item)
        if key not in self.guards:
            self.guards[key] = self.model.new_bool_var(f"guard[{family}:{item}]")
        return [self.guards[key]]

    def forbid(self, var: cp_model.IntVar, guard: list[cp_model.IntVar]) -> None:
        if guard:
            self.model.add(var == 0).only_enforce_if(guard)
        else:
            self.model.add(var == 0)

    def lesson_vars(self, lesson_id: str, day: int) -> list[tuple[int, cp_model.IntVar]]:
        campus = self.problem.campus_of(lesson_id)
        return [(p, self.x[lesson_id, day, p]) for p in campus.periods]

    # -- what is free, what is fixed --------------------------------------------------------

    @cached_property
    def free_days(self) -> dict[str, list[int]]:
        """lesson -> the days on which the model places it."""
        if self.background is None:
            every = list(range(len(self.problem.days)))
            return {lesson_id: every for lesson_id in self.problem.lessons}
        return self.background.free_days

    def is_free(self, lesson_id: str, day: int) -> bool:
        return self.background is None or (lesson_id, day) in self.background.free

    def placed(self, lesson_id: str, day: int) -> tuple[int, ...]:
        """Periods of the lesson's fixed occurrences on a day (none where it is free)."""
        if self.background is None or (lesson_id, day) in self.background.free:
            return ()
        return self.background.placed.get((lesson_id, day), ())

    def placed_room(self, lesson_id: str, day: int, period: int) -> str:
        assert self.background is not None
        room = self.background.rooms.get((lesson_id, day, period))
        return room if room is not None else self.problem.room_candidates(lesson_id)[0]

    def fixed_sessions(self) -> Mapping[str, tuple[int, int]]:
        return {} if self.background is None else self.background.sessions

    def free_sessions(self) -> list[ResearchSession]:
        fixed = self.fixed_sessions()
        return [s for s in self.problem.research_sessions if s.id not in fixed]

    def extra_busy(self, teacher: str, day: int) -> Sequence[tuple[str, Interval]]:
        if self.background is None:
            return ()
        return self.background.extra_busy.get((teacher, day), ())

    @cached_property
    def lessons_of_class(self) -> dict[str, list[str]]:
        by_class: dict[str, list[str]] = defaultdict(list)
        for lesson_id, lesson in self.problem.lessons.items():
            by_class[lesson.class_id].append(lesson_id)
        return by_class

    @cached_property
    def lessons_of_teacher(self) -> dict[str, list[str]]:
        return teacher_lessons(self.problem)


# --- derived facts shared by several families ---------------------------------------------


def counted_teacher(problem: Problem, lesson_id: str) -> str | None:
    """The teacher whose time a lesson takes: none for a member the lead teacher teaches."""
    lesson = problem.lessons[lesson_id]
    group = problem.sync_group_of.get(lesson_id)
    if (
        group is not None
        and lesson_id != group.lead
        and problem.lessons[group.lead].teacher == lesson.teacher
    ):
        return None
    return lesson.teacher


def teacher_lessons(problem: Problem) -> dict[str, list[str]]:
    return facts(problem).teacher_lessons


def teacher_slots(problem: Problem, lesson_ids: Iterable[str]) -> list[Slot]:
    campuses = sorted({problem.campus_of(lesson_id).id for lesson_id in lesson_ids})
    return [(c, p) for c in campuses for p in problem.campuses[c].periods]


def slot_interval(problem: Problem, slot: Slot) -> Interval:
    return problem.campuses[slot[0]].interval(slot[1])


def slots_conflict(problem: Problem, a: Slot, b: Slot) -> bool:
    """Two slots one teacher cannot both teach on a day: overlap, or too little travel time."""
    if a == b:
        return True
    first, second = slot_interval(problem, a), slot_interval(problem, b)
    travel = problem.travel_minutes(a[0], b[0])
    if travel is None:
        return True
    return first.gap_to(second) < travel


def conflicts_with(problem: Problem, slot: Slot, campus: str, interval: Interval) -> bool:
    """A teacher teaching `interval` at `campus` cannot also teach `slot`."""
    travel = problem.travel_minutes(slot[0], campus)
    return travel is None or slot_interval(problem, slot).gap_to(interval) < travel


def conflict_cliques(problem: Problem, slots: Sequence[Slot]) -> list[list[Slot]]:
    """Maximal cliques of the slot-conflict graph (Bron–Kerbosch; graphs are tiny)."""
    neighbours = {s: {t for t in slots if t != s and slots_conflict(problem, s, t)} for s in slots}
    cliques: list[list[Slot]] = []

    def expand(r: list[Slot], p: set[Slot], x: set[Slot]) -> None:
        if not p and not x:
            cliques.append(sorted(r))
            return
        pivot = max(p | x, key=lambda s: len(neighbours[s] & p))
        for s in sorted(p - neighbours[pivot]):
            expand([*r, s], p & neighbours[s], x & neighbours[s])
            p = p - {s}
            x = x | {s}

    expand([], set(slots), set())
    return cliques


def sync_compatible(problem: Problem, lead: str, member: str) -> list[tuple[int, int]]:
    """(lead period, member period) pairs whose starts differ by at most the tolerance."""
    lead_campus, member_campus = problem.campus_of(lead), problem.campus_of(member)
    return [
        (p, q)
        for p in lead_campus.periods
        for q in member_campus.periods
        if abs(lead_campus.interval(p).start - member_campus.interval(q).start)
        <= problem.sync_tolerance
    ]


def research_starts(problem: Problem, session: ResearchSession) -> list[int]:
    """Candidate starts: the window start, any end of a member campus's period or a member's
    unavailability, and a coarse grid. Shifting a feasible session earlier until it meets
    one of these never makes it overlap a lesson, so little is lost."""
    window = problem.research_window
    latest = window.end - session.minutes
    campuses = {
        problem.campus_of(lesson_id).id
        for lesson_id, lesson in problem.lessons.items()
        if lesson.teacher in session.members
    }
    starts = {window.start, *range(window.start, latest + 1, RESEARCH_STEP_MINUTES)}
    starts |= {i.end for c in sorted(campuses) for i in problem.campuses[c].bell}
    starts |= {
        block.interval.end for t in session.members for block in problem.teachers[t].unavailable
    }
    return sorted(s for s in starts if window.start <= s <= latest)


class ProblemFacts:
    """Per-problem tables every (sub-)model needs, computed once."""

    def __init__(self, problem: Problem) -> None:
        by_teacher: dict[str, list[str]] = defaultdict(list)
        for lesson_id in problem.lessons:
            teacher = counted_teacher(problem, lesson_id)
            if teacher is not None:
                by_teacher[teacher].append(lesson_id)
        self.teacher_lessons: dict[str, list[str]] = dict(by_teacher)
        self.slots_of = {t: teacher_slots(problem, ids) for t, ids in by_teacher.items()}
        self.cliques = {
            t: [c for c in conflict_cliques(problem, slots) if len(c) > 1]
            for t, slots in self.slots_of.items()
        }
        self.weekly_load = {
            t: sum(problem.lessons[lid].per_week for lid in ids) for t, ids in by_teacher.items()
        }
        self.research_starts = {
            s.id: research_starts(problem, s) for s in problem.research_sessions
        }
        self.sessions_of: dict[str, list[str]] = defaultdict(list)
        for session in problem.research_sessions:
            for member in session.members:
                self.sessions_of[member].append(session.id)
        self.room_users: dict[str, list[str]] = defaultdict(list)
        for lesson_id in problem.lessons:
            for room_id in problem.room_candidates(lesson_id):
                self.room_users[room_id].append(lesson_id)


_FACTS: dict[int, tuple[Problem, ProblemFacts]] = {}


def facts(problem: Problem) -> ProblemFacts:
    """The cached `ProblemFacts` of a problem (keyed by identity; problems are immutable)."""
    entry = _FACTS.get(id(problem))
    if entry is None or entry[0] is not problem:
        if len(_FACTS) > 32:
            _FACTS.clear()
        entry = (problem, ProblemFacts(problem))
        _FACTS[id(problem)] = entry
    return entry[1]


# --- hard families --------------------------------------------------------------------------


def _fix_zero(ctx: ModelContext, var: cp_model.IntVar, guard: list[cp_model.IntVar]) -> None:
    """`var == 0`: by its domain when unguarded (no constraint for the solver to read)."""
    if guard:
        ctx.model.add(var == 0).only_enforce_if(guard)
    else:
        domain = ctx.model.proto.variables[var.index].domain
        domain[0], domain[1] = 0, 0


def add_occurrences(ctx: ModelContext) -> None:
    """(1) per_week occurrences in distinct slots, at most max_per_day a day, fixed honoured."""
    problem, model = ctx.problem, ctx.model
    all_days = range(len(problem.days))
    for lesson_id, days in ctx.free_days.items():
        lesson = problem.lessons[lesson_id]
        campus = problem.campus_of(lesson_id)
        elsewhere = sum(len(ctx.placed(lesson_id, d)) for d in all_days if d not in days)
        for day in days:
            for p in campus.periods:
                ctx.x[lesson_id, day, p] = model.new_bool_var(
                    f"x[{lesson_id},{problem.days[day]},{p}]"
                )
        model.add(
            sum(ctx.x[lesson_id, d, p] for d in days for p in campus.periods)
            == lesson.per_week - elsewhere
        )
        for day in days:
            model.add(sum(v for _, v in ctx.lesson_vars(lesson_id, day)) <= lesson.max_per_day)
    for fixed in problem.fixed:
        day = problem.days.index(fixed.day)
        if ctx.is_free(fixed.lesson, day):
            model.add(ctx.x[fixed.lesson, day, fixed.period] == 1).only_enforce_if(
                ctx.guard("fixed", f"{fixed.lesson}@{fixed.day}#{fixed.period}")
            )


def _days_of(ctx: ModelContext, lesson_ids: Iterable[str]) -> list[int]:
    return sorted({d for lid in lesson_ids for d in ctx.free_days.get(lid, ())})


def add_class_clash(ctx: ModelContext) -> None:
    """(2) a class has at most one lesson per (day, period)."""
    problem = ctx.problem
    for class_id, lesson_ids in ctx.lessons_of_class.items():
        if len(lesson_ids) < 2:
            continue
        campus = problem.campuses[problem.classes[class_id].campus]
        guard = ctx.guard("class", class_id)
        for day in _days_of(ctx, lesson_ids):
            free = [lid for lid in lesson_ids if ctx.is_free(lid, day)]
            taken = {p for lid in lesson_ids for p in ctx.placed(lid, day)}
            for p in campus.periods:
                terms = [ctx.x[lesson_id, day, p] for lesson_id in free]
                if p in taken:
                    for term in terms:
                        _fix_zero(ctx, term, guard)
                elif len(terms) < 2:
                    continue
                elif guard:
                    ctx.model.add(sum(terms) <= 1).only_enforce_if(guard)
                else:
                    ctx.model.add_at_most_one(terms)


def add_teacher_clash(ctx: ModelContext) -> None:
    """(3) a teacher's lessons neither overlap nor leave less than the travel time between them.

    Creates `ctx.busy[teacher, day, campus, period]` for the teacher-days the model decides,
    which the research, idle and max-per-day families reuse.
    """
    problem, model = ctx.problem, ctx.model
    known = facts(problem)
    for teacher, lesson_ids in ctx.lessons_of_teacher.items():
        days = _days_of(ctx, lesson_ids)
        if not days:
            continue
        slots = known.slots_of[teacher]
        ctx.slots_of[teacher] = slots
        campus_of = {lid: problem.campus_of(lid).id for lid in lesson_ids}
        guard = ctx.guard("teacher", teacher)
        for day in days:
            free = [lid for lid in lesson_ids if ctx.is_free(lid, day)]
            fixed = {(campus_of[lid], p) for lid in lesson_ids for p in ctx.placed(lid, day)}
            extra = ctx.extra_busy(teacher, day)
            for slot in slots:
                terms = [ctx.x[lid, day, slot[1]] for lid in free if campus_of[lid] == slot[0]]
                key = (teacher, day, slot[0], slot[1])
                if slot in fixed:
                    ctx.busy[key] = 1
                    for term in terms:
                        _fix_zero(ctx, term, guard)
                    continue
                if not terms:
                    ctx.busy[key] = 0
                    continue
                busy = model.new_bool_var(
                    f"busy[{teacher},{problem.days[day]},{slot[0]},{slot[1]}]"
                )
                ctx.busy[key] = busy
                if guard:
                    # Relaxed: busy still covers every lesson, but two may share the slot.
                    for term in terms:
                        model.add_implication(term, busy)
                    model.add(sum(terms) <= 1).only_enforce_if(guard)
                    model.add(busy <= sum(terms))
                else:
                    model.add(busy == sum(terms))
                if any(slots_conflict(problem, slot, other) for other in fixed) or any(
                    conflicts_with(problem, slot, campus, interval) for campus, interval in extra
                ):
                    _fix_zero(ctx, busy, guard)
            for clique in known.cliques[teacher]:
                free_busy = [
                    b for c, p in clique if not isinstance(b := ctx.busy[teacher, day, c, p], int)
                ]
                if len(free_busy) > 1:
                    model.add(sum(free_busy) <= 1).only_enforce_if(guard)


def add_rooms(ctx: ModelContext) -> None:
    """(4) each occurrence gets a suitable room; a room holds one lesson per (day, period)."""
    problem, model = ctx.problem, ctx.model
    for lesson_id, days in ctx.free_days.items():
        candidates = problem.room_candidates(lesson_id)
        if not candidates:
            for day in days:
                for _, var in ctx.lesson_vars(lesson_id, day):
                    ctx.forbid(var, ctx.guard("room-features", lesson_id))
            continue
        if len(candidates) > 1:
            for day in days:
                for p, x in ctx.lesson_vars(lesson_id, day):
                    choice = []
                    for room_id in candidates:
                        var = model.new_bool_var(
                            f"room[{lesson_id},{problem.days[day]},{p},{room_id}]"
                        )
                        ctx.room[lesson_id, day, p, room_id] = var
                        choice.append(var)
                    model.add(sum(choice) == x)
    for room_id, lesson_ids in facts(problem).room_users.items():
        if len({problem.lessons[lid].class_id for lid in lesson_ids}) < 2:
            continue  # one class's lessons only: the class clash already covers the room
        days = _days_of(ctx, lesson_ids)
        if not days:
            continue
        campus = problem.campuses[problem.rooms[room_id].campus]
        guard = ctx.guard("room", room_id)
        for day in days:
            free = [lid for lid in lesson_ids if ctx.is_free(lid, day)]
            taken = {
                p
                for lid in lesson_ids
                for p in ctx.placed(lid, day)
                if ctx.placed_room(lid, day, p) == room_id
            }
            for p in campus.periods:
                terms = [ctx.room.get((lid, day, p, room_id), ctx.x[lid, day, p]) for lid in free]
                if p in taken:
                    for term in terms:
                        _fix_zero(ctx, term, guard)
                elif len(terms) > 1:
                    model.add(sum(terms) <= 1).only_enforce_if(guard)


def add_unavailability(ctx: ModelContext) -> None:
    """(5) no lesson overlaps its teacher's unavailable intervals."""
    problem = ctx.problem
    for lesson_id, days in ctx.free_days.items():
        teacher = problem.teachers[problem.lessons[lesson_id].teacher]
        if not teacher.unavailable:
            continue
        campus = problem.campus_of(lesson_id)
        guard = ctx.guard("unavailable", teacher.id)
        for block in teacher.unavailable:
            day = problem.days.index(block.day)
            if day not in days:
                continue
            for p in campus.periods:
                if campus.interval(p).overlaps(block.interval):
                    _fix_zero(ctx, ctx.x[lesson_id, day, p], guard)


def add_max_lessons_per_day(ctx: ModelContext) -> None:
    """(6) a teacher has at most max_lessons_per_day lessons on a day."""
    problem = ctx.problem
    for teacher, lesson_ids in ctx.lessons_of_teacher.items():
        limit = problem.teachers[teacher].max_lessons_per_day
        if limit is None:
            continue
        guard = ctx.guard("max-per-day", teacher)
        for day in _days_of(ctx, lesson_ids):
            free = [
                v
                for lid in lesson_ids
                if ctx.is_free(lid, day)
                for _, v in ctx.lesson_vars(lid, day)
            ]
            fixed = sum(len(ctx.placed(lid, day)) for lid in lesson_ids)
            fixed += len(ctx.extra_busy(teacher, day))
            if len(free) + fixed > limit:
                ctx.model.add(sum(free) <= limit - fixed).only_enforce_if(guard)


def add_sync_groups(ctx: ModelContext) -> None:
    """(7) each lead occurrence is matched one-to-one with a member occurrence of the same day
    whose start is within the tolerance (equal per_week makes the matching perfect).

    A sub-model must free a group's lessons together, day by day."""
    problem, model = ctx.problem, ctx.model
    for group in problem.sync_groups:
        days = ctx.free_days.get(group.lead, [])
        if any(ctx.free_days.get(m, []) != days for m in group.members):
            raise ValueError(f"sync group {group.id} is only partly free in a sub-model")
        if not days:
            continue
        guard = ctx.guard("sync", group.id)
        for member in group.members:
            pairs = sync_compatible(problem, group.lead, member)
            lead_degree: dict[int, int] = defaultdict(int)
            member_degree: dict[int, int] = defaultdict(int)
            for p, q in pairs:
                lead_degree[p] += 1
                member_degree[q] += 1
            simple = all(
                v == 1 for v in itertools.chain(lead_degree.values(), member_degree.values())
            )
            for day in days:
                for p, var in ctx.lesson_vars(group.lead, day):
                    if p not in lead_degree:
                        _fix_zero(ctx, var, guard)
                for q, var in ctx.lesson_vars(member, day):
                    if q not in member_degree:
                        _fix_zero(ctx, var, guard)
                if simple:
                    for p, q in pairs:
                        model.add(
                            ctx.x[group.lead, day, p] == ctx.x[member, day, q]
                        ).only_enforce_if(guard)
                    continue
                edges = {
                    (p, q): model.new_bool_var(
                        f"sync[{group.id},{member},{problem.days[day]},{p},{q}]"
                    )
                    for p, q in pairs
                }
                for p in lead_degree:
                    model.add(
                        sum(e for (pp, _), e in edges.items() if pp == p)
                        == ctx.x[group.lead, day, p]
                    ).only_enforce_if(guard)
                for q in member_degree:
                    model.add(
                        sum(e for (_, qq), e in edges.items() if qq == q) == ctx.x[member, day, q]
                    ).only_enforce_if(guard)


def _fixed_teaching(ctx: ModelContext, teacher: str, day: int) -> list[Interval]:
    """The teacher's fixed lessons and extra teaching on a day, as wall-clock intervals."""
    problem = ctx.problem
    intervals = [
        problem.slot(lid, p)
        for lid in ctx.lessons_of_teacher.get(teacher, ())
        for p in ctx.placed(lid, day)
    ]
    intervals.extend(interval for _, interval in ctx.extra_busy(teacher, day))
    return intervals


def add_research_sessions(ctx: ModelContext) -> None:
    """(8) each research session starts once inside the window, when no member teaches, has
    another session, or is unavailable."""
    problem, model = ctx.problem, ctx.model
    known = facts(problem)
    fixed_sessions = ctx.fixed_sessions()
    minutes = {s.id: s.minutes for s in problem.research_sessions}
    # A fixed session keeps its members' slots that overlap it free of lessons.
    for session in problem.research_sessions:
        if session.id not in fixed_sessions:
            continue
        day, start = fixed_sessions[session.id]
        span = Interval(start, start + session.minutes)
        for teacher in session.members:
            for slot in ctx.slots_of.get(teacher, []):
                busy = ctx.busy.get((teacher, day, slot[0], slot[1]))
                if isinstance(busy, cp_model.IntVar) and slot_interval(problem, slot).overlaps(
                    span
                ):
                    _fix_zero(ctx, busy, [])
    free_sessions = ctx.free_sessions()
    for session in free_sessions:
        guard = ctx.guard("research", session.id)
        starts = known.research_starts[session.id]
        choices = []
        for day, day_name in enumerate(problem.days):
            blocked = [
                block.interval
                for teacher in session.members
                for block in problem.teachers[teacher].unavailable
                if block.day == day_name
            ]
            fixed_blocked = [i for t in session.members for i in _fixed_teaching(ctx, t, day)]
            fixed_blocked += [
                Interval(s, s + minutes[sid])
                for t in session.members
                for sid in known.sessions_of[t]
                if sid != session.id and sid in fixed_sessions
                for d, s in [fixed_sessions[sid]]
                if d == day
            ]
            for start in starts:
                var = model.new_bool_var(f"research[{session.id},{day_name},{start}]")
                ctx.w[session.id, day, start] = var
                choices.append(var)
                span = Interval(start, start + session.minutes)
                if any(span.overlaps(b) for b in blocked):
                    ctx.forbid(var, guard)
                elif any(span.overlaps(b) for b in fixed_blocked):
                    _fix_zero(ctx, var, [])
        if guard:
            model.add(sum(choices) == 1).only_enforce_if(guard)
        else:
            model.add_exactly_one(choices)
        # A member's lesson in a slot excludes every start overlapping that slot.
        member_slots = {slot for t in session.members for slot in ctx.slots_of.get(t, [])}
        for day in range(len(problem.days)):
            for campus, period in sorted(member_slots):
                busy_vars = [
                    b
                    for t in session.members
                    if isinstance(b := ctx.busy.get((t, day, campus, period)), cp_model.IntVar)
                ]
                if not busy_vars:
                    continue
                interval = problem.campuses[campus].interval(period)
                overlapping = [
                    ctx.w[session.id, day, s]
                    for s in starts
                    if Interval(s, s + session.minutes).overlaps(interval)
                ]
                if not overlapping:
                    continue
                during = model.new_bool_var(
                    f"during[{session.id},{problem.days[day]},{campus},{period}]"
                )
                model.add(sum(overlapping) == during)
                for busy in busy_vars:
                    model.add(during + busy <= 1).only_enforce_if(guard)
    # Free sessions sharing a member never overlap. Two overlap iff one's start lies in both,
    # so "session covers tick t" for every candidate start t is enough.
    free_ids = {s.id for s in free_sessions}
    starts_of = known.research_starts
    pairs = {
        tuple(sorted(pair))
        for session_ids in known.sessions_of.values()
        for pair in itertools.combinations(sorted(set(session_ids) & free_ids), 2)
    }
    in_pairs = sorted({sid for pair in pairs for sid in pair})
    ticks = sorted({start for sid in in_pairs for start in starts_of[sid]})
    covers: dict[tuple[str, int, int], cp_model.IntVar] = {}
    for sid in in_pairs:
        for day, day_name in enumerate(problem.days):
            for tick in ticks:
                covering = [
                    ctx.w[sid, day, start]
                    for start in starts_of[sid]
                    if start <= tick < start + minutes[sid]
                ]
                if covering:
                    on = model.new_bool_var(f"covers[{sid},{day_name},{tick}]")
                    model.add(sum(covering) == on)
                    covers[sid, day, tick] = on
    for first, second in sorted(pairs):
        guard = ctx.guard("research-pair", f"{first}+{second}")
        pair_ticks = sorted({*starts_of[first], *starts_of[second]})
        for day in range(len(problem.days)):
            for tick in pair_ticks:
                a, b = covers.get((first, day, tick)), covers.get((second, day, tick))
                if a is not None and b is not None:
                    model.add(a + b <= 1).only_enforce_if(guard)


# --- soft families --------------------------------------------------------------------------


def add_late_main(ctx: ModelContext, *, weight: int) -> list[PenaltyTerm]:
    """Each prefer_morning occurrence starting at or after 12:00 (free ones; the fixed rest
    is a constant)."""
    problem = ctx.problem
    late = [
        var
        for (lesson_id, _, p), var in ctx.x.items()
        if problem.lessons[lesson_id].prefer_morning and problem.slot(lesson_id, p).start >= NOON
    ]
    return [PenaltyTerm("late_main", sum(late), weight)] if late else []


def add_idle_minutes(ctx: ModelContext, *, weight: int) -> list[PenaltyTerm]:
    """Per teacher and day: minutes between the end of the first and the start of the last
    lesson not spent teaching or travelling (the spec's idle minutes, exactly)."""
    terms: list[PenaltyTerm] = []
    known = facts(ctx.problem)
    for teacher, lesson_ids in ctx.lessons_of_teacher.items():
        if known.weekly_load[teacher] < 2 or teacher not in ctx.slots_of:
            continue
        for day in _days_of(ctx, lesson_ids):
            term = _idle_day(ctx, teacher, day)
            if term is not None:
                terms.append(PenaltyTerm(term.name, term.expression, weight))
    return terms


def _idle_day(ctx: ModelContext, teacher: str, day: int) -> PenaltyTerm | None:
    """Idle minutes of one teacher-day over the time line cut at every slot boundary: a piece
    is idle when a lesson ended before it, another starts after it and none covers it
    (`started`/`pending` are monotone, so the LP relaxation is tight); then the travel between
    consecutive lessons at different campuses is given back (`arc`: both taught, nothing in
    between)."""
    problem, model, day_name = ctx.problem, ctx.model, ctx.problem.days[day]
    used: list[tuple[Interval, str, Busy]] = []
    for campus, period in ctx.slots_of[teacher]:
        busy = ctx.busy[teacher, day, campus, period]
        if isinstance(busy, int) and busy == 0:
            continue
        used.append((problem.campuses[campus].interval(period), campus, busy))
    if all(isinstance(b, int) for _, _, b in used) or len(used) < 2:
        return None
    bounds = sorted({i.start for i, _, _ in used} | {i.end for i, _, _ in used})
    pieces = list(itertools.pairwise(bounds))
    ends_at: dict[int, list[Busy]] = defaultdict(list)
    starts_at: dict[int, list[Busy]] = defaultdict(list)
    for interval, _, busy in used:
        ends_at[interval.end].append(busy)
        starts_at[interval.start].append(busy)
    started: list[cp_model.IntVar] = []
    for k, (begin, _) in enumerate(pieces):
        var = model.new_bool_var(f"started[{teacher},{day_name},{begin}]")
        for busy in ends_at.get(begin, []):
            model.add(var >= busy)
        if k:
            model.add(var >= started[-1])
        started.append(var)
    pending: list[cp_model.IntVar] = [started[0]] * len(pieces)
    for k in range(len(pieces) - 1, -1, -1):
        end = pieces[k][1]
        var = model.new_bool_var(f"pending[{teacher},{day_name},{end}]")
        for busy in starts_at.get(end, []):
            model.add(var >= busy)
        if k + 1 < len(pieces):
            model.add(var >= pending[k + 1])
        pending[k] = var
    parts: list[LinearExpr] = []
    for k, (begin, end) in enumerate(pieces):
        covering = [b for i, _, b in used if i.start <= begin and i.end >= end]
        gap = model.new_bool_var(f"idle[{teacher},{day_name},{begin}]")
        model.add(gap >= started[k] + pending[k] - 1 - sum(covering))
        parts.append((end - begin) * gap)
    for (first, campus_a, busy_a), (second, campus_b, busy_b) in itertools.permutations(used, 2):
        if campus_a == campus_b or first.end > second.start:
            continue
        travel = problem.travel_minutes(campus_a, campus_b)
        if not travel or second.start - first.end < travel:
            continue
        arc = model.new_bool_var(f"trip[{teacher},{day_name},{first.end},{second.start}]")
        model.add(arc <= busy_a)
        model.add(arc <= busy_b)
        for between, _, busy in used:
            if between.start >= first.end and between.end <= second.start:
                model.add(arc + busy <= 1)
        parts.append(-travel * arc)
    return PenaltyTerm(f"idle[{teacher},{day_name}]", sum(parts), 1)


HARD_FAMILIES = (
    add_occurrences,
    add_class_clash,
    add_teacher_clash,
    add_rooms,
    add_unavailability,
    add_max_lessons_per_day,
    add_sync_groups,
    add_research_sessions,
)
LESSON_FAMILIES = HARD_FAMILIES[:-1]


def build_model(
    problem: Problem,
    *,
    explain: bool = False,
    late_weight: int = 40,
    idle_weight: int = 1,
    background: Background | None = None,
) -> tuple[ModelContext, list[PenaltyTerm], list[PenaltyTerm]]:
    """All hard families, then the two soft ones: (context, late-main terms, idle terms).

    With a `background`, only its free (lesson, day) pairs and sessions are decided and
    the soft terms count only what the model can change (the rest is a constant)."""
    ctx = ModelContext(problem, explain=explain, background=background)
    for family in HARD_FAMILIES:
        family(ctx)
    late = add_late_main(ctx, weight=late_weight)
    idle = add_idle_minutes(ctx, weight=idle_weight)
    return ctx, late, idle
