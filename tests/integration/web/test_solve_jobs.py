"""Solving a term's timetable through the API: a background job with progress and cancel."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import select

from common.alliance.models import Alliance, Term
from scheduler.alliance_bridge import current_solution, problem_from_alliance
from scheduler.checker import check
from tests.conftest import DemoDatabase, bearer, make_test_app


def _wck_term(db: DemoDatabase) -> int:
    with db.sessions() as session:
        alliance = session.scalars(
            select(Alliance).where(Alliance.name == "王村口老区教育联盟")
        ).one()
        return session.scalars(select(Term.id).where(Term.alliance_id == alliance.id)).one()


def _wait(
    client: TestClient, url: str, headers: dict[str, str], *, done: set[str]
) -> dict[str, Any]:
    deadline = time.monotonic() + 60
    seen: dict[str, Any] = {}
    while time.monotonic() < deadline:
        seen = client.get(url, headers=headers).json()
        if seen["state"] in done:
            return seen
        time.sleep(0.1)
    raise AssertionError(f"job did not finish: {seen}")


def test_an_alliance_admin_solves_the_term_and_the_week_is_replaced(
    sqlite_db: DemoDatabase, tmp_path: Path
) -> None:
    term_id = _wck_term(sqlite_db)
    with TestClient(make_test_app(sqlite_db, tmp_path)) as client:
        admin = bearer(client, "admin-wck")
        started = client.post(
            f"/api/terms/{term_id}/timetable/solve", json={"time_limit": 3}, headers=admin
        )
        assert started.status_code == 202, started.text
        status = _wait(client, started.json()["status_url"], admin, done={"complete", "failed"})
        assert status["state"] == "complete", status
        assert status["progress"] == 1.0 and "已保存" in status["message"]
        assert status["result"]["hard_violations"] == 0
    with sqlite_db.sessions() as session:
        problem = problem_from_alliance(session, term_id=term_id).problem
        report = check(problem, current_solution(session, term_id=term_id))
    assert report.feasible
    assert report.idle_minutes == status["result"]["idle_minutes"]


def test_a_long_solve_can_be_cancelled(sqlite_db: DemoDatabase, tmp_path: Path) -> None:
    term_id = _wck_term(sqlite_db)
    with TestClient(make_test_app(sqlite_db, tmp_path)) as client:
        admin = bearer(client, "admin-wck")
        job = client.post(
            f"/api/terms/{term_id}/timetable/solve", json={"time_limit": 120}, headers=admin
        ).json()
        time.sleep(1.0)
        assert client.post(f"/api/jobs/{job['job_id']}/cancel", headers=admin).json() == {
            "cancelled": True
        }
        started = time.monotonic()
        status = _wait(client, job["status_url"], admin, done={"cancelled", "failed", "complete"})
        assert status["state"] == "cancelled"
        assert time.monotonic() - started < 15


def test_only_the_alliances_admin_may_solve_and_others_see_nothing(
    sqlite_db: DemoDatabase, tmp_path: Path
) -> None:
    term_id = _wck_term(sqlite_db)
    with TestClient(make_test_app(sqlite_db, tmp_path)) as client:
        for username in ("principal-cy", "teacher-wang", "admin-sy", "bureau"):
            refused = client.post(
                f"/api/terms/{term_id}/timetable/solve",
                json={"time_limit": 1},
                headers=bearer(client, username),
            )
            assert refused.status_code == 403, username
        admin = bearer(client, "admin-wck")
        assert (
            client.post(
                "/api/terms/99999/timetable/solve", json={"time_limit": 1}, headers=admin
            ).status_code
            == 404
        )
        assert (
            client.post(
                f"/api/terms/{term_id}/timetable/solve", json={"time_limit": 0}, headers=admin
            ).status_code
            == 422
        )
        assert client.get("/api/jobs/not-a-job", headers=admin).status_code == 404
        job = client.post(
            f"/api/terms/{term_id}/timetable/solve", json={"time_limit": 1}, headers=admin
        ).json()
        other = bearer(client, "admin-sy")
        assert client.get(job["status_url"], headers=other).status_code == 403
        assert client.post(f"/api/jobs/{job['job_id']}/cancel", headers=other).status_code == 403
        _wait(client, job["status_url"], admin, done={"complete", "failed"})
