"""Quota warnings: exactly those behind on 跟班听课 or 指导, shown only to who may see them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import select

from common.alliance.demo import RURAL_NAME
from common.alliance.models import Alliance, School, Teacher, Term
from research.models import ResearchGroup
from tests.conftest import DemoDatabase, bearer


@dataclass(frozen=True)
class County:
    term_id: int
    lead: int
    cai_yuan: int
    long_yang: int
    member_teachers: dict[int, int]  # teacher -> school
    leaders: list[int]  # lead-school subject leaders and group leaders
    lan: int
    wang: int
    lei: int


def _county(db: DemoDatabase) -> County:
    with db.sessions() as session:
        alliance = session.scalars(select(Alliance).where(Alliance.name == RURAL_NAME)).one()
        term = session.scalars(
            select(Term).where(Term.alliance_id == alliance.id, Term.is_current)
        ).one()
        schools = {
            s.name: s.id
            for s in session.scalars(select(School).where(School.alliance_id == alliance.id))
        }
        lead = alliance.lead_school_id
        assert lead is not None
        members = {
            t.id: t.school_id
            for t in session.scalars(
                select(Teacher).where(
                    Teacher.school_id.in_([schools["蔡源小学"], schools["龙洋小学"]])
                )
            )
        }
        group_leaders = set(
            session.scalars(
                select(ResearchGroup.leader_id).where(ResearchGroup.alliance_id == alliance.id)
            )
        )
        leaders = sorted(
            t.id
            for t in session.scalars(select(Teacher).where(Teacher.school_id == lead))
            if t.is_subject_leader or t.id in group_leaders
        )
        by_name = {
            t.name: t.id
            for t in session.scalars(
                select(Teacher).where(Teacher.name.in_(["蓝美玲", "王丽娟", "雷晓芬"]))
            )
        }
        return County(
            term_id=term.id,
            lead=lead,
            cai_yuan=schools["蔡源小学"],
            long_yang=schools["龙洋小学"],
            member_teachers=members,
            leaders=leaders,
            lan=by_name["蓝美玲"],
            wang=by_name["王丽娟"],
            lei=by_name["雷晓芬"],
        )


def _visit(client: TestClient, headers: dict[str, str], **body: Any) -> None:
    response = client.post("/api/visits", json={"mode": "on_site", **body}, headers=headers)
    assert response.status_code == 201, response.text


def _report(
    client: TestClient, headers: dict[str, str], term_id: int, as_of: str, **extra: int
) -> dict[str, Any]:
    query = "&".join(
        [f"term_id={term_id}", f"as_of={as_of}", *(f"{k}={v}" for k, v in extra.items())]
    )
    response = client.get(f"/api/quotas?{query}", headers=headers)
    assert response.status_code == 200, response.text
    report: dict[str, Any] = response.json()
    return report


def test_sit_in_warnings_are_exactly_for_teachers_missing_a_finished_month(
    client: TestClient, db: DemoDatabase
) -> None:
    county = _county(db)
    admin = bearer(client, "admin-wck")
    # Two teachers sit in every month up to November; one (lan) only in September.
    diligent = sorted(county.member_teachers)[:2]
    for teacher in diligent:
        for day in ("2026-09-10", "2026-10-15", "2026-11-05"):
            _visit(
                client, admin, kind="sit_in", teacher_id=teacher, to_school_id=county.lead, day=day
            )
    _visit(
        client,
        admin,
        kind="sit_in",
        teacher_id=county.lan,
        to_school_id=county.lead,
        day="2026-09-30",
    )

    # 2026-11-20: September and October are over, November is still open.
    report = _report(client, admin, county.term_id, "2026-11-20")
    rows = {row["teacher_id"]: row for row in report["sit_in"]}
    assert set(rows) == set(county.member_teachers)  # member-school teachers, not the lead's
    behind = {t for t, row in rows.items() if row["behind"]}
    assert behind == set(county.member_teachers) - set(diligent)
    assert report["behind_sit_in"] == len(behind)
    lan = {m["month"]: m for m in rows[county.lan]["months"]}
    assert [m for m in lan] == ["2026-09", "2026-10", "2026-11", "2026-12", "2027-01"]
    assert (lan["2026-09"]["met"], lan["2026-09"]["behind"]) == (True, False)
    assert (lan["2026-10"]["days"], lan["2026-10"]["behind"]) == (0, True)
    assert (lan["2026-11"]["due"], lan["2026-11"]["behind"]) == (0, False)
    for teacher in diligent:
        months = rows[teacher]["months"]
        assert [m["met"] for m in months[:3]] == [True, True, True]

    # Early in September nothing is due yet: no one is behind.
    early = _report(client, admin, county.term_id, "2026-09-15")
    assert early["behind_sit_in"] == 0 and not any(r["behind"] for r in early["sit_in"])


def test_guidance_warnings_follow_the_term_and_each_member_school(
    client: TestClient, db: DemoDatabase
) -> None:
    county = _county(db)
    admin = bearer(client, "admin-wck")
    assert county.leaders == sorted([county.wang, county.lei])
    # Seeded: wang guided 蔡源 once (10-15). Add: lei guides 龙洋 twice, wang 蔡源 once more.
    for day in ("2026-10-22", "2026-12-03"):
        _visit(
            client,
            admin,
            kind="guidance",
            teacher_id=county.lei,
            to_school_id=county.long_yang,
            day=day,
        )
    mid = _report(client, admin, county.term_id, "2026-11-20")  # past the midpoint: 1 due
    behind = {(r["teacher_id"], r["school_id"]) for r in mid["guidance"] if r["behind"]}
    assert behind == {(county.wang, county.long_yang), (county.lei, county.cai_yuan)}

    _visit(
        client,
        admin,
        kind="guidance",
        teacher_id=county.wang,
        to_school_id=county.cai_yuan,
        day="2026-12-10",
    )
    end = _report(client, admin, county.term_id, "2027-02-01")  # the term is over: 2 due
    rows = {(r["teacher_id"], r["school_id"]): r for r in end["guidance"]}
    assert {k for k, r in rows.items() if r["behind"]} == {
        (county.wang, county.long_yang),
        (county.lei, county.cai_yuan),
    }
    assert rows[(county.wang, county.cai_yuan)]["visits"] == 2
    assert rows[(county.lei, county.long_yang)]["met"] is True
    assert end["behind_guidance"] == 2


def test_each_role_sees_only_its_share_of_the_quotas(client: TestClient, db: DemoDatabase) -> None:
    county = _county(db)
    as_of = "2026-11-20"
    every = _report(client, bearer(client, "bureau"), county.term_id, as_of)
    assert len(every["sit_in"]) == len(county.member_teachers)
    assert len(every["guidance"]) == len(county.leaders) * 2

    principal = _report(client, bearer(client, "principal-cy"), county.term_id, as_of)
    assert {r["school_id"] for r in principal["sit_in"]} == {county.cai_yuan}
    assert {r["school_id"] for r in principal["guidance"]} == {county.cai_yuan}

    lan = _report(client, bearer(client, "teacher-lan"), county.term_id, as_of)
    assert [r["teacher_id"] for r in lan["sit_in"]] == [county.lan] and lan["guidance"] == []
    wang = _report(client, bearer(client, "teacher-wang"), county.term_id, as_of)
    assert wang["sit_in"] == [] and {r["teacher_id"] for r in wang["guidance"]} == {county.wang}

    admin = bearer(client, "admin-wck")
    long_yang = _report(client, admin, county.term_id, as_of, school_id=county.long_yang)
    assert {r["school_id"] for r in long_yang["sit_in"]} == {county.long_yang}
    assert {r["school_id"] for r in long_yang["guidance"]} == {county.long_yang}

    for outsider in ("admin-sy", "student-cy-4-1"):
        response = client.get(
            f"/api/quotas?term_id={county.term_id}", headers=bearer(client, outsider)
        )
        assert response.status_code == 403, outsider
    # Without a term, an alliance's people get their current term.
    current = client.get("/api/quotas?as_of=2026-11-20", headers=admin)
    assert current.status_code == 200 and current.json()["term_id"] == county.term_id
