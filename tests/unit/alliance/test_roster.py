"""Roster workbook: the template, and the all-or-nothing import into a real SQLite database."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from io import BytesIO
from pathlib import Path

import pytest
from openpyxl import Workbook, load_workbook
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from common.accounts.models import Account
from common.accounts.passwords import verify_password
from common.alliance.models import (
    Alliance,
    Campus,
    Grade,
    Room,
    School,
    SchoolClass,
    Student,
    Subject,
    Teacher,
)
from common.alliance.roster import import_roster, roster_template
from common.db import make_engine, session_factory
from common.errors import ImportRowError, ValidationFailedError
from common.migrate import upgrade_engine

ROOM = ["DJ-301", "三楼录播教室", "DJ", 50, "录播、多媒体"]
CLASS = ["DJ-3-1", "三(1)班", 3, "DJ", 45, "DJ-301"]
TEACHER = ["DJ-T001", "张红", "DJ", "语文、数学", "是", "否", 6, "13800000000"]
STUDENT = ["DJ-3-1", 2026001, "李明"]


@pytest.fixture
def session(tmp_path: Path) -> Iterator[Session]:
    engine = make_engine("sqlite:///" + str(tmp_path / "t.db"))
    upgrade_engine(engine)
    with session_factory(engine)() as db:
        yield db
    engine.dispose()


@pytest.fixture
def school(session: Session) -> School:
    alliance = Alliance(name="东街教联体")
    session.add(alliance)
    session.flush()
    own = School(alliance_id=alliance.id, name="东街小学")
    other = School(alliance_id=alliance.id, name="后江小学")
    session.add_all([own, other])
    session.flush()
    session.add_all(
        [
            Campus(school_id=own.id, code="DJ", name="东街校区"),
            Campus(school_id=own.id, code="XJ", name="西街校区"),
            Campus(school_id=other.id, code="HJ", name="后江校区"),
            Subject(alliance_id=alliance.id, name="语文", is_main=True),
            Subject(alliance_id=alliance.id, name="数学", is_main=True),
            Subject(alliance_id=alliance.id, name="音乐", is_scarce=True),
        ]
    )
    session.flush()
    hj = session.scalars(select(Campus).where(Campus.code == "HJ")).one()
    session.add_all(
        [
            Room(campus_id=hj.id, code="HJ-101", name="一楼教室"),
            Teacher(school_id=other.id, code="HJ-T001", name="王老师"),
        ]
    )
    session.commit()
    return own


def roster(
    rooms: Sequence[Sequence[object]] = (),
    classes: Sequence[Sequence[object]] = (),
    teachers: Sequence[Sequence[object]] = (),
    students: Sequence[Sequence[object]] = (),
) -> bytes:
    """The downloaded template, filled in the way a school admin would."""
    workbook = load_workbook(BytesIO(roster_template()))
    for title, rows in (("教室", rooms), ("班级", classes), ("教师", teachers), ("学生", students)):
        for values in rows:
            workbook[title].append(list(values))
    return save(workbook)


def save(workbook: Workbook) -> bytes:
    buffer = BytesIO()
    workbook.save(buffer)
    return buffer.getvalue()


def counts(session: Session) -> dict[str, int]:
    models = (Room, SchoolClass, Grade, Teacher, Student, Account)
    return {m.__name__: session.scalar(select(func.count()).select_from(m)) or 0 for m in models}


def test_template_has_the_four_sheets_with_headers_and_a_guide() -> None:
    workbook = load_workbook(BytesIO(roster_template()))

    assert workbook.sheetnames == ["说明", "教室", "班级", "教师", "学生"]
    headers = {
        title: [cell.value for cell in workbook[title][1]]
        for title in ("教室", "班级", "教师", "学生")
    }
    assert headers == {
        "教室": ["编号", "名称", "校区编号", "容纳人数", "功能"],
        "班级": ["编号", "名称", "年级", "校区编号", "人数", "教室编号"],
        "教师": [
            "工号",
            "姓名",
            "校区编号",
            "任教学科",
            "骨干教师",
            "学科带头人",
            "每日最多节数",
            "手机",
        ],
        "学生": ["班级编号", "学号", "姓名"],
    }
    teachers = workbook["教师"]
    assert teachers.freeze_panes == "A2"
    assert teachers.max_row == 1  # no example rows to delete before importing
    assert any(
        '"是,否"' in (rule.formula1 or "") for rule in teachers.data_validations.dataValidation
    )
    guide_text = " ".join(str(c.value) for row in workbook["说明"].iter_rows() for c in row)
    assert "录播" in guide_text and "三(1)班" in guide_text


def test_filled_in_template_imports_every_sheet(session: Session, school: School) -> None:
    data = roster(
        rooms=[ROOM, ["DJ-302", "302 教室", "DJ", None, None]],
        classes=[CLASS, ["DJ-3-2", "三(2)班", "3", "DJ", None, None]],
        teachers=[TEACHER, ["DJ-T002", "刘洋", "XJ", "音乐", None, "是", None, None]],
        students=[STUDENT, ["DJ-3-1", "2026002", "  王芳 "], ["DJ-3-2", 2026001, "赵磊"]],
    )

    result = import_roster(session, school_id=school.id, data=data)
    session.commit()

    assert (result.rooms.created, result.classes.created) == (2, 2)
    assert (result.teachers.created, result.students.created) == (2, 3)
    assert result.grades_created == 1
    rooms = {r.code: r for r in session.scalars(select(Room).where(Room.code.like("DJ-%")))}
    assert rooms["DJ-301"].features == ["sync", "多媒体"]
    assert rooms["DJ-301"].capacity == 50
    assert (rooms["DJ-302"].features, rooms["DJ-302"].capacity) == ([], 45)
    three_one = session.scalars(select(SchoolClass).where(SchoolClass.code == "DJ-3-1")).one()
    assert (three_one.grade.level, three_one.grade.name) == (3, "三年级")
    assert three_one.home_room_id == rooms["DJ-301"].id
    assert three_one.size == 45
    zhang = session.scalars(select(Teacher).where(Teacher.code == "DJ-T001")).one()
    assert sorted(s.name for s in zhang.subjects) == ["数学", "语文"]
    assert (zhang.is_backbone, zhang.is_subject_leader, zhang.max_lessons_per_day) == (
        True,
        False,
        6,
    )
    assert zhang.phone == "13800000000"
    liu = session.scalars(select(Teacher).where(Teacher.code == "DJ-T002")).one()
    assert (liu.is_backbone, liu.is_subject_leader, liu.max_lessons_per_day) == (False, True, None)
    students = session.scalars(
        select(Student).where(Student.class_id == three_one.id).order_by(Student.student_no)
    ).all()
    assert [(s.student_no, s.name) for s in students] == [("2026001", "李明"), ("2026002", "王芳")]


def test_reimport_updates_instead_of_duplicating(session: Session, school: School) -> None:
    import_roster(
        session,
        school_id=school.id,
        data=roster(rooms=[ROOM], classes=[CLASS], teachers=[TEACHER], students=[STUDENT]),
    )
    session.commit()
    before = counts(session)

    result = import_roster(
        session,
        school_id=school.id,
        data=roster(
            rooms=[["DJ-301", "三楼录播教室", "DJ", 60, ""]],
            classes=[CLASS],
            teachers=[["DJ-T001", "张红", "DJ", "音乐", "否", "是", None, None]],
            students=[["DJ-3-1", "2026001", "李明明"]],
        ),
    )
    session.commit()

    assert counts(session) == before
    assert (result.rooms.created, result.rooms.updated) == (0, 1)
    assert (result.students.created, result.students.updated) == (0, 1)
    room = session.scalars(select(Room).where(Room.code == "DJ-301")).one()
    assert (room.capacity, room.features) == (60, [])
    teacher = session.scalars(select(Teacher).where(Teacher.code == "DJ-T001")).one()
    assert [s.name for s in teacher.subjects] == ["音乐"]
    assert (teacher.is_backbone, teacher.is_subject_leader, teacher.phone) == (False, True, "")
    assert session.scalars(select(Student.name)).all() == ["李明明"]


def test_every_bad_row_is_reported_and_nothing_is_written(session: Session, school: School) -> None:
    before = counts(session)
    data = roster(
        rooms=[ROOM],
        classes=[CLASS, ["DJ-4-1", "四(1)班", 10, "DJ", 40, None]],
        teachers=[TEACHER, ["DJ-T002", "刘洋", "DJ", "语文、书法", "否", "否", None, None]],
        students=[STUDENT, ["DJ-3-1", "2026002", "王芳"], ["DJ-3-1", "2026001", "李明"]],
    )

    with pytest.raises(ImportRowError) as caught:
        import_roster(session, school_id=school.id, data=data)

    assert [(e["sheet"], e["row"], e["column"]) for e in caught.value.rows] == [
        ("班级", 3, "年级"),
        ("教师", 3, "任教学科"),
        ("学生", 4, "学号"),
    ]
    messages = [e["message"] for e in caught.value.rows]
    assert messages == [
        "年级必须是 1 到 9 的整数",
        "学科 书法 未在本联盟登记",
        "学号重复（第 2 行已有）",
    ]
    session.rollback()
    assert counts(session) == before


def test_references_and_codes_are_checked_against_the_database(
    session: Session, school: School
) -> None:
    data = roster(
        rooms=[
            ["HJ-101", "借用教室", "DJ", None, None],
            ["DJ-401", "四楼", "HJ", None, None],
            ["DJ-501", "五楼", "DJ", None, None],
        ],
        classes=[
            ["DJ-3-1", "三(1)班", "三年级", "DJ", None, "DJ-999"],
            ["XJ-3-1", "西三(1)班", 3, "XJ", None, "DJ-501"],
        ],
        teachers=[["HJ-T001", "王老师", "DJ", "", "", "", "", ""]],
        students=[["DJ-9-9", "1", "孙悟"]],
    )

    with pytest.raises(ImportRowError) as caught:
        import_roster(session, school_id=school.id, data=data)

    assert [(e["sheet"], e["row"], e["message"]) for e in caught.value.rows] == [
        ("教室", 2, "编号 HJ-101 已被其他学校使用"),
        ("教室", 3, "校区编号 HJ 不属于本校"),
        ("班级", 2, "教室编号 DJ-999 不存在（本表或系统中）"),
        ("班级", 3, "教室 DJ-501 在校区 DJ，不在校区 XJ"),
        ("教师", 2, "工号 HJ-T001 已被其他学校使用"),
        ("学生", 2, "班级编号 DJ-9-9 不存在（本表或系统中）"),
    ]


def test_student_may_reference_a_class_created_in_the_same_file(
    session: Session, school: School
) -> None:
    import_roster(session, school_id=school.id, data=roster(classes=[CLASS[:5]]))
    session.commit()

    result = import_roster(
        session,
        school_id=school.id,
        data=roster(classes=[["DJ-3-2", "三(2)班", 3, "DJ"]], students=[["DJ-3-2", "7", "周"]]),
    )

    assert (result.classes.created, result.students.created, result.grades_created) == (1, 1, 0)
    student = session.scalars(select(Student)).one()
    assert student.school_class.code == "DJ-3-2"


def test_not_an_xlsx_file_gets_a_clear_message(session: Session, school: School) -> None:
    for data in (b"name,code\n", b"PK\x03\x04 broken zip", b"\xd0\xcf\x11\xe0 old xls"):
        with pytest.raises(ValidationFailedError) as caught:
            import_roster(session, school_id=school.id, data=data)
        assert caught.value.message.startswith("文件不是有效的 Excel (.xlsx) 文件")


def test_missing_sheet_or_column_is_named(session: Session, school: School) -> None:
    workbook = load_workbook(BytesIO(roster_template()))
    workbook["教师"].delete_cols(2)  # 姓名
    with pytest.raises(ValidationFailedError) as caught:
        import_roster(session, school_id=school.id, data=save(workbook))
    assert caught.value.message == "工作表 教师 缺少列：姓名"

    del workbook["学生"]
    with pytest.raises(ValidationFailedError) as caught:
        import_roster(session, school_id=school.id, data=save(workbook))
    assert caught.value.message == "缺少工作表：学生"


def test_blank_rows_are_skipped_and_row_numbers_stay_excel_rows(
    session: Session, school: School
) -> None:
    workbook = load_workbook(BytesIO(roster_template()))
    students = workbook["学生"]
    students.append(STUDENT)
    students.append([None, "  ", None])
    students.append([])
    students.append(["DJ-3-1", "", "无学号"])
    with pytest.raises(ImportRowError) as caught:
        import_roster(session, school_id=school.id, data=save(workbook))
    assert [(e["row"], e["message"]) for e in caught.value.rows] == [
        (2, "班级编号 DJ-3-1 不存在（本表或系统中）"),
        (5, "学号不能为空"),
    ]


def test_accounts_are_created_once_with_the_default_password(
    session: Session, school: School
) -> None:
    data = roster(classes=[CLASS[:5]], teachers=[TEACHER], students=[STUDENT])

    first = import_roster(
        session, school_id=school.id, data=data, create_accounts=True, default_password="chushi2026"
    )
    again = import_roster(
        session, school_id=school.id, data=data, create_accounts=True, default_password="chushi2026"
    )

    assert (first.accounts_created, again.accounts_created) == (2, 0)
    accounts = {a.username: a for a in session.scalars(select(Account))}
    assert accounts["DJ-T001"].role == "teacher"
    assert accounts["DJ-3-1-2026001"].role == "student"
    assert verify_password(accounts["DJ-3-1-2026001"].password_hash, "chushi2026")


def test_oversized_file_is_refused(session: Session, school: School) -> None:
    with pytest.raises(ValidationFailedError, match="5 MB"):
        import_roster(session, school_id=school.id, data=b"PK\x03\x04" + bytes(5 * 1024 * 1024))


def test_more_than_20000_rows_is_refused(session: Session, school: School) -> None:
    data = roster(students=[["DJ-3-1", n, "学生"] for n in range(20_001)])
    with pytest.raises(ValidationFailedError, match="20000"):
        import_roster(session, school_id=school.id, data=data)
