"""Tables of the alliance: schools, campuses, bells, calendar, classes, rooms, people, timetable."""

from __future__ import annotations

from datetime import date, datetime, time

from sqlalchemy import (
    JSON,
    CheckConstraint,
    Column,
    Date,
    ForeignKey,
    String,
    Table,
    Time,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from common.db import Base, TimestampMixin

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
ALLIANCE_KINDS = ("group", "alliance")  # 教育集团 / 教联体·教育联盟
SYNC_KINDS = ("sync", "delivered", "master")  # 同步课堂 / 专递课堂 / 名师课堂
CALENDAR_KINDS = ("holiday", "makeup")
_GRADE_NUMERALS = "一二三四五六七八九"


def grade_name(level: int) -> str:
    """3 -> 三年级."""
    return f"{_GRADE_NUMERALS[level - 1]}年级" if 1 <= level <= 9 else f"{level}年级"


teacher_subjects = Table(
    "teacher_subjects",
    Base.metadata,
    Column("teacher_id", ForeignKey("teachers.id", ondelete="CASCADE"), primary_key=True),
    Column("subject_id", ForeignKey("subjects.id", ondelete="CASCADE"), primary_key=True),
)

# 走教: the campuses a teacher teaches at besides the home campus.
teacher_campuses = Table(
    "teacher_campuses",
    Base.metadata,
    Column("teacher_id", ForeignKey("teachers.id", ondelete="CASCADE"), primary_key=True),
    Column("campus_id", ForeignKey("campuses.id", ondelete="CASCADE"), primary_key=True),
)


class Alliance(TimestampMixin, Base):
    __tablename__ = "alliances"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    kind: Mapped[str] = mapped_column(String(20), default="alliance")
    county: Mapped[str] = mapped_column(String(50), default="")
    lead_school_id: Mapped[int | None] = mapped_column(
        ForeignKey("schools.id", ondelete="SET NULL", use_alter=True), default=None
    )

    schools: Mapped[list[School]] = relationship(
        back_populates="alliance", foreign_keys="School.alliance_id", order_by="School.id"
    )
    lead_school: Mapped[School | None] = relationship(foreign_keys=[lead_school_id])


class School(TimestampMixin, Base):
    __tablename__ = "schools"
    __table_args__ = (UniqueConstraint("alliance_id", "name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    alliance_id: Mapped[int] = mapped_column(ForeignKey("alliances.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(100))
    stage: Mapped[str] = mapped_column(String(20), default="primary")
    address: Mapped[str] = mapped_column(String(200), default="")

    alliance: Mapped[Alliance] = relationship(back_populates="schools", foreign_keys=[alliance_id])
    campuses: Mapped[list[Campus]] = relationship(back_populates="school", order_by="Campus.id")


class Campus(TimestampMixin, Base):
    __tablename__ = "campuses"

    id: Mapped[int] = mapped_column(primary_key=True)
    school_id: Mapped[int] = mapped_column(ForeignKey("schools.id", ondelete="CASCADE"))
    # Short id used in timetable files (tongke-timetable/1 `campuses[].id`), unique county-wide.
    code: Mapped[str] = mapped_column(String(30), unique=True)
    name: Mapped[str] = mapped_column(String(100))
    address: Mapped[str] = mapped_column(String(200), default="")

    school: Mapped[School] = relationship(back_populates="campuses")
    bell_schedules: Mapped[list[BellSchedule]] = relationship(
        back_populates="campus", order_by="BellSchedule.id", cascade="all, delete-orphan"
    )


class TravelTime(Base):
    """Minutes to travel between two campuses (symmetric; stored once with a < b)."""

    __tablename__ = "travel_times"
    __table_args__ = (CheckConstraint("campus_a_id < campus_b_id", name="ordered_pair"),)

    campus_a_id: Mapped[int] = mapped_column(
        ForeignKey("campuses.id", ondelete="CASCADE"), primary_key=True
    )
    campus_b_id: Mapped[int] = mapped_column(
        ForeignKey("campuses.id", ondelete="CASCADE"), primary_key=True
    )
    minutes: Mapped[int]


class BellSchedule(TimestampMixin, Base):
    """A campus's 作息时间 for one weekday type (e.g. Monday with flag raising, other days)."""

    __tablename__ = "bell_schedules"

    id: Mapped[int] = mapped_column(primary_key=True)
    campus_id: Mapped[int] = mapped_column(ForeignKey("campuses.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(50))
    weekdays: Mapped[list[str]] = mapped_column(JSON, default=list)

    campus: Mapped[Campus] = relationship(back_populates="bell_schedules")
    periods: Mapped[list[Period]] = relationship(
        back_populates="bell_schedule", order_by="Period.number", cascade="all, delete-orphan"
    )


class Period(Base):
    __tablename__ = "periods"
    __table_args__ = (
        UniqueConstraint("bell_schedule_id", "number"),
        CheckConstraint("start_time < end_time", name="starts_before_end"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    bell_schedule_id: Mapped[int] = mapped_column(
        ForeignKey("bell_schedules.id", ondelete="CASCADE")
    )
    number: Mapped[int]
    start_time: Mapped[time] = mapped_column(Time)
    end_time: Mapped[time] = mapped_column(Time)

    bell_schedule: Mapped[BellSchedule] = relationship(back_populates="periods")


class Term(TimestampMixin, Base):
    __tablename__ = "terms"
    __table_args__ = (
        UniqueConstraint("alliance_id", "name"),
        CheckConstraint("start_date <= end_date", name="starts_before_end"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    alliance_id: Mapped[int] = mapped_column(ForeignKey("alliances.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(100))
    start_date: Mapped[date] = mapped_column(Date)
    end_date: Mapped[date] = mapped_column(Date)
    is_current: Mapped[bool] = mapped_column(default=False)

    calendar_days: Mapped[list[CalendarDay]] = relationship(
        back_populates="term", order_by="CalendarDay.day", cascade="all, delete-orphan"
    )


class CalendarDay(Base):
    """校历 exceptions: a holiday, or a make-up day that runs another weekday's timetable."""

    __tablename__ = "calendar_days"
    __table_args__ = (UniqueConstraint("term_id", "day"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    term_id: Mapped[int] = mapped_column(ForeignKey("terms.id", ondelete="CASCADE"))
    day: Mapped[date] = mapped_column(Date)
    kind: Mapped[str] = mapped_column(String(10))
    follows_weekday: Mapped[str | None] = mapped_column(String(3), default=None)
    note: Mapped[str] = mapped_column(String(100), default="")

    term: Mapped[Term] = relationship(back_populates="calendar_days")


class Grade(Base):
    __tablename__ = "grades"
    __table_args__ = (UniqueConstraint("school_id", "level"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    school_id: Mapped[int] = mapped_column(ForeignKey("schools.id", ondelete="CASCADE"))
    level: Mapped[int]
    name: Mapped[str] = mapped_column(String(20))


class Room(TimestampMixin, Base):
    __tablename__ = "rooms"
    __table_args__ = (UniqueConstraint("campus_id", "name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    campus_id: Mapped[int] = mapped_column(ForeignKey("campuses.id", ondelete="CASCADE"))
    code: Mapped[str] = mapped_column(String(40), unique=True)
    name: Mapped[str] = mapped_column(String(100))
    capacity: Mapped[int] = mapped_column(default=45)
    # "sync" marks a 录播教室 (recording/streaming classroom).
    features: Mapped[list[str]] = mapped_column(JSON, default=list)

    campus: Mapped[Campus] = relationship()
    terminal: Mapped[ClassroomTerminal | None] = relationship(back_populates="room")


class ClassroomTerminal(TimestampMixin, Base):
    """班班通: a room's screen+camera device, paired once by a short code, no personal login."""

    __tablename__ = "classroom_terminals"

    id: Mapped[int] = mapped_column(primary_key=True)
    room_id: Mapped[int] = mapped_column(ForeignKey("rooms.id", ondelete="CASCADE"), unique=True)
    name: Mapped[str] = mapped_column(String(100))
    pairing_code_hash: Mapped[str | None] = mapped_column(String(64), default=None)
    pairing_expires_at: Mapped[datetime | None] = mapped_column(default=None)
    paired_at: Mapped[datetime | None] = mapped_column(default=None)

    room: Mapped[Room] = relationship(back_populates="terminal")


class SchoolClass(TimestampMixin, Base):
    __tablename__ = "classes"
    __table_args__ = (UniqueConstraint("school_id", "name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    school_id: Mapped[int] = mapped_column(ForeignKey("schools.id", ondelete="CASCADE"))
    campus_id: Mapped[int] = mapped_column(ForeignKey("campuses.id", ondelete="CASCADE"))
    grade_id: Mapped[int] = mapped_column(ForeignKey("grades.id", ondelete="CASCADE"))
    code: Mapped[str] = mapped_column(String(40), unique=True)
    name: Mapped[str] = mapped_column(String(50))
    size: Mapped[int] = mapped_column(default=40)
    home_room_id: Mapped[int | None] = mapped_column(
        ForeignKey("rooms.id", ondelete="SET NULL"), default=None
    )
    head_teacher_id: Mapped[int | None] = mapped_column(
        ForeignKey("teachers.id", ondelete="SET NULL"), default=None
    )

    grade: Mapped[Grade] = relationship()
    campus: Mapped[Campus] = relationship()
    home_room: Mapped[Room | None] = relationship()


class Subject(Base):
    __tablename__ = "subjects"
    __table_args__ = (UniqueConstraint("alliance_id", "name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    alliance_id: Mapped[int] = mapped_column(ForeignKey("alliances.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(30))
    is_main: Mapped[bool] = mapped_column(default=False)  # prefers the morning
    is_scarce: Mapped[bool] = mapped_column(default=False)  # 紧缺学科


class Teacher(TimestampMixin, Base):
    __tablename__ = "teachers"

    id: Mapped[int] = mapped_column(primary_key=True)
    school_id: Mapped[int] = mapped_column(ForeignKey("schools.id", ondelete="CASCADE"))
    home_campus_id: Mapped[int | None] = mapped_column(
        ForeignKey("campuses.id", ondelete="SET NULL"), default=None
    )
    code: Mapped[str] = mapped_column(String(40), unique=True)
    name: Mapped[str] = mapped_column(String(50))
    phone: Mapped[str] = mapped_column(String(20), default="")
    is_backbone: Mapped[bool] = mapped_column(default=False)  # 骨干教师
    is_subject_leader: Mapped[bool] = mapped_column(default=False)  # 学科带头人
    max_lessons_per_day: Mapped[int | None] = mapped_column(default=None)

    subjects: Mapped[list[Subject]] = relationship(secondary=teacher_subjects)
    campuses: Mapped[list[Campus]] = relationship(secondary=teacher_campuses)


class Student(TimestampMixin, Base):
    __tablename__ = "students"
    __table_args__ = (UniqueConstraint("class_id", "student_no"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    class_id: Mapped[int] = mapped_column(ForeignKey("classes.id", ondelete="CASCADE"))
    student_no: Mapped[str] = mapped_column(String(30))
    name: Mapped[str] = mapped_column(String(50))

    school_class: Mapped[SchoolClass] = relationship()


class Lesson(TimestampMixin, Base):
    """A weekly teaching load: class × subject × teacher, `per_week` times (spec `lessons[]`)."""

    __tablename__ = "lessons"

    id: Mapped[int] = mapped_column(primary_key=True)
    term_id: Mapped[int] = mapped_column(ForeignKey("terms.id", ondelete="CASCADE"))
    class_id: Mapped[int] = mapped_column(ForeignKey("classes.id", ondelete="CASCADE"))
    subject_id: Mapped[int] = mapped_column(ForeignKey("subjects.id", ondelete="CASCADE"))
    teacher_id: Mapped[int] = mapped_column(ForeignKey("teachers.id", ondelete="CASCADE"))
    per_week: Mapped[int]
    max_per_day: Mapped[int | None] = mapped_column(default=None)
    prefer_morning: Mapped[bool] = mapped_column(default=False)
    room_features: Mapped[list[str]] = mapped_column(JSON, default=list)

    school_class: Mapped[SchoolClass] = relationship()
    subject: Mapped[Subject] = relationship()
    teacher: Mapped[Teacher] = relationship()


class SyncGroup(TimestampMixin, Base):
    """同步课堂/专递课堂: the lead lesson is taught live to the member lessons' classrooms."""

    __tablename__ = "sync_groups"

    id: Mapped[int] = mapped_column(primary_key=True)
    term_id: Mapped[int] = mapped_column(ForeignKey("terms.id", ondelete="CASCADE"))
    code: Mapped[str] = mapped_column(String(40))
    kind: Mapped[str] = mapped_column(String(20), default="sync")
    lead_lesson_id: Mapped[int] = mapped_column(ForeignKey("lessons.id", ondelete="CASCADE"))

    lead_lesson: Mapped[Lesson] = relationship(foreign_keys=[lead_lesson_id])
    members: Mapped[list[SyncGroupMember]] = relationship(
        back_populates="sync_group", cascade="all, delete-orphan"
    )


class SyncGroupMember(Base):
    __tablename__ = "sync_group_members"

    sync_group_id: Mapped[int] = mapped_column(
        ForeignKey("sync_groups.id", ondelete="CASCADE"), primary_key=True
    )
    lesson_id: Mapped[int] = mapped_column(
        ForeignKey("lessons.id", ondelete="CASCADE"), primary_key=True
    )

    sync_group: Mapped[SyncGroup] = relationship(back_populates="members")
    lesson: Mapped[Lesson] = relationship()


class TimetableEntry(Base):
    """One occurrence of a lesson in the weekly timetable (spec solution `lessons[]`)."""

    __tablename__ = "timetable_entries"
    __table_args__ = (UniqueConstraint("lesson_id", "day", "period"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    term_id: Mapped[int] = mapped_column(ForeignKey("terms.id", ondelete="CASCADE"))
    lesson_id: Mapped[int] = mapped_column(ForeignKey("lessons.id", ondelete="CASCADE"))
    day: Mapped[str] = mapped_column(String(3))
    period: Mapped[int]
    room_id: Mapped[int | None] = mapped_column(
        ForeignKey("rooms.id", ondelete="SET NULL"), default=None
    )

    lesson: Mapped[Lesson] = relationship()
    room: Mapped[Room | None] = relationship()


ADJUSTMENT_STATUSES = ("applied", "revoked")
ADJUSTMENT_ITEM_KINDS = ("move", "substitute", "cancel")


class TimetableAdjustment(TimestampMixin, Base):
    """调课 applied for one absence: dated changes to the weekly timetable (revocable)."""

    __tablename__ = "timetable_adjustments"

    id: Mapped[int] = mapped_column(primary_key=True)
    term_id: Mapped[int] = mapped_column(ForeignKey("terms.id", ondelete="CASCADE"), index=True)
    day: Mapped[date] = mapped_column(Date)
    absent_teacher_id: Mapped[int] = mapped_column(ForeignKey("teachers.id", ondelete="CASCADE"))
    reason: Mapped[str] = mapped_column(String(200), default="")
    created_by: Mapped[int | None] = mapped_column(
        ForeignKey("accounts.id", ondelete="SET NULL"), default=None
    )
    status: Mapped[str] = mapped_column(String(10), default="applied")
    revoked_at: Mapped[datetime | None] = mapped_column(default=None)

    absent_teacher: Mapped[Teacher] = relationship()
    items: Mapped[list[TimetableAdjustmentItem]] = relationship(
        back_populates="adjustment",
        order_by="TimetableAdjustmentItem.id",
        cascade="all, delete-orphan",
    )


class TimetableAdjustmentItem(Base):
    """One dated change: a lesson occurrence moved, taught by a substitute, or cancelled.

    ``old_*`` is the occurrence as the week had it (date, the campus's period, room); a move
    also has ``new_*``; a substitution names the teacher. Members of a sync group move
    together and carry the group's id."""

    __tablename__ = "timetable_adjustment_items"

    id: Mapped[int] = mapped_column(primary_key=True)
    adjustment_id: Mapped[int] = mapped_column(
        ForeignKey("timetable_adjustments.id", ondelete="CASCADE"), index=True
    )
    kind: Mapped[str] = mapped_column(String(10))
    lesson_id: Mapped[int] = mapped_column(ForeignKey("lessons.id", ondelete="CASCADE"))
    sync_group_id: Mapped[int | None] = mapped_column(
        ForeignKey("sync_groups.id", ondelete="SET NULL"), default=None
    )
    old_date: Mapped[date] = mapped_column(Date)
    old_period: Mapped[int]
    old_room_id: Mapped[int | None] = mapped_column(
        ForeignKey("rooms.id", ondelete="SET NULL"), default=None
    )
    new_date: Mapped[date | None] = mapped_column(Date, default=None)
    new_period: Mapped[int | None] = mapped_column(default=None)
    new_room_id: Mapped[int | None] = mapped_column(
        ForeignKey("rooms.id", ondelete="SET NULL"), default=None
    )
    substitute_teacher_id: Mapped[int | None] = mapped_column(
        ForeignKey("teachers.id", ondelete="SET NULL"), default=None
    )

    adjustment: Mapped[TimetableAdjustment] = relationship(back_populates="items")
    lesson: Mapped[Lesson] = relationship()
    substitute_teacher: Mapped[Teacher | None] = relationship(foreign_keys=[substitute_teacher_id])
