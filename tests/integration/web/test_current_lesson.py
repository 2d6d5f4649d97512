"""The teacher's home offers the synchronized lesson of the moment in one click."""

from __future__ import annotations

from datetime import datetime

from fastapi.testclient import TestClient
from sqlalchemy import select

from common.accounts.models import Account
from common.alliance.models import Lesson, SyncGroup
from streaming.lifecycle import LOCAL_TIMEZONE, LessonClock
from tests.conftest import DEMO_PASSWORD, DemoDatabase


class FixedClock(LessonClock):
    def __init__(self, moment: datetime) -> None:
        self.moment = moment

    def now(self) -> datetime:
        return self.moment


def at(day: int, hour: int, minute: int) -> FixedClock:
    return FixedClock(datetime(2026, 9, day, hour, minute, tzinfo=LOCAL_TIMEZONE))


def lead_teacher(db: DemoDatabase, code: str) -> tuple[int, str]:
    """(sync group id, username of its lead teacher)."""
    with db.sessions() as session:
        group = session.scalars(select(SyncGroup).where(SyncGroup.code == code)).one()
        teacher_id = session.get_one(Lesson, group.lead_lesson_id).teacher_id
        username = session.scalars(
            select(Account.username).where(Account.teacher_id == teacher_id)
        ).first()
        assert username is not None, f"no demo account teaches {code}"
        return group.id, username


def home_at(client: TestClient, username: str, clock: FixedClock) -> str:
    client.app.state.lesson_clock = clock  # type: ignore[attr-defined]
    client.post("/login", data={"username": username, "password": DEMO_PASSWORD})
    page = client.get("/")
    assert page.status_code == 200
    return str(page.text)


def test_the_lead_teacher_joins_the_lesson_of_the_moment_in_one_click(
    sqlite_client: TestClient, sqlite_db: DemoDatabase
) -> None:
    group_id, username = lead_teacher(sqlite_db, "wck-en-3")
    # Monday 21 September 2026, 09:06: the room of wck-en-3 is open (the bell is at 09:10).
    page = home_at(sqlite_client, username, at(21, 9, 6))
    assert 'id="join-current"' in page
    assert f'href="/lessons/{group_id}"' in page
    assert "开始上课" in page


def test_before_the_room_opens_the_next_lesson_is_announced_with_its_countdown(
    sqlite_client: TestClient, sqlite_db: DemoDatabase
) -> None:
    group_id, username = lead_teacher(sqlite_db, "wck-en-3")
    page = home_at(sqlite_client, username, at(21, 8, 10))
    assert 'id="join-current"' not in page
    assert 'id="next-lesson"' in page
    assert "还有 60 分钟" in page
    assert f'href="/lessons/{group_id}"' in page


def test_nothing_is_offered_on_a_weekend_or_to_other_roles(
    sqlite_client: TestClient, sqlite_db: DemoDatabase
) -> None:
    _, username = lead_teacher(sqlite_db, "wck-en-3")
    saturday = home_at(sqlite_client, username, at(26, 9, 6))
    assert 'id="join-current"' not in saturday and 'id="next-lesson"' not in saturday
    sqlite_client.post("/logout")
    sqlite_client.cookies.clear()
    admin = home_at(sqlite_client, "admin-wck", at(21, 9, 6))
    assert 'id="join-current"' not in admin and 'id="next-lesson"' not in admin


def test_only_alliance_admins_get_the_sync_group_page(sqlite_client: TestClient) -> None:
    sqlite_client.post("/login", data={"username": "admin-sy", "password": DEMO_PASSWORD})
    page = sqlite_client.get("/admin/sync-groups")
    assert page.status_code == 200
    assert '<label for="lead">主讲课程</label>' in page.text
    assert 'id="sync-lessons"' in page.text and "每周" in page.text
    sqlite_client.post("/logout")
    sqlite_client.cookies.clear()
    sqlite_client.post("/login", data={"username": "teacher-ye", "password": DEMO_PASSWORD})
    assert "只有教联体管理员" in sqlite_client.get("/admin/sync-groups").text
