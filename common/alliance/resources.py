"""The admin API's resources: how each table reaches its scope, and how rows are made and edited."""

from __future__ import annotations

from datetime import time
from typing import Any

from pydantic import BaseModel
from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from common.accounts import service as accounts
from common.accounts.models import Account
from common.accounts.permissions import GRANTABLE_ROLES, Kind, Principal, Scope
from common.alliance import schemas as s
from common.alliance.models import (
    Alliance,
    BellSchedule,
    CalendarDay,
    Campus,
    ClassroomTerminal,
    Grade,
    Lesson,
    Period,
    Room,
    School,
    SchoolClass,
    Student,
    Subject,
    SyncGroup,
    SyncGroupMember,
    Teacher,
    Term,
    TimetableEntry,
    grade_name,
)
from common.alliance.service import (
    Resource,
    ScopePath,
    apply_fields,
    register,
    require_same,
    require_unique,
)
from common.db import Base
from common.errors import ConflictError, PermissionDeniedError, ValidationFailedError


def _school_of_campus(session: Session, campus_id: int, field_name: str = "campus_id") -> Campus:
    campus: Campus = require_same(session, Campus, campus_id, field_name=field_name, label="校区")
    return campus


# --- alliance ---------------------------------------------------------------------------------
def _create_alliance(session: Session, _p: Principal, payload: s.AllianceCreate) -> Alliance:
    alliance = Alliance(name=payload.name, kind=payload.kind, county=payload.county)
    session.add(alliance)
    return alliance


def _update_alliance(session: Session, row: Alliance, payload: s.AllianceUpdate) -> None:
    apply_fields(row, payload, ("name", "kind", "county", "lead_school_id"))
    require_same(
        session,
        School,
        row.lead_school_id,
        field_name="lead_school_id",
        label="学校",
        check=lambda school: school.alliance_id == row.id,
        why="不属于本教联体",
    )


ALLIANCES = register(
    Resource(
        kind=Kind.ALLIANCE,
        model=Alliance,
        path="alliances",
        create_schema=s.AllianceCreate,
        update_schema=s.AllianceUpdate,
        out_schema=s.AllianceOut,
        scope_path=lambda: ScopePath(select(Alliance), alliance=Alliance.id),
        create=_create_alliance,
        update=_update_alliance,
    )
)


def _unique_code(session: Session, model: type[Base], code: str) -> None:
    """Codes are county-wide (they name campuses and rooms in timetable files)."""
    what = _NAMED[model][2]
    require_unique(
        session,
        model,
        where=[model.__table__.c.code == code],
        own_id=None,
        field_name="code",
        message=f"{what}编号「{code}」与已有{what}冲突，请换一个编号",
    )


# --- school -----------------------------------------------------------------------------------
# A name is unique within its parent: (parent column, where it is unique, what it is).
_NAMED: dict[type[Base], tuple[Any, str, str]] = {
    School: (School.alliance_id, "本教联体", "学校"),
    Campus: (Campus.school_id, "本校", "校区"),
    Room: (Room.campus_id, "本校区", "教室"),
}


def _unique_name(
    session: Session, model: type[Base], parent_id: int, name: str, own_id: int | None
) -> None:
    parent, where, what = _NAMED[model]
    require_unique(
        session,
        model,
        where=[parent == parent_id, model.__table__.c.name == name],
        own_id=own_id,
        field_name="name",
        message=f"{where}已有名为「{name}」的{what}",
    )


def _create_school(session: Session, _p: Principal, payload: s.SchoolCreate) -> School:
    _unique_name(session, School, payload.alliance_id, payload.name, None)
    school = School(**payload.model_dump())
    session.add(school)
    return school


def _update_school(session: Session, row: School, payload: s.SchoolUpdate) -> None:
    if payload.name is not None:
        _unique_name(session, School, row.alliance_id, payload.name, row.id)
    apply_fields(row, payload, ("name", "stage", "address"))


def _count_of(session: Session, stmt: Any) -> int:
    return int(session.scalar(select(func.count()).select_from(stmt.subquery())) or 0)


def _refuse_if_used(what: str, uses: list[tuple[int, str]]) -> None:
    """ConflictError naming what still depends on the row (count, label), if anything does."""
    found = [f"{count} {label}" for count, label in uses if count]
    if found:
        raise ConflictError(f"{what}下还有{'、'.join(found)}，请先删除或移走它们后再删除")


def _school_in_use(session: Session, row: School) -> None:
    _refuse_if_used(
        f"学校「{row.name}」",
        [
            (_count_of(session, select(Campus).where(Campus.school_id == row.id)), "个校区"),
            (_count_of(session, select(Teacher).where(Teacher.school_id == row.id)), "位教师"),
        ],
    )


SCHOOLS = register(
    Resource(
        kind=Kind.SCHOOL,
        model=School,
        path="schools",
        create_schema=s.SchoolCreate,
        update_schema=s.SchoolUpdate,
        out_schema=s.SchoolOut,
        scope_path=lambda: ScopePath(select(School), alliance=School.alliance_id, school=School.id),
        create=_create_school,
        update=_update_school,
        before_delete=_school_in_use,
        parent=("alliances", "alliance_id"),
        filters={"alliance_id": lambda: School.alliance_id},
    )
)


def _via_school(stmt: Any) -> ScopePath:
    return ScopePath(stmt, alliance=School.alliance_id, school=School.id)


# --- campus -----------------------------------------------------------------------------------
def _create_campus(session: Session, _p: Principal, payload: s.CampusCreate) -> Campus:
    _unique_name(session, Campus, payload.school_id, payload.name, None)
    _unique_code(session, Campus, payload.code)
    campus = Campus(**payload.model_dump())
    session.add(campus)
    return campus


def _update_campus(session: Session, row: Campus, payload: s.CampusUpdate) -> None:
    if payload.name is not None:
        _unique_name(session, Campus, row.school_id, payload.name, row.id)
    apply_fields(row, payload, ("name", "address"))


def _campus_in_use(session: Session, row: Campus) -> None:
    _refuse_if_used(
        f"校区「{row.name}」",
        [
            (
                _count_of(session, select(SchoolClass).where(SchoolClass.campus_id == row.id)),
                "个班级",
            ),
            (_count_of(session, select(Room).where(Room.campus_id == row.id)), "间教室"),
        ],
    )


CAMPUSES = register(
    Resource(
        kind=Kind.CAMPUS,
        model=Campus,
        path="campuses",
        create_schema=s.CampusCreate,
        update_schema=s.CampusUpdate,
        out_schema=s.CampusOut,
        scope_path=lambda: _via_school(select(Campus).join(School, Campus.school_id == School.id)),
        create=_create_campus,
        update=_update_campus,
        before_delete=_campus_in_use,
        parent=("schools", "school_id"),
        filters={"school_id": lambda: Campus.school_id},
    )
)


# --- bells ------------------------------------------------------------------------------------
def _check_weekdays_free(
    session: Session, campus_id: int, weekdays: list[str], own_id: int | None
) -> None:
    others = session.scalars(
        select(BellSchedule).where(
            BellSchedule.campus_id == campus_id, BellSchedule.id != (own_id or -1)
        )
    )
    for other in others:
        clash = sorted(set(other.weekdays) & set(weekdays))
        if clash:
            raise ValidationFailedError(
                f"{'、'.join(clash)} 已由作息时间「{other.name}」使用", field="weekdays"
            )


def _periods(periods: list[s.PeriodIn]) -> list[Period]:
    return [
        Period(number=number, start_time=p.start, end_time=p.end)
        for number, p in enumerate(periods, start=1)
    ]


def _create_bells(session: Session, _p: Principal, payload: s.BellScheduleCreate) -> BellSchedule:
    _check_weekdays_free(session, payload.campus_id, list(payload.weekdays), None)
    bells = BellSchedule(
        campus_id=payload.campus_id,
        name=payload.name,
        weekdays=list(payload.weekdays),
        periods=_periods(payload.periods),
    )
    session.add(bells)
    return bells


def _update_bells(session: Session, row: BellSchedule, payload: s.BellScheduleUpdate) -> None:
    if payload.weekdays is not None:
        _check_weekdays_free(session, row.campus_id, list(payload.weekdays), row.id)
        row.weekdays = list(payload.weekdays)
    if payload.name is not None:
        row.name = payload.name
    if payload.periods is not None:
        row.periods.clear()
        session.flush()
        row.periods.extend(_periods(payload.periods))


BELLS = register(
    Resource(
        kind=Kind.BELLS,
        model=BellSchedule,
        path="bell-schedules",
        create_schema=s.BellScheduleCreate,
        update_schema=s.BellScheduleUpdate,
        out_schema=s.BellScheduleOut,
        scope_path=lambda: _via_school(
            select(BellSchedule)
            .join(Campus, BellSchedule.campus_id == Campus.id)
            .join(School, Campus.school_id == School.id)
        ),
        create=_create_bells,
        update=_update_bells,
        parent=("campuses", "campus_id"),
        filters={"campus_id": lambda: BellSchedule.campus_id},
    )
)


# --- term -------------------------------------------------------------------------------------
def _calendar(days: list[s.CalendarDayIn]) -> list[CalendarDay]:
    return [CalendarDay(**day.model_dump()) for day in days]


def _only_current(session: Session, term: Term) -> None:
    if term.is_current:
        for other in session.scalars(
            select(Term).where(Term.alliance_id == term.alliance_id, Term.id != (term.id or -1))
        ):
            other.is_current = False


def _create_term(session: Session, _p: Principal, payload: s.TermCreate) -> Term:
    term = Term(
        alliance_id=payload.alliance_id,
        name=payload.name,
        start_date=payload.start_date,
        end_date=payload.end_date,
        is_current=payload.is_current,
        calendar_days=_calendar(payload.calendar_days),
    )
    _only_current(session, term)
    session.add(term)
    return term


def _update_term(session: Session, row: Term, payload: s.TermUpdate) -> None:
    start = payload.start_date or row.start_date
    end = payload.end_date or row.end_date
    days = (
        payload.calendar_days
        if payload.calendar_days is not None
        else [s.CalendarDayIn.model_validate(d, from_attributes=True) for d in row.calendar_days]
    )
    try:
        s._check_term(start, end, days)
    except ValueError as exc:
        raise ValidationFailedError(str(exc), field="calendar_days") from exc
    apply_fields(row, payload, ("name", "start_date", "end_date", "is_current"))
    if payload.calendar_days is not None:
        row.calendar_days.clear()
        session.flush()
        row.calendar_days.extend(_calendar(payload.calendar_days))
    _only_current(session, row)


TERMS = register(
    Resource(
        kind=Kind.TERM,
        model=Term,
        path="terms",
        create_schema=s.TermCreate,
        update_schema=s.TermUpdate,
        out_schema=s.TermOut,
        scope_path=lambda: ScopePath(select(Term), alliance=Term.alliance_id),
        create=_create_term,
        update=_update_term,
        parent=("alliances", "alliance_id"),
        filters={"alliance_id": lambda: Term.alliance_id},
    )
)


# --- subject ----------------------------------------------------------------------------------
def _create_subject(session: Session, _p: Principal, payload: s.SubjectCreate) -> Subject:
    subject = Subject(**payload.model_dump())
    session.add(subject)
    return subject


SUBJECTS = register(
    Resource(
        kind=Kind.SUBJECT,
        model=Subject,
        path="subjects",
        create_schema=s.SubjectCreate,
        update_schema=s.SubjectUpdate,
        out_schema=s.SubjectOut,
        scope_path=lambda: ScopePath(select(Subject), alliance=Subject.alliance_id),
        create=_create_subject,
        update=lambda _s, row, p: apply_fields(row, p, ("name", "is_main", "is_scarce")),
        parent=("alliances", "alliance_id"),
        filters={"alliance_id": lambda: Subject.alliance_id},
    )
)


# --- room -------------------------------------------------------------------------------------
def _create_room(session: Session, _p: Principal, payload: s.RoomCreate) -> Room:
    _unique_name(session, Room, payload.campus_id, payload.name, None)
    _unique_code(session, Room, payload.code)
    room = Room(**payload.model_dump())
    session.add(room)
    return room


def _update_room(session: Session, row: Room, payload: s.RoomUpdate) -> None:
    if payload.name is not None:
        _unique_name(session, Room, row.campus_id, payload.name, row.id)
    apply_fields(row, payload, ("name", "capacity", "features"))


def sync_groups_of_lessons(session: Session, lesson_ids: Any) -> list[SyncGroup]:
    """The sync groups that a lesson (given as ids or a select of ids) leads or belongs to."""
    member_of = select(SyncGroupMember.sync_group_id).where(
        SyncGroupMember.lesson_id.in_(lesson_ids)
    )
    return list(
        session.scalars(
            select(SyncGroup)
            .where(or_(SyncGroup.lead_lesson_id.in_(lesson_ids), SyncGroup.id.in_(member_of)))
            .order_by(SyncGroup.id)
        )
    )


def _refuse_if_synchronized(what: str, codes: list[str]) -> None:
    if codes:
        raise ConflictError(
            f"{what}正用于同步课堂（{'、'.join(codes)}），请先在「同步课堂设置」中移除后再删除"
        )


def sync_codes_by_room(session: Session, room_ids: list[int]) -> dict[int, list[str]]:
    """room id -> codes of the sync groups whose timetabled lessons take place in it."""
    groups = sync_groups_of_lessons(
        session,
        select(TimetableEntry.lesson_id).where(TimetableEntry.room_id.in_(room_ids)),
    )
    lessons: dict[int, set[int]] = {
        group.id: {group.lead_lesson_id, *(m.lesson_id for m in group.members)} for group in groups
    }
    codes: dict[int, list[str]] = {}
    for room_id, lesson_id in session.execute(
        select(TimetableEntry.room_id, TimetableEntry.lesson_id)
        .where(TimetableEntry.room_id.in_(room_ids))
        .distinct()
    ):
        if room_id is None:
            continue
        in_room = codes.setdefault(room_id, [])
        in_room.extend(
            group.code
            for group in groups
            if lesson_id in lessons[group.id] and group.code not in in_room
        )
    return {room_id: sorted(found) for room_id, found in codes.items() if found}


def _room_in_use(session: Session, row: Room) -> None:
    codes = sync_codes_by_room(session, [row.id]).get(row.id, [])
    _refuse_if_synchronized(f"教室「{row.name}」", codes)


def _room_path() -> ScopePath:
    return _via_school(
        select(Room)
        .join(Campus, Room.campus_id == Campus.id)
        .join(School, Campus.school_id == School.id)
    )


ROOMS = register(
    Resource(
        kind=Kind.ROOM,
        model=Room,
        path="rooms",
        create_schema=s.RoomCreate,
        update_schema=s.RoomUpdate,
        out_schema=s.RoomOut,
        scope_path=_room_path,
        create=_create_room,
        update=_update_room,
        before_delete=_room_in_use,
        parent=("campuses", "campus_id"),
        filters={"campus_id": lambda: Room.campus_id},
    )
)


# --- terminal ---------------------------------------------------------------------------------
def _create_terminal(
    session: Session, _p: Principal, payload: s.TerminalCreate
) -> ClassroomTerminal:
    terminal = ClassroomTerminal(room_id=payload.room_id, name=payload.name)
    session.add(terminal)
    return terminal


TERMINALS = register(
    Resource(
        kind=Kind.TERMINAL,
        model=ClassroomTerminal,
        path="terminals",
        create_schema=s.TerminalCreate,
        update_schema=s.TerminalUpdate,
        out_schema=s.TerminalOut,
        scope_path=lambda: ScopePath(
            select(ClassroomTerminal)
            .join(Room, ClassroomTerminal.room_id == Room.id)
            .join(Campus, Room.campus_id == Campus.id)
            .join(School, Campus.school_id == School.id),
            alliance=School.alliance_id,
            school=School.id,
            terminal=ClassroomTerminal.id,
        ),
        create=_create_terminal,
        update=lambda _s, row, p: apply_fields(row, p, ("name",)),
        parent=("rooms", "room_id"),
        to_out=lambda t: s.TerminalOut(
            id=t.id, room_id=t.room_id, name=t.name, paired=t.paired_at is not None
        ),
    )
)


# --- class ------------------------------------------------------------------------------------
def _grade(session: Session, school_id: int, level: int) -> Grade:
    grade = session.scalar(select(Grade).where(Grade.school_id == school_id, Grade.level == level))
    if grade is None:
        grade = Grade(school_id=school_id, level=level, name=grade_name(level))
        session.add(grade)
        session.flush()
    return grade


def _check_class_links(session: Session, school_id: int, payload: BaseModel) -> None:
    require_same(
        session,
        Room,
        getattr(payload, "home_room_id", None),
        field_name="home_room_id",
        label="教室",
        check=lambda room: room.campus.school_id == school_id,
        why="不属于本校",
    )
    require_same(
        session,
        Teacher,
        getattr(payload, "head_teacher_id", None),
        field_name="head_teacher_id",
        label="教师",
        check=lambda teacher: teacher.school_id == school_id,
        why="不属于本校",
    )


def _create_class(session: Session, _p: Principal, payload: s.ClassCreate) -> SchoolClass:
    campus = _school_of_campus(session, payload.campus_id)
    _check_class_links(session, campus.school_id, payload)
    school_class = SchoolClass(
        school_id=campus.school_id,
        campus_id=campus.id,
        grade_id=_grade(session, campus.school_id, payload.grade_level).id,
        code=payload.code,
        name=payload.name,
        size=payload.size,
        home_room_id=payload.home_room_id,
        head_teacher_id=payload.head_teacher_id,
    )
    session.add(school_class)
    return school_class


def _update_class(session: Session, row: SchoolClass, payload: s.ClassUpdate) -> None:
    _check_class_links(session, row.school_id, payload)
    apply_fields(row, payload, ("name", "size", "home_room_id", "head_teacher_id"))


def _class_out(row: SchoolClass) -> s.ClassOut:
    return s.ClassOut(
        id=row.id,
        school_id=row.school_id,
        campus_id=row.campus_id,
        grade_level=row.grade.level,
        code=row.code,
        name=row.name,
        size=row.size,
        home_room_id=row.home_room_id,
        head_teacher_id=row.head_teacher_id,
    )


CLASSES = register(
    Resource(
        kind=Kind.CLASS,
        model=SchoolClass,
        path="classes",
        create_schema=s.ClassCreate,
        update_schema=s.ClassUpdate,
        out_schema=s.ClassOut,
        scope_path=lambda: ScopePath(
            select(SchoolClass).join(School, SchoolClass.school_id == School.id),
            alliance=School.alliance_id,
            school=School.id,
            class_=SchoolClass.id,
        ),
        create=_create_class,
        update=_update_class,
        parent=("campuses", "campus_id"),
        filters={
            "school_id": lambda: SchoolClass.school_id,
            "campus_id": lambda: SchoolClass.campus_id,
        },
        to_out=_class_out,
    )
)


# --- teacher ----------------------------------------------------------------------------------
def _teacher_links(
    session: Session, school: School, payload: BaseModel
) -> tuple[list[Subject], list[Campus]]:
    require_same(
        session,
        Campus,
        getattr(payload, "home_campus_id", None),
        field_name="home_campus_id",
        label="校区",
        check=lambda campus: campus.school_id == school.id,
        why="不属于本校",
    )
    subjects = [
        require_same(
            session,
            Subject,
            subject_id,
            field_name="subject_ids",
            label="学科",
            check=lambda subject: subject.alliance_id == school.alliance_id,
            why="不属于本教联体",
        )
        for subject_id in getattr(payload, "subject_ids", None) or []
    ]
    campuses = [
        require_same(
            session,
            Campus,
            campus_id,
            field_name="campus_ids",
            label="校区",
            check=lambda campus: campus.school.alliance_id == school.alliance_id,
            why="不属于本教联体",
        )
        for campus_id in getattr(payload, "campus_ids", None) or []
    ]
    return subjects, campuses


def _create_teacher(session: Session, _p: Principal, payload: s.TeacherCreate) -> Teacher:
    school = session.get_one(School, payload.school_id)
    subjects, campuses = _teacher_links(session, school, payload)
    teacher = Teacher(
        **payload.model_dump(exclude={"subject_ids", "campus_ids"}),
        subjects=subjects,
        campuses=campuses,
    )
    session.add(teacher)
    return teacher


def _update_teacher(session: Session, row: Teacher, payload: s.TeacherUpdate) -> None:
    school = session.get_one(School, row.school_id)
    subjects, campuses = _teacher_links(session, school, payload)
    apply_fields(
        row,
        payload,
        (
            "name",
            "home_campus_id",
            "phone",
            "is_backbone",
            "is_subject_leader",
            "max_lessons_per_day",
        ),
    )
    if payload.subject_ids is not None:
        row.subjects = subjects
    if payload.campus_ids is not None:
        row.campuses = campuses


def _teacher_out(row: Teacher) -> s.TeacherOut:
    return s.TeacherOut(
        id=row.id,
        school_id=row.school_id,
        code=row.code,
        name=row.name,
        home_campus_id=row.home_campus_id,
        phone=row.phone,
        is_backbone=row.is_backbone,
        is_subject_leader=row.is_subject_leader,
        max_lessons_per_day=row.max_lessons_per_day,
        subject_ids=[subject.id for subject in row.subjects],
        campus_ids=[campus.id for campus in row.campuses],
    )


TEACHERS = register(
    Resource(
        kind=Kind.TEACHER,
        model=Teacher,
        path="teachers",
        create_schema=s.TeacherCreate,
        update_schema=s.TeacherUpdate,
        out_schema=s.TeacherOut,
        scope_path=lambda: _via_school(
            select(Teacher).join(School, Teacher.school_id == School.id)
        ),
        create=_create_teacher,
        update=_update_teacher,
        parent=("schools", "school_id"),
        filters={"school_id": lambda: Teacher.school_id},
        to_out=_teacher_out,
    )
)


# --- student ----------------------------------------------------------------------------------
def _create_student(session: Session, _p: Principal, payload: s.StudentCreate) -> Student:
    student = Student(**payload.model_dump())
    session.add(student)
    return student


STUDENTS = register(
    Resource(
        kind=Kind.STUDENT,
        model=Student,
        path="students",
        create_schema=s.StudentCreate,
        update_schema=s.StudentUpdate,
        out_schema=s.StudentOut,
        scope_path=lambda: ScopePath(
            select(Student)
            .join(SchoolClass, Student.class_id == SchoolClass.id)
            .join(School, SchoolClass.school_id == School.id),
            alliance=School.alliance_id,
            school=School.id,
            class_=SchoolClass.id,
            student=Student.id,
        ),
        create=_create_student,
        update=lambda _s, row, p: apply_fields(row, p, ("name",)),
        parent=("classes", "class_id"),
        filters={"class_id": lambda: Student.class_id},
    )
)


# --- lesson (教学任务) -------------------------------------------------------------------------
def _check_lesson_links(session: Session, school_class: SchoolClass, payload: BaseModel) -> None:
    school = session.get_one(School, school_class.school_id)
    term_id = getattr(payload, "term_id", None)
    require_same(
        session,
        Term,
        term_id,
        field_name="term_id",
        label="学期",
        check=lambda term: term.alliance_id == school.alliance_id,
        why="不属于本教联体",
    )
    require_same(
        session,
        Subject,
        getattr(payload, "subject_id", None),
        field_name="subject_id",
        label="学科",
        check=lambda subject: subject.alliance_id == school.alliance_id,
        why="不属于本教联体",
    )
    # 走教: a teacher of any school in the alliance may teach the class.
    require_same(
        session,
        Teacher,
        getattr(payload, "teacher_id", None),
        field_name="teacher_id",
        label="教师",
        check=lambda teacher: (
            session.get_one(School, teacher.school_id).alliance_id == school.alliance_id
        ),
        why="不属于本教联体",
    )


def _create_lesson(session: Session, _p: Principal, payload: s.LessonCreate) -> Lesson:
    school_class = session.get_one(SchoolClass, payload.class_id)
    _check_lesson_links(session, school_class, payload)
    lesson = Lesson(**payload.model_dump())
    session.add(lesson)
    return lesson


def _update_lesson(session: Session, row: Lesson, payload: s.LessonUpdate) -> None:
    _check_lesson_links(session, session.get_one(SchoolClass, row.class_id), payload)
    if payload.per_week is not None and payload.per_week != row.per_week:
        groups = sync_groups_of_lessons(session, [row.id])
        if groups:
            raise ValidationFailedError(
                f"该教学任务在同步课堂（{'、'.join(g.code for g in groups)}）中，"
                "各班每周节数必须相同，请先在「同步课堂设置」中移除",
                field="per_week",
            )
    apply_fields(
        row, payload, ("teacher_id", "per_week", "max_per_day", "prefer_morning", "room_features")
    )


LESSONS = register(
    Resource(
        kind=Kind.LESSON,
        model=Lesson,
        path="lessons",
        create_schema=s.LessonCreate,
        update_schema=s.LessonUpdate,
        out_schema=s.LessonOut,
        scope_path=lambda: ScopePath(
            select(Lesson)
            .join(SchoolClass, Lesson.class_id == SchoolClass.id)
            .join(School, SchoolClass.school_id == School.id),
            alliance=School.alliance_id,
            school=School.id,
            class_=SchoolClass.id,
        ),
        create=_create_lesson,
        update=_update_lesson,
        before_delete=lambda session, row: _refuse_if_synchronized(
            "该教学任务", [g.code for g in sync_groups_of_lessons(session, [row.id])]
        ),
        parent=("classes", "class_id"),
        filters={
            "term_id": lambda: Lesson.term_id,
            "class_id": lambda: Lesson.class_id,
            "teacher_id": lambda: Lesson.teacher_id,
        },
    )
)


# --- sync group (同步课堂 / 专递课堂) ------------------------------------------------------------
def _sync_lessons(
    session: Session, term: Term, lead_id: int, member_ids: list[int]
) -> tuple[Lesson, list[Lesson]]:
    if lead_id in member_ids or len(set(member_ids)) != len(member_ids):
        raise ValidationFailedError("主讲课程与远端课程不能重复", field="member_lesson_ids")
    found: list[Lesson] = []
    for field_name, lesson_id in [("lead_lesson_id", lead_id)] + [
        ("member_lesson_ids", i) for i in member_ids
    ]:
        lesson = require_same(
            session,
            Lesson,
            lesson_id,
            field_name=field_name,
            label="教学任务",
            check=lambda row: row.term_id == term.id,
            why="不属于该学期",
        )
        found.append(lesson)
    lead, members = found[0], found[1:]
    for member in members:
        if member.per_week != lead.per_week:
            raise ValidationFailedError(
                f"同步课堂各班每周节数必须相同：主讲 {lead.per_week} 节，"
                f"教学任务 {member.id} 为 {member.per_week} 节",
                field="member_lesson_ids",
            )
        if member.subject_id != lead.subject_id:
            raise ValidationFailedError("同步课堂各班必须是同一学科", field="member_lesson_ids")
    if len({lead.class_id, *(m.class_id for m in members)}) != len(found):
        raise ValidationFailedError("同一个班不能在同步课堂中出现两次", field="member_lesson_ids")
    return lead, members


def _create_sync_group(session: Session, _p: Principal, payload: s.SyncGroupCreate) -> SyncGroup:
    term = session.get_one(Term, payload.term_id)
    lead, members = _sync_lessons(session, term, payload.lead_lesson_id, payload.member_lesson_ids)
    group = SyncGroup(
        term_id=term.id,
        code=payload.code,
        kind=payload.kind,
        lead_lesson_id=lead.id,
        members=[SyncGroupMember(lesson_id=m.id) for m in members],
    )
    session.add(group)
    return group


def _update_sync_group(session: Session, row: SyncGroup, payload: s.SyncGroupUpdate) -> None:
    if payload.kind is not None:
        row.kind = payload.kind
    if payload.lead_lesson_id is not None or payload.member_lesson_ids is not None:
        term = session.get_one(Term, row.term_id)
        lead_id = payload.lead_lesson_id or row.lead_lesson_id
        member_ids = payload.member_lesson_ids or [m.lesson_id for m in row.members]
        lead, members = _sync_lessons(session, term, lead_id, member_ids)
        row.lead_lesson_id = lead.id
        row.members.clear()
        session.flush()
        row.members.extend(SyncGroupMember(lesson_id=m.id) for m in members)


SYNC_GROUPS = register(
    Resource(
        kind=Kind.TIMETABLE,
        model=SyncGroup,
        path="sync-groups",
        create_schema=s.SyncGroupCreate,
        update_schema=s.SyncGroupUpdate,
        out_schema=s.SyncGroupOut,
        scope_path=lambda: ScopePath(
            select(SyncGroup).join(Term, SyncGroup.term_id == Term.id), alliance=Term.alliance_id
        ),
        create=_create_sync_group,
        update=_update_sync_group,
        parent=("terms", "term_id"),
        filters={"term_id": lambda: SyncGroup.term_id},
        to_out=lambda g: s.SyncGroupOut(
            id=g.id,
            term_id=g.term_id,
            code=g.code,
            kind=g.kind,
            lead_lesson_id=g.lead_lesson_id,
            member_lesson_ids=[m.lesson_id for m in g.members],
        ),
    )
)


# --- account ----------------------------------------------------------------------------------
def account_scope_columns(session: Session, payload: s.AccountCreate) -> dict[str, int | None]:
    """Derive an account's alliance/school/class from the one link its role needs."""
    role = payload.role
    scope: dict[str, int | None] = dict.fromkeys(
        ("alliance_id", "school_id", "class_id", "teacher_id", "student_id", "terminal_id")
    )
    if role == "bureau":
        return scope
    if role == "alliance_admin":
        alliance = require_same(
            session, Alliance, payload.alliance_id, field_name="alliance_id", label="教联体"
        )
        if alliance is None:
            raise ValidationFailedError("联盟管理员需要指定教联体", field="alliance_id")
        scope["alliance_id"] = alliance.id
        return scope
    if role == "school_admin":
        school = require_same(
            session, School, payload.school_id, field_name="school_id", label="学校"
        )
        if school is None:
            raise ValidationFailedError("学校管理员需要指定学校", field="school_id")
        scope.update(alliance_id=school.alliance_id, school_id=school.id)
        return scope
    if role == "teacher":
        teacher = require_same(
            session, Teacher, payload.teacher_id, field_name="teacher_id", label="教师"
        )
        if teacher is None:
            raise ValidationFailedError("教师账号需要关联教师", field="teacher_id")
        school = session.get_one(School, teacher.school_id)
        scope.update(alliance_id=school.alliance_id, school_id=school.id, teacher_id=teacher.id)
        return scope
    if role == "student":
        student = require_same(
            session, Student, payload.student_id, field_name="student_id", label="学生"
        )
        if student is None:
            raise ValidationFailedError("学生账号需要关联学生", field="student_id")
        school_class = session.get_one(SchoolClass, student.class_id)
        school = session.get_one(School, school_class.school_id)
        scope.update(
            alliance_id=school.alliance_id,
            school_id=school.id,
            class_id=school_class.id,
            student_id=student.id,
        )
        return scope
    terminal = require_same(
        session, ClassroomTerminal, payload.terminal_id, field_name="terminal_id", label="教室终端"
    )
    if terminal is None:
        raise ValidationFailedError("终端账号需要关联教室终端", field="terminal_id")
    campus = session.get_one(Campus, session.get_one(Room, terminal.room_id).campus_id)
    school = session.get_one(School, campus.school_id)
    scope.update(alliance_id=school.alliance_id, school_id=school.id, terminal_id=terminal.id)
    return scope


def account_create_scope(session: Session, principal: Principal, payload: s.AccountCreate) -> Scope:
    if payload.role not in GRANTABLE_ROLES.get(principal.role, frozenset()):
        raise PermissionDeniedError(f"没有权限创建角色为 {payload.role} 的账号")
    columns = account_scope_columns(session, payload)
    return Scope(alliance_id=columns["alliance_id"], school_id=columns["school_id"])


def _create_account(session: Session, _p: Principal, payload: s.AccountCreate) -> Account:
    return accounts.create_account(
        session,
        username=payload.username,
        display_name=payload.display_name,
        role=payload.role,
        password=payload.password,
        **account_scope_columns(session, payload),
    )


def _update_account(session: Session, row: Account, payload: s.AccountUpdate) -> None:
    apply_fields(row, payload, ("display_name", "is_active"))
    if payload.password is not None:
        accounts.set_password(session, account=row, password=payload.password)


ACCOUNTS = register(
    Resource(
        kind=Kind.ACCOUNT,
        model=Account,
        path="accounts",
        create_schema=s.AccountCreate,
        update_schema=s.AccountUpdate,
        out_schema=s.AccountOut,
        scope_path=lambda: ScopePath(
            select(Account),
            alliance=Account.alliance_id,
            school=Account.school_id,
            class_=Account.class_id,
            student=Account.student_id,
            account=Account.id,
            terminal=Account.terminal_id,
        ),
        create=_create_account,
        update=_update_account,
        create_scope=account_create_scope,
        filters={"school_id": lambda: Account.school_id, "role": lambda: Account.role},
    )
)

__all__ = ["time"]
