"""调课 applied: a plan stored as dated changes that week views, rooms and calendars follow."""

from __future__ import annotations

import re
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from fastapi.testclient import TestClient
from icalendar import Calendar
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from common.accounts.models import Account
from common.alliance import timetable
from common.alliance.models import (
    WEEKDAYS,
    Campus,
    Lesson,
    SyncGroup,
    Teacher,
    Term,
    TimetableAdjustment,
    TimetableAdjustmentItem,
    TimetableEntry,
)
from research.dashboard import term_occurrences
from scheduler.adjustments import load_term, week_solution
from scheduler.alliance_bridge import problem_from_alliance
from scheduler.checker import check
from scheduler.views import DAY_LABELS
from streaming.lifecycle import lesson_occurrences
from tests.conftest import DemoDatabase, bearer
from tests.integration.web.test_current_lesson import FixedClock
from tests.integration.web.test_research_page import login
from web.deps import principal_of
from web.page_shell import templates

ADMIN = "admin-wck"  # the rural alliance: 专递课堂 led from the core school
MONDAY = date(2026, 9, 7)  # a plain week (no holiday, no make-up day)
NEXT_MONDAY = date(2026, 9, 14)
SHANGHAI = ZoneInfo("Asia/Shanghai")


def current_term(session: Session, admin: str) -> Term:
    """The current term of the alliance that ``admin`` runs."""
    alliance = session.scalars(select(Account.alliance_id).where(Account.username == admin)).one()
    return session.scalars(select(Term).where(Term.is_current, Term.alliance_id == alliance)).one()


def sync_lead_teacher(db: DemoDatabase) -> tuple[int, int, str, int]:
    """(term, teacher id, code, sync group) of a teacher who leads a sync lesson on Mondays."""
    with db.sessions() as session:
        term = current_term(session, ADMIN)
        row = session.execute(
            select(Teacher.id, Teacher.code, SyncGroup.id)
            .join(Lesson, Lesson.teacher_id == Teacher.id)
            .join(SyncGroup, SyncGroup.lead_lesson_id == Lesson.id)
            .join(TimetableEntry, TimetableEntry.lesson_id == Lesson.id)
            .where(SyncGroup.term_id == term.id, TimetableEntry.day == "mon")
            .order_by(Teacher.code)
        ).first()
        assert row is not None, "the demo has a sync lesson on Mondays"
        return term.id, row[0], row[1], row[2]


def compute(client: TestClient, term_id: int, headers: dict[str, str], **body: Any) -> Any:
    response = client.post(
        f"/api/terms/{term_id}/timetable/absence-plan", json=body, headers=headers
    )
    assert response.status_code == 200, response.text
    return response.json()


def apply_body(plan: dict[str, Any], teacher_id: int, **extra: Any) -> dict[str, Any]:
    """The plan as the page sends it back (see web/static/js/adjust.js)."""
    return {
        "teacher_id": teacher_id,
        "date": plan["date"],
        "moves": [
            {
                "lesson_id": m["lesson_id"],
                "old_date": m["old"]["date"],
                "old_period": m["old"]["period"],
                "new_date": m["new"]["date"],
                "new_period": m["new"]["period"],
                "new_room_code": m["new"]["room_code"],
            }
            for m in plan["moves"]
        ],
        "substitutions": [
            {
                "lesson_id": s["lesson_id"],
                "date": s["slot"]["date"],
                "period": s["slot"]["period"],
                "substitute_id": s["substitute_id"],
            }
            for s in plan["substitutions"]
        ],
    } | extra


def apply(client: TestClient, term_id: int, headers: dict[str, str], body: Any) -> Any:
    return client.post(
        f"/api/terms/{term_id}/timetable/absence-plan/apply", json=body, headers=headers
    )


def week(client: TestClient, headers: dict[str, str], **query: Any) -> list[dict[str, Any]]:
    response = client.get("/api/timetable/week", params=query, headers=headers)
    assert response.status_code == 200, response.text
    entries: list[dict[str, Any]] = response.json()["entries"]
    return entries


def shape(entries: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    return sorted(
        (e["day"], e["period"], e["class_name"], e["subject"], e["teacher"], e["room"])
        for e in entries
    )


def test_an_applied_plan_changes_that_week_only_and_revoking_restores_it(
    client: TestClient, db: DemoDatabase
) -> None:
    term_id, teacher_id, code, group = sync_lead_teacher(db)
    admin = bearer(client, ADMIN)
    plan = compute(
        client, term_id, admin, teacher_id=teacher_id, date=MONDAY.isoformat(), substitute="none"
    )
    assert plan["moves"], "a sync lead without substitute must move"
    before = shape(week(client, admin, teacher_id=teacher_id, week=MONDAY.isoformat()))
    assert before == shape(week(client, admin, teacher_id=teacher_id))  # nothing applied yet

    response = apply(client, term_id, admin, apply_body(plan, teacher_id, reason="病假"))
    assert response.status_code == 201, response.text
    stored = response.json()
    assert stored["status"] == "applied" and stored["reason"] == "病假"
    assert len([i for i in stored["items"] if i["kind"] == "move"]) == len(plan["moves"])
    assert any(i["sync_group_id"] == group for i in stored["items"])

    # The teacher's dated week: nothing on Monday, every moved lesson at its new period (调).
    dated = week(client, admin, teacher_id=teacher_id, week=MONDAY.isoformat())
    assert not [e for e in dated if e["date"] == MONDAY.isoformat() and not e["substitute"]]
    moved = {(e["date"], e["period"], e["class_name"]) for e in dated if e["adjusted"]}
    for move in plan["moves"]:
        if move["teacher"] == plan["teacher"]:
            assert (move["new"]["date"], move["new"]["period"], move["school_class"]) in moved
    # The following week runs the weekly timetable.
    following = week(client, admin, teacher_id=teacher_id, week=NEXT_MONDAY.isoformat())
    assert shape(following) == before
    assert not [e for e in following if e["adjusted"] or e["substitute"]]

    # The independent checker accepts the adjusted week; the absent teacher is free Monday.
    with db.sessions() as session:
        term = load_term(session, term_id)
        problem = problem_from_alliance(session, term_id=term_id).problem
        solution = week_solution(session, term, MONDAY)
        report = check(problem, solution)
        assert report.feasible, report.violations[:3]
        assert not [
            p
            for p in solution.lessons
            if p.day == "mon" and problem.lessons[p.lesson].teacher == code
        ]
        # The room scheduler opens the sync lesson at its new bell on the new date.
        lead_lesson = session.get_one(SyncGroup, group).lead_lesson_id
        lead_move = next(
            i for i in stored["items"] if i["lesson_id"] == lead_lesson and i["kind"] == "move"
        )
        new_day = date.fromisoformat(lead_move["new_date"])
        assert new_day != MONDAY  # its lead teacher is away all Monday
        assert (group, lead_move["old_period"]) not in {
            (o.sync_group_id, o.lead_period) for o in lesson_occurrences(session, MONDAY)
        }
        assert (group, lead_move["new_period"]) in {
            (o.sync_group_id, o.lead_period) for o in lesson_occurrences(session, new_day)
        }
        next_monday = lesson_occurrences(session, NEXT_MONDAY)
        assert (group, lead_move["old_period"]) in {
            (o.sync_group_id, o.lead_period) for o in next_monday
        }
        # The bureau dashboard's term count reads the changed days as they now run.
        first, last = MONDAY - timedelta(days=7), NEXT_MONDAY + timedelta(days=6)
        counted = sorted(
            (o.day, o.sync_group_id, o.lead_period)
            for o in term_occurrences(session, term, first, last)
        )
        day_by_day = sorted(
            (o.day, o.sync_group_id, o.lead_period)
            for offset in range((last - first).days + 1)
            for o in lesson_occurrences(session, first + timedelta(days=offset))
        )
        assert counted == day_by_day
        assert (new_day, group, lead_move["new_period"]) in counted

    # Listed for the term; revoking brings the weekly timetable back on those dates.
    listed = client.get(
        f"/api/terms/{term_id}/timetable/adjustments",
        params={"start": "2026-09-01", "end": "2026-09-30"},
        headers=admin,
    ).json()["adjustments"]
    assert [a["id"] for a in listed] == [stored["id"]]
    assert all(item["description"] for item in listed[0]["items"])
    outside = client.get(
        f"/api/terms/{term_id}/timetable/adjustments",
        params={"start": "2026-10-01", "end": "2026-10-31"},
        headers=admin,
    ).json()["adjustments"]
    assert outside == []
    revoked = client.delete(
        f"/api/terms/{term_id}/timetable/adjustments/{stored['id']}", headers=admin
    )
    assert revoked.status_code == 200 and revoked.json()["status"] == "revoked"
    assert shape(week(client, admin, teacher_id=teacher_id, week=MONDAY.isoformat())) == before
    again = client.delete(
        f"/api/terms/{term_id}/timetable/adjustments/{stored['id']}", headers=admin
    )
    assert again.status_code == 409


def ics_events(
    client: TestClient, headers: dict[str, str], term_id: int, code: str
) -> list[dict[str, str]]:
    response = client.get(
        "/api/timetable/export",
        params={"kind": "teacher", "key": code, "format": "ics", "term_id": term_id},
        headers=headers,
    )
    assert response.status_code == 200, response.text
    return [
        {
            "start": event.decoded("dtstart").isoformat(),
            "summary": str(event.get("summary")),
            "description": str(event.get("description", "")),
        }
        for event in Calendar.from_ical(response.content).walk("VEVENT")
    ]


def on(events: list[dict[str, str]], day: date) -> list[dict[str, str]]:
    return [e for e in events if e["start"].startswith(day.isoformat())]


def test_the_calendar_moves_the_occurrence_on_that_date_only(
    client: TestClient, db: DemoDatabase
) -> None:
    term_id, teacher_id, code, _ = sync_lead_teacher(db)
    admin = bearer(client, ADMIN)
    before = ics_events(client, admin, term_id, code)
    assert on(before, MONDAY) and len(on(before, NEXT_MONDAY)) == len(on(before, MONDAY))
    plan = compute(client, term_id, admin, teacher_id=teacher_id, date=MONDAY.isoformat())
    response = apply(client, term_id, admin, apply_body(plan, teacher_id))
    assert response.status_code == 201, response.text

    after = ics_events(client, admin, term_id, code)
    assert on(after, MONDAY) == []
    assert on(after, NEXT_MONDAY) == on(before, NEXT_MONDAY)
    dated = week(client, admin, teacher_id=teacher_id, week=MONDAY.isoformat())
    for entry in (e for e in dated if e["adjusted"]):
        moved = [
            e
            for e in on(after, date.fromisoformat(entry["date"]))
            if e["start"][11:16] == entry["start"][:5]
        ]
        assert moved, entry
        assert moved[0]["summary"].startswith("【调】") and "调课：原" in moved[0]["description"]
    assert len(after) == len(before)  # every occurrence moved, none lost


def test_a_substitute_gets_the_lesson_in_week_and_calendar(
    client: TestClient, db: DemoDatabase
) -> None:
    with db.sessions() as session:
        term = current_term(session, "admin-sy")
        absent = session.scalars(select(Teacher).where(Teacher.name == "叶建平")).one()
        term_id, teacher_id, code = term.id, absent.id, absent.code
    admin = bearer(client, "admin-sy")
    plan = compute(
        client, term_id, admin, teacher_id=teacher_id, date=MONDAY.isoformat(), substitute="auto"
    )
    assert plan["substitutions"] and all(s["substitute_id"] for s in plan["substitutions"])
    response = apply(client, term_id, admin, apply_body(plan, teacher_id))
    assert response.status_code == 201, response.text
    assert {i["kind"] for i in response.json()["items"]} >= {"substitute"}

    first = plan["substitutions"][0]
    substitute = first["substitute_id"]
    theirs = week(client, admin, teacher_id=substitute, week=MONDAY.isoformat())
    covered = [e for e in theirs if e["substitute_id"] == substitute]
    assert covered and all(e["date"] == MONDAY.isoformat() for e in covered)
    assert {e["teacher"] for e in covered} == {"叶建平"}
    assert all(e["substitute"] == first["substitute"] for e in covered)
    assert not [
        e
        for e in week(client, admin, teacher_id=substitute, week=NEXT_MONDAY.isoformat())
        if e["substitute_id"] == substitute
    ]
    absent_week = week(client, admin, teacher_id=teacher_id, week=MONDAY.isoformat())
    assert not [e for e in absent_week if e["date"] == MONDAY.isoformat() and not e["substitute"]]

    with db.sessions() as session:
        substitute_code = session.get_one(Teacher, substitute).code
    gained = on(ics_events(client, admin, term_id, substitute_code), MONDAY)
    assert any(f"代课：{first['substitute']}" in e["description"] for e in gained)
    assert on(ics_events(client, admin, term_id, code), MONDAY) == []
    # The substitute cannot also be away that day while covering (409 names the cover).
    away = client.post(
        f"/api/terms/{term_id}/timetable/absence-plan/apply",
        json={
            "teacher_id": substitute,
            "date": MONDAY.isoformat(),
            "cancellations": [
                {"lesson_id": first["lesson_id"], "date": MONDAY.isoformat(), "period": 1}
            ],
        },
        headers=admin,
    )
    assert away.status_code == 409, away.text
    assert "已被安排代课" in away.json()["error"]["message"]


def planned_monday(
    client: TestClient, db: DemoDatabase
) -> tuple[int, int, dict[str, str], dict[str, Any]]:
    """(term, absent teacher, admin headers, apply body) of a computed Monday plan."""
    term_id, teacher_id, _, _ = sync_lead_teacher(db)
    admin = bearer(client, ADMIN)
    plan = compute(client, term_id, admin, teacher_id=teacher_id, date=MONDAY.isoformat())
    return term_id, teacher_id, admin, apply_body(plan, teacher_id)


def test_stale_and_conflicting_plans_are_refused_and_nothing_is_stored(
    client: TestClient, db: DemoDatabase
) -> None:
    term_id, teacher_id, admin, body = planned_monday(client, db)

    # A move into a period its class already has that day: the checker names the clash.
    move = body["moves"][0]
    target = date.fromisoformat(move["new_date"])
    clash = next(
        e
        for e in week(
            client, admin, class_id=class_of(db, move["lesson_id"]), week=MONDAY.isoformat()
        )
        if e["date"] == target.isoformat() and e["period"] != move["new_period"]
    )
    conflicting = body | {"moves": [move | {"new_period": clash["period"]}, *body["moves"][1:]]}
    refused = apply(client, term_id, admin, conflicting)
    assert refused.status_code == 409, refused.text
    assert "冲突" in refused.json()["error"]["message"]
    assert not re.search(r"\bL\d+\b", refused.json()["error"]["message"])

    assert apply(client, term_id, admin, body).status_code == 201
    stale = apply(client, term_id, admin, body)  # the same plan again: the week has changed
    assert stale.status_code == 409
    assert "已过期" in stale.json()["error"]["message"]
    with db.sessions() as session:
        assert session.scalar(select(func.count()).select_from(TimetableAdjustment)) == 1
        assert session.scalar(select(func.count()).select_from(TimetableAdjustmentItem)) == len(
            body["moves"]
        )

    # A plan computed now builds on the applied one; bad input is a clear 422.
    empty = apply(client, term_id, admin, {"teacher_id": teacher_id, "date": "2026-09-08"})
    assert empty.status_code == 422 and "没有任何调整" in empty.json()["error"]["message"]
    holiday = apply(client, term_id, admin, body | {"date": "2026-09-25"})
    assert holiday.status_code == 422
    with db.sessions() as session:
        elsewhere = session.scalars(select(Teacher).where(Teacher.name == "叶建平")).one().id
    foreign = apply(client, term_id, admin, body | {"teacher_id": elsewhere})
    assert foreign.status_code == 422 and "没有课" in foreign.json()["error"]["message"]


def class_of(db: DemoDatabase, lesson_id: int) -> int:
    with db.sessions() as session:
        return session.get_one(Lesson, lesson_id).class_id


def test_only_the_alliance_admin_may_apply_list_and_revoke(
    client: TestClient, db: DemoDatabase
) -> None:
    term_id, _, admin, body = planned_monday(client, db)
    base = f"/api/terms/{term_id}/timetable"
    for username in ("teacher-ye", "student-dj-4-1", "principal-cy", "bureau", "admin-sy"):
        headers = bearer(client, username)
        assert apply(client, term_id, headers, body).status_code == 403, username
        assert client.get(f"{base}/adjustments", headers=headers).status_code == 403, username
    assert apply(client, term_id, {}, body).status_code == 401
    stored = apply(client, term_id, admin, body).json()
    for username in ("teacher-ye", "principal-cy", "bureau", "admin-sy"):
        denied = client.delete(
            f"{base}/adjustments/{stored['id']}", headers=bearer(client, username)
        )
        assert denied.status_code == 403, username
    listed = client.get(f"{base}/adjustments", headers=admin).json()["adjustments"]
    assert [a["status"] for a in listed] == ["applied"]


def test_a_week_with_a_holiday_never_moves_a_lesson_onto_it(
    client: TestClient, db: DemoDatabase
) -> None:
    term_id, teacher_id, _, _ = sync_lead_teacher(db)
    admin = bearer(client, ADMIN)
    # Friday 25 September 2026 is 中秋节; Sunday 27 is a make-up day running Wednesday.
    plan = compute(client, term_id, admin, teacher_id=teacher_id, date="2026-09-21")
    assert plan["moves"]
    assert not [m for m in plan["moves"] if m["new"]["date"] in ("2026-09-25", "2026-09-26")]
    response = apply(client, term_id, admin, apply_body(plan, teacher_id))
    assert response.status_code == 201, response.text


def ye_covered_on_monday(client: TestClient, db: DemoDatabase) -> tuple[Teacher, int, Any]:
    """叶建平 of 遂昌实验 away on MONDAY with substitutes found: (teacher, term id, plan)."""
    with db.sessions() as session:
        absent = session.scalars(select(Teacher).where(Teacher.name == "叶建平")).one()
        term_id = session.scalars(
            select(Lesson.term_id).where(Lesson.teacher_id == absent.id)
        ).first()
        assert term_id is not None
    plan = compute(
        client,
        term_id,
        bearer(client, "admin-sy"),
        teacher_id=absent.id,
        date=MONDAY.isoformat(),
        substitute="auto",
    )
    return absent, term_id, plan


def test_the_week_template_marks_changed_lessons_and_names_the_substitute(
    client: TestClient, db: DemoDatabase
) -> None:
    absent, term_id, plan = ye_covered_on_monday(client, db)
    admin = bearer(client, "admin-sy")
    assert apply(client, term_id, admin, apply_body(plan, absent.id)).status_code == 201
    substitute = plan["substitutions"][0]["substitute"]

    def rendered(week_of: date) -> str:
        with db.sessions() as session:
            account = session.scalars(select(Account).where(Account.username == "admin-sy")).one()
            dated = timetable.week(
                session, principal_of(account), teacher_id=absent.id, week_of=week_of
            )
            grid: dict[str, list[Any]] = {}
            for entry in dated.entries:
                grid.setdefault(entry.day, []).append(entry)
            return templates.get_template("_week.html").render(
                days=list(WEEKDAYS[:5]),
                day_labels=DAY_LABELS,
                grid=grid,
                partners={},
                today="",
            )

    html = rendered(MONDAY)
    assert html.count('data-testid="substitute"') == len(plan["substitutions"])
    assert f"代课：{substitute}" in html and ">调</span>" in html
    following = rendered(NEXT_MONDAY)
    assert "代课：" not in following and ">调</span>" not in following


def test_the_campus_sheet_of_that_week_prints_the_changes(
    client: TestClient, db: DemoDatabase
) -> None:
    term_id, _, admin, body = planned_monday(client, db)
    assert apply(client, term_id, admin, body).status_code == 201
    with db.sessions() as session:
        lesson = session.get_one(Lesson, body["moves"][0]["lesson_id"])
        campus = session.get_one(Campus, lesson.school_class.campus_id).code

    def sheet(**query: Any) -> str:
        response = client.get(
            "/api/timetable/export",
            params={"kind": "campus", "key": campus, "format": "html", "term_id": term_id} | query,
            headers=admin,
        )
        assert response.status_code == 200, response.text
        text: str = response.text
        return text

    dated = sheet(week=MONDAY.isoformat())
    moved_here = [m for m in body["moves"] if m["lesson_id"] == lesson.id]
    assert dated.count('class="lesson adjusted"') + dated.count(
        'class="lesson sync adjusted"'
    ) >= len(moved_here)
    assert "【调】调课：原9月7日周一" in dated
    assert "【调】" not in sheet(week=NEXT_MONDAY.isoformat())
    assert "【调】" not in sheet()  # the weekly pattern
    assert sheet(week=NEXT_MONDAY.isoformat()).count('class="lesson') == sheet().count(
        'class="lesson'
    )


def test_the_page_offers_apply_and_the_applied_list(client: TestClient) -> None:
    page = client.get("/admin/adjust", headers=bearer(client, ADMIN))
    assert page.status_code == 200
    assert '<label for="reason">请假原因（可选）</label>' in page.text
    assert ">应用此方案</button>" in page.text and "本学期已应用的调课" in page.text
    for username in ("teacher-ye", "principal-cy", "bureau"):
        denied = client.get("/admin/adjust", headers=bearer(client, username))
        assert "应用此方案" not in denied.text, username


def test_the_absent_teachers_home_shows_that_weeks_substitutes_only(
    client: TestClient, db: DemoDatabase
) -> None:
    absent, term_id, plan = ye_covered_on_monday(client, db)
    admin = bearer(client, "admin-sy")
    with db.sessions() as session:
        username = session.scalars(
            select(Account.username).where(Account.teacher_id == absent.id)
        ).one()
    assert plan["substitutions"]
    assert apply(client, term_id, admin, apply_body(plan, absent.id)).status_code == 201
    login(client, username)

    client.app.state.lesson_clock = FixedClock(  # type: ignore[attr-defined]
        datetime.combine(MONDAY, time(7, 0), tzinfo=SHANGHAI)
    )
    assert f"代课：{plan['substitutions'][0]['substitute']}" in client.get("/").text
    client.app.state.lesson_clock = FixedClock(  # type: ignore[attr-defined]
        datetime.combine(NEXT_MONDAY, time(7, 0), tzinfo=SHANGHAI)
    )
    assert "代课：" not in client.get("/").text
