"""The research API: bad input refused whole, attendance from joins, invitations, permissions."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from common.alliance.demo import RURAL_NAME
from common.alliance.models import Alliance, School, Subject, Teacher, Term
from research.models import ResearchGroup, ResearchSession
from tests.conftest import DemoDatabase, bearer

ENGLISH_GROUP = "王村口联盟英语教研组"


@dataclass(frozen=True)
class Rural:
    alliance_id: int
    term_id: int
    lead_school_id: int
    english_group_id: int
    maths_subject_id: int
    lan: int  # teacher-lan, 蔡源小学, a member of the English group
    wang: int  # teacher-wang, the English group's leader
    maths_teacher: int  # a 蔡源 maths teacher in no research group
    sessions: list[tuple[int, str, int | None, str]]  # id, day, host, status


def _rural(db: DemoDatabase) -> Rural:
    with db.sessions() as session:
        alliance = session.scalars(select(Alliance).where(Alliance.name == RURAL_NAME)).one()
        group = session.scalars(
            select(ResearchGroup).where(ResearchGroup.name == ENGLISH_GROUP)
        ).one()
        term = session.scalars(
            select(Term).where(Term.alliance_id == alliance.id, Term.is_current)
        ).one()
        maths = session.scalars(
            select(Subject).where(Subject.alliance_id == alliance.id, Subject.name == "数学")
        ).one()
        lan = session.scalars(select(Teacher).where(Teacher.name == "蓝美玲")).one()
        cai_yuan = session.get_one(School, lan.school_id)
        maths_teacher = next(
            t
            for t in session.scalars(
                select(Teacher).where(Teacher.school_id == cai_yuan.id).order_by(Teacher.id)
            )
            if [s.name for s in t.subjects][:1] == ["数学"]
        )
        rows = session.scalars(
            select(ResearchSession)
            .where(ResearchSession.group_id == group.id)
            .order_by(ResearchSession.day)
        ).all()
        assert alliance.lead_school_id is not None and group.leader_id is not None
        return Rural(
            alliance_id=alliance.id,
            term_id=term.id,
            lead_school_id=alliance.lead_school_id,
            english_group_id=group.id,
            maths_subject_id=maths.id,
            lan=lan.id,
            wang=group.leader_id,
            maths_teacher=maths_teacher.id,
            sessions=[(r.id, r.day.isoformat(), r.host_id, r.status) for r in rows],
        )


def _error(response: Any, status: int) -> str:
    assert response.status_code == status, response.text
    message: str = response.json()["error"]["message"]
    return message


# --- bad input --------------------------------------------------------------------------------
def test_a_member_cannot_be_in_two_sessions_at_once(client: TestClient, db: DemoDatabase) -> None:
    rural = _rural(db)
    admin = bearer(client, "admin-wck")
    created = client.post(
        "/api/research-groups",
        json={
            "alliance_id": rural.alliance_id,
            "subject_id": rural.maths_subject_id,
            "name": "蔡源数学小组",
            "leader_id": rural.maths_teacher,
            "member_ids": [rural.lan],
            "weekday": "wed",  # the English group meets Wednesdays 15:30-16:30
            "start_time": "16:00",
        },
        headers=admin,
    )
    assert created.status_code == 201, created.text
    group_id = created.json()["id"]

    message = _error(
        client.post(
            f"/api/research-groups/{group_id}/plan", json={"term_id": rural.term_id}, headers=admin
        ),
        409,
    )
    assert "蓝美玲" in message and ENGLISH_GROUP in message and "蔡源数学小组" in message
    one = _error(
        client.post(
            "/api/research-sessions",
            json={"group_id": group_id, "term_id": rural.term_id, "day": "2026-09-09"},
            headers=admin,
        ),
        409,
    )
    assert "蓝美玲" in one
    assert client.get(f"/api/research-sessions?group_id={group_id}", headers=admin).json() == []

    # An hour later there is no clash.
    later = client.post(
        "/api/research-sessions",
        json={
            "group_id": group_id,
            "term_id": rural.term_id,
            "day": "2026-09-09",
            "start_time": "16:30",
        },
        headers=admin,
    )
    assert later.status_code == 201, later.text


def test_hosts_must_be_members_and_dates_inside_the_term(
    client: TestClient, db: DemoDatabase
) -> None:
    rural = _rural(db)
    admin = bearer(client, "admin-wck")
    base = {"group_id": rural.english_group_id, "term_id": rural.term_id, "start_time": "09:00"}
    stranger = client.post(
        "/api/research-sessions",
        json={**base, "day": "2026-09-05", "host_id": rural.maths_teacher},
        headers=admin,
    )
    assert f"不是「{ENGLISH_GROUP}」的成员" in _error(stranger, 422)
    assert stranger.json()["error"]["field"] == "host_id"
    outside = client.post(
        "/api/research-sessions", json={**base, "day": "2027-03-01"}, headers=admin
    )
    assert "不在学期" in _error(outside, 422)
    first_id = rural.sessions[0][0]
    moved = client.patch(
        f"/api/research-sessions/{first_id}", json={"host_id": rural.maths_teacher}, headers=admin
    )
    assert "不是" in _error(moved, 422)
    after = client.get(f"/api/research-sessions/{first_id}", headers=admin).json()
    assert after["host_id"] == rural.sessions[0][2]


def test_visits_go_to_another_school_of_the_right_kind(
    client: TestClient, db: DemoDatabase
) -> None:
    rural = _rural(db)
    principal = bearer(client, "principal-cy")
    before = client.get("/api/visits", headers=principal).json()
    with db.sessions() as session:
        own_school = session.get_one(Teacher, rural.lan).school_id
    base = {"kind": "sit_in", "teacher_id": rural.lan, "day": "2026-10-20"}
    own = client.post("/api/visits", json={**base, "to_school_id": own_school}, headers=principal)
    assert "不能到本校" in _error(own, 422)
    assert own.json()["error"]["field"] == "to_school_id"
    summer = client.post(
        "/api/visits",
        json={**base, "to_school_id": rural.lead_school_id, "day": "2027-02-10"},
        headers=principal,
    )
    assert "不在本教联体的任何学期内" in _error(summer, 422)
    guidance = client.post(
        "/api/visits",
        json={**base, "kind": "guidance", "to_school_id": rural.lead_school_id},
        headers=principal,
    )
    assert "牵头校" in _error(guidance, 422)
    ok = client.post(
        "/api/visits",
        json={**base, "to_school_id": rural.lead_school_id, "mode": "online"},
        headers=principal,
    )
    assert ok.status_code == 201, ok.text
    assert ok.json()["from_school_id"] == own_school
    assert len(client.get("/api/visits", headers=principal).json()) == len(before) + 1


# --- attendance, minutes, invitations ---------------------------------------------------------
def test_attendance_accumulates_from_join_and_leave_records(
    client: TestClient, db: DemoDatabase
) -> None:
    rural = _rural(db)
    session_id, day, _host, _status = next(s for s in rural.sessions if s[3] == "planned")
    leader = bearer(client, "teacher-wang")

    def at(hhmm: str) -> str:
        return f"{day}T{hhmm}:00+08:00"

    response = client.post(
        f"/api/research-sessions/{session_id}/attendance",
        json={
            "records": [
                {"teacher_id": rural.lan, "joined_at": at("15:30"), "left_at": at("15:50")},
                {"teacher_id": rural.wang, "joined_at": at("15:28"), "left_at": at("16:30")},
                {"teacher_id": rural.lan, "joined_at": at("16:00"), "left_at": at("16:20")},
            ]
        },
        headers=leader,
    )
    assert response.status_code == 200, response.text
    # A second report of a reconnect overlapping what was counted adds only the new minutes.
    response = client.post(
        f"/api/research-sessions/{session_id}/attendance",
        json={
            "records": [{"teacher_id": rural.lan, "joined_at": at("16:10"), "left_at": at("16:25")}]
        },
        headers=leader,
    )
    seconds = {row["teacher_id"]: row["seconds"] for row in response.json()}
    assert seconds == {rural.lan: (20 + 20 + 5) * 60, rural.wang: 62 * 60}
    lan = next(row for row in response.json() if row["teacher_id"] == rural.lan)
    assert lan["joined_at"].startswith(f"{day}T07:30:00") and lan["left_at"].startswith(
        f"{day}T08:25:00"
    )
    read = client.get(
        f"/api/research-sessions/{session_id}/attendance", headers=bearer(client, "teacher-lan")
    )
    assert read.json() == response.json()
    held = client.get(f"/api/research-sessions/{session_id}", headers=leader).json()
    assert held["status"] == "held"

    wrong_day = client.post(
        f"/api/research-sessions/{session_id}/attendance",
        json={
            "records": [
                {
                    "teacher_id": rural.lan,
                    "joined_at": "2027-01-05T15:30:00+08:00",
                    "left_at": "2027-01-05T16:00:00+08:00",
                }
            ]
        },
        headers=leader,
    )
    assert "不在本次教研当天" in _error(wrong_day, 422)
    backwards = client.post(
        f"/api/research-sessions/{session_id}/attendance",
        json={
            "records": [{"teacher_id": rural.lan, "joined_at": at("16:00"), "left_at": at("15:00")}]
        },
        headers=leader,
    )
    assert "早于" in _error(backwards, 422)
    # Nothing of the refused reports was counted.
    again = client.get(f"/api/research-sessions/{session_id}/attendance", headers=leader).json()
    assert again == response.json()


def test_the_host_writes_minutes_and_other_members_may_not(
    client: TestClient, db: DemoDatabase
) -> None:
    rural = _rural(db)
    lan = bearer(client, "teacher-lan")
    hosted = next(s for s in rural.sessions if s[2] == rural.lan and s[3] == "planned")
    other = next(s for s in rural.sessions if s[2] != rural.lan and s[3] == "planned")
    written = client.post(
        f"/api/research-sessions/{hosted[0]}/minutes",
        json={"minutes_text": "研讨了绘本阅读的提问设计。", "status": "held"},
        headers=lan,
    )
    assert written.status_code == 200, written.text
    assert (
        written.json()["minutes_text"].startswith("研讨了") and written.json()["status"] == "held"
    )
    refused = client.post(
        f"/api/research-sessions/{other[0]}/minutes", json={"minutes_text": "x"}, headers=lan
    )
    assert "主持人" in _error(refused, 403)
    # The generic edit stays with administrators.
    assert (
        client.patch(f"/api/research-sessions/{hosted[0]}", json={}, headers=lan).status_code == 403
    )


def test_an_invitation_is_an_ics_event_at_the_session_time(
    client: TestClient, db: DemoDatabase
) -> None:
    rural = _rural(db)
    session_id, day, _host, _status = next(s for s in rural.sessions if s[3] == "planned")
    lan = bearer(client, "teacher-lan")
    response = client.get(f"/api/research-sessions/{session_id}/invite.ics", headers=lan)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/calendar")
    text = response.text.replace("\r\n ", "")
    assert "BEGIN:VEVENT" in text and f"UID:research-session-{session_id}@tongke" in text
    assert f"DTSTART;TZID=Asia/Shanghai:{day.replace('-', '')}T153000" in text
    assert f"SUMMARY:{ENGLISH_GROUP}" in text and "STATUS:CONFIRMED" in text
    # A reminder a quarter of an hour before (phones show it as a notification).
    assert "BEGIN:VALARM" in text and "TRIGGER:-PT15M" in text and "ACTION:DISPLAY" in text

    admin = bearer(client, "admin-wck")
    client.post(
        f"/api/research-sessions/{session_id}/minutes",
        json={"status": "cancelled"},
        headers=admin,
    ).raise_for_status()
    cancelled = client.get(f"/api/research-sessions/{session_id}/invite.ics", headers=lan).text
    assert "METHOD:CANCEL" in cancelled and "STATUS:CANCELLED" in cancelled
    assert "BEGIN:VALARM" not in cancelled  # no reminder for what will not happen


# --- permissions of the routes beyond CRUD ----------------------------------------------------
READERS = {"bureau", "admin-wck", "principal-cy", "teacher-lan", "teacher-wang"}
LEADERS = {"admin-wck", "teacher-wang"}
EVERYONE = ("bureau", "admin-wck", "admin-sy", "principal-cy", "teacher-lan", "teacher-wang")


@pytest.mark.parametrize("username", [*EVERYONE, "student-cy-4-1"])
def test_each_research_route_admits_exactly_its_roles(
    client: TestClient, db: DemoDatabase, username: str
) -> None:
    rural = _rural(db)
    headers = bearer(client, username)
    group = rural.english_group_id
    session_id, day, _host, _status = next(
        s for s in rural.sessions if s[3] == "planned" and s[2] != rural.lan
    )
    may_read = username in READERS
    may_lead = username in LEADERS

    def expect(response: Any, allowed: bool) -> None:
        assert response.status_code == (200 if allowed else 403), (username, response.text)

    expect(client.get(f"/api/research-groups/{group}/rotation", headers=headers), may_read)
    expect(client.get(f"/api/research-sessions/{session_id}/attendance", headers=headers), may_read)
    expect(client.get(f"/api/research-sessions/{session_id}/invite.ics", headers=headers), may_read)
    expect(client.get(f"/api/quotas?term_id={rural.term_id}", headers=headers), may_read)
    expect(
        client.put(
            f"/api/research-groups/{group}/slot",
            json={"weekday": "wed", "start_time": "15:30", "minutes": 60},
            headers=headers,
        ),
        may_lead,
    )
    expect(
        client.post(
            f"/api/research-sessions/{session_id}/attendance",
            json={
                "records": [
                    {
                        "teacher_id": rural.wang,
                        "joined_at": f"{day}T15:30:00+08:00",
                        "left_at": f"{day}T15:40:00+08:00",
                    }
                ]
            },
            headers=headers,
        ),
        may_lead,
    )
    expect(
        client.post(
            f"/api/research-sessions/{session_id}/minutes",
            json={"minutes_text": "纪要"},
            headers=headers,
        ),
        may_lead,
    )
    expect(
        client.post(
            f"/api/research-groups/{group}/plan", json={"term_id": rural.term_id}, headers=headers
        ),
        may_lead,
    )
