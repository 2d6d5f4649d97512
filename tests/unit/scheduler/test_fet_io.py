"""The FET projection, `.fet` export and reading FET's result back (no fet-cl needed)."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest

from scheduler.checker import check
from scheduler.domain import Interval, Placement
from scheduler.io.fet import fet_projection, find_activities_xml, read_fet_activities, to_fet
from scheduler.io.timetable_json import load_problem
from tests.fixtures.timetables import two_campuses as shared_two_campuses
from tests.shared_data import TIMETABLE_DATA


def two_campuses() -> dict[str, Any]:
    return shared_two_campuses("fet", ("mon", "tue", "wed"))


def test_projection_is_one_bell_without_travel_or_research() -> None:
    problem = load_problem(two_campuses())
    projected = fet_projection(problem)

    a_bell = problem.campuses["a"].bell
    assert projected.campuses["a"].bell == a_bell
    assert projected.campuses["b"].bell == a_bell[:3]  # b keeps its 3 periods, on a's clock
    assert projected.travel_minutes("a", "b") == 0
    assert projected.research_sessions == ()
    # t2's Tuesday morning covers b's periods 1 and 2: those periods on the common bell.
    blocked = [(u.day, u.interval) for u in projected.teachers["t2"].unavailable]
    assert blocked == [("tue", Interval(480, 520)), ("tue", Interval(530, 570))]
    assert projected.lessons == problem.lessons
    assert projected.sync_groups == problem.sync_groups
    assert projected.fixed == problem.fixed


def test_export_of_example_small_has_one_activity_per_occurrence() -> None:
    problem = fet_projection(load_problem(TIMETABLE_DATA / "example-small.json"))
    export = to_fet(problem)
    root = ET.fromstring(export.xml)

    activities = root.findall("Activities_List/Activity")
    assert len(activities) == problem.occurrences == len(export.activities)
    assert len({a.findtext("Id") for a in activities}) == len(activities)
    assert len(root.findall("Teachers_List/Teacher")) == len(problem.teachers)
    assert len(root.findall("Students_List/Year")) == len(problem.classes)
    assert len(root.findall("Rooms_List/Room")) == len(problem.rooms)
    hours = max(len(c.bell) for c in problem.campuses.values())
    assert root.findtext("Hours_List/Number_of_Hours") == str(hours)
    assert root.findtext("Days_List/Number_of_Days") == str(len(problem.days))
    same_start = root.findall("Time_Constraints_List/ConstraintActivitiesSameStartingTime")
    assert len(same_start) == sum(problem.lessons[g.lead].per_week for g in problem.sync_groups)
    locked = root.findall("Time_Constraints_List/ConstraintActivityPreferredStartingTime")
    assert len(locked) == len(problem.fixed)
    preferred = root.findall("Space_Constraints_List/ConstraintActivityPreferredRooms")
    assert len(preferred) == len(activities)
    # Each lesson's occurrences form one FET activity group of per_week sub-activities.
    for lesson_id, lesson in problem.lessons.items():
        ours = [a for a in export.activities if a.lesson == lesson_id]
        assert len(ours) == lesson.per_week
        assert len({a.group_id for a in ours}) == 1


def test_export_states_what_the_small_problem_needs() -> None:
    problem = fet_projection(load_problem(two_campuses()))
    root = ET.fromstring(to_fet(problem).xml)
    time_constraints = root.find("Time_Constraints_List")
    assert time_constraints is not None

    off = time_constraints.find("ConstraintTeacherNotAvailableTimes")
    assert off is not None and off.findtext("Teacher") == "t2"
    assert [(t.findtext("Day"), t.findtext("Hour")) for t in off.iter("Not_Available_Time")] == [
        ("tue", "P1"),
        ("tue", "P2"),
    ]
    # Class b-1 has no 4th period.
    students_off = time_constraints.find("ConstraintStudentsSetNotAvailableTimes")
    assert students_off is not None and students_off.findtext("Students") == "b-1"
    assert {t.findtext("Hour") for t in students_off.iter("Not_Available_Time")} == {"P4"}
    assert time_constraints.find("ConstraintTeacherMaxHoursDaily/Maximum_Hours_Daily") is not None
    sync_rooms = [
        [r.text for r in c.iter("Preferred_Room")]
        for c in root.iter("ConstraintActivityPreferredRooms")
        if c.findtext("Activity_Id") in ("1", "3")
    ]
    assert sync_rooms == [["a-sync"], ["b-sync"]]


FET_RESULT = """\ufeff<?xml version="1.0" encoding="UTF-8"?>
<Activities_Timetable>
<Activity><Id>1</Id><Day>mon</Day><Hour>P1</Hour><Room>a-sync</Room></Activity>
<Activity><Id>2</Id><Day>wed</Day><Hour>P2</Hour><Room>a-sync</Room></Activity>
<Activity><Id>3</Id><Day>mon</Day><Hour>P1</Hour><Room>b-sync</Room></Activity>
<Activity><Id>4</Id><Day>wed</Day><Hour>P2</Hour><Room>b-sync</Room></Activity>
<Activity><Id>5</Id><Day>mon</Day><Hour>P4</Hour><Room>a-101</Room></Activity>
<Activity><Id>6</Id><Day>wed</Day><Hour>P1</Hour><Room></Room></Activity>
</Activities_Timetable>
"""


def test_fet_result_reads_back_into_placements(tmp_path: Path) -> None:
    full = load_problem(two_campuses())
    problem = fet_projection(full)
    export = to_fet(problem)
    out = tmp_path / "timetables" / "fet"
    out.mkdir(parents=True)
    (out / "fet_activities.xml").write_text(FET_RESULT, encoding="utf-8")

    found = find_activities_xml(tmp_path)
    assert found is not None
    solution = read_fet_activities(problem, export, found.read_text(encoding="utf-8"))

    assert solution.lessons == [
        Placement("L1", "mon", 1, "a-sync"),
        Placement("L1", "wed", 2, "a-sync"),
        Placement("L2", "mon", 1, "b-sync"),
        Placement("L2", "wed", 2, "b-sync"),
        Placement("L3", "mon", 4, "a-101"),
        Placement("L3", "wed", 1, "a-101"),  # no room from FET: the home room
    ]
    assert check(problem, solution).feasible
    # The full problem still wants its research session, which FET does not place.
    assert {v.constraint for v in check(full, solution).violations} == {8}


def test_unknown_activity_in_a_fet_result_is_refused() -> None:
    problem = fet_projection(load_problem(two_campuses()))
    export = to_fet(problem)
    bad = FET_RESULT.replace("<Id>6</Id>", "<Id>99</Id>")
    with pytest.raises(ValueError, match="99"):
        read_fet_activities(problem, export, bad)
