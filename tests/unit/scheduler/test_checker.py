"""The evaluator: one test per hard constraint of tongke-timetable/1, the soft terms, the CLI."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest

from scheduler.checker import CheckReport, check, format_report, pair_starts, run_check
from scheduler.domain import Problem
from scheduler.io.timetable_json import dump_solution, load_problem, load_solution
from tests.shared_data import TIMETABLE_DATA

EXAMPLES = TIMETABLE_DATA


def tiny_problem() -> dict[str, Any]:
    """Two campuses with shifted bells (b starts 5 min after a), 30 min apart.

    t1 teaches at both campuses; L1 (a) leads the sync group S1 with L3 (b).
    """
    return {
        "format": "tongke-timetable/1",
        "name": "tiny",
        "days": ["mon", "tue"],
        "sync_tolerance_minutes": 5,
        "research_window": {"start": "08:00", "end": "17:00"},
        "campuses": [
            {
                "id": "a",
                "name": "东街",
                "bell": [
                    {"start": "08:00", "end": "08:40"},
                    {"start": "08:50", "end": "09:30"},
                    {"start": "13:00", "end": "13:40"},
                ],
            },
            {
                "id": "b",
                "name": "王村口",
                "bell": [
                    {"start": "08:05", "end": "08:45"},
                    {"start": "08:55", "end": "09:35"},
                    {"start": "13:30", "end": "14:10"},
                ],
            },
        ],
        "travel_minutes": [{"from": "a", "to": "b", "minutes": 30}],
        "rooms": [
            {"id": "a-101", "campus": "a", "capacity": 40, "features": []},
            {"id": "a-102", "campus": "a", "capacity": 40, "features": []},
            {"id": "a-sync", "campus": "a", "capacity": 50, "features": ["sync"]},
            {"id": "a-gym", "campus": "a", "capacity": 40, "features": ["gym"]},
            {"id": "b-101", "campus": "b", "capacity": 20, "features": []},
            {"id": "b-sync", "campus": "b", "capacity": 30, "features": ["sync"]},
        ],
        "teachers": [
            {"id": "t1", "name": "张伟", "max_lessons_per_day": 3},
            {
                "id": "t2",
                "name": "李娜",
                "max_lessons_per_day": 1,
                "unavailable": [{"day": "tue", "start": "13:00", "end": "14:00"}],
            },
            {"id": "t3", "name": "王芳"},
            {"id": "t4", "name": "刘洋"},
        ],
        "classes": [
            {"id": "a-1", "campus": "a", "grade": 3, "size": 35, "home_room": "a-101"},
            {"id": "a-2", "campus": "a", "grade": 4, "size": 30, "home_room": "a-102"},
            {"id": "b-1", "campus": "b", "grade": 3, "size": 15, "home_room": "b-101"},
        ],
        "lessons": [
            {
                "id": "L1",
                "class": "a-1",
                "subject": "数学",
                "teacher": "t1",
                "per_week": 2,
                "prefer_morning": True,
            },
            {
                "id": "L2",
                "class": "a-2",
                "subject": "语文",
                "teacher": "t2",
                "per_week": 2,
                "max_per_day": 2,
            },
            {"id": "L3", "class": "b-1", "subject": "数学", "teacher": "t3", "per_week": 2},
            {
                "id": "L4",
                "class": "b-1",
                "subject": "美术",
                "teacher": "t1",
                "per_week": 1,
                "prefer_morning": True,
            },
            {"id": "L5", "class": "a-1", "subject": "科学", "teacher": "t1", "per_week": 1},
            {
                "id": "L6",
                "class": "a-2",
                "subject": "体育",
                "teacher": "t4",
                "per_week": 1,
                "room_features": ["gym"],
            },
        ],
        "sync_groups": [{"id": "S1", "lead": "L1", "members": ["L3"]}],
        "research_sessions": [
            {"id": "R1", "subject": "数学", "members": ["t2", "t3"], "minutes": 60}
        ],
        "fixed": [{"lesson": "L2", "day": "mon", "period": 1}],
    }


# (lesson, day, period, room)
VALID = [
    ("L1", "mon", 1, "a-sync"),
    ("L1", "tue", 1, "a-sync"),
    ("L3", "mon", 1, "b-sync"),
    ("L3", "tue", 1, "b-sync"),
    ("L2", "mon", 1, "a-102"),
    ("L2", "tue", 2, "a-102"),
    ("L4", "mon", 3, "b-101"),
    ("L5", "tue", 2, "a-101"),
    ("L6", "mon", 3, "a-gym"),
]
VALID_RESEARCH = [("R1", "tue", "10:00")]


def solution(
    placements: list[tuple[str, str, int, str]],
    research: list[tuple[str, str, str]] | None = None,
) -> dict[str, Any]:
    return {
        "format": "tongke-timetable-solution/1",
        "lessons": [
            {"lesson": lesson, "day": day, "period": period, "room": room}
            for lesson, day, period, room in placements
        ],
        "research_sessions": [
            {"id": ident, "day": day, "start": start}
            for ident, day, start in (VALID_RESEARCH if research is None else research)
        ],
    }


def replace(
    old: tuple[str, str, int, str], new: tuple[str, str, int, str] | None
) -> list[tuple[str, str, int, str]]:
    placements = [p for p in VALID if p != old]
    assert len(placements) == len(VALID) - 1
    return placements if new is None else [*placements, new]


@pytest.fixture
def problem() -> Problem:
    return load_problem(tiny_problem())


def run(problem: Problem, document: dict[str, Any]) -> CheckReport:
    return check(problem, load_solution(document, problem))


def only(report: CheckReport, constraint: int) -> list[str]:
    """The violation messages, asserting they all belong to `constraint`."""
    assert report.violations, "expected a violation"
    assert {v.constraint for v in report.violations} == {constraint}, format_report(report)
    return [v.message for v in report.violations]


def test_valid_tiny_solution_and_its_soft_terms_by_hand(problem: Problem) -> None:
    report = run(problem, solution(VALID))

    assert report.feasible and report.hard == 0, format_report(report)
    # t1 mon: L1 at a 08:00–08:40, L4 at b 13:30–14:10: 290 min between, 30 of them travel.
    # t1 tue: L1 08:00–08:40, L5 08:50–09:30, both at a: 10 min. Everyone else: one a day.
    assert report.idle_minutes == 260 + 10
    # L4 (prefer_morning) starts 13:30; L1's occurrences start 08:00.
    assert report.late_main == 1
    assert report.soft == {"idle_minutes": 270, "late_main": 1}


def test_1_occurrences_and_fixed_entries(problem: Problem) -> None:
    moved = run(problem, solution(replace(("L2", "mon", 1, "a-102"), ("L2", "mon", 2, "a-102"))))
    assert only(moved, 1) == ["lesson L2 is fixed to mon p1 but is not placed there"]

    missing = run(problem, solution(replace(("L5", "tue", 2, "a-101"), None)))
    [message] = only(missing, 1)
    assert "L5" in message and "has 0 occurrences but per_week is 1" in message

    twice = run(problem, solution([*VALID, ("L4", "tue", 3, "b-101")]))
    [message] = only(twice, 1)
    assert "L4" in message and "2 occurrences but per_week is 1" in message


def test_2_class_has_one_lesson_per_period(problem: Problem) -> None:
    report = run(problem, solution(replace(("L6", "mon", 3, "a-gym"), ("L6", "tue", 2, "a-gym"))))

    [message] = only(report, 2)
    assert message.startswith("class a-2 has 2 lessons in tue p2 08:50–09:30")
    assert "L2 (语文)" in message and "L6 (体育)" in message


def test_3_teacher_overlap_across_campuses(problem: Problem) -> None:
    # L4 at b 08:55–09:35 overlaps L5 at a 08:50–09:30 and follows L1 (a, ends 08:40) by 15 min.
    report = run(problem, solution(replace(("L4", "mon", 3, "b-101"), ("L4", "tue", 2, "b-101"))))

    messages = only(report, 3)
    assert (
        "teacher t1 (张伟): L5 tue p2 08:50–09:30 at a overlaps L4 tue p2 08:55–09:35 at b"
        in messages
    )
    assert any("only 15 min between L1 tue p1" in m and "takes 30 min" in m for m in messages)


def test_3_travel_time_between_campuses(problem: Problem) -> None:
    report = run(problem, solution(replace(("L4", "mon", 3, "b-101"), ("L4", "mon", 2, "b-101"))))

    assert only(report, 3) == [
        "teacher t1 (张伟): only 15 min between L1 mon p1 08:00–08:40 at a and "
        "L4 mon p2 08:55–09:35 at b, but travel a–b takes 30 min"
    ]


def test_3_unreachable_campuses(problem: Problem) -> None:
    document = tiny_problem()
    del document["travel_minutes"]
    unreachable = load_problem(document)

    [message] = only(run(unreachable, solution(VALID)), 3)
    assert "not reachable within a school day" in message
    assert "L1 mon p1" in message and "L4 mon p3" in message


def test_4_rooms(problem: Problem) -> None:
    no_sync = run(problem, solution(replace(("L1", "tue", 1, "a-sync"), ("L1", "tue", 1, "a-101"))))
    [message] = only(no_sync, 4)
    assert message == (
        "L1 tue p1 08:00–08:40 at a in room a-101: the room lacks sync (sync group lesson)"
    )

    not_home = run(
        problem, solution(replace(("L4", "mon", 3, "b-101"), ("L4", "mon", 3, "b-sync")))
    )
    [message] = only(not_home, 4)
    assert "home room b-101" in message

    wrong_campus = run(
        problem, solution(replace(("L6", "mon", 3, "a-gym"), ("L6", "mon", 2, "b-101")))
    )
    [message] = only(wrong_campus, 4)
    assert "on campus b, class a-2 on a" in message
    assert "lacks gym" in message and "holds 20 but class a-2 has 30" in message

    shared = run(problem, solution(replace(("L2", "tue", 2, "a-102"), ("L2", "tue", 2, "a-101"))))
    messages = only(shared, 4)
    assert "room a-101 holds 2 lessons in tue p2 08:50–09:30: L2, L5" in messages


def test_5_unavailable(problem: Problem) -> None:
    report = run(problem, solution(replace(("L2", "tue", 2, "a-102"), ("L2", "tue", 3, "a-102"))))

    assert only(report, 5) == [
        "teacher t2 (李娜) is unavailable tue 13:00–14:00 but teaches L2 tue p3 13:00–13:40 at a"
    ]


def test_6_max_lessons_per_day(problem: Problem) -> None:
    report = run(problem, solution(replace(("L2", "tue", 2, "a-102"), ("L2", "mon", 2, "a-102"))))

    assert only(report, 6) == [
        "teacher t2 (李娜) has 2 lessons on mon (max_lessons_per_day 1): L2 p1, L2 p2"
    ]


def test_7_sync_occurrences_are_paired(problem: Problem) -> None:
    # L3 at b 08:55 cannot pair with L1 at a 08:00 (tolerance 5 min).
    report = run(problem, solution(replace(("L3", "tue", 1, "b-sync"), ("L3", "tue", 2, "b-sync"))))

    messages = only(report, 7)
    assert len(messages) == 2
    assert messages[0].startswith(
        "sync group S1: lead L1 tue p1 08:00–08:40 at a has no occurrence of member L3 on tue"
    )
    assert "(L3 on tue: p2 08:55)" in messages[0]
    assert messages[1].startswith("sync group S1: member L3 tue p2 08:55–09:35 at b")


def test_7_lead_teacher_teaching_a_member_lesson_counts_once() -> None:
    document = tiny_problem()
    document["lessons"][2]["teacher"] = "t1"  # L3 is taught by L1's teacher from campus a
    document["research_sessions"][0]["members"] = ["t2"]
    shared = load_problem(document)

    report = run(shared, solution(VALID))

    assert report.feasible, format_report(report)


def test_7_pairing_is_a_real_matching() -> None:
    # Pairing the first lead with its nearest member (4) would leave lead 0 unpaired.
    leads, members = pair_starts([5, 0], [4, 9], 5)
    assert leads == {0, 1} and members == {0, 1}
    # One member occurrence cannot serve two leads.
    paired_leads, paired_members = pair_starts([0, 1], [0], 5)
    assert len(paired_leads) == 1 and paired_members == {0}


def test_8_research_sessions(problem: Problem) -> None:
    overlap = run(problem, solution(VALID, [("R1", "tue", "09:00")]))
    assert only(overlap, 8) == [
        "teacher t2 (李娜): research R1 tue 09:00–10:00 overlaps lesson L2 tue p2 08:50–09:30 at a"
    ]

    other_day = run(problem, solution(VALID, [("R1", "wed", "10:00")]))
    assert only(other_day, 8) == [
        "research session R1 is placed on wed, which is not one of the problem's days"
    ]

    outside = run(problem, solution(VALID, [("R1", "mon", "16:30")]))
    assert only(outside, 8) == [
        "research session R1 mon 16:30–17:30 (60 min) is outside the research window 08:00–17:00"
    ]

    missing = run(problem, solution(VALID, []))
    assert only(missing, 8) == ["research session R1 is not placed"]


@pytest.mark.parametrize(
    ("name", "idle_minutes", "late_main"),
    [
        ("example-small", 27270, 70),
        ("example-shifted-small", 27610, 78),
        ("example-medium", 69320, 157),
    ],
)
def test_reference_solutions_are_feasible(name: str, idle_minutes: int, late_main: int) -> None:
    # Soft terms cross-checked by a separate span − teaching − travel computation on the raw JSON.
    problem = load_problem(EXAMPLES / f"{name}.json")
    report = check(problem, load_solution(EXAMPLES / f"{name}.solution.json", problem))

    assert report.feasible, format_report(report)
    assert report.soft == {"idle_minutes": idle_minutes, "late_main": late_main}


def test_run_check_exit_codes(tmp_path: Path) -> None:
    problem_path = tmp_path / "problem.json"
    problem_path.write_text(json.dumps(tiny_problem()), encoding="utf-8")
    good, bad, broken = tmp_path / "good.json", tmp_path / "bad.json", tmp_path / "broken.json"
    good.write_text(json.dumps(solution(VALID)), encoding="utf-8")
    bad.write_text(json.dumps(solution(VALID, [])), encoding="utf-8")
    broken_doc = solution(VALID)
    broken_doc["lessons"][0]["room"] = "nowhere"
    broken.write_text(json.dumps(broken_doc), encoding="utf-8")

    out = io.StringIO()
    assert run_check(problem_path, good, out=out) == 0
    assert "feasible" in out.getvalue() and "idle_minutes: 270" in out.getvalue()

    out = io.StringIO()
    assert run_check(problem_path, bad, out=out) == 1
    assert out.getvalue().startswith("[8] research session R1 is not placed\n")

    out = io.StringIO()
    assert run_check(problem_path, broken, out=out) == 2
    assert "/lessons/0/room: placement [0] of L1: room nowhere is not in the problem" in (
        out.getvalue()
    )


def test_checked_solution_round_trips(problem: Problem) -> None:
    document = solution(VALID)
    assert dump_solution(load_solution(document, problem)) == document
