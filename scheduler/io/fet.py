"""FET (the open school timetabler, `.fet` XML) for side-by-side comparison.

FET knows one period grid for everybody, "same starting time" on equal period numbers, no
wall-clock times, no travel and no research sessions. So a comparison goes in two steps:

1. `fet_projection(problem)` is the tongke-timetable/1 problem FET can express exactly:
   every campus runs on one common bell (the bell of the campus with the most periods; a
   campus keeps its own number of periods), travel between campuses takes 0 minutes, there
   are no research sessions, and a teacher's wall-clock `unavailable` block becomes the
   common-bell periods whose number is a period that overlaps the block on a campus where
   the teacher teaches (an approximation: the projection blocks a period on every campus
   if it overlaps on any of the teacher's campuses). Sync groups, fixed lessons, rooms,
   `max_per_day` and `max_lessons_per_day` carry over unchanged; on one bell a sync group
   is "same period number", which FET states as "activities same starting time".
2. `to_fet(projected)` writes that problem as `.fet`, one activity per lesson occurrence
   (a lesson is an activity group of `per_week` sub-activities of duration 1), and
   `read_fet_activities` turns FET's `*_activities.xml` back into a `Solution` by the
   activity ids of the export.

Scoring FET's timetable and ours with `scheduler.checker.check` on the projected problem
judges both by the rules FET could express; checking FET's timetable against the full
problem shows what it misses (sync lessons at different minutes, travel, sessions).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass, replace
from pathlib import Path

from scheduler.constraints import counted_teacher
from scheduler.domain import (
    Campus,
    Interval,
    Placement,
    Problem,
    Solution,
    Teacher,
    Unavailability,
)

FET_VERSION = "6.8.5"
# FET's own day names are free text; these are what the export writes.
HOUR_PREFIX = "P"


@dataclass(frozen=True)
class FetActivity:
    """One FET activity: the `index`-th weekly occurrence (from 0) of a lesson."""

    id: int
    lesson: str
    index: int
    group_id: int


@dataclass(frozen=True)
class FetExport:
    """The `.fet` document and the activity ids it uses."""

    xml: str
    activities: tuple[FetActivity, ...]
    hours: int

    @property
    def by_id(self) -> dict[int, FetActivity]:
        return {activity.id: activity for activity in self.activities}


# --- the projection ----------------------------------------------------------------------


def common_bell(problem: Problem) -> tuple[Interval, ...]:
    """The bell of the campus with the most periods (the first such campus)."""
    widest = max(problem.campuses.values(), key=lambda campus: len(campus.bell))
    return widest.bell


def _teacher_campuses(problem: Problem) -> dict[str, set[str]]:
    campuses: dict[str, set[str]] = {}
    for lesson_id, lesson in problem.lessons.items():
        campuses.setdefault(lesson.teacher, set()).add(problem.campus_of(lesson_id).id)
    return campuses


def blocked_periods(problem: Problem, teacher: Teacher, campuses: set[str]) -> set[tuple[str, int]]:
    """(day, period) pairs a teacher's unavailability overlaps on any campus they teach at."""
    blocked: set[tuple[str, int]] = set()
    for block in teacher.unavailable:
        for campus_id in sorted(campuses):
            campus = problem.campuses[campus_id]
            for period in campus.periods:
                if campus.interval(period).overlaps(block.interval):
                    blocked.add((block.day, period))
    return blocked


def fet_projection(problem: Problem) -> Problem:
    """The part of `problem` FET can express, as a tongke-timetable/1 problem (see above)."""
    bell = common_bell(problem)
    campuses = {
        cid: Campus(cid, campus.name, bell[: len(campus.bell)])
        for cid, campus in problem.campuses.items()
    }
    ids = sorted(campuses)
    travel = {(a, b): 0 for a in ids for b in ids if a != b}
    teaching = _teacher_campuses(problem)
    teachers = {}
    for tid, teacher in problem.teachers.items():
        blocked = blocked_periods(problem, teacher, teaching.get(tid, set()))
        unavailable = tuple(
            Unavailability(day, bell[period - 1])
            for day in problem.days
            for period in range(1, len(bell) + 1)
            if (day, period) in blocked
        )
        teachers[tid] = replace(teacher, unavailable=unavailable)
    return replace(
        problem,
        name=f"{problem.name} (FET projection)",
        campuses=campuses,
        travel=travel,
        teachers=teachers,
        research_sessions=(),
        research_window=Interval(bell[0].start, bell[-1].end),
        present=problem.present - {"research_sessions"},
    )


# --- writing .fet ------------------------------------------------------------------------


def _sub(parent: ET.Element, tag: str, text: str | int | None = None) -> ET.Element:
    element = ET.SubElement(parent, tag)
    if text is not None:
        element.text = str(text)
    return element


def _constraint(parent: ET.Element, tag: str) -> ET.Element:
    element = _sub(parent, tag)
    _sub(element, "Weight_Percentage", 100)
    return element


def _hour(period: int) -> str:
    return f"{HOUR_PREFIX}{period}"


def _activity_ids(problem: Problem) -> tuple[FetActivity, ...]:
    activities = []
    next_id = 1
    for lesson_id, lesson in problem.lessons.items():
        group_id = next_id if lesson.per_week > 1 else 0
        for index in range(lesson.per_week):
            activities.append(FetActivity(next_id, lesson_id, index, group_id))
            next_id += 1
    return tuple(activities)


def to_fet(problem: Problem) -> FetExport:
    """`problem` (normally a `fet_projection`) as a `.fet` document for FET 6."""
    hours = max(len(campus.bell) for campus in problem.campuses.values())
    activities = _activity_ids(problem)
    of_lesson: dict[str, list[int]] = {}
    for activity in activities:
        of_lesson.setdefault(activity.lesson, []).append(activity.id)

    root = ET.Element("fet", version=FET_VERSION)
    _sub(root, "Institution_Name", problem.name)
    _sub(root, "Comments", "exported by tongke from a tongke-timetable/1 problem")
    days = _sub(root, "Days_List")
    _sub(days, "Number_of_Days", len(problem.days))
    for day in problem.days:
        _sub(_sub(days, "Day"), "Name", day)
    hours_list = _sub(root, "Hours_List")
    _sub(hours_list, "Number_of_Hours", hours)
    for period in range(1, hours + 1):
        _sub(_sub(hours_list, "Hour"), "Name", _hour(period))
    subjects = _sub(root, "Subjects_List")
    for subject in sorted({lesson.subject for lesson in problem.lessons.values()}):
        _sub(_sub(subjects, "Subject"), "Name", subject)
    _sub(root, "Activity_Tags_List")
    teachers = _sub(root, "Teachers_List")
    for tid in problem.teachers:
        _sub(_sub(teachers, "Teacher"), "Name", tid)
    students = _sub(root, "Students_List")
    for class_id, school_class in problem.classes.items():
        year = _sub(students, "Year")
        _sub(year, "Name", class_id)
        _sub(year, "Number_of_Students", school_class.size)

    activity_list = _sub(root, "Activities_List")
    for activity in activities:
        lesson = problem.lessons[activity.lesson]
        element = _sub(activity_list, "Activity")
        # A sync member taught by the lead's teacher is the lead's lesson for that teacher.
        if counted_teacher(problem, activity.lesson) is not None:
            _sub(element, "Teacher", lesson.teacher)
        _sub(element, "Subject", lesson.subject)
        _sub(element, "Students", lesson.class_id)
        _sub(element, "Duration", 1)
        _sub(element, "Total_Duration", lesson.per_week)
        _sub(element, "Id", activity.id)
        _sub(element, "Activity_Group_Id", activity.group_id)
        _sub(element, "Active", "true")
        _sub(element, "Comments", f"{activity.lesson}#{activity.index + 1}")

    _sub(root, "Buildings_List")
    rooms = _sub(root, "Rooms_List")
    for room_id, room in problem.rooms.items():
        element = _sub(rooms, "Room")
        _sub(element, "Name", room_id)
        _sub(element, "Building", "")
        _sub(element, "Capacity", room.capacity)

    _time_constraints(problem, _sub(root, "Time_Constraints_List"), hours, of_lesson)
    _space_constraints(problem, _sub(root, "Space_Constraints_List"), activities)
    ET.indent(root)
    text = '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode")
    return FetExport(text + "\n", activities, hours)


def _time_constraints(
    problem: Problem, parent: ET.Element, hours: int, of_lesson: dict[str, list[int]]
) -> None:
    _sub(_constraint(parent, "ConstraintBasicCompulsoryTime"), "Active", "true")
    # A campus with fewer periods: its classes are "not available" in the hours it lacks.
    for class_id, school_class in problem.classes.items():
        periods = len(problem.campuses[school_class.campus].bell)
        missing = [(day, p) for day in problem.days for p in range(periods + 1, hours + 1)]
        if missing:
            element = _constraint(parent, "ConstraintStudentsSetNotAvailableTimes")
            _sub(element, "Students", class_id)
            _not_available(element, missing)
    teaching = _teacher_campuses(problem)
    for tid, teacher in problem.teachers.items():
        blocked = blocked_periods(problem, teacher, teaching.get(tid, set()))
        if blocked:
            element = _constraint(parent, "ConstraintTeacherNotAvailableTimes")
            _sub(element, "Teacher", tid)
            ordered = sorted(blocked, key=lambda b: (problem.days.index(b[0]), b[1]))
            _not_available(element, ordered)
        if teacher.max_lessons_per_day is not None:
            element = _constraint(parent, "ConstraintTeacherMaxHoursDaily")
            _sub(element, "Teacher_Name", tid)
            _sub(element, "Maximum_Hours_Daily", teacher.max_lessons_per_day)
            _sub(element, "Active", "true")
    for lesson_id, lesson in problem.lessons.items():
        ids = of_lesson[lesson_id]
        if len(ids) < 2 or lesson.max_per_day >= lesson.per_week:
            continue
        if lesson.max_per_day == 1:
            element = _constraint(parent, "ConstraintMinDaysBetweenActivities")
            _sub(element, "Consecutive_If_Same_Day", "true")
            _activity_refs(element, ids)
            _sub(element, "MinDays", 1)
            _sub(element, "Active", "true")
            continue
        # At most max_per_day a day: the activities occupy at most that many slots of each day.
        for day in problem.days:
            element = _constraint(parent, "ConstraintActivitiesOccupyMaxTimeSlotsFromSelection")
            _activity_refs(element, ids)
            _sub(element, "Number_of_Selected_Time_Slots", hours)
            for period in range(1, hours + 1):
                slot = _sub(element, "Selected_Time_Slot")
                _sub(slot, "Selected_Day", day)
                _sub(slot, "Selected_Hour", _hour(period))
            _sub(element, "Max_Number_of_Occupied_Time_Slots", lesson.max_per_day)
            _sub(element, "Active", "true")
    # Sync groups: the k-th occurrence of the lead and of every member start together.
    for group in problem.sync_groups:
        for k, lead_id in enumerate(of_lesson[group.lead]):
            element = _constraint(parent, "ConstraintActivitiesSameStartingTime")
            together = [lead_id, *(of_lesson[m][k] for m in group.members if k < len(of_lesson[m]))]
            _activity_refs(element, together)
            _sub(element, "Active", "true")
            _sub(element, "Comments", f"sync group {group.id}")
    for fixed in problem.fixed:
        # Fixed entries of one lesson pin its sub-activities in order.
        pinned = [f for f in problem.fixed if f.lesson == fixed.lesson]
        activity_id = of_lesson[fixed.lesson][pinned.index(fixed)]
        element = _constraint(parent, "ConstraintActivityPreferredStartingTime")
        _sub(element, "Activity_Id", activity_id)
        _sub(element, "Preferred_Day", fixed.day)
        _sub(element, "Preferred_Hour", _hour(fixed.period))
        _sub(element, "Permanently_Locked", "true")
        _sub(element, "Active", "true")


def _not_available(element: ET.Element, slots: list[tuple[str, int]]) -> None:
    _sub(element, "Number_of_Not_Available_Times", len(slots))
    for day, period in slots:
        slot = _sub(element, "Not_Available_Time")
        _sub(slot, "Day", day)
        _sub(slot, "Hour", _hour(period))
    _sub(element, "Active", "true")


def _activity_refs(element: ET.Element, ids: list[int]) -> None:
    _sub(element, "Number_of_Activities", len(ids))
    for activity_id in ids:
        _sub(element, "Activity_Id", activity_id)


def _space_constraints(
    problem: Problem, parent: ET.Element, activities: tuple[FetActivity, ...]
) -> None:
    _sub(_constraint(parent, "ConstraintBasicCompulsorySpace"), "Active", "true")
    for activity in activities:
        candidates = problem.room_candidates(activity.lesson)
        element = _constraint(parent, "ConstraintActivityPreferredRooms")
        _sub(element, "Activity_Id", activity.id)
        _sub(element, "Number_of_Preferred_Rooms", len(candidates))
        for room_id in candidates:
            _sub(element, "Preferred_Room", room_id)
        _sub(element, "Active", "true")


# --- reading FET's result ------------------------------------------------------------------


def read_fet_activities(problem: Problem, export: FetExport, activities_xml: str) -> Solution:
    """FET's `*_activities.xml` (Activities_Timetable: Id, Day, Hour, Room per activity) as
    a solution of `problem`; an activity without a room gets the lesson's first candidate.

    Raises ValueError on an activity id the export does not know or an unknown hour."""
    by_id = export.by_id
    root = ET.fromstring(activities_xml.lstrip("\ufeff"))  # FET writes a byte-order mark
    placements = []
    for element in root.iter("Activity"):
        activity_id = int(_text(element, "Id"))
        if activity_id not in by_id:
            raise ValueError(f"FET result names activity {activity_id}, which was not exported")
        activity = by_id[activity_id]
        day = _text(element, "Day")
        hour = _text(element, "Hour")
        if not day or not hour:
            continue  # not placed: the solution will miss this occurrence
        if not hour.startswith(HOUR_PREFIX) or not hour[len(HOUR_PREFIX) :].isdigit():
            raise ValueError(f"FET result has an hour {hour!r} this export did not write")
        room = _text(element, "Room")
        if not room:
            candidates = problem.room_candidates(activity.lesson)
            room = candidates[0] if candidates else ""
        placements.append(Placement(activity.lesson, day, int(hour[len(HOUR_PREFIX) :]), room))
    placements.sort(key=lambda p: (p.lesson, problem.days.index(p.day), p.period))
    return Solution(placements, [])


def _text(element: ET.Element, tag: str) -> str:
    child = element.find(tag)
    return (child.text or "").strip() if child is not None else ""


def find_activities_xml(output_dir: Path) -> Path | None:
    """The `*_activities.xml` FET wrote somewhere under `output_dir` (None if it did not)."""
    found = sorted(output_dir.rglob("*_activities.xml"))
    return found[0] if found else None
