"""调课: after one teacher's absence the repair moves (or covers) exactly what it must, keeps
every hard constraint, and refuses unknown teachers and days."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from scheduler.checker import check
from scheduler.domain import Problem, Solution
from scheduler.io.timetable_json import load_problem, load_solution
from scheduler.repair import RepairError, RepairResult, repair, run_repair
from tests.shared_data import TIMETABLE_DATA

DATA = TIMETABLE_DATA
BELL = [
    {"start": "08:00", "end": "08:40"},
    {"start": "08:50", "end": "09:30"},
    {"start": "10:00", "end": "10:40"},
]


def instance(
    lessons: list[dict[str, Any]],
    placements: list[tuple[str, str, int, str]],
    *,
    classes: tuple[str, ...] = ("a1",),
    sync_groups: list[dict[str, Any]] | None = None,
) -> tuple[Problem, Solution]:
    """One campus, two days, three periods; a home room per class and two sync rooms."""
    teachers = sorted({lesson["teacher"] for lesson in lessons})
    doc = {
        "format": "tongke-timetable/1",
        "name": "repair test",
        "days": ["mon", "tue"],
        "campuses": [{"id": "a", "name": "a", "bell": BELL}],
        "rooms": [
            *({"id": f"{c}-room", "campus": "a", "capacity": 50, "features": []} for c in classes),
            {"id": "sync-1", "campus": "a", "capacity": 50, "features": ["sync"]},
            {"id": "sync-2", "campus": "a", "capacity": 50, "features": ["sync"]},
        ],
        "teachers": [{"id": t, "name": t} for t in teachers],
        "classes": [
            {"id": c, "campus": "a", "grade": 1, "size": 30, "home_room": f"{c}-room"}
            for c in classes
        ],
        "lessons": lessons,
        "sync_groups": sync_groups or [],
    }
    problem = load_problem(doc)
    solution = load_solution(
        {
            "format": "tongke-timetable-solution/1",
            "lessons": [
                {"lesson": lid, "day": day, "period": period, "room": room}
                for lid, day, period, room in placements
            ],
            "research_sessions": [],
        },
        problem,
    )
    assert check(problem, solution).feasible
    return problem, solution


def lesson(lesson_id: str, class_id: str, teacher: str, subject: str = "数学") -> dict[str, Any]:
    return {
        "id": lesson_id,
        "class": class_id,
        "subject": subject,
        "teacher": teacher,
        "per_week": 1,
    }


def placed(result: RepairResult) -> dict[str, tuple[str, int]]:
    assert result.solution is not None
    return {p.lesson: (p.day, p.period) for p in result.solution.lessons}


def test_absent_teachers_lesson_moves_and_nothing_else() -> None:
    problem, solution = instance(
        [lesson("L1", "a1", "t1"), lesson("L2", "a1", "t2", "语文"), lesson("L3", "a1", "t3")],
        [("L1", "mon", 1, "a1-room"), ("L2", "mon", 2, "a1-room"), ("L3", "tue", 1, "a1-room")],
    )
    result = repair(problem, solution, absent_teacher="t1", day="mon")
    assert result.feasible, result.reason
    assert result.solution is not None and check(problem, result.solution).feasible
    assert placed(result)["L1"][0] == "tue"
    assert placed(result)["L2"] == ("mon", 2)
    assert placed(result)["L3"] == ("tue", 1)
    assert result.moved == 1 and result.must_move == 1
    (change,) = result.changes
    assert (change.lesson, change.old_day, change.new_day) == ("L1", "mon", "tue")


def test_absent_sync_lead_moves_the_whole_group() -> None:
    problem, solution = instance(
        [
            lesson("L1", "a1", "t1", "英语"),
            lesson("L2", "a2", "t2", "英语"),
            lesson("L3", "a1", "t3"),
        ],
        [
            ("L1", "mon", 1, "sync-1"),
            ("L2", "mon", 1, "sync-2"),
            ("L3", "mon", 2, "a1-room"),
        ],
        classes=("a1", "a2"),
        sync_groups=[{"id": "S01", "lead": "L1", "members": ["L2"]}],
    )
    result = repair(problem, solution, absent_teacher="t1", day="mon")
    assert result.feasible, result.reason
    assert result.solution is not None and check(problem, result.solution).feasible
    after = placed(result)
    assert after["L1"][0] == after["L2"][0] == "tue"
    assert after["L1"][1] == after["L2"][1]
    assert after["L3"] == ("mon", 2)
    assert result.moved == 2


def test_substitute_auto_picks_a_free_teacher_of_the_same_subject() -> None:
    problem, solution = instance(
        [
            lesson("L1", "a1", "t1"),  # t1 is absent
            lesson("L2", "a2", "t2", "英语"),  # free then, wrong subject
            lesson("L3", "a3", "t3"),  # 数学, but teaches at the same time
            lesson("L4", "a4", "t4"),  # 数学 and free at period 1
        ],
        [
            ("L1", "mon", 1, "a1-room"),
            ("L2", "mon", 2, "a2-room"),
            ("L3", "mon", 1, "a3-room"),
            ("L4", "mon", 3, "a4-room"),
        ],
        classes=("a1", "a2", "a3", "a4"),
    )
    result = repair(problem, solution, absent_teacher="t1", day="mon", substitute="auto")
    assert result.feasible, result.reason
    (sub,) = result.substitutions
    assert (sub.lesson, sub.substitute, sub.period) == ("L1", "t4", 1)
    assert result.moved == 0
    assert placed(result)["L1"] == ("mon", 1)


def test_unknown_teacher_or_day_is_refused(tmp_path: Path) -> None:
    problem, solution = instance([lesson("L1", "a1", "t1")], [("L1", "mon", 1, "a1-room")])
    with pytest.raises(RepairError, match="nobody"):
        repair(problem, solution, absent_teacher="nobody", day="mon")
    with pytest.raises(RepairError, match="sun"):
        repair(problem, solution, absent_teacher="t1", day="sun")
    code = run_repair(
        DATA / "example-small.json",
        DATA / "example-small.solution.json",
        tmp_path / "new.json",
        "nobody",
        "tue",
        "none",
        5.0,
    )
    assert code == 2


@pytest.mark.parametrize("mode", ["none", "auto"])
def test_example_small_repair_passes_the_checker(mode: str) -> None:
    problem = load_problem(DATA / "example-small.json")
    solution = load_solution(DATA / "example-small.solution.json", problem)
    result = repair(problem, solution, absent_teacher="t003", day="tue", substitute=mode)  # type: ignore[arg-type]
    assert result.feasible, result.reason
    assert result.solution is not None
    assert check(problem, result.solution).feasible
    covered = {(s.lesson, s.period) for s in result.substitutions}
    still = [
        p
        for p in result.solution.lessons
        if p.day == "tue"
        and problem.lessons[p.lesson].teacher == "t003"
        and (p.lesson, p.period) not in covered
    ]
    assert still == []
    assert result.moved >= result.must_move
    before = {(p.lesson, p.day, p.period, p.room) for p in solution.lessons}
    after = {(p.lesson, p.day, p.period, p.room) for p in result.solution.lessons}
    assert len(before - after) == result.moved
