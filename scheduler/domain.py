"""The timetabling problem and solution as the solver and checker see them.

Times are minutes after midnight. A campus's `bell[p - 1]` is period `p`. Everything is
immutable and indexed by the ids of the tongke-timetable/1 format (see
`scheduler/io/timetable_json.py` for reading and writing that format).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import cached_property

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
SYNC_FEATURE = "sync"
NOON = 12 * 60


def minutes(hhmm: str) -> int:
    """'08:05' -> 485. Raises ValueError on anything that is not a valid HH:MM."""
    hours, sep, mins = hhmm.partition(":")
    if not sep or len(mins) != 2 or not hours.isdigit() or not mins.isdigit():
        raise ValueError(f"not a HH:MM time: {hhmm!r}")
    value = int(hours) * 60 + int(mins)
    if int(hours) > 23 or int(mins) > 59:
        raise ValueError(f"not a HH:MM time: {hhmm!r}")
    return value


def hhmm(value: int) -> str:
    return f"{value // 60:02d}:{value % 60:02d}"


@dataclass(frozen=True)
class Interval:
    start: int
    end: int

    def overlaps(self, other: Interval) -> bool:
        return self.start < other.end and other.start < self.end

    def gap_to(self, other: Interval) -> int:
        """Minutes between the two intervals (negative when they overlap)."""
        return max(other.start - self.end, self.start - other.end)

    @property
    def length(self) -> int:
        return self.end - self.start

    def __str__(self) -> str:
        return f"{hhmm(self.start)}–{hhmm(self.end)}"


@dataclass(frozen=True)
class Campus:
    id: str
    name: str
    bell: tuple[Interval, ...]

    @property
    def periods(self) -> range:
        return range(1, len(self.bell) + 1)

    def interval(self, period: int) -> Interval:
        return self.bell[period - 1]


@dataclass(frozen=True)
class Room:
    id: str
    campus: str
    capacity: int
    features: frozenset[str]


@dataclass(frozen=True)
class Unavailability:
    day: str
    interval: Interval


@dataclass(frozen=True)
class Teacher:
    id: str
    name: str
    max_lessons_per_day: int | None = None
    unavailable: tuple[Unavailability, ...] = ()


@dataclass(frozen=True)
class SchoolClass:
    id: str
    campus: str
    grade: int
    size: int
    home_room: str


@dataclass(frozen=True)
class Lesson:
    id: str
    class_id: str
    subject: str
    teacher: str
    per_week: int
    max_per_day: int
    room_features: frozenset[str] = frozenset()
    prefer_morning: bool = False
    # Whether the source file spelled these out (kept so writing reproduces the input).
    explicit: frozenset[str] = frozenset()


@dataclass(frozen=True)
class SyncGroup:
    id: str
    lead: str
    members: tuple[str, ...]

    @property
    def lessons(self) -> tuple[str, ...]:
        return (self.lead, *self.members)


@dataclass(frozen=True)
class ResearchSession:
    id: str
    subject: str
    members: tuple[str, ...]
    minutes: int


@dataclass(frozen=True)
class Fixed:
    lesson: str
    day: str
    period: int


def default_max_per_day(per_week: int, days: int) -> int:
    return 1 if per_week <= days else math.ceil(per_week / days)


@dataclass(frozen=True)
class Problem:
    name: str
    days: tuple[str, ...]
    sync_tolerance: int
    research_window: Interval
    campuses: dict[str, Campus]
    travel: dict[tuple[str, str], int]
    rooms: dict[str, Room]
    teachers: dict[str, Teacher]
    classes: dict[str, SchoolClass]
    lessons: dict[str, Lesson]
    sync_groups: tuple[SyncGroup, ...] = ()
    research_sessions: tuple[ResearchSession, ...] = ()
    fixed: tuple[Fixed, ...] = ()
    # Which optional top-level keys the source had (so writing reproduces it exactly).
    present: frozenset[str] = field(default_factory=frozenset)

    def travel_minutes(self, a: str, b: str) -> int | None:
        """Minutes between two campuses; 0 on the same campus, None if not reachable in a day."""
        if a == b:
            return 0
        return self.travel.get((a, b))

    def campus_of(self, lesson_id: str) -> Campus:
        return self.campuses[self.classes[self.lessons[lesson_id].class_id].campus]

    def slot(self, lesson_id: str, period: int) -> Interval:
        return self.campus_of(lesson_id).interval(period)

    @cached_property
    def sync_group_of(self) -> dict[str, SyncGroup]:
        return {lesson: group for group in self.sync_groups for lesson in group.lessons}

    def needs_sync_room(self, lesson_id: str) -> bool:
        return lesson_id in self.sync_group_of

    def required_features(self, lesson_id: str) -> frozenset[str]:
        lesson = self.lessons[lesson_id]
        if self.needs_sync_room(lesson_id):
            return lesson.room_features | {SYNC_FEATURE}
        return lesson.room_features

    def room_candidates(self, lesson_id: str) -> tuple[str, ...]:
        """Rooms the lesson may use: its class's home room, or matching rooms on its campus."""
        lesson = self.lessons[lesson_id]
        school_class = self.classes[lesson.class_id]
        needed = self.required_features(lesson_id)
        if not needed:
            return (school_class.home_room,)
        return tuple(
            room.id
            for room in self.rooms.values()
            if room.campus == school_class.campus
            and needed <= room.features
            and room.capacity >= school_class.size
        )

    @cached_property
    def occurrences(self) -> int:
        return sum(lesson.per_week for lesson in self.lessons.values())


@dataclass(frozen=True)
class Placement:
    lesson: str
    day: str
    period: int
    room: str


@dataclass(frozen=True)
class ResearchPlacement:
    id: str
    day: str
    start: int


@dataclass
class Solution:
    lessons: list[Placement] = field(default_factory=list)
    research_sessions: list[ResearchPlacement] = field(default_factory=list)
