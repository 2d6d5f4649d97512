"""Pydantic shapes of the admin API: what comes in (Create/Update) and what goes out (Out)."""

from __future__ import annotations

from datetime import date, time
from itertools import pairwise
from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
    model_validator,
)

Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]
Code = Annotated[
    str,
    StringConstraints(
        strip_whitespace=True, min_length=1, max_length=40, pattern=r"^[A-Za-z0-9_.-]+$"
    ),
]


class Shape(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Out(BaseModel):
    model_config = ConfigDict(from_attributes=True)


# --- alliance ---------------------------------------------------------------------------------
class AllianceCreate(Shape):
    name: Name
    kind: Literal["group", "alliance"] = "alliance"
    county: str = ""


class AllianceUpdate(Shape):
    name: Name | None = None
    kind: Literal["group", "alliance"] | None = None
    county: str | None = None
    lead_school_id: int | None = None


class AllianceOut(Out):
    id: int
    name: str
    kind: str
    county: str
    lead_school_id: int | None


# --- school -----------------------------------------------------------------------------------
class SchoolCreate(Shape):
    alliance_id: int
    name: Name
    stage: Literal["primary", "junior", "senior", "nine_year"] = "primary"
    address: str = ""


class SchoolUpdate(Shape):
    name: Name | None = None
    stage: Literal["primary", "junior", "senior", "nine_year"] | None = None
    address: str | None = None


class SchoolOut(Out):
    id: int
    alliance_id: int
    name: str
    stage: str
    address: str


# --- campus -----------------------------------------------------------------------------------
class CampusCreate(Shape):
    school_id: int
    code: Code
    name: Name
    address: str = ""


class CampusUpdate(Shape):
    name: Name | None = None
    address: str | None = None


class CampusOut(Out):
    id: int
    school_id: int
    code: str
    name: str
    address: str


# --- bells ------------------------------------------------------------------------------------
class PeriodIn(Shape):
    start: time
    end: time

    @model_validator(mode="after")
    def _ordered(self) -> PeriodIn:
        if self.start >= self.end:
            raise ValueError(f"下课时间 {self.end:%H:%M} 必须晚于上课时间 {self.start:%H:%M}")
        return self


def _check_periods(periods: list[PeriodIn]) -> list[PeriodIn]:
    for number, (earlier, later) in enumerate(pairwise(periods), start=2):
        if later.start < earlier.end:
            raise ValueError(f"第 {number} 节与上一节时间重叠或顺序颠倒")
    return periods


def _check_weekdays(weekdays: list[Weekday]) -> list[Weekday]:
    if len(set(weekdays)) != len(weekdays):
        raise ValueError("星期重复")
    return weekdays


class BellScheduleCreate(Shape):
    campus_id: int
    name: Name
    weekdays: list[Weekday] = Field(min_length=1)
    periods: list[PeriodIn] = Field(min_length=1, max_length=14)

    _periods = field_validator("periods")(_check_periods)
    _weekdays = field_validator("weekdays")(_check_weekdays)


class BellScheduleUpdate(Shape):
    name: Name | None = None
    weekdays: list[Weekday] | None = Field(default=None, min_length=1)
    periods: list[PeriodIn] | None = Field(default=None, min_length=1, max_length=14)

    @field_validator("periods")
    @classmethod
    def _periods_ok(cls, value: list[PeriodIn] | None) -> list[PeriodIn] | None:
        return None if value is None else _check_periods(value)

    @field_validator("weekdays")
    @classmethod
    def _weekdays_ok(cls, value: list[Weekday] | None) -> list[Weekday] | None:
        return None if value is None else _check_weekdays(value)


class PeriodOut(Out):
    number: int
    start_time: time
    end_time: time


class BellScheduleOut(Out):
    id: int
    campus_id: int
    name: str
    weekdays: list[str]
    periods: list[PeriodOut]


# --- term -------------------------------------------------------------------------------------
class CalendarDayIn(Shape):
    day: date
    kind: Literal["holiday", "makeup"]
    follows_weekday: Weekday | None = None
    note: str = ""

    @model_validator(mode="after")
    def _makeup_follows(self) -> CalendarDayIn:
        if self.kind == "makeup" and self.follows_weekday is None:
            raise ValueError("调休上课日必须指明按星期几的课表上课")
        if self.kind == "holiday" and self.follows_weekday is not None:
            raise ValueError("假日不按任何课表上课")
        return self


def _check_term(start: date, end: date, days: list[CalendarDayIn]) -> None:
    if start > end:
        raise ValueError("学期开始日期必须早于结束日期")
    seen: set[date] = set()
    for entry in days:
        if not start <= entry.day <= end:
            raise ValueError(f"{entry.day} 不在学期之内")
        if entry.day in seen:
            raise ValueError(f"{entry.day} 重复")
        seen.add(entry.day)


class TermCreate(Shape):
    alliance_id: int
    name: Name
    start_date: date
    end_date: date
    is_current: bool = False
    calendar_days: list[CalendarDayIn] = Field(default_factory=list)

    @model_validator(mode="after")
    def _consistent(self) -> TermCreate:
        _check_term(self.start_date, self.end_date, self.calendar_days)
        return self


class TermUpdate(Shape):
    name: Name | None = None
    start_date: date | None = None
    end_date: date | None = None
    is_current: bool | None = None
    calendar_days: list[CalendarDayIn] | None = None


class CalendarDayOut(Out):
    day: date
    kind: str
    follows_weekday: str | None
    note: str


class TermOut(Out):
    id: int
    alliance_id: int
    name: str
    start_date: date
    end_date: date
    is_current: bool
    calendar_days: list[CalendarDayOut]


# --- subject ----------------------------------------------------------------------------------
class SubjectCreate(Shape):
    alliance_id: int
    name: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=30)]
    is_main: bool = False
    is_scarce: bool = False


class SubjectUpdate(Shape):
    name: (
        Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=30)] | None
    ) = None
    is_main: bool | None = None
    is_scarce: bool | None = None


class SubjectOut(Out):
    id: int
    alliance_id: int
    name: str
    is_main: bool
    is_scarce: bool


# --- room & terminal --------------------------------------------------------------------------
Feature = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=30)]


class RoomCreate(Shape):
    campus_id: int
    code: Code
    name: Name
    capacity: int = Field(default=45, ge=1, le=1000)
    features: list[Feature] = Field(default_factory=list)


class RoomUpdate(Shape):
    name: Name | None = None
    capacity: int | None = Field(default=None, ge=1, le=1000)
    features: list[Feature] | None = None


class RoomOut(Out):
    id: int
    campus_id: int
    code: str
    name: str
    capacity: int
    features: list[str]


class TerminalCreate(Shape):
    room_id: int
    name: Name


class TerminalUpdate(Shape):
    name: Name | None = None


class TerminalOut(Out):
    id: int
    room_id: int
    name: str
    paired: bool


# --- class ------------------------------------------------------------------------------------
class ClassCreate(Shape):
    campus_id: int
    grade_level: int = Field(ge=1, le=12)
    code: Code
    name: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=50)]
    size: int = Field(default=40, ge=1, le=200)
    home_room_id: int | None = None
    head_teacher_id: int | None = None


class ClassUpdate(Shape):
    name: (
        Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=50)] | None
    ) = None
    size: int | None = Field(default=None, ge=1, le=200)
    home_room_id: int | None = None
    head_teacher_id: int | None = None


class ClassOut(Out):
    id: int
    school_id: int
    campus_id: int
    grade_level: int
    code: str
    name: str
    size: int
    home_room_id: int | None
    head_teacher_id: int | None


# --- teacher ----------------------------------------------------------------------------------
class TeacherCreate(Shape):
    school_id: int
    code: Code
    name: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=50)]
    home_campus_id: int | None = None
    phone: Annotated[str, StringConstraints(strip_whitespace=True, max_length=20)] = ""
    is_backbone: bool = False
    is_subject_leader: bool = False
    max_lessons_per_day: int | None = Field(default=None, ge=1, le=14)
    subject_ids: list[int] = Field(default_factory=list)
    campus_ids: list[int] = Field(default_factory=list)


class TeacherUpdate(Shape):
    name: (
        Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=50)] | None
    ) = None
    home_campus_id: int | None = None
    phone: Annotated[str, StringConstraints(strip_whitespace=True, max_length=20)] | None = None
    is_backbone: bool | None = None
    is_subject_leader: bool | None = None
    max_lessons_per_day: int | None = Field(default=None, ge=1, le=14)
    subject_ids: list[int] | None = None
    campus_ids: list[int] | None = None


class TeacherOut(Out):
    id: int
    school_id: int
    code: str
    name: str
    home_campus_id: int | None
    phone: str
    is_backbone: bool
    is_subject_leader: bool
    max_lessons_per_day: int | None
    subject_ids: list[int]
    campus_ids: list[int]


# --- student ----------------------------------------------------------------------------------
class StudentCreate(Shape):
    class_id: int
    student_no: Annotated[
        str, StringConstraints(strip_whitespace=True, min_length=1, max_length=30)
    ]
    name: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=50)]


class StudentUpdate(Shape):
    name: (
        Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=50)] | None
    ) = None


class StudentOut(Out):
    id: int
    class_id: int
    student_no: str
    name: str


# --- account ----------------------------------------------------------------------------------
Role = Literal["bureau", "alliance_admin", "school_admin", "teacher", "terminal", "student"]


class AccountCreate(Shape):
    username: Annotated[
        str,
        StringConstraints(
            strip_whitespace=True, min_length=2, max_length=64, pattern=r"^[A-Za-z0-9_.@-]+$"
        ),
    ]
    display_name: Name
    role: Role
    password: str | None = Field(default=None, max_length=200)
    # The one link that fixes the account's scope; the rest is derived from it.
    alliance_id: int | None = None
    school_id: int | None = None
    teacher_id: int | None = None
    student_id: int | None = None
    terminal_id: int | None = None


class AccountUpdate(Shape):
    display_name: Name | None = None
    is_active: bool | None = None
    password: str | None = Field(default=None, max_length=200)


class AccountOut(Out):
    id: int
    username: str
    display_name: str
    role: str
    is_active: bool
    alliance_id: int | None
    school_id: int | None
    class_id: int | None
    teacher_id: int | None
    student_id: int | None
    terminal_id: int | None


# --- lessons (教学任务) and sync groups --------------------------------------------------------
class LessonCreate(Shape):
    term_id: int
    class_id: int
    subject_id: int
    teacher_id: int
    per_week: int = Field(ge=1, le=20)
    max_per_day: int | None = Field(default=None, ge=1, le=8)
    prefer_morning: bool = False
    room_features: list[Feature] = Field(default_factory=list)


class LessonUpdate(Shape):
    teacher_id: int | None = None
    per_week: int | None = Field(default=None, ge=1, le=20)
    max_per_day: int | None = Field(default=None, ge=1, le=8)
    prefer_morning: bool | None = None
    room_features: list[Feature] | None = None


class LessonOut(Out):
    id: int
    term_id: int
    class_id: int
    subject_id: int
    teacher_id: int
    per_week: int
    max_per_day: int | None
    prefer_morning: bool
    room_features: list[str]


class SyncGroupCreate(Shape):
    term_id: int
    code: Code
    kind: Literal["sync", "delivered", "master"] = "sync"
    lead_lesson_id: int
    member_lesson_ids: list[int] = Field(min_length=1, max_length=8)


class SyncGroupUpdate(Shape):
    kind: Literal["sync", "delivered", "master"] | None = None
    lead_lesson_id: int | None = None
    member_lesson_ids: list[int] | None = Field(default=None, min_length=1, max_length=8)


class SyncGroupOut(Out):
    id: int
    term_id: int
    code: str
    kind: str
    lead_lesson_id: int
    member_lesson_ids: list[int]
