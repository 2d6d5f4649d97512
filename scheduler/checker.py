"""The evaluator of tongke-timetable/1: every hard constraint (numbered as in the spec) and the
two soft terms, with messages an administrator can act on.

Readings of the spec that it leaves open:

- A research session is online: it has no campus, so no travel is needed before or after
  it. It is not a lesson either: it does not count towards `max_lessons_per_day`, it is not
  checked against `unavailable` (constraint 5 speaks of lessons), and its minutes count as
  idle time.
- A teacher's lessons are the lessons whose `teacher` they are: lead lessons they teach and
  member lessons where they assist. A member lesson whose teacher is also the teacher of
  the group's lead lesson is taught together with it, so it does not count for that teacher
  a second time (constraint 7: only the lead lesson counts against the lead teacher).
- The travel rule holds for every pair of one teacher's lessons on a day at different
  campuses, not only consecutive ones; a pair with no travel time is always a violation.
- Overlaps involving a research session are reported under constraint 8; lesson-lesson
  overlaps and travel gaps under 3.
- A lesson without required features must be in its class's home room, and every room
  (the home room too) needs capacity for the class.
"""

from __future__ import annotations

import itertools
import sys
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from scheduler.domain import (
    NOON,
    SYNC_FEATURE,
    Interval,
    Lesson,
    Problem,
    ResearchSession,
    Solution,
    Teacher,
    hhmm,
)
from scheduler.io.timetable_json import ProblemFormatError, load_problem, load_solution

PLACEMENT = 1
CLASS_CLASH = 2
TEACHER_CLASH = 3
ROOM = 4
UNAVAILABLE = 5
TEACHER_DAY_LIMIT = 6
SYNC = 7
RESEARCH = 8


@dataclass(frozen=True)
class Violation:
    """One broken hard constraint; `constraint` is its number in the spec (1..8)."""

    constraint: int
    message: str

    def __str__(self) -> str:
        return f"[{self.constraint}] {self.message}"


@dataclass(frozen=True)
class CheckReport:
    violations: list[Violation] = field(default_factory=list)
    idle_minutes: int = 0
    late_main: int = 0

    @property
    def hard(self) -> int:
        return len(self.violations)

    @property
    def feasible(self) -> bool:
        return not self.violations

    @property
    def soft(self) -> dict[str, int]:
        return {"idle_minutes": self.idle_minutes, "late_main": self.late_main}

    def by_constraint(self) -> Counter[int]:
        return Counter(v.constraint for v in self.violations)


@dataclass(frozen=True, slots=True)
class _Occurrence:
    lesson: Lesson
    day: str
    period: int
    room: str
    campus: str
    interval: Interval

    def __str__(self) -> str:
        return f"{self.lesson.id} {self.day} p{self.period} {self.interval} at {self.campus}"


@dataclass(frozen=True, slots=True)
class _Meeting:
    session: ResearchSession
    day: str
    interval: Interval

    def __str__(self) -> str:
        return f"research {self.session.id} {self.day} {self.interval}"


def _teacher_label(teacher: Teacher | None, teacher_id: str) -> str:
    if teacher is None or not teacher.name:
        return f"teacher {teacher_id}"
    return f"teacher {teacher_id} ({teacher.name})"


class _Check:
    def __init__(self, problem: Problem, solution: Solution) -> None:
        self.problem = problem
        self.solution = solution
        self.violations: list[Violation] = []
        self.occurrences: list[_Occurrence] = []
        self.meetings: list[_Meeting] = []
        self.days = set(problem.days)

    def add(self, constraint: int, message: str) -> None:
        self.violations.append(Violation(constraint, message))

    def teacher(self, teacher_id: str) -> str:
        return _teacher_label(self.problem.teachers.get(teacher_id), teacher_id)

    # -- reading the placements -------------------------------------------------------

    def read_placements(self) -> None:
        problem = self.problem
        for placement in self.solution.lessons:
            lesson = problem.lessons.get(placement.lesson)
            if lesson is None:
                self.add(PLACEMENT, f"placement of unknown lesson {placement.lesson}")
                continue
            if placement.day not in self.days:
                self.add(
                    PLACEMENT,
                    f"lesson {lesson.id} is placed on {placement.day}, "
                    "which is not one of the problem's days",
                )
                continue
            campus = problem.campus_of(lesson.id)
            if placement.period not in campus.periods:
                self.add(
                    PLACEMENT,
                    f"lesson {lesson.id} is placed in {placement.day} p{placement.period}, but "
                    f"campus {campus.id} has periods 1–{len(campus.bell)}",
                )
                continue
            self.occurrences.append(
                _Occurrence(
                    lesson,
                    placement.day,
                    placement.period,
                    placement.room,
                    campus.id,
                    campus.interval(placement.period),
                )
            )

    def read_research(self) -> None:
        sessions = {session.id: session for session in self.problem.research_sessions}
        placed: Counter[str] = Counter()
        window = self.problem.research_window
        for placement in self.solution.research_sessions:
            session = sessions.get(placement.id)
            if session is None:
                self.add(RESEARCH, f"placement of unknown research session {placement.id}")
                continue
            placed[session.id] += 1
            if placed[session.id] > 1:
                self.add(RESEARCH, f"research session {session.id} is placed more than once")
                continue
            if placement.day not in self.days:
                self.add(
                    RESEARCH,
                    f"research session {session.id} is placed on {placement.day}, "
                    "which is not one of the problem's days",
                )
                continue
            interval = Interval(placement.start, placement.start + session.minutes)
            if interval.start < window.start or interval.end > window.end:
                self.add(
                    RESEARCH,
                    f"research session {session.id} {placement.day} {interval} "
                    f"({session.minutes} min) is outside the research window {window}",
                )
            self.meetings.append(_Meeting(session, placement.day, interval))
        for session in self.problem.research_sessions:
            if placed[session.id] == 0:
                self.add(RESEARCH, f"research session {session.id} is not placed")

    # -- the constraints -------------------------------------------------------------

    def lesson_counts(self) -> None:
        """1: per_week occurrences in distinct slots, max_per_day, fixed entries."""
        by_lesson: defaultdict[str, list[_Occurrence]] = defaultdict(list)
        for occurrence in self.occurrences:
            by_lesson[occurrence.lesson.id].append(occurrence)
        for lesson in self.problem.lessons.values():
            placed = by_lesson.get(lesson.id, [])
            if len(placed) != lesson.per_week:
                self.add(
                    PLACEMENT,
                    f"lesson {lesson.id} ({lesson.class_id} {lesson.subject}, {lesson.teacher}) "
                    f"has {len(placed)} occurrences but per_week is {lesson.per_week}",
                )
            slots = Counter((o.day, o.period) for o in placed)
            for (day, period), count in slots.items():
                if count > 1:
                    self.add(
                        PLACEMENT, f"lesson {lesson.id} is placed {count} times in {day} p{period}"
                    )
            per_day: defaultdict[str, list[int]] = defaultdict(list)
            for day, period in slots:
                per_day[day].append(period)
            for day, periods in per_day.items():
                if len(periods) > lesson.max_per_day:
                    listed = ", ".join(f"p{p}" for p in sorted(periods))
                    self.add(
                        PLACEMENT,
                        f"lesson {lesson.id} has {len(periods)} occurrences on {day} ({listed}) "
                        f"but max_per_day is {lesson.max_per_day}",
                    )
        for fixed in self.problem.fixed:
            placed_slots = {(o.day, o.period) for o in by_lesson.get(fixed.lesson, [])}
            if (fixed.day, fixed.period) not in placed_slots:
                self.add(
                    PLACEMENT,
                    f"lesson {fixed.lesson} is fixed to {fixed.day} p{fixed.period} "
                    "but is not placed there",
                )

    def class_clashes(self) -> None:
        """2: a class has at most one lesson per (day, period)."""
        by_slot: defaultdict[tuple[str, str, int], list[_Occurrence]] = defaultdict(list)
        for o in self.occurrences:
            by_slot[(o.lesson.class_id, o.day, o.period)].append(o)
        for (class_id, day, period), placed in by_slot.items():
            distinct = {o.lesson.id: o.lesson for o in placed}
            if len(distinct) > 1:
                lessons = ", ".join(
                    f"{lesson.id} ({lesson.subject})" for lesson in distinct.values()
                )
                self.add(
                    CLASS_CLASH,
                    f"class {class_id} has {len(distinct)} lessons in {day} p{period} "
                    f"{placed[0].interval}: {lessons}",
                )

    def rooms(self) -> None:
        """4: one lesson per room and (day, period); right campus, features, capacity."""
        problem = self.problem
        by_slot: defaultdict[tuple[str, str, int], list[_Occurrence]] = defaultdict(list)
        for o in self.occurrences:
            by_slot[(o.room, o.day, o.period)].append(o)
            room = problem.rooms.get(o.room)
            if room is None:
                self.add(ROOM, f"{o} is in room {o.room}, which is not defined")
                continue
            school_class = problem.classes[o.lesson.class_id]
            needed = problem.required_features(o.lesson.id)
            reasons = []
            if room.campus != school_class.campus:
                reasons.append(
                    f"the room is on campus {room.campus}, class {school_class.id} on "
                    f"{school_class.campus}"
                )
            if not needed and room.id != school_class.home_room:
                reasons.append(
                    f"a lesson without room_features takes place in the home room "
                    f"{school_class.home_room}"
                )
            missing = needed - room.features
            if missing:
                why = (
                    " (sync group lesson)"
                    if SYNC_FEATURE in missing and problem.needs_sync_room(o.lesson.id)
                    else ""
                )
                reasons.append(f"the room lacks {', '.join(sorted(missing))}{why}")
            if room.capacity < school_class.size:
                reasons.append(
                    f"the room holds {room.capacity} but class {school_class.id} has "
                    f"{school_class.size} pupils"
                )
            if reasons:
                self.add(ROOM, f"{o} in room {room.id}: {'; '.join(reasons)}")
        for (room_id, day, period), placed in by_slot.items():
            lessons = sorted({o.lesson.id for o in placed})
            if len(lessons) > 1:
                self.add(
                    ROOM,
                    f"room {room_id} holds {len(lessons)} lessons in {day} p{period} "
                    f"{placed[0].interval}: {', '.join(lessons)}",
                )

    def sync_groups(self) -> None:
        """7: equal per_week, and a one-to-one matching of lead and member occurrences."""
        problem = self.problem
        tolerance = problem.sync_tolerance
        by_lesson_day: defaultdict[tuple[str, str], list[_Occurrence]] = defaultdict(list)
        for o in self.occurrences:
            by_lesson_day[(o.lesson.id, o.day)].append(o)
        for group in problem.sync_groups:
            per_weeks = {problem.lessons[lesson_id].per_week for lesson_id in group.lessons}
            if len(per_weeks) > 1:
                listing = ", ".join(
                    f"{lesson_id}: {problem.lessons[lesson_id].per_week}"
                    for lesson_id in group.lessons
                )
                self.add(SYNC, f"sync group {group.id}: per_week differs ({listing})")
            for member in group.members:
                for day in problem.days:
                    leads = sorted(
                        by_lesson_day.get((group.lead, day), []), key=lambda o: o.interval.start
                    )
                    members = sorted(
                        by_lesson_day.get((member, day), []), key=lambda o: o.interval.start
                    )
                    if not leads and not members:
                        continue
                    matched_lead, matched_member = pair_starts(
                        [o.interval.start for o in leads],
                        [o.interval.start for o in members],
                        tolerance,
                    )
                    member_times = (
                        ", ".join(f"p{o.period} {hhmm(o.interval.start)}" for o in members)
                        or "none"
                    )
                    lead_times = (
                        ", ".join(f"p{o.period} {hhmm(o.interval.start)}" for o in leads) or "none"
                    )
                    for i, o in enumerate(leads):
                        if i not in matched_lead:
                            self.add(
                                SYNC,
                                f"sync group {group.id}: lead {o} has no occurrence of member "
                                f"{member} on {day} starting within {tolerance} min to pair with "
                                f"({member} on {day}: {member_times})",
                            )
                    for j, o in enumerate(members):
                        if j not in matched_member:
                            self.add(
                                SYNC,
                                f"sync group {group.id}: member {o} has no occurrence of lead "
                                f"{group.lead} on {day} starting within {tolerance} min to pair "
                                f"with ({group.lead} on {day}: {lead_times})",
                            )

    def teachers(self) -> int:
        """3, 5, 6 and the member part of 8; returns the idle minutes."""
        problem = self.problem
        taught_with_lead = {
            member
            for group in problem.sync_groups
            for member in group.members
            if problem.lessons[member].teacher == problem.lessons[group.lead].teacher
        }
        lessons: defaultdict[tuple[str, str], list[_Occurrence]] = defaultdict(list)
        for o in self.occurrences:
            if o.lesson.id not in taught_with_lead:
                lessons[(o.lesson.teacher, o.day)].append(o)
        meetings: defaultdict[tuple[str, str], list[_Meeting]] = defaultdict(list)
        for meeting in self.meetings:
            for member in meeting.session.members:
                meetings[(member, meeting.day)].append(meeting)

        idle = 0
        for key in sorted(lessons.keys() | meetings.keys()):
            teacher_id, day = key
            teacher = problem.teachers.get(teacher_id)
            label = self.teacher(teacher_id)
            day_lessons = sorted(lessons.get(key, []), key=lambda o: o.interval.start)
            day_meetings = meetings.get(key, [])
            self._lesson_pairs(label, day_lessons)
            self._meeting_overlaps(label, day_lessons, day_meetings)
            if teacher is not None:
                self._unavailable(label, teacher, day, day_lessons)
                limit = teacher.max_lessons_per_day
                if limit is not None and len(day_lessons) > limit:
                    listed = ", ".join(f"{o.lesson.id} p{o.period}" for o in day_lessons)
                    self.add(
                        TEACHER_DAY_LIMIT,
                        f"{label} has {len(day_lessons)} lessons on {day} "
                        f"(max_lessons_per_day {limit}): {listed}",
                    )
            idle += _idle_minutes(problem, day_lessons)
        return idle

    def _lesson_pairs(self, label: str, day_lessons: list[_Occurrence]) -> None:
        problem = self.problem
        for a, b in itertools.combinations(day_lessons, 2):
            if a.lesson is b.lesson and a.period == b.period:
                continue  # the same occurrence placed twice: reported under 1
            if a.interval.overlaps(b.interval):
                self.add(TEACHER_CLASH, f"{label}: {a} overlaps {b}")
            elif a.campus != b.campus:
                travel = problem.travel_minutes(a.campus, b.campus)
                gap = a.interval.gap_to(b.interval)
                if travel is None:
                    self.add(
                        TEACHER_CLASH,
                        f"{label}: {a} and {b} on one day, but campuses {a.campus} and "
                        f"{b.campus} are not reachable within a school day",
                    )
                elif gap < travel:
                    self.add(
                        TEACHER_CLASH,
                        f"{label}: only {gap} min between {a} and {b}, but travel "
                        f"{a.campus}–{b.campus} takes {travel} min",
                    )

    def _meeting_overlaps(
        self, label: str, day_lessons: list[_Occurrence], day_meetings: list[_Meeting]
    ) -> None:
        for meeting in day_meetings:
            for o in day_lessons:
                if meeting.interval.overlaps(o.interval):
                    self.add(RESEARCH, f"{label}: {meeting} overlaps lesson {o}")
        for a, b in itertools.combinations(day_meetings, 2):
            if a.interval.overlaps(b.interval):
                self.add(RESEARCH, f"{label}: {a} overlaps {b}")

    def _unavailable(
        self, label: str, teacher: Teacher, day: str, day_lessons: list[_Occurrence]
    ) -> None:
        blocked = [u.interval for u in teacher.unavailable if u.day == day]
        for o in day_lessons:
            for interval in blocked:
                if o.interval.overlaps(interval):
                    self.add(
                        UNAVAILABLE, f"{label} is unavailable {day} {interval} but teaches {o}"
                    )

    def late_main(self) -> int:
        return sum(
            1 for o in self.occurrences if o.lesson.prefer_morning and o.interval.start >= NOON
        )


def pair_starts(
    leads: Sequence[int], members: Sequence[int], tolerance: int
) -> tuple[set[int], set[int]]:
    """Pair lead and member start times one-to-one, at most `tolerance` apart, as many as
    possible (maximum bipartite matching by augmenting paths).

    Returns the indices of the paired leads and of the paired members.
    """
    edges = [[j for j, m in enumerate(members) if abs(s - m) <= tolerance] for s in leads]
    owner: dict[int, int] = {}  # member index -> lead index

    def augment(i: int, seen: set[int]) -> bool:
        for j in edges[i]:
            if j in seen:
                continue
            seen.add(j)
            if j not in owner or augment(owner[j], seen):
                owner[j] = i
                return True
        return False

    for i in range(len(leads)):
        augment(i, set())
    return set(owner.values()), set(owner.keys())


def _idle_minutes(problem: Problem, day_lessons: list[_Occurrence]) -> int:
    """Gaps between consecutive lessons (sorted by start) less the travel between them."""
    idle = 0
    for a, b in itertools.pairwise(day_lessons):
        gap = b.interval.start - a.interval.end
        travel = problem.travel_minutes(a.campus, b.campus) or 0
        idle += max(0, gap - travel)
    return idle


def check(problem: Problem, solution: Solution) -> CheckReport:
    """Evaluate `solution` against every hard constraint and compute the soft terms."""
    run = _Check(problem, solution)
    run.read_placements()
    run.read_research()
    run.lesson_counts()
    run.class_clashes()
    run.rooms()
    run.sync_groups()
    idle = run.teachers()
    order = sorted(run.violations, key=lambda v: v.constraint)
    return CheckReport(violations=order, idle_minutes=idle, late_main=run.late_main())


def format_report(report: CheckReport) -> str:
    """One line per violation, then a summary and the soft terms."""
    lines = [str(v) for v in report.violations]
    if report.feasible:
        lines.append("feasible: all hard constraints hold")
    else:
        counts = ", ".join(f"{n}×[{c}]" for c, n in sorted(report.by_constraint().items()))
        lines.append(f"infeasible: {report.hard} hard violations ({counts})")
    lines.extend(f"{name}: {value}" for name, value in report.soft.items())
    return "\n".join(lines)


def _write_issues(out: TextIO, what: str, issues: Iterable[object]) -> None:
    out.write(f"{what} is malformed:\n")
    for issue in issues:
        out.write(f"  {issue}\n")


def run_check(problem_path: Path, solution_path: Path, *, out: TextIO | None = None) -> int:
    """CLI: print the report; 0 when feasible, 1 when infeasible, 2 for malformed input."""
    stream = out if out is not None else sys.stdout
    try:
        problem = load_problem(Path(problem_path))
    except ProblemFormatError as error:
        _write_issues(stream, f"problem {problem_path}", error.issues)
        return 2
    except OSError as error:
        stream.write(f"cannot read problem {problem_path}: {error}\n")
        return 2
    try:
        solution = load_solution(Path(solution_path), problem)
    except ProblemFormatError as error:
        _write_issues(stream, f"solution {solution_path}", error.issues)
        return 2
    except OSError as error:
        stream.write(f"cannot read solution {solution_path}: {error}\n")
        return 2
    report = check(problem, solution)
    stream.write(format_report(report) + "\n")
    return 0 if report.feasible else 1
