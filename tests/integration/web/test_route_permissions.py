"""Every route, every role: the server refuses what a role may not see or change.

Expectations here are written from the roles' descriptions (who sees what in an alliance),
not read from the policy table, so a wrong table entry or a route that skips its check fails.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import select

import common.alliance.resources  # noqa: F401
import research.resources  # noqa: F401
from common.accounts.models import Account
from common.accounts.permissions import Kind
from common.alliance.models import Alliance, ClassroomTerminal
from common.alliance.service import REGISTRY, load_scoped
from tests.conftest import DemoDatabase, bearer

PUBLIC = {
    ("POST", "/api/auth/login"),
    ("POST", "/api/auth/token"),
    ("POST", "/api/devices/pair"),
    ("GET", "/healthz"),
    ("GET", "/metrics"),
}
STRUCTURE = {
    Kind.ALLIANCE,
    Kind.SCHOOL,
    Kind.CAMPUS,
    Kind.BELLS,
    Kind.TERM,
    Kind.SUBJECT,
    Kind.ROOM,
    Kind.CLASS,
    Kind.TEACHER,
    Kind.LESSON,
    Kind.TIMETABLE,
}
SCHOOL_RUN = {
    Kind.SCHOOL,
    Kind.CAMPUS,
    Kind.BELLS,
    Kind.ROOM,
    Kind.TERMINAL,
    Kind.CLASS,
    Kind.TEACHER,
    Kind.STUDENT,
    Kind.LESSON,
    Kind.ACCOUNT,
    Kind.VISIT,
}
# 教研 and visits are the alliance's shared professional life: its staff read all of it.
RESEARCH_LIFE = {Kind.RESEARCH, Kind.VISIT}


@dataclass(frozen=True)
class Who:
    role: str
    account_id: int
    alliance_id: int | None
    school_id: int | None
    class_id: int | None
    student_id: int | None
    terminal_id: int | None


@dataclass(frozen=True)
class Target:
    path: str
    kind: Kind
    row_id: int
    alliance_id: int | None
    school_id: int | None
    class_id: int | None
    student_id: int | None
    account_id: int | None
    terminal_id: int | None


def where(who: Who, target: Target) -> str:
    if target.alliance_id != who.alliance_id or who.alliance_id is None:
        return "other"
    if target.school_id is None:
        return "alliance"
    return "own" if target.school_id == who.school_id else "sister"


def personal(who: Who, target: Target) -> bool:
    return (
        (target.account_id is not None and target.account_id == who.account_id)
        or (target.student_id is not None and target.student_id == who.student_id)
        or (target.terminal_id is not None and target.terminal_id == who.terminal_id)
    )


def may_read(who: Who, target: Target) -> bool:
    place, kind = where(who, target), target.kind
    if who.role == "bureau":
        return True
    if place == "other":
        return False
    if kind is Kind.RECORDING:
        # Lessons of minors: staff of the alliance; a pupil only what is shown to their class
        # (row level, across schools: tests/integration/recordings); never a classroom screen.
        if who.role in ("alliance_admin", "teacher"):
            return True
        if who.role == "school_admin":
            return place == "own"
        return who.role == "student" and target.class_id == who.class_id
    if who.role == "alliance_admin":
        return True
    if who.role == "school_admin":
        return kind in STRUCTURE or kind in RESEARCH_LIFE or place == "own"
    if who.role == "teacher":
        return (
            kind in STRUCTURE
            or kind in RESEARCH_LIFE
            or (kind is Kind.STUDENT and place == "own")
            or personal(who, target)
        )
    if who.role == "terminal":
        return kind in STRUCTURE or personal(who, target)
    if who.role == "student":
        if kind in (Kind.ALLIANCE, Kind.TERM, Kind.SUBJECT, Kind.TIMETABLE):
            return True  # alliance-wide: terms, subjects, which classes are taught together
        if kind in (Kind.SCHOOL, Kind.CAMPUS, Kind.BELLS, Kind.ROOM, Kind.TEACHER):
            return place == "own"
        if kind in (Kind.CLASS, Kind.LESSON):
            return target.class_id == who.class_id
        return personal(who, target)
    return False


def may_manage(who: Who, target: Target) -> bool:
    place, kind = where(who, target), target.kind
    if who.role == "bureau":
        return kind in (Kind.ALLIANCE, Kind.SCHOOL, Kind.ACCOUNT)
    if who.role == "alliance_admin":
        return place != "other"
    if who.role == "school_admin":
        return place == "own" and kind in (*SCHOOL_RUN, Kind.RECORDING)
    return False


def _who(db: DemoDatabase, username: str) -> Who:
    with db.sessions() as session:
        a = session.scalars(select(Account).where(Account.username == username)).one()
        return Who(
            a.role, a.id, a.alliance_id, a.school_id, a.class_id, a.student_id, a.terminal_id
        )


def _targets(db: DemoDatabase) -> list[Target]:
    """A few rows of every resource, spread over both alliances and all schools."""
    targets: list[Target] = []
    with db.sessions() as session:
        for path, resource in REGISTRY.items():
            ids = session.scalars(
                select(resource.model.__table__.c.id).order_by(resource.model.__table__.c.id)
            ).all()
            seen: set[tuple[Any, ...]] = set()
            for row_id in ids:
                _, scope = load_scoped(session, resource, row_id)
                place = (scope.alliance_id, scope.school_id, scope.class_id is not None)
                if place in seen and resource.kind not in (
                    Kind.STUDENT,
                    Kind.ACCOUNT,
                    Kind.TERMINAL,
                ):
                    continue
                if place in seen and len([t for t in targets if t.path == path]) > 40:
                    continue
                seen.add(place)
                targets.append(
                    Target(
                        path,
                        resource.kind,
                        row_id,
                        scope.alliance_id,
                        scope.school_id,
                        scope.class_id,
                        scope.student_id,
                        scope.account_id,
                        scope.terminal_id,
                    )
                )
    return targets


@pytest.fixture
def people(client: TestClient, db: DemoDatabase) -> dict[str, tuple[Who, dict[str, str]]]:
    """One signed-in person per role, the classroom screen paired the way a school pairs it."""
    with db.sessions() as session:
        wck = session.scalars(select(Alliance).where(Alliance.name == "王村口老区教育联盟")).one()
        teacher = session.scalars(
            select(Account.username)
            .where(Account.role == "teacher", Account.alliance_id == wck.id)
            .order_by(Account.id)
        ).first()
        terminal_id = next(
            t.id
            for t in session.scalars(select(ClassroomTerminal).order_by(ClassroomTerminal.id))
            if t.room.campus.school.alliance_id == wck.id
        )
    assert teacher is not None
    found = {
        name: (_who(db, name), bearer(client, name))
        for name in ("bureau", "admin-wck", "principal-cy", teacher, "student-cy-4-1")
    }
    admin = found["admin-wck"][1]
    code = client.post(f"/api/terminals/{terminal_id}/pairing-code", headers=admin).json()["code"]
    token = client.post("/api/devices/pair", json={"code": code}).json()["access_token"]
    device = {"Authorization": f"Bearer {token}"}
    device_username = client.get("/api/auth/me", headers=device).json()["account"]["username"]
    found["terminal"] = (_who(db, device_username), device)
    return found


def _api_operations(app: FastAPI) -> list[tuple[str, str]]:
    """(method, path) of every API operation, from the OpenAPI schema the app publishes."""
    return [
        (method.upper(), path)
        for path, operations in app.openapi()["paths"].items()
        for method in operations
    ]


def test_every_route_but_the_public_ones_demands_a_login(app: FastAPI, client: TestClient) -> None:
    checked = 0
    for method, template in _api_operations(app):
        if (method, template) in PUBLIC:
            continue
        path = re.sub(r"\{[a-z_]+\}", "1", template)
        response = client.request(method, path)
        assert response.status_code == 401, (method, path, response.status_code, response.text)
        assert response.json()["error"]["code"] == "unauthenticated"
        checked += 1
    assert checked >= 60


def test_each_role_reads_and_changes_exactly_its_share(
    client: TestClient, db: DemoDatabase, people: dict[str, tuple[Who, dict[str, str]]]
) -> None:
    targets = _targets(db)
    # Recordings have their own routes with row-level visibility (tests/integration/recordings)
    # and the demo seeds none.
    # The dashboard is no row (test_the_dashboard_shows_each_role_its_share checks it).
    # 评课 hangs off recordings (test_review_routes_follow_the_roles).
    assert {t.kind for t in targets} == set(Kind) - {Kind.RECORDING, Kind.DASHBOARD, Kind.REVIEW}
    wrong: list[str] = []
    for name, (who, headers) in people.items():
        for target in targets:
            url = f"/api/{target.path}/{target.row_id}"
            expected = 200 if may_read(who, target) else 403
            got = client.get(url, headers=headers).status_code
            if got != expected:
                wrong.append(f"{name} GET {url}: {got}, expected {expected}")
            expected = 200 if may_manage(who, target) else 403
            got = client.patch(url, json={}, headers=headers).status_code
            if got != expected:
                wrong.append(f"{name} PATCH {url}: {got}, expected {expected}")
            if expected == 403:
                got = client.delete(url, headers=headers).status_code
                if got != 403:
                    wrong.append(f"{name} DELETE {url}: {got}, expected 403")
    assert not wrong, "\n".join(wrong[:40])


def test_lists_never_include_a_row_the_role_may_not_read(
    client: TestClient, db: DemoDatabase, people: dict[str, tuple[Who, dict[str, str]]]
) -> None:
    by_id = {(t.path, t.row_id): t for t in _targets(db)}
    for name, (who, headers) in people.items():
        for path in REGISTRY:
            response = client.get(f"/api/{path}?limit=1000", headers=headers)
            if response.status_code == 403:
                continue
            assert response.status_code == 200, (name, path, response.text)
            for row in response.json():
                target = by_id.get((path, row["id"]))
                if target is not None:
                    assert may_read(who, target), (name, path, row["id"])


def test_timetables_follow_the_same_rules(
    client: TestClient, db: DemoDatabase, people: dict[str, tuple[Who, dict[str, str]]]
) -> None:
    classes = [t for t in _targets(db) if t.kind is Kind.CLASS]
    for name, (who, headers) in people.items():
        for target in classes:
            response = client.get(f"/api/timetable/week?class_id={target.row_id}", headers=headers)
            if who.role == "bureau":
                expected = 200
            elif where(who, target) == "other":
                expected = 403
            elif who.role == "student":
                expected = 200 if target.class_id == who.class_id else 403
            else:
                expected = 200
            assert response.status_code == expected, (name, target, response.text)


def test_roster_upload_is_for_the_schools_own_admins(
    client: TestClient, db: DemoDatabase, people: dict[str, tuple[Who, dict[str, str]]]
) -> None:
    schools = [t for t in _targets(db) if t.kind is Kind.SCHOOL]
    for name, (who, headers) in people.items():
        template = client.get("/api/roster/template", headers=headers)
        assert template.status_code == (
            200 if who.role in ("bureau", "alliance_admin", "school_admin") else 403
        ), name
        for target in schools:
            response = client.post(
                f"/api/schools/{target.row_id}/roster",
                files={"file": ("r.xlsx", b"not really a workbook", "application/octet-stream")},
                headers=headers,
            )
            allowed = may_manage(who, target) and who.role != "bureau"
            # An allowed upload of garbage is a clear 422; a forbidden one never reaches the file.
            assert response.status_code == (422 if allowed else 403), (
                name,
                target.row_id,
                response.text,
            )


def test_the_dashboard_shows_each_role_its_share(
    client: TestClient, db: DemoDatabase, people: dict[str, tuple[Who, dict[str, str]]]
) -> None:
    """The bureau sees every alliance, an alliance admin theirs, a principal their own school;
    teachers, pupils and classroom screens are refused (JSON, xlsx and the page alike)."""
    from io import BytesIO

    from openpyxl import load_workbook

    from common.alliance.models import School, Term

    with db.sessions() as session:
        terms = dict(
            session.execute(select(Term.alliance_id, Term.id).where(Term.is_current)).all()
        )
        schools: dict[int, list[int]] = {}
        for school in session.scalars(select(School).order_by(School.id)):
            schools.setdefault(school.alliance_id, []).append(school.id)
    assert len(terms) == 2
    for name, (who, headers) in people.items():
        for alliance_id, term_id in terms.items():
            own = alliance_id == who.alliance_id
            if who.role == "bureau":
                visible: list[int] | None = schools[alliance_id]
            elif who.role == "alliance_admin" and own:
                visible = schools[alliance_id]
            elif who.role == "school_admin" and own:
                visible = [who.school_id or 0]
            else:
                visible = None
            query = f"term_id={term_id}&as_of=2026-09-30"
            response = client.get(f"/api/dashboard?{query}", headers=headers)
            assert response.status_code == (200 if visible else 403), (name, term_id)
            if visible:
                shown = [row["school_id"] for row in response.json()["schools"]]
                assert shown == visible, (name, term_id)
                assert {row["school_id"] for row in response.json()["rows"]} <= set(visible)
            export = client.get(f"/api/dashboard.xlsx?{query}", headers=headers)
            assert export.status_code == (200 if visible else 403), (name, term_id)
            if visible:
                sheets = load_workbook(BytesIO(export.content)).sheetnames
                assert sheets == ["学校汇总", "分周明细", "学期趋势", "配额预警"]
            page = client.get(f"/dashboard?term_id={term_id}", headers=headers)
            assert page.status_code == (200 if visible else 403), (name, term_id)
            for school_id in schools[alliance_id]:
                response = client.get(
                    f"/api/dashboard?{query}&school_id={school_id}", headers=headers
                )
                allowed = visible is not None and school_id in visible
                assert response.status_code == (200 if allowed else 403), (name, school_id)


# --- 听评课 -------------------------------------------------------------------------------------
# Staff of the recording's alliance take part; the bureau reads everything and moderates;
# pupils (even those the lesson is shown to) and classroom screens never see 评课.
REVIEW_READERS = {"bureau", "alliance_admin", "school_admin", "teacher"}
REVIEW_PARTICIPANTS = {"alliance_admin", "school_admin", "teacher"}
# Removing someone else's comment or link: the bureau and the alliance's admin. The lesson is
# 王村口's, so 蔡源's principal (who may comment on it) does not moderate it.
REVIEW_MODERATORS = {"bureau", "alliance_admin"}


def test_review_routes_follow_the_roles(
    client: TestClient, db: DemoDatabase, people: dict[str, tuple[Who, dict[str, str]]]
) -> None:
    from recordings.service import new_recording_for_sync_group
    from research.models import ResearchGroup, ResearchSession
    from web.routers import reviews

    with db.sessions() as session:
        recording = new_recording_for_sync_group(session, sync_group_id=4)  # 王村口 English
        recording.status = "ready"
        recording.outputs = {"duration_s": 60.0}
        session.commit()
        rid, aid = recording.id, recording.alliance_id
        research_session = session.scalars(
            select(ResearchSession.id)
            .join(ResearchGroup, ResearchGroup.id == ResearchSession.group_id)
            .where(ResearchGroup.alliance_id == aid)
            .order_by(ResearchSession.id)
        ).first()
    teacher_name = next(name for name, (who, _) in people.items() if who.role == "teacher")
    author = bearer(
        client,
        next(name for name in ("teacher-lei", "teacher-lan") if name != teacher_name),
    )
    link = f"/api/recordings/{rid}/research-sessions"

    def seed_comment() -> int:
        response = client.post(
            f"/api/recordings/{rid}/comments",
            json={"body": "示范", "at_seconds": 1},
            headers=author,
        )
        assert response.status_code == 201, response.text
        comment_id: int = response.json()["id"]
        return comment_id

    def seed_link() -> None:
        response = client.post(link, json={"research_session_id": research_session}, headers=author)
        assert response.status_code in (201, 409), response.text

    rubric = client.get(f"/api/alliances/{aid}/rubric", headers=author).json()
    scores = [{"criterion_id": c["id"], "score": 1} for c in rubric["criteria"]]
    checked: set[tuple[str, str]] = set()
    wrong: list[str] = []

    def expect(name: str, method: str, template: str, status: int, allowed: bool, ok: int) -> None:
        checked.add((method, template))
        if status != (ok if allowed else 403):
            wrong.append(f"{name} {method} {template}: {status}, expected {ok if allowed else 403}")

    for name, (who, headers) in people.items():
        read = who.role in REVIEW_READERS
        part = who.role in REVIEW_PARTICIPANTS
        moderate = who.role in REVIEW_MODERATORS
        for template in (
            "/api/recordings/{recording_id}/comments",
            "/api/recordings/{recording_id}/evaluations",
            "/api/recordings/{recording_id}/research-sessions",
            "/api/recordings/{recording_id}/evaluation-report",
            "/api/alliances/{alliance_id}/rubric",
        ):
            path = template.format(recording_id=rid, alliance_id=aid)
            expect(name, "GET", template, client.get(path, headers=headers).status_code, read, 200)

        template = "/api/recordings/{recording_id}/comments"
        response = client.post(
            f"/api/recordings/{rid}/comments", json={"body": "评", "at_seconds": 2}, headers=headers
        )
        expect(name, "POST", template, response.status_code, part, 201)
        own = response.json()["id"] if response.status_code == 201 else None
        other = seed_comment()
        template = "/api/review-comments/{comment_id}/replies"
        response = client.post(
            f"/api/review-comments/{other}/replies", json={"body": "回"}, headers=headers
        )
        expect(name, "POST", template, response.status_code, part, 201)
        template = "/api/review-comments/{comment_id}"
        response = client.patch(
            f"/api/review-comments/{other}", json={"body": "改"}, headers=headers
        )
        expect(name, "PATCH", template, response.status_code, False, 200)  # not theirs
        if own is not None:
            response = client.patch(
                f"/api/review-comments/{own}", json={"body": "改"}, headers=headers
            )
            expect(name, "PATCH", template, response.status_code, True, 200)
            response = client.delete(f"/api/review-comments/{own}", headers=headers)
            expect(name, "DELETE", template, response.status_code, True, 204)
        response = client.delete(f"/api/review-comments/{other}", headers=headers)
        expect(name, "DELETE", template, response.status_code, moderate, 204)

        template = "/api/alliances/{alliance_id}/rubric"
        response = client.put(
            f"/api/alliances/{aid}/rubric",
            json={"criteria": [{"name": "整体", "max_score": 10}]},
            headers=headers,
        )
        expect(name, "PUT", template, response.status_code, who.role == "alliance_admin", 200)
        if response.status_code == 200:
            scores = [{"criterion_id": c["id"], "score": 1} for c in response.json()["criteria"]]
        template = "/api/recordings/{recording_id}/evaluations/mine"
        response = client.put(
            f"/api/recordings/{rid}/evaluations/mine", json={"scores": scores}, headers=headers
        )
        expect(name, "PUT", template, response.status_code, part, 200)

        seed_link()  # someone else's link: only moderators remove it
        template = "/api/recordings/{recording_id}/research-sessions/{session_id}"
        response = client.delete(f"{link}/{research_session}", headers=headers)
        expect(name, "DELETE", template, response.status_code, moderate, 204)
        client.delete(f"{link}/{research_session}", headers=author)
        template = "/api/recordings/{recording_id}/research-sessions"
        response = client.post(
            link, json={"research_session_id": research_session}, headers=headers
        )
        expect(name, "POST", template, response.status_code, part, 201)
        if response.status_code == 201:
            assert client.delete(f"{link}/{research_session}", headers=headers).status_code == 204
    assert not wrong, "\n".join(wrong)
    routes = {
        (method, getattr(route, "path", ""))
        for route in reviews.router.routes
        for method in getattr(route, "methods", ())
    }
    assert routes == checked, routes ^ checked


def test_the_live_sockets_and_the_meeting_page_demand_a_login(client: TestClient) -> None:
    """WebSockets and pages are not in the OpenAPI schema: every socket of every router."""
    import importlib
    import pkgutil

    from fastapi.routing import APIWebSocketRoute
    from starlette.websockets import WebSocketDisconnect

    import web.routers

    modules = [
        importlib.import_module(f"web.routers.{info.name}")
        for info in pkgutil.iter_modules(web.routers.__path__)
    ]
    sockets = [
        route.path
        for module in modules
        if hasattr(module, "router")
        for route in module.router.routes
        if isinstance(route, APIWebSocketRoute)
    ]
    assert "/ws/research/{session_id}" in sockets and "/ws/lessons/{group_id}" in sockets
    for template in sockets:
        with client.websocket_connect(re.sub(r"\{[a-z_]+\}", "1", template)) as socket:
            message = socket.receive_json()
            with pytest.raises(WebSocketDisconnect) as closed:
                socket.receive_json()
        assert (message["code"], closed.value.code) == ("unauthenticated", 4401), template
    page = client.get("/research/sessions/1/meeting", follow_redirects=False)
    assert (page.status_code, page.headers["location"]) == (303, "/login")
