"""The admin pages that edit schools, campuses, rooms and 教学任务: who sees which controls."""

from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient

from tests.conftest import DEMO_PASSWORD, bearer


def _page(client: TestClient, username: str, path: str) -> tuple[int, str]:
    client.post("/login", data={"username": username, "password": DEMO_PASSWORD})
    response = client.get(path)
    return response.status_code, response.text


@pytest.mark.parametrize("path", ["/admin/schools", "/admin/rooms", "/admin/lessons"])
@pytest.mark.parametrize("username", ["teacher-ye", "student-dj-4-1"])
def test_teachers_and_pupils_are_refused_the_admin_pages(
    client: TestClient, username: str, path: str
) -> None:
    status, text = _page(client, username, path)
    assert status == 403
    assert "只有管理员和教育局" in text
    assert "data-delete" not in text


def test_an_alliance_admin_gets_forms_for_everything_of_the_alliance(client: TestClient) -> None:
    status, text = _page(client, "admin-wck", "/admin/schools")
    assert status == 200
    assert "新增学校" in text and "新增校区" in text
    assert 'data-delete="/api/campuses/' in text and 'data-delete="/api/schools/' in text
    assert "/admin/bells#campus-" in text
    assert "遂昌县实验小学" not in text  # the other alliance's school

    status, text = _page(client, "admin-wck", "/admin/rooms")
    assert status == 200 and "新增教室" in text and 'data-delete="/api/rooms/' in text
    assert 'data-list="features" value="sync"' in text

    status, text = _page(client, "admin-wck", "/admin/lessons")
    assert status == 200 and "新增教学任务" in text and 'data-delete="/api/lessons/' in text
    # Sync lessons are marked with their group's code.
    assert re.search(r'<span class="tag">[^<]+</span>', text)


def test_a_principal_edits_only_the_own_school(client: TestClient) -> None:
    status, text = _page(client, "principal-cy", "/admin/schools")
    assert status == 200
    assert "新增学校" not in text
    editable = set(re.findall(r'data-delete="/api/schools/(\d+)"', text))
    assert len(editable) == 1
    status, text = _page(client, "principal-cy", "/admin/lessons")
    assert status == 200
    campuses = re.findall(r'<option value="(\d+)"', text.split('id="campus-pick"')[1])
    editable_pages = 0
    for campus_id in dict.fromkeys(campuses):
        _, shown = _page(client, "principal-cy", f"/admin/lessons?campus_id={campus_id}")
        editable_pages += "新增教学任务" in shown
    assert editable_pages == 1


def test_the_bureau_reads_the_lessons_without_controls(client: TestClient) -> None:
    status, text = _page(client, "bureau", "/admin/lessons")
    assert status == 200 and "教学任务" in text
    assert "data-delete" not in text and "新增教学任务" not in text


def test_a_new_alliance_without_a_term_is_told_to_set_one_up(client: TestClient) -> None:
    bureau = bearer(client, "bureau")
    alliance = client.post("/api/alliances", json={"name": "新建教联体"}, headers=bureau).json()
    created = client.post(
        "/api/accounts",
        json={
            "username": "admin-new",
            "display_name": "新教联体管理员",
            "role": "alliance_admin",
            "password": DEMO_PASSWORD,
            "alliance_id": alliance["id"],
        },
        headers=bureau,
    )
    assert created.status_code == 201, created.text
    admin = bearer(client, "admin-new")
    school = client.post(
        "/api/schools", json={"alliance_id": alliance["id"], "name": "新学校"}, headers=admin
    ).json()
    campus = client.post(
        "/api/campuses",
        json={"school_id": school["id"], "code": "new-1", "name": "本部"},
        headers=admin,
    )
    assert campus.status_code == 201, campus.text
    status, text = _page(client, "admin-new", "/admin/lessons")
    assert status == 200
    assert "还没有学期" in text and "请先设置学期" in text
