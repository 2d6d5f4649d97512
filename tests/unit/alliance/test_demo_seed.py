"""The demo county: seeded into a real migrated SQLite database, then checked like a user would."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, time
from itertools import combinations

import pytest
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from common.accounts.models import ROLES, Account
from common.accounts.service import authenticate
from common.alliance.demo import DEMO_ALLIANCES, DemoSummary, seed_demo
from common.alliance.models import (
    Alliance,
    CalendarDay,
    Campus,
    Lesson,
    Room,
    School,
    SchoolClass,
    Student,
    SyncGroup,
    Teacher,
    Term,
    TimetableEntry,
    TravelTime,
)
from common.db import make_engine, session_scope
from common.errors import AuthenticationError, ConflictError
from common.migrate import upgrade_engine

PASSWORD = "demo-pass-2026"
DAYS = ("mon", "tue", "wed", "thu", "fri")


def _fresh_engine(path: str) -> Engine:
    engine = make_engine(f"sqlite:///{path}")
    upgrade_engine(engine)
    return engine


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Engine, DemoSummary]]:
    engine = _fresh_engine(str(tmp_path_factory.mktemp("demo") / "demo.db"))
    with session_scope(engine) as session:
        summary = seed_demo(session, password=PASSWORD)
    yield engine, summary
    engine.dispose()


@pytest.fixture
def session(seeded: tuple[Engine, DemoSummary]) -> Iterator[Session]:
    with Session(seeded[0]) as session:
        yield session
        session.rollback()


@pytest.fixture
def summary(seeded: tuple[Engine, DemoSummary]) -> DemoSummary:
    return seeded[1]


# -- reading the week back as wall-clock intervals, independently of the seeder


def _minutes(moment: time) -> int:
    return moment.hour * 60 + moment.minute


def _bell(campus: Campus, day: str) -> dict[int, tuple[int, int]]:
    matching = [b for b in campus.bell_schedules if day in b.weekdays]
    assert len(matching) == 1, f"{campus.name} has {len(matching)} bell schedules for {day}"
    return {p.number: (_minutes(p.start_time), _minutes(p.end_time)) for p in matching[0].periods}


@dataclass(frozen=True)
class Occurrence:
    lesson_id: int
    day: str
    period: int
    start: int
    end: int
    campus_id: int
    class_id: int
    teacher_id: int
    room: Room


def _week(session: Session) -> list[Occurrence]:
    week = []
    for entry in session.scalars(select(TimetableEntry)):
        lesson = entry.lesson
        campus = lesson.school_class.campus
        start, end = _bell(campus, entry.day)[entry.period]
        assert entry.room is not None
        week.append(
            Occurrence(
                lesson.id,
                entry.day,
                entry.period,
                start,
                end,
                campus.id,
                lesson.class_id,
                lesson.teacher_id,
                entry.room,
            )
        )
    return week


def _overlaps(a: Occurrence, b: Occurrence, gap: int = 0) -> bool:
    return a.day == b.day and a.start < b.end + gap and b.start < a.end + gap


# -- the county


def test_both_alliances_have_their_lead_school(session: Session) -> None:
    alliances = {a.name: a for a in session.scalars(select(Alliance))}
    assert set(alliances) == set(DEMO_ALLIANCES)
    group, rural = alliances["遂昌实验教育集团"], alliances["王村口老区教育联盟"]
    assert group.kind == "group" and rural.kind == "alliance"
    assert group.lead_school is not None and group.lead_school.name == "遂昌县实验小学"
    assert [c.name for c in group.lead_school.campuses] == ["东街校区", "后江校区"]
    assert rural.lead_school is not None and rural.lead_school.name == "王村口小学"
    assert {s.name for s in rural.schools} == {"王村口小学", "蔡源小学", "龙洋小学"}
    for alliance in alliances.values():
        assert alliance.lead_school in alliance.schools


def test_every_school_has_a_sync_room_with_a_terminal(session: Session) -> None:
    for school in session.scalars(select(School)):
        campus_ids = [c.id for c in school.campuses]
        rooms = session.scalars(select(Room).where(Room.campus_id.in_(campus_ids))).all()
        sync_rooms = [r for r in rooms if "sync" in r.features]
        assert sync_rooms, school.name
        for room in sync_rooms:
            assert room.terminal is not None
            assert room.terminal.name.endswith("录播教室终端")


def test_class_sizes_are_those_of_a_town_school_and_small_rural_schools(session: Session) -> None:
    for school_class in session.scalars(select(SchoolClass)):
        pupils = session.scalar(select(func.count()).where(Student.class_id == school_class.id))
        assert pupils == school_class.size
        if school_class.campus.code in ("dj", "hj"):
            assert 40 <= school_class.size <= 45
        else:
            assert 8 <= school_class.size <= 20


def test_bells_differ_between_campuses_and_on_monday(session: Session) -> None:
    campuses = session.scalars(select(Campus)).all()
    tuesday = {c.code: tuple(_bell(c, "tue").values()) for c in campuses}
    assert len(set(tuesday.values())) == len(campuses)
    east = next(c for c in campuses if c.code == "dj")
    assert _bell(east, "mon") != _bell(east, "tue")
    assert len(east.bell_schedules) == 2
    # Every teaching day has exactly one bell schedule on every campus.
    for campus in campuses:
        for day in DAYS:
            assert _bell(campus, day)


def test_travel_times_connect_every_pair_of_campuses(session: Session) -> None:
    codes = {c.id: c.code for c in session.scalars(select(Campus))}
    travel = {
        frozenset((codes[t.campus_a_id], codes[t.campus_b_id])): t.minutes
        for t in session.scalars(select(TravelTime))
    }
    assert travel[frozenset(("dj", "hj"))] == 10
    assert travel[frozenset(("wck", "cy"))] == 25
    assert travel[frozenset(("wck", "ly"))] == 30
    assert 60 <= travel[frozenset(("dj", "wck"))] <= 80
    assert len(travel) == len(list(combinations(codes, 2)))


def test_current_term_has_national_day_and_make_up_days(session: Session) -> None:
    terms = session.scalars(select(Term)).all()
    assert len(terms) == 2
    for term in terms:
        assert term.is_current and term.name == "2026学年第一学期"
        assert (term.start_date, term.end_date) == (date(2026, 9, 1), date(2027, 1, 22))
        days = {d.day: d for d in term.calendar_days}
        assert all(days[date(2026, 10, n)].kind == "holiday" for n in range(1, 8))
        assert days[date(2027, 1, 1)].kind == "holiday"
        makeups = {d.day: d.follows_weekday for d in days.values() if d.kind == "makeup"}
        assert makeups == {date(2026, 9, 27): "wed", date(2026, 10, 10): "thu"}
    assert session.scalar(select(func.count()).select_from(CalendarDay)) == 2 * len(days)


# -- the timetable


def test_every_lesson_has_its_weekly_count_in_a_fitting_room(session: Session) -> None:
    week = _week(session)
    by_lesson: dict[int, list[Occurrence]] = defaultdict(list)
    for occurrence in week:
        by_lesson[occurrence.lesson_id].append(occurrence)
    lessons = session.scalars(select(Lesson)).all()
    assert lessons
    for lesson in lessons:
        mine = by_lesson[lesson.id]
        assert len(mine) == lesson.per_week, lesson.id
        per_day: dict[str, int] = defaultdict(int)
        for occurrence in mine:
            per_day[occurrence.day] += 1
            assert occurrence.room.campus_id == lesson.school_class.campus_id
            assert set(lesson.room_features) <= set(occurrence.room.features)
            assert occurrence.room.capacity >= lesson.school_class.size
        assert max(per_day.values()) <= (lesson.max_per_day or 1)


def test_no_class_teacher_or_room_is_double_booked_by_wall_clock(session: Session) -> None:
    week = _week(session)
    travel = {
        frozenset((t.campus_a_id, t.campus_b_id)): t.minutes
        for t in session.scalars(select(TravelTime))
    }
    by_day: dict[str, list[Occurrence]] = defaultdict(list)
    for occurrence in week:
        by_day[occurrence.day].append(occurrence)
    for day_week in by_day.values():
        for a, b in combinations(day_week, 2):
            if a.class_id == b.class_id:
                assert not _overlaps(a, b), (a, b)
            if a.room.id == b.room.id:
                assert not _overlaps(a, b), (a, b)
            if a.teacher_id == b.teacher_id:
                gap = (
                    0
                    if a.campus_id == b.campus_id
                    else travel[frozenset((a.campus_id, b.campus_id))]
                )
                assert not _overlaps(a, b, gap), (a, b)


def test_itinerant_teachers_really_teach_at_several_campuses(session: Session) -> None:
    week = _week(session)
    travelling = [t for t in session.scalars(select(Teacher)) if t.campuses]
    assert {t.name for t in travelling} >= {"雷晓芬", "毛俊"}
    for teacher in travelling:
        taught_at = {o.campus_id for o in week if o.teacher_id == teacher.id}
        assert taught_at == {teacher.home_campus_id} | {c.id for c in teacher.campuses}


def test_sync_groups_meet_at_one_wall_clock_time_in_sync_rooms(session: Session) -> None:
    week = _week(session)
    by_lesson: dict[int, list[Occurrence]] = defaultdict(list)
    for occurrence in week:
        by_lesson[occurrence.lesson_id].append(occurrence)
    groups = session.scalars(select(SyncGroup)).all()
    assert {g.kind for g in groups} == {"sync", "delivered"}
    for group in groups:
        lessons = [group.lead_lesson, *(m.lesson for m in group.members)]
        assert len({lesson.school_class.campus_id for lesson in lessons}) == len(lessons)
        assert len({lesson.per_week for lesson in lessons}) == 1
        for day in DAYS:
            starts = [
                sorted(o.start for o in by_lesson[lesson.id] if o.day == day) for lesson in lessons
            ]
            assert len({len(s) for s in starts}) == 1, (group.code, day)
            for moment in zip(*starts, strict=True):
                assert max(moment) - min(moment) <= 5, (group.code, day, moment)
        for lesson in lessons:
            assert all("sync" in o.room.features for o in by_lesson[lesson.id])


def test_rural_schools_get_english_and_music_through_the_lead_school(session: Session) -> None:
    delivered = session.scalars(select(SyncGroup).where(SyncGroup.kind == "delivered")).all()
    assert {g.lead_lesson.subject.name for g in delivered} == {"英语", "音乐"}
    for group in delivered:
        assert group.lead_lesson.school_class.campus.code == "wck"
        for member in group.members:
            assert member.lesson.school_class.campus.code in ("cy", "ly")
            # The member's teacher is the local class teacher, who does not teach the subject.
            assert member.lesson.teacher.home_campus_id == member.lesson.school_class.campus_id
    for code in ("cy", "ly"):
        campus = session.scalar(select(Campus).where(Campus.code == code))
        assert campus is not None
        local = session.scalars(select(Teacher).where(Teacher.home_campus_id == campus.id))
        local_lessons = session.scalars(
            select(Lesson).where(Lesson.teacher_id.in_([t.id for t in local]))
        ).all()
        delivered_ids = {m.lesson_id for g in delivered for m in g.members}
        for lesson in local_lessons:
            if lesson.subject.name in ("英语", "音乐"):
                assert lesson.id in delivered_ids


def test_town_sync_group_links_the_two_campuses(session: Session) -> None:
    group = session.scalar(select(SyncGroup).where(SyncGroup.kind == "sync"))
    assert group is not None
    assert group.lead_lesson.subject.name == "数学"
    assert group.lead_lesson.school_class.code == "dj-4-1"
    assert [m.lesson.school_class.campus.code for m in group.members] == ["hj"]


# -- logins


def test_every_role_has_a_demo_login_that_works(session: Session, summary: DemoSummary) -> None:
    assert {login.role for login in summary.logins} == set(ROLES)
    for login in summary.logins:
        account = session.scalar(select(Account).where(Account.username == login.username))
        assert account is not None and account.role == login.role
        assert account.display_name == login.display_name
        if login.uses_password:
            assert (
                authenticate(session, username=login.username, password=PASSWORD).id == account.id
            )
        else:
            assert login.role == "terminal" and account.password_hash is None
            with pytest.raises(AuthenticationError):
                authenticate(session, username=login.username, password=PASSWORD)
    # The shared demo password is still checked.
    with pytest.raises(AuthenticationError):
        authenticate(session, username="admin-wck", password="wrong-password")


def test_logins_are_scoped_to_what_they_show(session: Session, summary: DemoSummary) -> None:
    usernames = {login.username for login in summary.logins}
    assert {"bureau", "admin-sy", "admin-wck", "principal-cy", "principal-dj"} <= usernames

    def account(username: str) -> Account:
        found = session.scalar(select(Account).where(Account.username == username))
        assert found is not None
        return found

    student = account("student-cy-4-1")
    school_class = session.get(SchoolClass, student.class_id)
    assert school_class is not None and school_class.code == "cy-4-1"
    assert school_class.campus.school.name == "蔡源小学"
    assert account("student-dj-4-1").class_id == session.scalar(
        select(SchoolClass.id).where(SchoolClass.code == "dj-4-1")
    )
    cy = session.scalar(select(School.id).where(School.name == "蔡源小学"))
    assert account("principal-cy").school_id == cy
    # Every sync lead teacher can log in.
    teacher_ids = {
        account(login.username).teacher_id for login in summary.logins if login.role == "teacher"
    }
    for group in session.scalars(select(SyncGroup)):
        assert group.lead_lesson.teacher_id in teacher_ids
    # Every classroom terminal has its device account.
    terminals = {
        account(login.username).terminal_id for login in summary.logins if login.role == "terminal"
    }
    sync_rooms = [r for r in session.scalars(select(Room)) if r.terminal is not None]
    assert terminals == {r.terminal.id for r in sync_rooms if r.terminal is not None}


def test_summary_counts_match_the_database(session: Session, summary: DemoSummary) -> None:
    def count(model: type) -> int:
        return session.scalar(select(func.count()).select_from(model)) or 0

    assert summary.schools == count(School) == 4
    assert summary.campuses == count(Campus) == 5
    assert summary.classes == count(SchoolClass) == 36
    assert summary.teachers == count(Teacher)
    assert summary.students == count(Student)
    assert summary.rooms == count(Room)
    assert summary.lessons == count(Lesson)
    assert summary.sync_groups == count(SyncGroup)
    assert summary.timetable_entries == count(TimetableEntry)
    assert summary.login("teacher-wang").role == "teacher"


# -- idempotence and transactions


def test_seeding_twice_is_refused(session: Session) -> None:
    with pytest.raises(ConflictError) as raised:
        seed_demo(session, password=PASSWORD)
    assert raised.value.message == "演示数据已存在"


def test_seeding_runs_in_the_callers_transaction(tmp_path) -> None:
    engine = _fresh_engine(str(tmp_path / "rolled-back.db"))
    try:
        with Session(engine) as session:
            seed_demo(session, password=PASSWORD)
            assert session.scalar(select(func.count()).select_from(Alliance)) == 2
            session.rollback()
        with Session(engine) as session:
            assert session.scalar(select(func.count()).select_from(Alliance)) == 0
            assert session.scalar(select(func.count()).select_from(Account)) == 0
    finally:
        engine.dispose()
