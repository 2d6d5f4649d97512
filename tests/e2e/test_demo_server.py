"""`tongke demo` as a newcomer runs it: a real uvicorn server, every demo login over HTTP."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.conftest import DEMO_PASSWORD
from tests.e2e.demo_process import running_demo

PASSWORD_LOGINS = {
    "bureau": "bureau",
    "admin-sy": "alliance_admin",
    "admin-wck": "alliance_admin",
    "principal-dj": "school_admin",
    "principal-cy": "school_admin",
    "teacher-wang": "teacher",
    "teacher-lei": "teacher",
    "student-cy-4-1": "student",
    "student-dj-4-1": "student",
}


@pytest.fixture(scope="module")
def demo_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with running_demo(tmp_path_factory.mktemp("demo")) as demo:
        yield demo.base
        output = demo.log_path.read_text()
    assert "演示账号" in output and "admin-wck" in output


@pytest.mark.parametrize(("username", "role"), sorted(PASSWORD_LOGINS.items()))
def test_every_demo_login_works_against_the_real_server(
    demo_server: str, username: str, role: str
) -> None:
    with httpx.Client(base_url=demo_server, follow_redirects=False) as browser:
        response = browser.post("/login", data={"username": username, "password": DEMO_PASSWORD})
        assert response.status_code == 303, response.text
        home = browser.get("/")
        assert home.status_code == 200 and "退出" in home.text
        me = browser.get("/api/auth/me").json()["account"]
        assert me["role"] == role


def test_a_demo_classroom_terminal_pairs_against_the_real_server(demo_server: str) -> None:
    with httpx.Client(base_url=demo_server) as client:
        token = client.post(
            "/api/auth/token", json={"username": "admin-wck", "password": DEMO_PASSWORD}
        ).json()
        admin = {"Authorization": f"Bearer {token['access_token']}"}
        terminal = client.get("/api/terminals", headers=admin).json()[0]
        code = client.post(f"/api/terminals/{terminal['id']}/pairing-code", headers=admin).json()[
            "code"
        ]
        paired = client.post("/api/devices/pair", json={"code": code}).json()
        device = {"Authorization": f"Bearer {paired['access_token']}"}
        me = client.get("/api/auth/me", headers=device).json()["account"]
        assert me["role"] == "terminal"
        week = client.get(f"/api/timetable/week?room_id={paired['room_id']}", headers=device).json()
        assert any(entry["sync"] for entry in week["entries"])
