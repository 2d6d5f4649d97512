"""The CP-SAT model of a tongke-timetable/1 problem, one small function per constraint family.

Each `add_*` function takes a `ModelContext`, adds its constraints and returns its penalty
terms (soft families) or nothing (hard families). The objective is assembled in
`scheduler/solver.py`. Decision variables: `x[lesson, day, period]` (the lesson takes place
in that slot of its campus's bell) and `w[session, day, start]` (a research session starts
then). Everything else is derived from those two tables.

When `ModelContext.explain` is set, every hard family except the occurrence counts is
guarded by an enforcement literal per named item (a sync group, a teacher, a room, …) so
that an infeasible model can be explained by the literals that cannot all hold.
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from ortools.sat.python import cp_model

from scheduler.domain import NOON, Interval, Problem, ResearchSession

LinearExpr = cp_model.LinearExprT
Slot = tuple[str, int]  # (campus id, period)
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
class ModelContext:
    """The model under construction, the problem, and the variable tables."""

    problem: Problem
    model: cp_model.CpModel = field(default_factory=cp_model.CpModel)
    explain: bool = False
    # (lesson, day index, period) -> bool
    x: dict[tuple[str, int, int], cp_model.IntVar] = field(default_factory=dict)
    # (session, day index, start minute) -> bool
    w: dict[tuple[str, int, int], cp_model.IntVar] = field(default_factory=dict)
    # (lesson, day index, period, room) -> bool, only where a lesson has a choice of rooms
    room: dict[tuple[str, int, int, str], cp_model.IntVar] = field(default_factory=dict)
    # (teacher, day index, campus, period) -> bool: the teacher teaches then
    busy: dict[tuple[str, int, str, int], cp_model.IntVar] = field(default_factory=dict)
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
    by_teacher: dict[str, list[str]] = defaultdict(list)
    for lesson_id in problem.lessons:
        teacher = counted_teacher(problem, lesson_id)
        if teacher is not None:
            by_teacher[teacher].append(lesson_id)
    return by_teacher


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


# --- hard families --------------------------------------------------------------------------


def add_occurrences(ctx: ModelContext) -> None:
    """(1) per_week occurrences in distinct slots, at most max_per_day a day, fixed honoured."""
    problem, model = ctx.problem, ctx.model
    for lesson_id, lesson in problem.lessons.items():
        campus = problem.campus_of(lesson_id)
        for day in range(len(problem.days)):
            for p in campus.periods:
                ctx.x[lesson_id, day, p] = model.new_bool_var(
                    f"x[{lesson_id},{problem.days[day]},{p}]"
                )
        model.add(
            sum(ctx.x[lesson_id, d, p] for d in range(len(problem.days)) for p in campus.periods)
            == lesson.per_week
        )
        for day in range(len(problem.days)):
            model.add(sum(v for _, v in ctx.lesson_vars(lesson_id, day)) <= lesson.max_per_day)
    for fixed in problem.fixed:
        day = problem.days.index(fixed.day)
        model.add(ctx.x[fixed.lesson, day, fixed.period] == 1).only_enforce_if(
            ctx.guard("fixed", f"{fixed.lesson}@{fixed.day}#{fixed.period}")
        )


def add_class_clash(ctx: ModelContext) -> None:
    """(2) a class has at most one lesson per (day, period)."""
    problem = ctx.problem
    by_class: dict[str, list[str]] = defaultdict(list)
    for lesson_id, lesson in problem.lessons.items():
        by_class[lesson.class_id].append(lesson_id)
    for class_id, lesson_ids in by_class.items():
        if len(lesson_ids) < 2:
            continue
        campus = problem.campuses[problem.classes[class_id].campus]
        guard = ctx.guard("class", class_id)
        for day in range(len(problem.days)):
            for p in campus.periods:
                terms = [ctx.x[lesson_id, day, p] for lesson_id in lesson_ids]
                if guard:
                    ctx.model.add(sum(terms) <= 1).only_enforce_if(guard)
                else:
                    ctx.model.add_at_most_one(terms)


def add_teacher_clash(ctx: ModelContext) -> None:
    """(3) a teacher's lessons neither overlap nor leave less than the travel time between them.

    Creates `ctx.busy[teacher, day, campus, period]`, which the research, idle and
    max-per-day families reuse.
    """
    problem, model = ctx.problem, ctx.model
    for teacher, lesson_ids in teacher_lessons(problem).items():
        slots = teacher_slots(problem, lesson_ids)
        ctx.slots_of[teacher] = slots
        by_slot = {
            s: [lid for lid in lesson_ids if problem.campus_of(lid).id == s[0]] for s in slots
        }
        cliques = conflict_cliques(problem, slots)
        guard = ctx.guard("teacher", teacher)
        for day in range(len(problem.days)):
            for slot in slots:
                busy = model.new_bool_var(
                    f"busy[{teacher},{problem.days[day]},{slot[0]},{slot[1]}]"
                )
                ctx.busy[teacher, day, slot[0], slot[1]] = busy
                terms = [ctx.x[lid, day, slot[1]] for lid in by_slot[slot]]
                if guard:
                    # Relaxed: busy still covers every lesson, but two may share the slot.
                    for term in terms:
                        model.add_implication(term, busy)
                    model.add(sum(terms) <= 1).only_enforce_if(guard)
                    model.add(busy <= sum(terms))
                else:
                    model.add(busy == sum(terms))
            for clique in cliques:
                if len(clique) > 1:
                    expr = sum(ctx.busy[teacher, day, c, p] for c, p in clique)
                    model.add(expr <= 1).only_enforce_if(guard)


def add_rooms(ctx: ModelContext) -> None:
    """(4) each occurrence gets a suitable room; a room holds one lesson per (day, period)."""
    problem, model = ctx.problem, ctx.model
    users: dict[str, list[str]] = defaultdict(list)
    for lesson_id in problem.lessons:
        candidates = problem.room_candidates(lesson_id)
        if not candidates:
            for (lid, _, _), var in ctx.x.items():
                if lid == lesson_id:
                    ctx.forbid(var, ctx.guard("room-features", lesson_id))
            continue
        for room_id in candidates:
            users[room_id].append(lesson_id)
        if len(candidates) > 1:
            campus = problem.campus_of(lesson_id)
            for day in range(len(problem.days)):
                for p in campus.periods:
                    choice = []
                    for room_id in candidates:
                        var = model.new_bool_var(
                            f"room[{lesson_id},{problem.days[day]},{p},{room_id}]"
                        )
                        ctx.room[lesson_id, day, p, room_id] = var
                        choice.append(var)
                    model.add(sum(choice) == ctx.x[lesson_id, day, p])
    for room_id, lesson_ids in users.items():
        if len({problem.lessons[lid].class_id for lid in lesson_ids}) < 2:
            continue  # one class's lessons only: the class clash already covers the room
        campus = problem.campuses[problem.rooms[room_id].campus]
        guard = ctx.guard("room", room_id)
        for day in range(len(problem.days)):
            for p in campus.periods:
                terms = [
                    ctx.room.get((lid, day, p, room_id), ctx.x[lid, day, p]) for lid in lesson_ids
                ]
                model.add(sum(terms) <= 1).only_enforce_if(guard)


def add_unavailability(ctx: ModelContext) -> None:
    """(5) no lesson overlaps its teacher's unavailable intervals."""
    problem = ctx.problem
    for lesson_id, lesson in problem.lessons.items():
        teacher = problem.teachers[lesson.teacher]
        if not teacher.unavailable:
            continue
        campus = problem.campus_of(lesson_id)
        guard = ctx.guard("unavailable", teacher.id)
        for block in teacher.unavailable:
            day = problem.days.index(block.day)
            for p in campus.periods:
                if campus.interval(p).overlaps(block.interval):
                    ctx.forbid(ctx.x[lesson_id, day, p], guard)


def add_max_lessons_per_day(ctx: ModelContext) -> None:
    """(6) a teacher has at most max_lessons_per_day lessons on a day."""
    problem = ctx.problem
    for teacher, lesson_ids in teacher_lessons(problem).items():
        limit = problem.teachers[teacher].max_lessons_per_day
        if limit is None:
            continue
        guard = ctx.guard("max-per-day", teacher)
        for day in range(len(problem.days)):
            total = sum(v for lid in lesson_ids for _, v in ctx.lesson_vars(lid, day))
            ctx.model.add(total <= limit).only_enforce_if(guard)


def add_sync_groups(ctx: ModelContext) -> None:
    """(7) each lead occurrence is matched one-to-one with a member occurrence of the same day
    whose start is within the tolerance (equal per_week makes the matching perfect)."""
    problem, model = ctx.problem, ctx.model
    for group in problem.sync_groups:
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
            for day in range(len(problem.days)):
                for p, var in ctx.lesson_vars(group.lead, day):
                    if p not in lead_degree:
                        ctx.forbid(var, guard)
                for q, var in ctx.lesson_vars(member, day):
                    if q not in member_degree:
                        ctx.forbid(var, guard)
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


def add_research_sessions(ctx: ModelContext) -> None:
    """(8) each research session starts once inside the window, when no member teaches, has
    another session, or is unavailable."""
    problem, model = ctx.problem, ctx.model
    sessions_of: dict[str, list[str]] = defaultdict(list)
    for session in problem.research_sessions:
        for teacher in session.members:
            sessions_of[teacher].append(session.id)
        guard = ctx.guard("research", session.id)
        starts = research_starts(problem, session)
        members = [problem.teachers[t] for t in session.members]
        choices = []
        for day, day_name in enumerate(problem.days):
            blocked = [
                block.interval
                for teacher in members
                for block in teacher.unavailable
                if block.day == day_name
            ]
            for start in starts:
                var = model.new_bool_var(f"research[{session.id},{day_name},{start}]")
                ctx.w[session.id, day, start] = var
                choices.append(var)
                span = Interval(start, start + session.minutes)
                if any(span.overlaps(b) for b in blocked):
                    ctx.forbid(var, guard)
        if guard:
            model.add(sum(choices) == 1).only_enforce_if(guard)
        else:
            model.add_exactly_one(choices)
        # A member's lesson in a slot excludes every start overlapping that slot.
        member_slots = {slot for t in session.members for slot in ctx.slots_of.get(t, [])}
        busy_members = {
            slot: [t for t in session.members if slot in ctx.slots_of.get(t, [])]
            for slot in member_slots
        }
        for day in range(len(problem.days)):
            for campus, period in sorted(member_slots):
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
                for teacher in busy_members[campus, period]:
                    busy = ctx.busy[teacher, day, campus, period]
                    model.add(during + busy <= 1).only_enforce_if(guard)
    # Sessions sharing a member never overlap. Two overlap iff one's start lies in both, so
    # "session covers tick t" for every candidate start t is enough.
    starts_of = {s.id: research_starts(problem, s) for s in problem.research_sessions}
    durations = {s.id: s.minutes for s in problem.research_sessions}
    pairs = {
        tuple(sorted(pair))
        for session_ids in sessions_of.values()
        for pair in itertools.combinations(sorted(set(session_ids)), 2)
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
                    if start <= tick < start + durations[sid]
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
    """Each prefer_morning occurrence starting at or after 12:00."""
    problem = ctx.problem
    late = [
        var
        for (lesson_id, _, p), var in ctx.x.items()
        if problem.lessons[lesson_id].prefer_morning and problem.slot(lesson_id, p).start >= NOON
    ]
    return [PenaltyTerm("late_main", sum(late), weight)] if late else []


def add_idle_minutes(ctx: ModelContext, *, weight: int) -> list[PenaltyTerm]:
    """Per teacher and day: minutes between the end of the first and the start of the last
    lesson not spent teaching or travelling (the spec's idle minutes)."""
    terms: list[PenaltyTerm] = []
    for teacher, lesson_ids in teacher_lessons(ctx.problem).items():
        if sum(ctx.problem.lessons[lid].per_week for lid in lesson_ids) < 2:
            continue
        slots = ctx.slots_of[teacher]
        single_campus = len({c for c, _ in slots}) == 1
        for day in range(len(ctx.problem.days)):
            if single_campus:
                terms.append(_idle_one_campus(ctx, teacher, day, slots))
            else:
                terms.append(_idle_many_campuses(ctx, teacher, day, slots))
    return [PenaltyTerm(t.name, t.expression, weight) for t in terms]


def _idle_one_campus(ctx: ModelContext, teacher: str, day: int, slots: list[Slot]) -> PenaltyTerm:
    """Exact and LP-tight: `started[p]` (a lesson at or before p) and `pending[p]` (a lesson at
    or after p) are monotone; a free period or a break inside both is idle."""
    model, day_name = ctx.model, ctx.problem.days[day]
    busy = [ctx.busy[teacher, day, c, p] for c, p in slots]
    intervals = [slot_interval(ctx.problem, s) for s in slots]
    count = len(slots)
    started = [model.new_bool_var(f"started[{teacher},{day_name},{i}]") for i in range(count)]
    pending = [model.new_bool_var(f"pending[{teacher},{day_name},{i}]") for i in range(count)]
    idle_parts: list[LinearExpr] = []
    for i in range(count):
        model.add(started[i] >= busy[i])
        model.add(pending[i] >= busy[i])
        if i > 0:
            model.add(started[i] >= started[i - 1])
            model.add(pending[i - 1] >= pending[i])
    for i in range(count):
        # Period i free but inside the day's span.
        gap = model.new_bool_var(f"free[{teacher},{day_name},{i}]")
        model.add(gap >= started[i] + pending[i] - 1 - busy[i])
        idle_parts.append(intervals[i].length * gap)
        if i + 1 < count:
            pause = intervals[i + 1].start - intervals[i].end
            if pause > 0:
                inside = model.new_bool_var(f"break[{teacher},{day_name},{i}]")
                model.add(inside >= started[i] + pending[i + 1] - 1)
                idle_parts.append(pause * inside)
    return PenaltyTerm(f"idle[{teacher},{day_name}]", sum(idle_parts), 1)


def _idle_many_campuses(
    ctx: ModelContext, teacher: str, day: int, slots: list[Slot]
) -> PenaltyTerm:
    """(end of last − start of first) − teaching − travel, with travel bounded below by the
    shortest trip times (campuses used − 1), so idle time is never under-counted."""
    problem, model, day_name = ctx.problem, ctx.model, ctx.problem.days[day]
    intervals = {s: slot_interval(problem, s) for s in slots}
    earliest = min(i.start for i in intervals.values())
    latest = max(i.end for i in intervals.values())
    campuses = sorted({c for c, _ in slots})
    trips = [problem.travel_minutes(a, b) for a, b in itertools.combinations(campuses, 2)]
    shortest_trip = min((t for t in trips if t is not None), default=0)
    first = model.new_int_var(earliest, latest, f"first[{teacher},{day_name}]")
    last = model.new_int_var(earliest, latest, f"last[{teacher},{day_name}]")
    idle = model.new_int_var(0, latest - earliest, f"idle[{teacher},{day_name}]")
    model.add(last >= first)
    teaching = []
    for slot, interval in intervals.items():
        busy = ctx.busy[teacher, day, slot[0], slot[1]]
        model.add(first <= interval.start).only_enforce_if(busy)
        model.add(last >= interval.end).only_enforce_if(busy)
        teaching.append(interval.length * busy)
    used = []
    for campus in campuses:
        at = model.new_bool_var(f"at[{teacher},{day_name},{campus}]")
        model.add_max_equality(at, [ctx.busy[teacher, day, c, p] for c, p in slots if c == campus])
        used.append(at)
    model.add(idle >= last - first - sum(teaching) - shortest_trip * (sum(used) - 1))
    return PenaltyTerm(f"idle[{teacher},{day_name}]", idle, 1)


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


def build_model(
    problem: Problem, *, explain: bool = False, late_weight: int = 40, idle_weight: int = 1
) -> tuple[ModelContext, list[PenaltyTerm], list[PenaltyTerm]]:
    """All hard families, then the two soft ones: (context, late-main terms, idle terms)."""
    ctx = ModelContext(problem, explain=explain)
    for family in HARD_FAMILIES:
        family(ctx)
    late = add_late_main(ctx, weight=late_weight)
    idle = add_idle_minutes(ctx, weight=idle_weight)
    return ctx, late, idle
