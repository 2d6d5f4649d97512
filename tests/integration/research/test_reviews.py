"""听评课 on a recorded lesson: comments on the timeline, the rubric, scores, links, reports."""

from __future__ import annotations

from collections.abc import Callable
from io import BytesIO
from typing import Any

import pytest
from fastapi.testclient import TestClient
from openpyxl import load_workbook
from sqlalchemy import func, select

from common.alliance.models import Alliance
from research.models import ResearchGroup, ResearchSession
from research.review_models import Observation, ObservationScore, ReviewComment, Rubric
from tests.conftest import DemoDatabase, bearer
from tests.fixtures.recordings import DURATION_S, WCK_EN_3, make_recording

WCK = "王村口老区教育联盟"


def alliance_id(db: DemoDatabase, name: str = WCK) -> int:
    with db.sessions() as session:
        return session.scalars(select(Alliance.id).where(Alliance.name == name)).one()


def research_session_id(db: DemoDatabase, group_name: str) -> int:
    with db.sessions() as session:
        return (
            session.scalars(
                select(ResearchSession.id)
                .join(ResearchGroup, ResearchGroup.id == ResearchSession.group_id)
                .where(ResearchGroup.name == group_name)
                .order_by(ResearchSession.day)
            ).first()
            or 0
        )


def count(db: DemoDatabase, model: Any) -> int:
    with db.sessions() as session:
        return int(session.scalar(select(func.count()).select_from(model)) or 0)


Login = Callable[[str], dict[str, str]]


@pytest.fixture
def login(client: TestClient) -> Login:
    """Authorization headers per demo username, signed in once per test (hashing is slow)."""
    signed_in: dict[str, dict[str, str]] = {}

    def headers(username: str) -> dict[str, str]:
        if username not in signed_in:
            signed_in[username] = bearer(client, username)
        return signed_in[username]

    return headers


@pytest.fixture
def recording(db: DemoDatabase) -> int:
    return make_recording(db)


def comment(client: TestClient, headers: dict[str, str], recording: int, **body: Any) -> Any:
    response = client.post(f"/api/recordings/{recording}/comments", json=body, headers=headers)
    assert response.status_code == 201, response.text
    return response.json()


def test_teachers_comment_at_moments_and_reply_in_threads(
    client: TestClient, login: Login, recording: int
) -> None:
    wang, lan = login("teacher-wang"), login("teacher-lan")
    late = comment(client, wang, recording, body="远端学生跟读声音清楚", at_seconds=95.04)
    early = comment(client, lan, recording, body="导入用歌曲，蔡源的孩子很投入", at_seconds=5)
    assert late["at_seconds"] == 95.0 and late["author_name"] == "王丽娟"
    assert late["author_teacher_id"] is not None and late["can_edit"] and late["can_delete"]

    first = client.post(
        f"/api/review-comments/{early['id']}/replies", json={"body": "同意"}, headers=wang
    )
    assert first.status_code == 201, first.text
    assert first.json()["parent_id"] == early["id"]
    assert first.json()["at_seconds"] == 5.0 and first.json()["recording_id"] == recording
    # a reply to a reply stays in the same thread; so does one posted with parent_id
    second = client.post(
        f"/api/review-comments/{first.json()['id']}/replies", json={"body": "补充一点"}, headers=lan
    )
    assert second.json()["parent_id"] == early["id"]
    third = comment(client, lan, recording, body="再补充", parent_id=late["id"])
    assert third["parent_id"] == late["id"] and third["at_seconds"] == 95.0

    listed = client.get(f"/api/recordings/{recording}/comments", headers=wang).json()
    assert [c["id"] for c in listed] == [early["id"], late["id"]]  # the lesson's order
    assert [r["body"] for r in listed[0]["replies"]] == ["同意", "补充一点"]
    assert [r["body"] for r in listed[1]["replies"]] == ["再补充"]
    # as seen by 王丽娟: her own reply is hers to edit, 蓝美玲's is not
    assert [r["can_edit"] for r in listed[0]["replies"]] == [True, False]


def test_who_may_read_and_write_comments(
    client: TestClient, login: Login, recording: int, db: DemoDatabase
) -> None:
    comment(client, login("teacher-wang"), recording, body="好", at_seconds=1)
    url = f"/api/recordings/{recording}/comments"
    # the pupil may watch this lesson, but never sees 评课
    student = login("student-cy-4-1")
    assert client.get(f"/api/recordings/{recording}", headers=student).status_code == 200
    refused = client.get(url, headers=student)
    assert refused.status_code == 403 and refused.json()["error"]["message"] == (
        "没有权限查看此评课记录"
    )
    assert client.post(url, json={"body": "x", "at_seconds": 1}, headers=student).status_code == 403
    # another alliance's teacher and pupil: not even the recording
    for username in ("teacher-ye", "student-dj-4-1"):
        assert client.get(url, headers=login(username)).status_code == 403
    # the bureau reads across alliances but does not take part
    bureau = login("bureau")
    assert len(client.get(url, headers=bureau).json()) == 1
    written = client.post(url, json={"body": "x", "at_seconds": 1}, headers=bureau)
    assert written.status_code == 403
    assert written.json()["error"]["message"] == "只有本教联体的教师和管理员可以参与评课"
    # the member school's principal reads and takes part (the lesson is shown to her school)
    comment(client, login("principal-cy"), recording, body="远端组织有序", at_seconds=2)
    assert client.get(url).status_code == 401
    assert count(db, ReviewComment) == 2


def test_authors_edit_and_moderators_delete(
    client: TestClient, login: Login, recording: int, db: DemoDatabase
) -> None:
    wang, lei = login("teacher-wang"), login("teacher-lei")
    mine = comment(client, wang, recording, body="初稿", at_seconds=10)
    client.post(f"/api/review-comments/{mine['id']}/replies", json={"body": "回复"}, headers=lei)
    edited = client.patch(f"/api/review-comments/{mine['id']}", json={"body": "定稿"}, headers=wang)
    assert edited.status_code == 200 and edited.json()["body"] == "定稿"
    assert edited.json()["edited_at"] is not None
    for username in ("teacher-lei", "admin-wck"):
        other = client.patch(
            f"/api/review-comments/{mine['id']}",
            json={"body": "改"},
            headers=login(username),
        )
        assert other.status_code == 403 and other.json()["error"]["message"] == "只能修改自己的评语"
    # a fellow teacher, and the principal of another school of the alliance, may not delete
    for username in ("teacher-lei", "principal-cy", "student-cy-4-1"):
        response = client.delete(f"/api/review-comments/{mine['id']}", headers=login(username))
        assert response.status_code == 403, username
    # the alliance admin may, and the thread goes with its replies
    deleted = client.delete(f"/api/review-comments/{mine['id']}", headers=login("admin-wck"))
    assert deleted.status_code == 204
    assert count(db, ReviewComment) == 0
    assert client.delete(f"/api/review-comments/{mine['id']}", headers=wang).status_code == 404
    # the bureau moderates anywhere; authors delete their own
    for username in ("bureau", "teacher-wang"):
        again = comment(client, wang, recording, body="再评", at_seconds=3)
        response = client.delete(f"/api/review-comments/{again['id']}", headers=login(username))
        assert response.status_code == 204, username


def test_bad_comments_are_refused_and_nothing_is_saved(
    client: TestClient, login: Login, recording: int, db: DemoDatabase
) -> None:
    wang = login("teacher-wang")
    url = f"/api/recordings/{recording}/comments"
    other = make_recording(db, WCK_EN_3)
    elsewhere = comment(client, wang, other, body="另一节课", at_seconds=1)
    cases: list[tuple[dict[str, Any], int, str, str]] = [
        ({"body": "   ", "at_seconds": 1}, 422, "body", "评语不能为空"),
        ({"body": "长" * 2001, "at_seconds": 1}, 422, "body", "评语不能超过 2000 字"),
        ({"body": "好", "at_seconds": -1}, 422, "at_seconds", "时间点不能为负数"),
        (
            {"body": "好", "at_seconds": DURATION_S + 5},
            422,
            "at_seconds",
            "超出录像时长（录像共 02:00）",
        ),
        ({"body": "好"}, 422, "at_seconds", "请指定评语所在的时间点"),
        ({"body": "好", "parent_id": elsewhere["id"]}, 422, "parent_id", "不属于这段录像"),
        ({"body": "好", "parent_id": 999999}, 422, "parent_id", "不存在"),
    ]
    for body, status, field, message in cases:
        response = client.post(url, json=body, headers=wang)
        assert response.status_code == status, (body, response.text)
        error = response.json()["error"]
        assert error["field"] == field and message in error["message"], (body, error)
    assert count(db, ReviewComment) == 1  # only the comment on the other lesson
    # exactly at the end is fine
    assert comment(client, wang, recording, body="结尾", at_seconds=DURATION_S)["at_seconds"] == 120
    # a lesson still being recorded has no timeline yet
    live = make_recording(db, 6, status="recording")
    refused = client.post(
        f"/api/recordings/{live}/comments", json={"body": "好", "at_seconds": 1}, headers=wang
    )
    assert refused.status_code == 409 and "尚未生成" in refused.json()["error"]["message"]
    edited = client.patch(
        f"/api/review-comments/{elsewhere['id']}", json={"body": ""}, headers=wang
    )
    assert edited.status_code == 422
    assert client.get(f"/api/recordings/{other}/comments", headers=wang).json()[0]["body"] == (
        "另一节课"
    )


def test_the_rubric_is_the_alliance_admins_and_versions_on_save(
    client: TestClient, login: Login, db: DemoDatabase
) -> None:
    wck = alliance_id(db)
    with db.sessions() as session:  # the demo seeds each alliance's default rubric
        seeded = session.scalars(select(Rubric).where(Rubric.alliance_id == wck)).all()
        assert [(r.version, len(r.criteria)) for r in seeded] == [(1, 5)]
    url = f"/api/alliances/{wck}/rubric"
    default = client.get(url, headers=login("teacher-wang"))
    assert default.status_code == 200
    assert [c["name"] for c in default.json()["criteria"]] == [
        "教学目标", "教学过程", "师生互动", "信息技术融合", "教学效果",
    ]  # fmt: skip
    assert sum(c["max_score"] for c in default.json()["criteria"]) == 100
    assert client.get(url, headers=login("student-cy-4-1")).status_code == 403
    assert client.get(url, headers=login("teacher-ye")).status_code == 403
    assert client.get(url, headers=login("bureau")).status_code == 200
    assert client.get("/api/alliances/999999/rubric", headers=login("bureau")).status_code == 404

    rubric = {
        "name": "专递课堂评价表",
        "criteria": [
            {"name": "教学设计", "description": "目标与环节", "max_score": 40, "weight": 2},
            {"name": "远端互动", "max_score": 10},
        ],
    }
    for username in ("teacher-wang", "principal-cy", "bureau", "admin-sy"):
        refused = client.put(url, json=rubric, headers=login(username))
        assert refused.status_code == 403, username
    admin = login("admin-wck")
    saved = client.put(url, json=rubric, headers=admin)
    assert saved.status_code == 200, saved.text
    assert saved.json()["version"] == default.json()["version"] + 1
    assert [(c["name"], c["position"]) for c in saved.json()["criteria"]] == [
        ("教学设计", 1), ("远端互动", 2),
    ]  # fmt: skip

    bad: list[tuple[list[dict[str, Any]], str]] = [
        (
            [{"name": "互动", "max_score": 10}, {"name": " 互动 ", "max_score": 5}],
            "评分项名称重复：互动",
        ),
        ([{"name": "互动", "max_score": 0}], "满分必须大于 0"),
        ([{"name": "互动", "max_score": -5}], "满分必须大于 0"),
        ([{"name": "互动", "max_score": 10, "weight": 0}], "权重必须大于 0"),
        ([{"name": "", "max_score": 10}], "评分项名称不能为空"),
        ([], "评价表至少需要一个评分项"),
    ]
    for criteria, message in bad:
        response = client.put(url, json={"criteria": criteria}, headers=admin)
        assert response.status_code == 422, criteria
        assert message in response.json()["error"]["message"], response.json()
    with db.sessions() as session:
        versions = session.scalars(select(Rubric.version).where(Rubric.alliance_id == wck)).all()
    assert sorted(versions) == [1, 2]
    assert client.get(url, headers=admin).json()["name"] == "专递课堂评价表"


def test_scores_are_weighted_and_a_resubmission_replaces_them(
    client: TestClient, login: Login, recording: int, db: DemoDatabase
) -> None:
    wck = alliance_id(db)
    admin = login("admin-wck")
    rubric = client.put(
        f"/api/alliances/{wck}/rubric",
        json={
            "criteria": [
                {"name": "教学设计", "max_score": 40, "weight": 3},
                {"name": "远端互动", "max_score": 10, "weight": 1},
            ]
        },
        headers=admin,
    ).json()
    design, interaction = (c["id"] for c in rubric["criteria"])
    url = f"/api/recordings/{recording}/evaluations/mine"
    wang, lan = login("teacher-wang"), login("teacher-lan")

    def scores(a: float, b: float) -> list[dict[str, float]]:
        return [{"criterion_id": design, "score": a}, {"criterion_id": interaction, "score": b}]

    first = client.put(url, json={"scores": scores(30, 5), "remark": "设计扎实"}, headers=wang)
    assert first.status_code == 200, first.text
    # (3 × 30/40 + 1 × 5/10) / 4 × 100
    assert first.json()["overall"] == 68.8
    again = client.put(url, json={"scores": scores(40, 10), "remark": ""}, headers=wang)
    assert again.json()["overall"] == 100 and again.json()["id"] == first.json()["id"]
    client.put(url, json={"scores": scores(20, 2.5)}, headers=lan)
    assert count(db, Observation) == 2 and count(db, ObservationScore) == 4

    bad: list[tuple[list[dict[str, float]], int, str]] = [
        (scores(41, 5), 422, "“教学设计”的得分应在 0 到 40 之间"),
        (scores(10, -1), 422, "“远端互动”的得分应在 0 到 10 之间"),
        ([{"criterion_id": design, "score": 10}], 422, "缺少评分项：远端互动"),
        ([*scores(1, 1), {"criterion_id": 999999, "score": 1}], 422, "未知的评分项：999999"),
        ([*scores(1, 1), {"criterion_id": design, "score": 2}], 422, "重复"),
    ]
    for body, status, message in bad:
        response = client.put(url, json={"scores": body}, headers=wang)
        assert response.status_code == status, response.text
        assert message in response.json()["error"]["message"], response.json()
    summary = client.get(f"/api/recordings/{recording}/evaluations", headers=wang).json()
    assert summary["mine"]["overall"] == 100  # untouched by the refused submissions
    assert [a["average"] for a in summary["averages"]] == [30, 6.25]
    # 蓝美玲: (3 × 20/40 + 1 × 2.5/10) / 4 × 100 = 43.75 → 43.8
    assert [o["overall"] for o in summary["observations"]] == [100, 43.8]
    assert summary["overall_average"] == 71.9
    assert summary["can_take_part"] is True

    # the rubric changes while a form is open: the old ids are stale, not unknown
    client.put(
        f"/api/alliances/{wck}/rubric",
        json={"criteria": [{"name": "整体", "max_score": 10}]},
        headers=admin,
    )
    stale = client.put(url, json={"scores": scores(1, 1)}, headers=wang)
    assert stale.status_code == 409 and "请刷新页面后重新评分" in stale.json()["error"]["message"]
    summary = client.get(f"/api/recordings/{recording}/evaluations", headers=wang).json()
    assert [c["name"] for c in summary["rubric"]["criteria"]] == ["整体"]
    assert len(summary["observations"]) == 2  # earlier scores keep their version

    for username in ("student-cy-4-1", "bureau", "teacher-ye"):
        headers = login(username)
        response = client.put(url, json={"scores": scores(1, 1)}, headers=headers)
        assert response.status_code == 403, username
    bureau = client.get(f"/api/recordings/{recording}/evaluations", headers=login("bureau"))
    assert bureau.status_code == 200 and bureau.json()["can_take_part"] is False


def test_a_research_session_reviews_the_lesson(
    client: TestClient, login: Login, recording: int, db: DemoDatabase
) -> None:
    english = research_session_id(db, "王村口联盟英语教研组")
    maths = research_session_id(db, "实验集团数学教研组")
    url = f"/api/recordings/{recording}/research-sessions"
    wang, lei = login("teacher-wang"), login("teacher-lei")
    linked = client.post(url, json={"research_session_id": english}, headers=wang)
    assert linked.status_code == 201, linked.text
    assert [s["research_session_id"] for s in linked.json()] == [english]
    assert linked.json()[0]["group_name"] == "王村口联盟英语教研组"
    twice = client.post(url, json={"research_session_id": english}, headers=lei)
    assert (
        twice.status_code == 409 and twice.json()["error"]["message"] == "这节课已关联到该教研活动"
    )
    # another alliance's session is not theirs to read, let alone link
    assert client.post(url, json={"research_session_id": maths}, headers=wang).status_code == 403
    assert client.post(url, json={"research_session_id": 999999}, headers=wang).status_code == 404
    assert client.get(url, headers=login("student-cy-4-1")).status_code == 403
    summary = client.get(f"/api/recordings/{recording}/evaluations", headers=lei).json()
    assert [s["research_session_id"] for s in summary["sessions"]] == [english]
    assert client.delete(f"{url}/{english}", headers=lei).status_code == 403
    assert client.delete(f"{url}/{english}", headers=wang).status_code == 204
    assert client.get(url, headers=wang).json() == []
    assert client.delete(f"{url}/{english}", headers=wang).status_code == 404


def test_the_evaluation_report_exports_as_xlsx_and_pdf(
    client: TestClient, login: Login, recording: int, db: DemoDatabase
) -> None:
    wang, lan = login("teacher-wang"), login("teacher-lan")
    rubric = client.get(f"/api/alliances/{alliance_id(db)}/rubric", headers=wang).json()
    full = [{"criterion_id": c["id"], "score": c["max_score"]} for c in rubric["criteria"]]
    client.put(
        f"/api/recordings/{recording}/evaluations/mine",
        json={"scores": full, "remark": "示范课"},
        headers=wang,
    )
    half = [{"criterion_id": c["id"], "score": c["max_score"] / 2} for c in rubric["criteria"]]
    client.put(f"/api/recordings/{recording}/evaluations/mine", json={"scores": half}, headers=lan)
    first = comment(client, wang, recording, body="导入自然", at_seconds=65)
    client.post(f"/api/review-comments/{first['id']}/replies", json={"body": "赞同"}, headers=lan)

    url = f"/api/recordings/{recording}/evaluation-report"
    xlsx = client.get(f"{url}?format=xlsx", headers=wang)
    assert xlsx.status_code == 200, xlsx.text
    assert "evaluation-" in xlsx.headers["content-disposition"]
    book = load_workbook(BytesIO(xlsx.content))
    scores = [list(row) for row in book["评分"].iter_rows(values_only=True)]
    header = next(row for row in scores if row and row[0] == "评课人")
    assert str(header[1]).startswith("教学目标（满分 15")
    rows = {row[0]: row for row in scores if row and row[0] in ("王丽娟", "蓝美玲", "平均")}
    assert rows["王丽娟"][1:7] == [15, 25, 20, 15, 25, 100]
    assert rows["蓝美玲"][6] == 50
    assert rows["平均"][1] == 11.25 and rows["平均"][6] == 75
    comments = [list(row) for row in book["评语"].iter_rows(values_only=True)]
    assert comments[1:] == [
        ["01:05", "王丽娟", "导入自然", "评语"],
        [None, "蓝美玲", "赞同", "回复"],
    ]

    pdf = client.get(f"{url}?format=pdf", headers=wang)
    assert pdf.status_code == 200 and pdf.headers["content-type"] == "application/pdf"
    assert pdf.content.startswith(b"%PDF") and b"STSong-Light" in pdf.content
    assert len(pdf.content) > 2000
    # after the rubric changes, each version keeps its own table
    client.put(
        f"/api/alliances/{alliance_id(db)}/rubric",
        json={"criteria": [{"name": "整体", "max_score": 10}]},
        headers=login("admin-wck"),
    )
    book = load_workbook(BytesIO(client.get(f"{url}?format=xlsx", headers=wang).content))
    titles = [row[0] for row in book["评分"].iter_rows(values_only=True) if row and row[0]]
    assert "课堂教学评价表（第 2 版）" in titles and "课堂教学评价表（第 1 版）" in titles
    assert titles.index("课堂教学评价表（第 2 版）") < titles.index("（尚无评分）")
    assert client.get(f"{url}?format=doc", headers=wang).status_code == 422
    assert client.get(f"{url}?format=pdf", headers=login("student-cy-4-1")).status_code == 403
    assert client.get(f"{url}?format=xlsx", headers=login("bureau")).status_code == 200


def test_the_replay_pages(client: TestClient, recording: int, db: DemoDatabase) -> None:
    def sign_in(username: str) -> None:
        client.cookies.clear()
        response = client.post(
            "/login", data={"username": username, "password": "tongke-demo"}, follow_redirects=False
        )
        assert response.status_code == 303

    sign_in("teacher-wang")
    listed = client.get("/replays")
    assert listed.status_code == 200 and f'href="/replays/{recording}"' in listed.text
    assert "录像回放" in listed.text
    page = client.get(f"/replays/{recording}")
    assert page.status_code == 200
    assert 'id="comments-card"' in page.text and 'id="score-form"' in page.text
    assert f"/api/recordings/{recording}/media?rendition=mp4" in page.text
    assert 'data-duration="120.0"' in page.text
    assert "王村口联盟英语教研组" in page.text  # sessions it may be linked to

    sign_in("student-cy-4-1")
    page = client.get(f"/replays/{recording}")
    assert page.status_code == 200 and 'id="video"' in page.text
    assert "comments-card" not in page.text and "score-form" not in page.text
    assert 'data-can-review="no"' in page.text

    sign_in("teacher-ye")
    assert client.get(f"/replays/{recording}").status_code == 403
    assert f"/replays/{recording}" not in client.get("/replays").text
    client.cookies.clear()
    assert client.get(f"/replays/{recording}", follow_redirects=False).status_code == 303
