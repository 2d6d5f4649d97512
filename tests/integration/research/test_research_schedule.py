"""期初规划 via the API: dates follow the 校历, hosts rotate fairly, re-planning keeps history."""

from __future__ import annotations

from collections import Counter
from datetime import date, timedelta
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import select

from common.alliance.demo import GROUP_NAME
from common.alliance.models import Alliance, School, Subject, Teacher, Term, teacher_subjects
from tests.conftest import DemoDatabase, bearer

TERM_START, TERM_END = date(2026, 9, 1), date(2027, 1, 22)


def _chinese_group(db: DemoDatabase) -> dict[str, Any]:
    """The education group's 语文 teachers and the ids a new research group needs."""
    with db.sessions() as session:
        alliance = session.scalars(select(Alliance).where(Alliance.name == GROUP_NAME)).one()
        subject = session.scalars(
            select(Subject).where(Subject.alliance_id == alliance.id, Subject.name == "语文")
        ).one()
        teachers = session.scalars(
            select(Teacher.id)
            .join(teacher_subjects, teacher_subjects.c.teacher_id == Teacher.id)
            .join(School, Teacher.school_id == School.id)
            .where(School.alliance_id == alliance.id, teacher_subjects.c.subject_id == subject.id)
            .order_by(Teacher.id)
        ).all()
        term = session.scalars(
            select(Term).where(Term.alliance_id == alliance.id, Term.is_current)
        ).one()
        return {
            "alliance_id": alliance.id,
            "subject_id": subject.id,
            "members": list(teachers[:7]),
            "term_id": term.id,
        }


def _new_group(client: TestClient, facts: dict[str, Any], headers: dict[str, str]) -> int:
    response = client.post(
        "/api/research-groups",
        json={
            "alliance_id": facts["alliance_id"],
            "subject_id": facts["subject_id"],
            "name": "实验集团语文教研组",
            "leader_id": facts["members"][0],
            "member_ids": facts["members"],
            "weekday": "wed",
            "start_time": "15:40",
            "minutes": 60,
        },
        headers=headers,
    )
    assert response.status_code == 201, response.text
    group_id: int = response.json()["id"]
    return group_id


def _plan(
    client: TestClient, group_id: int, body: dict[str, Any], headers: dict[str, str]
) -> dict[str, Any]:
    response = client.post(f"/api/research-groups/{group_id}/plan", json=body, headers=headers)
    assert response.status_code == 200, response.text
    plan: dict[str, Any] = response.json()
    return plan


def _wednesdays() -> set[date]:
    day, found = TERM_START, set()
    while day <= TERM_END:
        if day.weekday() == 2:
            found.add(day)
        day += timedelta(days=1)
    return found


def test_a_term_lands_on_the_slot_weekday_skipping_holidays_with_makeup_days(
    client: TestClient, db: DemoDatabase
) -> None:
    facts = _chinese_group(db)
    admin = bearer(client, "admin-sy")
    group_id = _new_group(client, facts, admin)
    plan = _plan(client, group_id, {"term_id": facts["term_id"], "topics": ["开学教研"]}, admin)
    days = {date.fromisoformat(row["day"]) for row in plan["planned"]}
    # 10-07 falls in the 国庆 holiday; Sunday 09-27 is a make-up day running Wednesday's timetable.
    assert days == (_wednesdays() - {date(2026, 10, 7)}) | {date(2026, 9, 27)}
    first = min(plan["planned"], key=lambda row: row["day"])
    assert first["topic"] == "开学教研" and first["start_time"] == "15:40:00"
    assert all(row["place"] == "教研-实验集团语文教研组" for row in plan["planned"])
    hosts = Counter(row["host_id"] for row in plan["planned"])
    assert set(hosts) == set(facts["members"])
    assert max(hosts.values()) - min(hosts.values()) <= 1


def test_absences_and_swaps_shape_the_rotation(client: TestClient, db: DemoDatabase) -> None:
    facts = _chinese_group(db)
    admin = bearer(client, "admin-sy")
    group_id = _new_group(client, facts, admin)
    base = _plan(client, group_id, {"term_id": facts["term_id"]}, admin)["planned"]
    first, third, fourth = base[0]["day"], base[2]["day"], base[3]["day"]
    away = base[0]["host_id"]
    absent = {"term_id": facts["term_id"], "absences": {first: [away]}}
    without_swap = _plan(client, group_id, absent, admin)["planned"]
    hosts = {row["day"]: row["host_id"] for row in without_swap}
    assert hosts[first] != away
    count = Counter(hosts.values())
    assert max(count.values()) - min(count.values()) <= 1

    swapped = _plan(
        client, group_id, {**absent, "swaps": [{"first": third, "second": fourth}]}, admin
    )["planned"]
    after = {row["day"]: row["host_id"] for row in swapped}
    assert (after[third], after[fourth]) == (hosts[fourth], hosts[third])
    assert Counter(after.values()) == count


def test_replanning_replaces_planned_sessions_and_keeps_held_ones(
    client: TestClient, db: DemoDatabase
) -> None:
    facts = _chinese_group(db)
    admin = bearer(client, "admin-sy")
    group_id = _new_group(client, facts, admin)
    planned = _plan(client, group_id, {"term_id": facts["term_id"]}, admin)["planned"]
    held = planned[:3]
    for row in held:
        response = client.post(
            f"/api/research-sessions/{row['id']}/minutes",
            json={"minutes_text": "已研讨", "status": "held"},
            headers=admin,
        )
        assert response.status_code == 200, response.text
    cancelled = planned[3]
    client.post(
        f"/api/research-sessions/{cancelled['id']}/minutes",
        json={"status": "cancelled"},
        headers=admin,
    )

    again = _plan(
        client, group_id, {"term_id": facts["term_id"], "topics": ["期中质量分析"]}, admin
    )
    assert {row["id"] for row in again["kept"]} == {row["id"] for row in [*held, cancelled]}
    assert {row["host_id"] for row in again["kept"]} == {
        row["host_id"] for row in [*held, cancelled]
    }
    assert again["removed"] == len(planned) - 4
    assert not {row["id"] for row in again["planned"]} & {row["id"] for row in again["kept"]}
    # No date is planned twice, and the term stays the same length.
    days = [row["day"] for row in again["planned"]] + [row["day"] for row in again["kept"]]
    assert sorted(days) == sorted(row["day"] for row in planned)
    assert again["planned"][0]["topic"] == "期中质量分析"
    # Held sessions count towards the rotation: over the term, hosts still differ by <= 1.
    hosts = Counter(
        row["host_id"] for row in [*held, *again["planned"]] if row["id"] != cancelled["id"]
    )
    assert max(hosts.values()) - min(hosts.values()) <= 1

    rotation = client.get(
        f"/api/research-groups/{group_id}/rotation?term_id={facts['term_id']}", headers=admin
    ).json()
    tallies = {h["teacher_id"]: h for h in rotation["hosts"]}
    assert sum(h["held"] for h in tallies.values()) == 3
    assert sum(h["planned"] for h in tallies.values()) == len(again["planned"])
    for row in held:
        assert tallies[row["host_id"]]["last_hosted"] is not None


def test_the_leader_plans_and_moves_the_slot_a_member_may_not(
    client: TestClient, db: DemoDatabase
) -> None:
    facts = _chinese_group(db)
    admin = bearer(client, "admin-sy")
    group_id = _new_group(client, facts, admin)
    with db.sessions() as session:
        teacher_ye = session.scalars(
            select(Teacher).where(Teacher.name == "叶建平")
        ).one()  # the maths subject leader (teacher-ye), not in this group
    client.patch(
        f"/api/research-groups/{group_id}",
        json={"leader_id": teacher_ye.id},
        headers=admin,
    ).raise_for_status()
    leader = bearer(client, "teacher-ye")
    moved = client.put(
        f"/api/research-groups/{group_id}/slot",
        json={"weekday": "thu", "start_time": "16:00", "minutes": 45, "online_room": "语文线上"},
        headers=leader,
    )
    assert moved.status_code == 200, moved.text
    assert moved.json()["weekday"] == "thu" and teacher_ye.id in moved.json()["member_ids"]
    plan = _plan(client, group_id, {"term_id": facts["term_id"]}, leader)["planned"]
    assert date(2026, 10, 10) in {date.fromisoformat(r["day"]) for r in plan}  # 调休 Thursday
    assert all(r["start_time"] == "16:00:00" and r["minutes"] == 45 for r in plan)

    member = bearer(client, "teacher-wu")  # a maths teacher of the same school, not the leader
    refused = client.post(
        f"/api/research-groups/{group_id}/plan", json={"term_id": facts["term_id"]}, headers=member
    )
    assert refused.status_code == 403
    assert "教研组长" in refused.json()["error"]["message"]


def test_impossible_plans_say_why_and_change_nothing(client: TestClient, db: DemoDatabase) -> None:
    facts = _chinese_group(db)
    admin = bearer(client, "admin-sy")
    group_id = _new_group(client, facts, admin)
    planned = _plan(client, group_id, {"term_id": facts["term_id"]}, admin)["planned"]

    too_many = client.post(
        f"/api/research-groups/{group_id}/plan",
        json={"term_id": facts["term_id"], "topics": ["t"] * 40},
        headers=admin,
    )
    assert too_many.status_code == 422 and "主题" in too_many.json()["error"]["message"]
    outside = client.post(
        f"/api/research-groups/{group_id}/plan",
        json={"term_id": facts["term_id"], "absences": {"2027-03-03": [facts["members"][0]]}},
        headers=admin,
    )
    assert outside.status_code == 422 and "不在学期" in outside.json()["error"]["message"]
    stranger = client.post(
        f"/api/research-groups/{group_id}/plan",
        json={"term_id": facts["term_id"], "absences": {planned[0]["day"]: [999999]}},
        headers=admin,
    )
    assert stranger.status_code == 422 and "不是本教研组成员" in stranger.json()["error"]["message"]

    after = client.get(f"/api/research-sessions?group_id={group_id}", headers=admin).json()
    assert [(r["id"], r["host_id"]) for r in after] == [(r["id"], r["host_id"]) for r in planned]
