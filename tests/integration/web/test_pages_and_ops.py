"""Browser pages, health, metrics, and errors that never leak a traceback."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from streaming.ice import turn_credential
from tests.conftest import DEMO_PASSWORD, DemoDatabase, bearer, make_test_app


def test_the_login_page_is_chinese_and_labelled(client: TestClient) -> None:
    page = client.get("/login")
    assert page.status_code == 200
    assert '<html lang="zh-CN">' in page.text
    assert '<label for="username">用户名</label>' in page.text
    assert '<label for="password">密码</label>' in page.text


def test_a_teacher_logs_in_through_the_form_and_sees_the_week(client: TestClient) -> None:
    assert client.get("/", follow_redirects=False).headers["location"] == "/login"
    bad = client.post("/login", data={"username": "teacher-wang", "password": "wrong-password"})
    assert bad.status_code == 401 and "用户名或密码错误" in bad.text
    ok = client.post(
        "/login",
        data={"username": "teacher-wang", "password": DEMO_PASSWORD},
        follow_redirects=False,
    )
    assert ok.status_code == 303 and ok.headers["location"] == "/"
    home = client.get("/")
    assert home.status_code == 200
    assert "本周课表" in home.text and "周一" in home.text
    assert "同步课堂" in home.text or "专递课堂" in home.text


def test_logout_needs_the_pages_csrf_token(client: TestClient) -> None:
    client.post("/login", data={"username": "principal-cy", "password": DEMO_PASSWORD})
    home = client.get("/").text
    token = home.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]
    client.post("/logout", data={"csrf_token": "forged"})
    assert client.get("/", follow_redirects=False).status_code == 200  # still logged in
    out = client.post("/logout", data={"csrf_token": token}, follow_redirects=False)
    assert out.headers["location"] == "/login"
    assert client.get("/api/auth/me").status_code == 401


@pytest.mark.parametrize(
    "username",
    [
        "bureau",
        "admin-sy",
        "admin-wck",
        "principal-cy",
        "principal-dj",
        "student-cy-4-1",
        "student-dj-4-1",
    ],
)
def test_every_demo_login_reaches_its_home_page(client: TestClient, username: str) -> None:
    client.post("/login", data={"username": username, "password": DEMO_PASSWORD})
    home = client.get("/")
    assert home.status_code == 200, home.text
    assert "退出" in home.text


def test_healthz_and_metrics(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    bearer(client, "bureau")
    client.get("/api/schools/999999")
    metrics = client.get("/metrics").text
    assert (
        'tongke_http_requests_total{method="POST",route="/api/auth/token",status="200"}' in metrics
    )
    # Routes are labelled by template, so ids never blow up the label set.
    assert 'route="/api/schools/{row_id}",status="401"' in metrics


def test_healthz_says_503_when_the_database_is_gone(
    sqlite_db: DemoDatabase, tmp_path: Path
) -> None:
    sqlite_db.url = "postgresql+psycopg://nobody@127.0.0.1:1/none"  # nothing listens there
    broken = make_test_app(sqlite_db, tmp_path)
    with TestClient(broken) as client:
        response = client.get("/healthz")
    assert response.status_code == 503
    assert response.json()["error"]["message"] == "数据库不可用"


def test_an_unexpected_crash_is_a_plain_500_without_traceback(app: FastAPI) -> None:
    @app.get("/api/_boom")
    def boom() -> None:
        raise RuntimeError("secret internals")

    with TestClient(app, raise_server_exceptions=False) as client:
        response = client.get("/api/_boom")
    assert response.status_code == 500
    assert response.json()["error"]["message"] == "服务器内部错误，已记录，请稍后再试"
    assert "secret internals" not in response.text and "Traceback" not in response.text


def test_malformed_json_is_a_clear_422(client: TestClient) -> None:
    headers = bearer(client, "admin-wck") | {"Content-Type": "application/json"}
    response = client.post("/api/schools", content=b"{not json", headers=headers)
    assert response.status_code == 422
    assert response.json()["error"]["message"].startswith("请求数据无效")


def test_ice_servers_give_signed_in_staff_a_turn_credential_of_their_own(
    sqlite_db: DemoDatabase, tmp_path: Path
) -> None:
    secret = "turn-secret-for-the-page-tests-0123456789"
    app = make_test_app(
        sqlite_db,
        tmp_path,
        ice_servers=[{"urls": ["stun:203.0.113.10:3478"]}],
        turn_urls=["turn:203.0.113.10:3478?transport=udp"],
        turn_secret=secret,
    )
    with TestClient(app) as client:
        assert client.get("/api/webrtc/ice-servers").status_code == 401
        teacher = client.get("/api/webrtc/ice-servers", headers=bearer(client, "teacher-wang"))
        other = client.get("/api/webrtc/ice-servers", headers=bearer(client, "teacher-lei"))
        pupil = client.get("/api/webrtc/ice-servers", headers=bearer(client, "student-cy-4-1"))
    assert teacher.status_code == 200 and teacher.headers["cache-control"] == "no-store"
    stun, turn = teacher.json()
    assert stun == {"urls": ["stun:203.0.113.10:3478"]}
    assert turn["urls"] == ["turn:203.0.113.10:3478?transport=udp"]
    assert turn["credential"] == turn_credential(secret, turn["username"])
    # each account its own name (coturn's log and per-user quota), no static password shared
    assert other.json()[1]["username"].split(":")[1] != turn["username"].split(":")[1]
    assert pupil.json() == [stun]
