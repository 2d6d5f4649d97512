"""Reading, validating and writing tongke-timetable/1 documents."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scheduler.checker import check
from scheduler.domain import Solution
from scheduler.io.timetable_json import (
    Issue,
    ProblemFormatError,
    dump_problem,
    dump_solution,
    load_problem,
    load_solution,
    validate_problem,
    validate_solution,
)
from tests.fixtures.timetables import two_campuses
from tests.shared_data import TIMETABLE_DATA

EXAMPLES = TIMETABLE_DATA
NAMES = ["example-small", "example-shifted-small", "example-medium"]


def base() -> dict[str, Any]:
    """A small valid problem: campus a (4 periods) and b (3 periods, 5 min later)."""
    return two_campuses("base", ("mon", "tue"))


def pointers(issues: list[Issue]) -> list[str]:
    return [issue.pointer for issue in issues]


@pytest.mark.parametrize("name", NAMES)
def test_examples_round_trip(name: str) -> None:
    problem_doc = json.loads((EXAMPLES / f"{name}.json").read_text(encoding="utf-8"))
    solution_doc = json.loads((EXAMPLES / f"{name}.solution.json").read_text(encoding="utf-8"))

    assert validate_problem(problem_doc) == []
    problem = load_problem(EXAMPLES / f"{name}.json")
    assert dump_problem(problem) == problem_doc
    assert list(dump_problem(problem)) == list(problem_doc)  # the spec's key order
    assert validate_solution(solution_doc, problem) == []
    assert dump_solution(load_solution(EXAMPLES / f"{name}.solution.json", problem)) == solution_doc


def test_base_is_valid_and_round_trips_with_optional_keys_left_out() -> None:
    document = base()
    assert validate_problem(document) == []
    assert dump_problem(load_problem(document)) == document

    del document["travel_minutes"], document["fixed"]
    document["teachers"][1].pop("unavailable")
    problem = load_problem(document)
    assert problem.sync_tolerance == 5
    assert str(problem.research_window) == "08:00–14:40"  # first bell start to last bell end
    assert dump_problem(problem) == document


def test_unknown_keys_are_ignored() -> None:
    document = base()
    document["comment"] = "made by hand"
    document["lessons"][0]["note"] = {"anything": [1, 2]}
    assert validate_problem(document) == []


def test_all_schema_issues_are_listed_at_once() -> None:
    document = base()
    document["format"] = "tongke-timetable/2"
    document["days"] = ["mon", "tue", "mon", "someday"]
    document["campuses"][0]["bell"][1] = {"start": "8:50", "end": "09:30"}
    document["campuses"][1]["bell"][2] = {"start": "09:00", "end": "09:40"}
    document["rooms"][0]["capacity"] = "forty"
    document["teachers"][0]["max_lessons_per_day"] = 0
    document["teachers"][1]["unavailable"][0]["end"] = "07:00"
    del document["classes"][0]["home_room"]
    document["lessons"][1]["per_week"] = True
    document["lessons"][2]["prefer_morning"] = "yes"
    document["research_window"] = {"start": "17:00", "end": "08:00"}

    issues = validate_problem(document)

    assert pointers(issues) == [
        "/format",
        "/days/2",
        "/days/3",
        "/research_window/end",
        "/campuses/0/bell/1/start",
        "/campuses/1/bell/2",
        "/rooms/0/capacity",
        "/teachers/0/max_lessons_per_day",
        "/teachers/1/unavailable/0/end",
        "/classes/0/home_room",
        "/lessons/1/per_week",
        "/lessons/2/prefer_morning",
    ]
    messages = [issue.message for issue in issues]
    assert "day mon is listed twice" in messages
    assert "campus a period 2: 'start' must be a HH:MM time, got \"8:50\"" in messages
    assert "campus b: period 3 (09:00–09:40) overlaps period 2 (08:55–09:35)" in messages
    assert "class a-1: required key 'home_room' is missing" in messages


def test_all_reference_issues_are_listed_at_once() -> None:
    document = base()
    document["lessons"][0]["teacher"] = "t99"
    document["lessons"].append(copy.deepcopy(document["lessons"][2]))
    document["lessons"][3]["class"] = "z-9"
    document["rooms"][2]["campus"] = "zz"
    document["travel_minutes"][0]["to"] = "c"
    document["sync_groups"][0]["members"] = ["L2", "L404"]
    document["research_sessions"][0]["members"] = ["t1", "t7"]
    document["fixed"][0]["lesson"] = "L0"

    issues = validate_problem(document)

    assert {(issue.pointer, issue.message) for issue in issues} == {
        ("/lessons/3/id", "duplicate lesson id L3 (first defined at /lessons/2)"),
        ("/travel_minutes/0/to", "travel entry [0]: campus c is not defined"),
        ("/rooms/2/campus", "room b-101: campus zz is not defined"),
        ("/sync_groups/0/members/1", "sync group S1: lesson L404 is not defined"),
        ("/lessons/0/teacher", "lesson L1: teacher t99 is not defined"),
        ("/research_sessions/0/members/1", "research session R1: teacher t7 is not defined"),
        ("/fixed/0/lesson", "fixed entry: lesson L0 is not defined"),
    }


Mutation = Callable[[dict[str, Any]], None]


def _set(path: list[str | int], value: Any) -> Mutation:
    def mutate(document: dict[str, Any]) -> None:
        target: Any = document
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value

    return mutate


def _add_group(document: dict[str, Any]) -> None:
    document["sync_groups"].append({"id": "S2", "lead": "L3", "members": ["L2"]})


def _late_member_campus(document: dict[str, Any]) -> None:
    document["campuses"][1]["bell"] = [
        {"start": "15:00", "end": "15:40"},
        {"start": "15:50", "end": "16:30"},
    ]


def _three_a_week_one_a_day(document: dict[str, Any]) -> None:
    document["lessons"][2].update(per_week=3, max_per_day=1)


def _busy_class(document: dict[str, Any]) -> None:
    document["lessons"].append(
        {"id": "L4", "class": "a-1", "subject": "体育", "teacher": "t1", "per_week": 5}
    )


SEMANTIC_CASES: list[tuple[str, Mutation, str, str]] = [
    (
        "sync per_week differs",
        _set(["lessons", 1, "per_week"], 1),
        "/sync_groups/0",
        "sync group S1: its lessons have different per_week (L1: 2, L2: 1); "
        "all lessons of a sync group need the same per_week",
    ),
    (
        "lesson in two sync groups",
        _add_group,
        "/sync_groups/1/members/0",
        "lesson L2 is in sync groups S1 and S2; a lesson may belong to one sync group only",
    ),
    (
        "sync bells never align",
        _late_member_campus,
        "/sync_groups/0",
        "sync group S1: no period of campus a (lead L1) starts within 5 min of a period of "
        "campus b (L2), so the lessons can never be taught together",
    ),
    (
        "per_week over days × max_per_day",
        _three_a_week_one_a_day,
        "/lessons/2/per_week",
        "lesson L3: per_week 3 is more than 2 days × max_per_day 1",
    ),
    (
        "per_week over the periods the teacher is free",
        _set(["teachers", 1, "unavailable"], [{"day": "tue", "start": "08:00", "end": "15:00"}]),
        "/lessons/1/per_week",
        "lesson L2: per_week 2 but only 1 periods are available (campus b has 3 a day, at most "
        "1 a day; teacher t2 is unavailable in some)",
    ),
    (
        "class needs more periods than its campus has",
        _busy_class,
        "/classes/0",
        "class a-1: its lessons need 9 periods a week but campus a has only 8 (4 periods × 2 days)",
    ),
    (
        "no sync room on the member's campus",
        _set(["rooms", 3, "features"], []),
        "/lessons/1",
        "lesson L2: no room on campus b has sync and room for 15 pupils "
        "(sync group S1 needs a 'sync' room)",
    ),
    (
        "no room with the features",
        _set(["lessons", 2, "room_features"], ["lab"]),
        "/lessons/2/room_features",
        "lesson L3: no room on campus a has lab and room for 35 pupils",
    ),
    (
        "fixed period out of range",
        _set(["fixed", 0, "period"], 5),
        "/fixed/0/period",
        "fixed entry of L3: period 5 is out of range (campus a has 4 periods)",
    ),
    (
        "fixed day not a problem day",
        _set(["fixed", 0, "day"], "sat"),
        "/fixed/0/day",
        "fixed entry [0] of L3: day sat is not one of the problem's days",
    ),
    (
        "more fixed entries than per_week",
        _set(
            ["fixed"],
            [
                {"lesson": "L3", "day": "mon", "period": 1},
                {"lesson": "L3", "day": "tue", "period": 1},
                {"lesson": "L3", "day": "tue", "period": 2},
            ],
        ),
        "/fixed/2",
        "lesson L3 has 3 fixed entries but per_week is 2",
    ),
    (
        "research session longer than the window",
        _set(["research_window"], {"start": "08:00", "end": "08:45"}),
        "/research_sessions/0/minutes",
        "research session R1: lasts 60 min but the research window 08:00–08:45 is only 45 min long",
    ),
    (
        "unavailable on an unknown day",
        _set(["teachers", 1, "unavailable", 0, "day"], "Tuesday"),
        "/teachers/1/unavailable/0/day",
        'teacher t2 (李娜): unavailable interval: day "Tuesday" is not one of mon..sun',
    ),
    (
        "home room on another campus",
        _set(["classes", 1, "home_room"], "a-101"),
        "/classes/1/home_room",
        "class b-1: home room a-101 is on campus a, not on the class's campus b",
    ),
    (
        "teacher load over the week",
        _set(["teachers", 0, "max_lessons_per_day"], 1),
        "/teachers/0/max_lessons_per_day",
        "teacher t1 (张伟): 4 lessons a week but at most 1 a day × 2 days = 2",
    ),
]


@pytest.mark.parametrize(
    ("mutate", "pointer", "message"),
    [case[1:] for case in SEMANTIC_CASES],
    ids=[case[0] for case in SEMANTIC_CASES],
)
def test_semantic_issue(mutate: Mutation, pointer: str, message: str) -> None:
    document = base()
    mutate(document)

    issues = validate_problem(document)

    assert Issue(pointer, message) in issues, "\n".join(map(str, issues))


def test_not_an_object() -> None:
    assert validate_problem([1, 2]) == [
        Issue("", "the problem document must be a JSON object, got [1, 2]")
    ]


def test_load_problem_raises_with_every_issue_one_per_line() -> None:
    document = base()
    document["lessons"][0]["teacher"] = "t99"
    document["days"] = []

    with pytest.raises(ProblemFormatError) as caught:
        load_problem(json.dumps(document))

    assert pointers(caught.value.issues) == ["/days", "/lessons/0/teacher"]
    assert str(caught.value).splitlines() == [
        "/days: problem: 'days' must not be empty",
        "/lessons/0/teacher: lesson L1: teacher t99 is not defined",
    ]


def test_invalid_json_text_names_the_position() -> None:
    with pytest.raises(ProblemFormatError) as caught:
        load_problem('{"format": "tongke-timetable/1",\n "days": [mon]}')

    [issue] = caught.value.issues
    assert issue.pointer == ""
    assert issue.message.startswith("not valid JSON: Expecting value at line 2 column 11")


def test_validation_can_be_skipped() -> None:
    document = base()
    document["format"] = "something else"
    assert load_problem(document, validate=False).name == "base"


def test_solution_issues() -> None:
    problem = load_problem(base())
    document: dict[str, Any] = {
        "format": "tongke-timetable-solution/1",
        "lessons": [
            {"lesson": "L1", "day": "mon", "period": 1, "room": "a-sync"},
            {"lesson": "L9", "day": "mon", "period": "1", "room": "a-sync"},
            {"lesson": "L1", "day": "Monday", "period": 0, "room": "x-1"},
        ],
        "research_sessions": [
            {"id": "R1", "day": "mon", "start": "9:00"},
            {"id": "R7", "day": "tue", "start": "10:00"},
        ],
    }

    issues = validate_solution(document, problem)

    assert pointers(issues) == [
        "/lessons/1/period",
        "/lessons/1/lesson",
        "/lessons/2/day",
        "/lessons/2/period",
        "/lessons/2/room",
        "/research_sessions/0/start",
        "/research_sessions/1/id",
    ]
    assert "placement [1] of L9: lesson L9 is not in the problem" in [i.message for i in issues]
    with pytest.raises(ProblemFormatError):
        load_solution(document, problem)
    # Without the problem only the shape is checked: unknown ids pass, bad types do not.
    document["lessons"] = document["lessons"][:2]
    document["lessons"][1]["period"] = 1
    document["research_sessions"][0]["start"] = "09:00"
    assert len(load_solution(document).lessons) == 2


def _paths(node: Any, prefix: tuple[str | int, ...] = ()) -> list[tuple[str | int, ...]]:
    found = [prefix] if prefix else []
    if isinstance(node, dict):
        for key, value in node.items():
            found += _paths(value, (*prefix, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            found += _paths(value, (*prefix, index))
    return found


BASE_PATHS = _paths(base())
ODD_VALUES: list[Any] = [None, True, 0, -1, 3, 2.5, "", "x", "08:00", "25:00", [], ["sync"], {}]


def _put(document: dict[str, Any], path: tuple[str | int, ...], value: Any) -> None:
    """Set `path` to `value` when an earlier edit has not already removed the path."""
    target: Any = document
    for key in path:
        parent = target
        in_dict = isinstance(parent, dict) and key in parent
        in_list = isinstance(parent, list) and isinstance(key, int) and key < len(parent)
        if not (in_dict or in_list):
            return
        target = parent[key]
    parent[path[-1]] = copy.deepcopy(value)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from(BASE_PATHS), st.sampled_from(ODD_VALUES)),
        min_size=1,
        max_size=3,
    )
)
def test_validation_never_crashes_and_what_it_accepts_loads(
    edits: list[tuple[tuple[str | int, ...], Any]],
) -> None:
    document = base()
    for path, value in edits:
        _put(document, path, value)

    issues = validate_problem(document)

    if not issues:
        check(load_problem(document, validate=False), Solution())
