"""调课 through the API: a teacher's absence on a date, planned over the stored timetable."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import select

from common.accounts.models import Account
from common.alliance.models import Lesson, Teacher, Term
from scheduler.alliance_bridge import current_solution, problem_from_alliance
from scheduler.checker import check
from scheduler.domain import Placement, Solution
from tests.conftest import DemoDatabase, bearer

MONDAY = "2026-09-21"


def busiest_monday_teacher(db: DemoDatabase) -> tuple[int, int, str]:
    """(term id, teacher id, teacher code) of a demo teacher with the most Monday lessons."""
    with db.sessions() as session:
        term = session.scalars(select(Term).where(Term.is_current)).first()
        assert term is not None
        solution = current_solution(session, term_id=term.id)
        problem = problem_from_alliance(session, term_id=term.id).problem
        counts: dict[str, int] = {}
        for placement in solution.lessons:
            if placement.day == "mon":
                code = problem.lessons[placement.lesson].teacher
                counts[code] = counts.get(code, 0) + 1
        code = max(counts, key=lambda c: (counts[c], c))
        teacher = session.scalars(select(Teacher).where(Teacher.code == code)).one()
        return term.id, teacher.id, code


def plan(client: TestClient, term_id: int, headers: dict[str, str], **body: Any) -> Any:
    return client.post(f"/api/terms/{term_id}/timetable/absence-plan", json=body, headers=headers)


def test_the_plan_frees_the_teacher_and_leaves_a_feasible_week(
    client: TestClient, db: DemoDatabase
) -> None:
    term_id, teacher_id, code = busiest_monday_teacher(db)
    response = plan(client, term_id, bearer(client, "admin-sy"), teacher_id=teacher_id, date=MONDAY)
    assert response.status_code == 200, response.text
    result = response.json()
    assert result["weekday"] == "mon" and result["must_move"] >= 1
    assert result["moved"] == len(result["moves"]) >= result["must_move"]
    assert all("→" in move["description"] for move in result["moves"])

    # Apply the plan to the stored week ourselves and judge it with the independent checker.
    with db.sessions() as session:
        problem = problem_from_alliance(session, term_id=term_id).problem
        placements = list(current_solution(session, term_id=term_id).lessons)
        teacher_of = {
            lesson_id: code
            for lesson_id, code in session.execute(select(Lesson.id, Teacher.code).join(Teacher))
        }
    for move in result["moves"]:
        key = f"L{move['lesson_id']}"
        old = next(
            p
            for p in placements
            if p.lesson == key
            and p.day == move["old"]["weekday"]
            and p.period == move["old"]["period"]
        )
        placements.remove(old)
        new = move["new"]
        placements.append(Placement(key, new["weekday"], new["period"], new["room_code"]))
        assert move["new"]["date"].startswith("2026-09-2")  # the same week
        assert move["old"]["label"].startswith("9月")
    report = check(problem, Solution(lessons=placements))
    assert report.feasible, report.violations[:3]
    assert not [
        p for p in placements if p.day == "mon" and teacher_of[int(p.lesson[1:])] == code
    ], "the absent teacher still teaches on Monday"


def test_dates_without_lessons_and_unknown_teachers_get_clear_errors(
    client: TestClient, db: DemoDatabase
) -> None:
    term_id, teacher_id, _ = busiest_monday_teacher(db)
    headers = bearer(client, "admin-sy")
    holiday = plan(client, term_id, headers, teacher_id=teacher_id, date="2026-09-25")
    assert holiday.status_code == 422 and "假期" in holiday.json()["error"]["message"]
    weekend = plan(client, term_id, headers, teacher_id=teacher_id, date="2026-09-26")
    assert weekend.status_code == 422 and "周末" in weekend.json()["error"]["message"]
    outside = plan(client, term_id, headers, teacher_id=teacher_id, date="2030-01-07")
    assert outside.status_code == 422 and "不在学期" in outside.json()["error"]["message"]
    unknown = plan(client, term_id, headers, teacher_id=999999, date=MONDAY)
    assert unknown.status_code == 404
    malformed = plan(client, term_id, headers, teacher_id=teacher_id, date="next monday")
    assert malformed.status_code == 422
    assert plan(client, 999999, headers, teacher_id=teacher_id, date=MONDAY).status_code == 404


def test_a_make_up_day_runs_the_weekday_it_follows(client: TestClient, db: DemoDatabase) -> None:
    term_id, teacher_id, _ = busiest_monday_teacher(db)
    # Sunday 27 September 2026 is a make-up day that runs Wednesday's timetable.
    response = plan(
        client, term_id, bearer(client, "admin-sy"), teacher_id=teacher_id, date="2026-09-27"
    )
    assert response.status_code == 200, response.text
    assert response.json()["weekday"] == "wed"


def test_only_the_alliances_timetable_managers_may_plan(
    client: TestClient, db: DemoDatabase
) -> None:
    term_id, teacher_id, _ = busiest_monday_teacher(db)
    with db.sessions() as session:
        roles = {
            name: role for name, role in session.execute(select(Account.username, Account.role))
        }
    for username in ("teacher-ye", "student-dj-4-1", "principal-dj", "bureau"):
        assert username in roles
        denied = plan(client, term_id, bearer(client, username), teacher_id=teacher_id, date=MONDAY)
        assert denied.status_code == 403, (username, denied.text)
    anonymous = plan(client, term_id, {}, teacher_id=teacher_id, date=MONDAY)
    assert anonymous.status_code == 401


def test_the_page_offers_the_form_to_alliance_admins_only(client: TestClient) -> None:
    page = client.get("/admin/adjust", headers=bearer(client, "admin-sy"))
    assert page.status_code == 200
    assert '<label for="teacher">请假教师</label>' in page.text
    assert '<label for="date">请假日期</label>' in page.text
    teacher = client.get("/admin/adjust", headers=bearer(client, "teacher-ye"))
    assert "只有教联体管理员" in teacher.text
