"""The ITC-2007 track 3 evaluator, formulation UD2, counted as the official validator does."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

from scheduler.itc2007.ctt import Instance, Placement

ROOM_CAPACITY_WEIGHT = 1
MIN_WORKING_DAYS_WEIGHT = 5
CURRICULUM_COMPACTNESS_WEIGHT = 2
ROOM_STABILITY_WEIGHT = 1


@dataclass(frozen=True, slots=True)
class Evaluation:
    """Violations of each hard constraint and the weighted soft cost of each component."""

    lectures: int
    room_occupancy: int
    conflicts: int
    availability: int
    room_capacity: int
    min_working_days: int
    curriculum_compactness: int
    room_stability: int
    unknown: tuple[str, ...] = ()

    @property
    def hard(self) -> int:
        return (
            self.lectures
            + self.room_occupancy
            + self.conflicts
            + self.availability
            + len(self.unknown)
        )

    @property
    def cost(self) -> int:
        return (
            self.room_capacity
            + self.min_working_days
            + self.curriculum_compactness
            + self.room_stability
        )


def conflicting_courses(instance: Instance) -> set[frozenset[str]]:
    """Pairs of distinct courses that share a teacher or a curriculum."""
    pairs: set[frozenset[str]] = set()
    by_teacher: dict[str, list[str]] = defaultdict(list)
    for course in instance.courses:
        by_teacher[course.teacher].append(course.name)
    groups = [*by_teacher.values(), *(list(q.courses) for q in instance.curricula)]
    for group in groups:
        for i, first in enumerate(group):
            for second in group[i + 1 :]:
                if first != second:
                    pairs.add(frozenset((first, second)))
    return pairs


def evaluate(instance: Instance, placements: Iterable[Placement]) -> Evaluation:
    """Score a solution from scratch.

    Placements naming an unknown course or room, or a day/period outside the week, are
    reported in `unknown` (one hard violation each) and otherwise ignored. A course placed
    twice in the same period counts as one lecture there plus one conflict, since the
    official validator's course x period matrix cannot hold both.
    """
    courses = {course.name: course for course in instance.courses}
    capacity = {room.name: room.capacity for room in instance.rooms}
    unavailable = {(u.course, u.day, u.period) for u in instance.unavailability}
    ppd = instance.periods_per_day

    unknown: list[str] = []
    valid: list[Placement] = []
    for placement in placements:
        if (
            placement.course not in courses
            or placement.room not in capacity
            or not 0 <= placement.day < instance.days
            or not 0 <= placement.period < ppd
        ):
            unknown.append(
                f"{placement.course} {placement.room} {placement.day} {placement.period}"
            )
        else:
            valid.append(placement)

    per_course_period = Counter((p.course, p.day * ppd + p.period) for p in valid)
    scheduled = Counter(course for course, _ in per_course_period)
    lectures = sum(abs(scheduled[c.name] - c.lectures) for c in instance.courses)
    duplicates = sum(count - 1 for count in per_course_period.values())

    per_slot = Counter((p.room, p.day * ppd + p.period) for p in valid)
    room_occupancy = sum(count - 1 for count in per_slot.values())

    courses_at: dict[int, set[str]] = defaultdict(set)
    for course, slot in per_course_period:
        courses_at[slot].add(course)
    conflicts = duplicates
    for pair in conflicting_courses(instance):
        first, second = tuple(pair)
        conflicts += sum(
            1 for present in courses_at.values() if first in present and second in present
        )

    availability = sum(
        1 for course, slot in per_course_period if (course, *divmod(slot, ppd)) in unavailable
    )

    room_capacity = (
        sum(max(0, courses[p.course].students - capacity[p.room]) for p in valid)
        * ROOM_CAPACITY_WEIGHT
    )

    days_of: dict[str, set[int]] = defaultdict(set)
    rooms_of: dict[str, set[str]] = defaultdict(set)
    for p in valid:
        days_of[p.course].add(p.day)
        rooms_of[p.course].add(p.room)
    min_working_days = MIN_WORKING_DAYS_WEIGHT * sum(
        max(0, c.min_working_days - len(days_of[c.name])) for c in instance.courses
    )
    room_stability = ROOM_STABILITY_WEIGHT * sum(len(rooms) - 1 for rooms in rooms_of.values())

    isolated = 0
    for curriculum in instance.curricula:
        members = set(curriculum.courses)
        load = Counter(slot for (course, slot), _ in per_course_period.items() if course in members)
        for slot, count in load.items():
            period = slot % ppd
            before = period > 0 and load.get(slot - 1, 0) > 0
            after = period < ppd - 1 and load.get(slot + 1, 0) > 0
            if not before and not after:
                isolated += count
    return Evaluation(
        lectures=lectures,
        room_occupancy=room_occupancy,
        conflicts=conflicts,
        availability=availability,
        room_capacity=room_capacity,
        min_working_days=min_working_days,
        curriculum_compactness=CURRICULUM_COMPACTNESS_WEIGHT * isolated,
        room_stability=room_stability,
        unknown=tuple(unknown),
    )
