"""Logging in and out, CSRF, rate limiting, API tokens, password change, device pairing."""

from __future__ import annotations

from datetime import timedelta

from fastapi.testclient import TestClient
from sqlalchemy import select

from common.accounts.models import Account
from common.alliance.models import ClassroomTerminal
from common.db import utcnow
from tests.conftest import DEMO_PASSWORD, DemoDatabase, bearer


def _login(client: TestClient, username: str, password: str = DEMO_PASSWORD) -> str:
    response = client.post("/api/auth/login", json={"username": username, "password": password})
    assert response.status_code == 200, response.text
    csrf: str = response.json()["csrf_token"]
    return csrf


def test_browser_login_sets_an_httponly_cookie_and_me_answers(client: TestClient) -> None:
    response = client.post(
        "/api/auth/login", json={"username": "admin-wck", "password": DEMO_PASSWORD}
    )
    assert response.status_code == 200
    cookie = response.headers["set-cookie"]
    assert "tongke_session=" in cookie and "HttpOnly" in cookie and "samesite=lax" in cookie.lower()
    me = client.get("/api/auth/me").json()
    assert me["account"]["username"] == "admin-wck"
    assert me["account"]["role"] == "alliance_admin"
    assert "password_hash" not in me["account"]


def test_wrong_password_and_unknown_user_get_the_same_clear_401(client: TestClient) -> None:
    wrong = client.post("/api/auth/login", json={"username": "admin-wck", "password": "nope-nope"})
    unknown = client.post("/api/auth/login", json={"username": "nobody", "password": "nope-nope"})
    assert wrong.status_code == unknown.status_code == 401
    assert (
        wrong.json()["error"]["message"] == unknown.json()["error"]["message"] == "用户名或密码错误"
    )


def test_repeated_failures_are_rate_limited_with_retry_after(client: TestClient) -> None:
    for _ in range(5):
        assert (
            client.post(
                "/api/auth/login", json={"username": "bureau", "password": "bad-guess"}
            ).status_code
            == 401
        )
    blocked = client.post("/api/auth/login", json={"username": "bureau", "password": DEMO_PASSWORD})
    assert blocked.status_code == 429
    assert int(blocked.headers["retry-after"]) > 0
    assert "尝试次数过多" in blocked.json()["error"]["message"]


def test_cookie_requests_that_change_things_need_the_csrf_token(client: TestClient) -> None:
    csrf = _login(client, "admin-wck")
    alliance_id = client.get("/api/auth/me").json()["account"]["alliance_id"]
    body = {"alliance_id": alliance_id, "name": "测试学科"}
    refused = client.post("/api/subjects", json=body)
    assert refused.status_code == 403
    assert "CSRF" in refused.json()["error"]["message"]
    forged = client.post("/api/subjects", json=body, headers={"X-CSRF-Token": "forged"})
    assert forged.status_code == 403
    accepted = client.post("/api/subjects", json=body, headers={"X-CSRF-Token": csrf})
    assert accepted.status_code == 201, accepted.text


def test_bearer_tokens_need_no_csrf_and_logout_revokes_them(client: TestClient) -> None:
    headers = bearer(client, "admin-wck")
    assert client.get("/api/schools", headers=headers).status_code == 200
    assert client.post("/api/auth/logout", headers=headers).status_code == 204
    again = client.get("/api/schools", headers=headers)
    assert again.status_code == 401
    assert again.json()["error"]["message"] == "登录已失效，请重新登录"


def test_no_credentials_is_401_in_json(client: TestClient) -> None:
    response = client.get("/api/schools")
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "unauthenticated"


def test_password_change_ends_other_sessions_but_not_this_one(client: TestClient) -> None:
    other = bearer(client, "principal-cy")
    this_csrf = _login(client, "principal-cy")
    weak = client.post(
        "/api/auth/password",
        json={"old_password": DEMO_PASSWORD, "new_password": "short"},
        headers={"X-CSRF-Token": this_csrf},
    )
    assert weak.status_code == 422 and weak.json()["error"]["field"] == "password"
    wrong_old = client.post(
        "/api/auth/password",
        json={"old_password": "not-the-old-one", "new_password": "a-new-long-password"},
        headers={"X-CSRF-Token": this_csrf},
    )
    assert wrong_old.status_code == 422 and wrong_old.json()["error"]["field"] == "old_password"
    changed = client.post(
        "/api/auth/password",
        json={"old_password": DEMO_PASSWORD, "new_password": "a-new-long-password"},
        headers={"X-CSRF-Token": this_csrf},
    )
    assert changed.status_code == 204
    assert client.get("/api/auth/me").status_code == 200  # this browser stays logged in
    # API tokens are not sessions: they keep working until revoked or expired.
    assert client.get("/api/auth/me", headers=other).status_code == 200
    fresh = TestClient(client.app)
    assert (
        fresh.post(
            "/api/auth/login", json={"username": "principal-cy", "password": DEMO_PASSWORD}
        ).status_code
        == 401
    )
    assert (
        fresh.post(
            "/api/auth/login", json={"username": "principal-cy", "password": "a-new-long-password"}
        ).status_code
        == 200
    )


def test_deactivated_accounts_cannot_log_in(client: TestClient, db: DemoDatabase) -> None:
    with db.sessions.begin() as session:
        account = session.scalars(select(Account).where(Account.username == "principal-dj")).one()
        account.is_active = False
    response = client.post(
        "/api/auth/login", json={"username": "principal-dj", "password": DEMO_PASSWORD}
    )
    assert response.status_code == 401


def test_a_classroom_terminal_pairs_once_with_a_short_code(
    client: TestClient, db: DemoDatabase
) -> None:
    admin = bearer(client, "admin-wck")
    me = client.get("/api/auth/me", headers=admin).json()["account"]
    with db.sessions() as session:
        terminal = session.scalars(select(ClassroomTerminal).order_by(ClassroomTerminal.id)).all()
        target = next(t for t in terminal if t.room.campus.school.alliance_id == me["alliance_id"])
        terminal_id, room_id = target.id, target.room_id
    issued = client.post(f"/api/terminals/{terminal_id}/pairing-code", headers=admin)
    assert issued.status_code == 200, issued.text
    code = issued.json()["code"]
    assert len(code) == 9 and code[4] == "-"

    paired = client.post("/api/devices/pair", json={"code": code.lower()})
    assert paired.status_code == 200, paired.text
    device = {"Authorization": f"Bearer {paired.json()['access_token']}"}
    assert paired.json()["room_id"] == room_id
    who = client.get("/api/auth/me", headers=device).json()["account"]
    assert who["role"] == "terminal" and who["terminal_id"] == terminal_id
    # The screen may read timetables, but not pupils.
    assert client.get(f"/api/timetable/week?room_id={room_id}", headers=device).status_code == 200
    assert client.get("/api/students", headers=device).status_code == 403

    reused = client.post("/api/devices/pair", json={"code": code})
    assert reused.status_code == 422
    assert "配对码无效或已过期" in reused.json()["error"]["message"]

    # Pairing again replaces the old screen: its token stops working.
    second = client.post(f"/api/terminals/{terminal_id}/pairing-code", headers=admin).json()["code"]
    assert client.post("/api/devices/pair", json={"code": second}).status_code == 200
    assert client.get("/api/auth/me", headers=device).status_code == 401


def test_an_expired_pairing_code_is_refused(client: TestClient, db: DemoDatabase) -> None:
    admin = bearer(client, "admin-wck")
    me = client.get("/api/auth/me", headers=admin).json()["account"]
    with db.sessions() as session:
        terminal_id = next(
            t.id
            for t in session.scalars(select(ClassroomTerminal))
            if t.room.campus.school.alliance_id == me["alliance_id"]
        )
    code = client.post(f"/api/terminals/{terminal_id}/pairing-code", headers=admin).json()["code"]
    with db.sessions.begin() as session:
        session.get_one(ClassroomTerminal, terminal_id).pairing_expires_at = utcnow() - timedelta(
            seconds=1
        )
    assert client.post("/api/devices/pair", json={"code": code}).status_code == 422


def test_terminals_and_students_cannot_issue_pairing_codes(client: TestClient) -> None:
    student = bearer(client, "student-cy-4-1")
    assert client.post("/api/terminals/1/pairing-code", headers=student).status_code == 403
    assert client.post("/api/terminals/999999/pairing-code", headers=student).status_code == 404
