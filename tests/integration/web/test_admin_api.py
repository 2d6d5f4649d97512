"""The admin API: building a school's structure, and clear errors for every kind of bad input."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient

from tests.conftest import bearer


def _me(client: TestClient, headers: dict[str, str]) -> dict[str, Any]:
    account: dict[str, Any] = client.get("/api/auth/me", headers=headers).json()["account"]
    return account


def _post(
    client: TestClient, path: str, body: dict[str, Any], headers: dict[str, str]
) -> dict[str, Any]:
    response = client.post(path, json=body, headers=headers)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


def test_an_alliance_admin_builds_a_new_school_end_to_end(client: TestClient) -> None:
    admin = bearer(client, "admin-wck")
    alliance_id = _me(client, admin)["alliance_id"]
    school = _post(client, "/api/schools", {"alliance_id": alliance_id, "name": "石练小学"}, admin)
    campus = _post(
        client,
        "/api/campuses",
        {"school_id": school["id"], "code": "sl", "name": "石练小学本部"},
        admin,
    )
    bells = _post(
        client,
        "/api/bell-schedules",
        {
            "campus_id": campus["id"],
            "name": "常规",
            "weekdays": ["mon", "tue", "wed", "thu", "fri"],
            "periods": [{"start": "08:20", "end": "09:00"}, {"start": "09:10", "end": "09:50"}],
        },
        admin,
    )
    assert [p["number"] for p in bells["periods"]] == [1, 2]
    room = _post(
        client,
        "/api/rooms",
        {
            "campus_id": campus["id"],
            "code": "sl-lb",
            "name": "录播教室",
            "capacity": 30,
            "features": ["sync"],
        },
        admin,
    )
    terminal = _post(
        client, "/api/terminals", {"room_id": room["id"], "name": "石练录播终端"}, admin
    )
    assert terminal["paired"] is False
    school_class = _post(
        client,
        "/api/classes",
        {
            "campus_id": campus["id"],
            "grade_level": 3,
            "code": "sl-3-1",
            "name": "三(1)班",
            "size": 12,
        },
        admin,
    )
    assert school_class["school_id"] == school["id"] and school_class["grade_level"] == 3
    subjects = client.get(f"/api/subjects?alliance_id={alliance_id}", headers=admin).json()
    math = next(s for s in subjects if s["name"] == "数学")
    teacher = _post(
        client,
        "/api/teachers",
        {
            "school_id": school["id"],
            "code": "t-sl-001",
            "name": "季晓燕",
            "subject_ids": [math["id"]],
            "is_backbone": True,
        },
        admin,
    )
    assert teacher["subject_ids"] == [math["id"]]
    student = _post(
        client,
        "/api/students",
        {"class_id": school_class["id"], "student_no": "2026001", "name": "周子涵"},
        admin,
    )
    account = _post(
        client,
        "/api/accounts",
        {
            "username": "t-sl-001",
            "display_name": "季晓燕",
            "role": "teacher",
            "password": "a-long-password",
            "teacher_id": teacher["id"],
        },
        admin,
    )
    assert account["school_id"] == school["id"] and account["alliance_id"] == alliance_id

    renamed = client.patch(f"/api/students/{student['id']}", json={"name": "周子悦"}, headers=admin)
    assert renamed.status_code == 200 and renamed.json()["name"] == "周子悦"
    assert client.delete(f"/api/students/{student['id']}", headers=admin).status_code == 204
    assert client.get(f"/api/students/{student['id']}", headers=admin).status_code == 404


def test_unknown_ids_are_404_with_a_chinese_message(client: TestClient) -> None:
    admin = bearer(client, "bureau")
    for path in ("/api/schools/999999", "/api/classes/999999", "/api/accounts/999999"):
        response = client.get(path, headers=admin)
        assert response.status_code == 404
        assert response.json()["error"]["message"].endswith("不存在")
    assert client.get("/api/no-such-thing", headers=admin).status_code == 404


def test_invalid_bodies_are_422_naming_the_field(client: TestClient) -> None:
    admin = bearer(client, "admin-wck")
    alliance_id = _me(client, admin)["alliance_id"]
    cases: list[tuple[str, dict[str, Any], str]] = [
        ("/api/schools", {"alliance_id": alliance_id}, "name"),
        ("/api/schools", {"alliance_id": alliance_id, "name": "甲", "colour": "red"}, "colour"),
        ("/api/schools", {"alliance_id": "abc", "name": "甲"}, "alliance_id"),
        ("/api/rooms", {"campus_id": 1, "code": "has space", "name": "x"}, "code"),
        ("/api/rooms", {"campus_id": 1, "code": "ok", "name": "x", "capacity": 0}, "capacity"),
        (
            "/api/classes",
            {"campus_id": 1, "grade_level": 13, "code": "c", "name": "x"},
            "grade_level",
        ),
        (
            "/api/terms",
            {
                "alliance_id": alliance_id,
                "name": "t",
                "start_date": "2026-13-01",
                "end_date": "2027-01-01",
            },
            "start_date",
        ),
    ]
    for path, body, field in cases:
        response = client.post(path, json=body, headers=admin)
        assert response.status_code == 422, (path, body, response.text)
        error = response.json()["error"]
        assert error["field"] == field, (path, error)
        assert "Traceback" not in response.text


def test_bell_schedules_refuse_overlapping_periods_and_double_claimed_weekdays(
    client: TestClient,
) -> None:
    admin = bearer(client, "admin-wck")
    campus = client.get("/api/campuses", headers=admin).json()[0]
    overlapping = client.post(
        "/api/bell-schedules",
        json={
            "campus_id": campus["id"],
            "name": "错",
            "weekdays": ["sat"],
            "periods": [{"start": "08:00", "end": "08:40"}, {"start": "08:30", "end": "09:10"}],
        },
        headers=admin,
    )
    assert overlapping.status_code == 422
    assert "第 2 节" in overlapping.json()["error"]["message"]
    backwards = client.post(
        "/api/bell-schedules",
        json={
            "campus_id": campus["id"],
            "name": "错",
            "weekdays": ["sat"],
            "periods": [{"start": "09:00", "end": "08:00"}],
        },
        headers=admin,
    )
    assert backwards.status_code == 422
    claimed = client.post(
        "/api/bell-schedules",
        json={
            "campus_id": campus["id"],
            "name": "周一重复",
            "weekdays": ["mon"],
            "periods": [{"start": "08:00", "end": "08:40"}],
        },
        headers=admin,
    )
    assert claimed.status_code == 422
    assert claimed.json()["error"]["field"] == "weekdays"


def test_duplicates_are_409_and_nothing_is_half_saved(client: TestClient) -> None:
    admin = bearer(client, "admin-wck")
    campus = client.get("/api/campuses", headers=admin).json()[0]
    duplicate = client.post(
        "/api/campuses",
        json={"school_id": campus["school_id"], "code": campus["code"], "name": "又一个"},
        headers=admin,
    )
    assert duplicate.status_code == 409
    assert "冲突" in duplicate.json()["error"]["message"]
    names = [c["name"] for c in client.get("/api/campuses", headers=admin).json()]
    assert "又一个" not in names


def test_references_across_schools_are_refused(client: TestClient) -> None:
    admin = bearer(client, "admin-wck")
    schools = client.get("/api/schools", headers=admin).json()
    first, second = schools[0], schools[1]
    campus_of_first = client.get(f"/api/campuses?school_id={first['id']}", headers=admin).json()[0]
    room_of_second = client.get("/api/rooms", headers=admin).json()
    foreign_room = next(r for r in room_of_second if r["campus_id"] != campus_of_first["id"])
    response = client.post(
        "/api/classes",
        json={
            "campus_id": campus_of_first["id"],
            "grade_level": 2,
            "code": "x-2-9",
            "name": "二(9)班",
            "home_room_id": foreign_room["id"],
        },
        headers=admin,
    )
    assert response.status_code == 422
    assert response.json()["error"]["field"] == "home_room_id"
    assert second["id"] != first["id"]


def test_term_calendar_rules(client: TestClient) -> None:
    admin = bearer(client, "admin-wck")
    alliance_id = _me(client, admin)["alliance_id"]
    base = {
        "alliance_id": alliance_id,
        "name": "2027学年第一学期",
        "start_date": "2027-09-01",
        "end_date": "2028-01-20",
    }
    makeup_without_day = client.post(
        "/api/terms",
        json={**base, "calendar_days": [{"day": "2027-09-26", "kind": "makeup"}]},
        headers=admin,
    )
    assert makeup_without_day.status_code == 422
    outside = client.post(
        "/api/terms",
        json={**base, "calendar_days": [{"day": "2028-02-01", "kind": "holiday"}]},
        headers=admin,
    )
    assert outside.status_code == 422
    created = client.post(
        "/api/terms",
        json={
            **base,
            "is_current": True,
            "calendar_days": [
                {"day": "2027-10-01", "kind": "holiday", "note": "国庆"},
                {"day": "2027-09-26", "kind": "makeup", "follows_weekday": "fri"},
            ],
        },
        headers=admin,
    )
    assert created.status_code == 201, created.text
    terms = client.get(f"/api/terms?alliance_id={alliance_id}", headers=admin).json()
    assert [t["name"] for t in terms if t["is_current"]] == ["2027学年第一学期"]


def test_lists_show_each_role_only_its_share(client: TestClient) -> None:
    bureau = bearer(client, "bureau")
    all_schools = client.get("/api/schools", headers=bureau).json()
    assert len({s["alliance_id"] for s in all_schools}) == 2

    principal = bearer(client, "principal-cy")
    me = _me(client, principal)
    schools = client.get("/api/schools", headers=principal).json()
    assert {s["alliance_id"] for s in schools} == {me["alliance_id"]}
    pupils = client.get("/api/students", headers=principal).json()
    classes = {c["id"]: c for c in client.get("/api/classes", headers=principal).json()}
    assert pupils and all(classes[p["class_id"]]["school_id"] == me["school_id"] for p in pupils)

    student = bearer(client, "student-cy-4-1")
    me = _me(client, student)
    assert [p["id"] for p in client.get("/api/students", headers=student).json()] == [
        me["student_id"]
    ]
    assert [c["id"] for c in client.get("/api/classes", headers=student).json()] == [me["class_id"]]
    assert [s["id"] for s in client.get("/api/schools", headers=student).json()] == [
        me["school_id"]
    ]
    assert [a["id"] for a in client.get("/api/accounts", headers=student).json()] == [me["id"]]


def test_nobody_grants_a_role_above_their_own(client: TestClient) -> None:
    principal = bearer(client, "principal-cy")
    me = _me(client, principal)
    for role, extra in (
        ("school_admin", {"school_id": me["school_id"]}),
        ("bureau", {}),
        ("alliance_admin", {"alliance_id": me["alliance_id"]}),
    ):
        response = client.post(
            "/api/accounts",
            json={
                "username": f"x-{role}",
                "display_name": "x",
                "role": role,
                "password": "a-long-password",
                **extra,
            },
            headers=principal,
        )
        assert response.status_code == 403, (role, response.text)


def test_a_school_admin_cannot_create_a_teacher_account_in_another_school(
    client: TestClient,
) -> None:
    principal = bearer(client, "principal-cy")
    me = _me(client, principal)
    teachers = client.get("/api/teachers", headers=principal).json()
    foreign = next(t for t in teachers if t["school_id"] != me["school_id"])
    response = client.post(
        "/api/accounts",
        json={
            "username": "sneaky",
            "display_name": "x",
            "role": "teacher",
            "password": "a-long-password",
            "teacher_id": foreign["id"],
        },
        headers=principal,
    )
    assert response.status_code == 403


def test_an_alliance_admin_sets_up_a_delivered_lesson(client: TestClient) -> None:
    admin = bearer(client, "admin-wck")
    alliance_id = _me(client, admin)["alliance_id"]
    term = client.get(f"/api/terms?alliance_id={alliance_id}", headers=admin).json()[0]
    subjects = {s["name"]: s["id"] for s in client.get("/api/subjects", headers=admin).json()}
    schools = {s["name"]: s["id"] for s in client.get("/api/schools", headers=admin).json()}
    classes = client.get("/api/classes", headers=admin).json()
    lead_class = next(
        c for c in classes if c["school_id"] == schools["王村口小学"] and c["grade_level"] == 2
    )
    remote_class = next(
        c for c in classes if c["school_id"] == schools["蔡源小学"] and c["grade_level"] == 2
    )
    teachers = client.get(f"/api/teachers?school_id={schools['王村口小学']}", headers=admin).json()
    lead_teacher, assistant = (
        teachers[0],
        client.get(f"/api/teachers?school_id={schools['蔡源小学']}", headers=admin).json()[0],
    )
    lead = _post(
        client,
        "/api/lessons",
        {
            "term_id": term["id"],
            "class_id": lead_class["id"],
            "subject_id": subjects["科学"],
            "teacher_id": lead_teacher["id"],
            "per_week": 2,
        },
        admin,
    )
    remote = _post(
        client,
        "/api/lessons",
        {
            "term_id": term["id"],
            "class_id": remote_class["id"],
            "subject_id": subjects["科学"],
            "teacher_id": assistant["id"],
            "per_week": 1,
        },
        admin,
    )
    mismatch = client.post(
        "/api/sync-groups",
        json={
            "term_id": term["id"],
            "code": "wck-sci-2",
            "kind": "delivered",
            "lead_lesson_id": lead["id"],
            "member_lesson_ids": [remote["id"]],
        },
        headers=admin,
    )
    assert mismatch.status_code == 422 and "每周节数必须相同" in mismatch.json()["error"]["message"]
    fixed = client.patch(f"/api/lessons/{remote['id']}", json={"per_week": 2}, headers=admin)
    assert fixed.status_code == 200
    group = _post(
        client,
        "/api/sync-groups",
        {
            "term_id": term["id"],
            "code": "wck-sci-2",
            "kind": "delivered",
            "lead_lesson_id": lead["id"],
            "member_lesson_ids": [remote["id"]],
        },
        admin,
    )
    assert group["member_lesson_ids"] == [remote["id"]]
    twice = client.post(
        "/api/sync-groups",
        json={
            "term_id": term["id"],
            "code": "x",
            "lead_lesson_id": lead["id"],
            "member_lesson_ids": [lead["id"]],
        },
        headers=admin,
    )
    assert twice.status_code == 422
    # A school admin runs lessons at the own school, but not the alliance's sync groups.
    principal = bearer(client, "principal-cy")
    assert (
        client.patch(
            f"/api/lessons/{remote['id']}", json={"prefer_morning": True}, headers=principal
        ).status_code
        == 200
    )
    assert (
        client.patch(
            f"/api/sync-groups/{group['id']}", json={"kind": "sync"}, headers=principal
        ).status_code
        == 403
    )
