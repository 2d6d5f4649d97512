"""The demo alliance becomes a valid timetabling problem, and a solution goes back into it."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from common.alliance.models import Alliance, Term, TimetableEntry
from scheduler.alliance_bridge import current_solution, problem_from_alliance, store_solution
from scheduler.checker import check
from scheduler.io.timetable_json import dump_problem, load_problem
from tests.conftest import DemoDatabase


def _term(session: Session, name: str) -> Term:
    alliance = session.scalars(select(Alliance).where(Alliance.name == name)).one()
    return session.scalars(select(Term).where(Term.alliance_id == alliance.id)).one()


def test_the_rural_alliance_converts_and_its_demo_week_checks_clean(db: DemoDatabase) -> None:
    with db.sessions() as session:
        term = _term(session, "王村口老区教育联盟")
        conversion = problem_from_alliance(session, term_id=term.id)
        problem = conversion.problem
        # The problem survives the interchange format, validation included.
        again = load_problem(dump_problem(problem))
        assert again.lessons == problem.lessons and again.sync_groups == problem.sync_groups
        assert {c.id for c in problem.campuses.values()} == {"wck", "cy", "ly"}
        assert len(problem.sync_groups) == 8
        report = check(problem, current_solution(session, term_id=term.id))
        assert report.feasible, [v.message for v in report.violations][:5]


def test_a_campus_with_a_different_monday_bell_is_reported(db: DemoDatabase) -> None:
    with db.sessions() as session:
        term = _term(session, "遂昌实验教育集团")
        conversion = problem_from_alliance(session, term_id=term.id)
    assert any("东街校区" in w for w in conversion.warnings)


def test_storing_a_solution_replaces_the_week(db: DemoDatabase) -> None:
    with db.sessions() as session:
        term = _term(session, "王村口老区教育联盟")
        solution = current_solution(session, term_id=term.id)
        before = len(solution.lessons)
        solution.lessons = solution.lessons[:-1]
        assert store_solution(session, term_id=term.id, solution=solution) == before - 1
        count = session.scalar(
            select(func.count())
            .select_from(TimetableEntry)
            .where(TimetableEntry.term_id == term.id)
        )
        assert count == before - 1
        session.rollback()
