"""Exports of a solved example: what a teacher or an admin opens on a phone, in Excel, on paper."""

from __future__ import annotations

import io
from datetime import date
from itertools import pairwise

import pytest
from icalendar import Calendar
from openpyxl import load_workbook

from scheduler.domain import Problem, Solution
from scheduler.io.exports import TermCalendar, to_html, to_ics, to_xlsx
from scheduler.io.timetable_json import load_problem, load_solution
from scheduler.views import entries
from tests.shared_data import TIMETABLE_DATA

EXAMPLES = TIMETABLE_DATA


@pytest.fixture(scope="module")
def solved() -> tuple[Problem, Solution]:
    problem = load_problem(EXAMPLES / "example-small.json")
    return problem, load_solution(EXAMPLES / "example-small.solution.json")


def _sync_lead_teacher(problem: Problem) -> str:
    return problem.lessons[problem.sync_groups[0].lead].teacher


def test_teacher_view_lists_every_lesson_and_session_in_time_order(
    solved: tuple[Problem, Solution],
) -> None:
    problem, solution = solved
    teacher = _sync_lead_teacher(problem)
    own = [p for p in solution.lessons if problem.lessons[p.lesson].teacher == teacher]
    sessions = [
        r
        for r in solution.research_sessions
        if teacher in next(s for s in problem.research_sessions if s.id == r.id).members
    ]
    view = entries(problem, solution, "teacher", teacher)
    assert len(view) == len(own) + len(sessions)
    for earlier, later in pairwise(view):
        if earlier.day == later.day:
            assert earlier.time.start <= later.time.start
    notes = [e.sync_note for e in view if e.sync_note]
    assert notes and all("主讲" in n and "远端" in n for n in notes)


def test_xlsx_has_one_sheet_per_class_with_every_lesson(solved: tuple[Problem, Solution]) -> None:
    problem, solution = solved
    classes = list(problem.classes)[:3]
    workbook = load_workbook(io.BytesIO(to_xlsx(problem, solution, "class", classes)))
    assert workbook.sheetnames == [c[:31] for c in classes]
    for class_id in classes:
        sheet = workbook[class_id[:31]]
        filled = [c.value for row in sheet.iter_rows(min_row=3) for c in row if c.value]
        expected = sum(
            1 for p in solution.lessons if problem.lessons[p.lesson].class_id == class_id
        )
        assert len(filled) == expected
        assert sheet["A2"].value == "周一"


def test_ics_has_an_event_per_lesson_per_school_day_and_respects_the_calendar(
    solved: tuple[Problem, Solution],
) -> None:
    problem, solution = solved
    teacher = _sync_lead_teacher(problem)
    weekly = entries(problem, solution, "teacher", teacher)
    per_weekday: dict[str, int] = {}
    for e in weekly:
        per_weekday[e.day] = per_weekday.get(e.day, 0) + 1
    # Two weeks: Mon 2026-09-28 .. Fri 2026-10-09, with a holiday on Thu 10-01 and a
    # make-up Saturday 10-10 that runs Thursday's timetable.
    calendar = TermCalendar(
        start=date(2026, 9, 28),
        end=date(2026, 10, 10),
        holidays=frozenset({date(2026, 10, 1)}),
        makeup={date(2026, 10, 10): "thu"},
    )
    parsed = Calendar.from_ical(to_ics(problem, solution, "teacher", teacher, calendar))
    events = [c for c in parsed.walk() if c.name == "VEVENT"]
    expected = 2 * sum(per_weekday.values())  # two full weeks less one Thursday plus one Thursday
    assert len(events) == expected
    dates = {e.decoded("dtstart").date() for e in events}
    assert date(2026, 10, 1) not in dates
    assert (date(2026, 10, 10) in dates) == (per_weekday.get("thu", 0) > 0)
    assert len({str(e["uid"]) for e in events}) == len(events)
    first = min(events, key=lambda e: e.decoded("dtstart"))
    assert first.decoded("dtstart").utcoffset().total_seconds() == 8 * 3600
    assert any("远端" in str(e.get("description", "")) for e in events)


def test_html_is_printable_and_escaped(solved: tuple[Problem, Solution]) -> None:
    problem, solution = solved
    campus = next(iter(problem.campuses))
    page = to_html(problem, solution, "campus", [campus])
    assert page.startswith("<!doctype html>") and "size:A4 landscape" in page
    assert problem.campuses[campus].name in page
    assert "<script" not in page
