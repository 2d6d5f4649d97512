"""Pydantic shapes of the research API: groups, sessions, attendance, visits, plans, quotas."""

from __future__ import annotations

from datetime import date, datetime, time
from typing import Annotated, Literal

from pydantic import Field, StringConstraints, field_validator

from common.alliance.schemas import Name, Out, Shape

SchoolWeekday = Literal["mon", "tue", "wed", "thu", "fri"]
Minutes = Annotated[int, Field(ge=10, le=480)]
Topic = Annotated[str, StringConstraints(strip_whitespace=True, max_length=200)]
RoomName = Annotated[str, StringConstraints(strip_whitespace=True, max_length=100)]
SessionStatus = Literal["planned", "held", "cancelled"]
VisitKind = Literal["sit_in", "guidance"]
VisitMode = Literal["on_site", "online"]


# --- research group ---------------------------------------------------------------------------
class ResearchGroupCreate(Shape):
    alliance_id: int
    subject_id: int
    name: Name
    grade_band: Annotated[str, StringConstraints(strip_whitespace=True, max_length=30)] = ""
    leader_id: int
    member_ids: list[int] = Field(default_factory=list)
    weekday: SchoolWeekday
    start_time: time
    minutes: Minutes = 60
    online_room: RoomName = ""


class ResearchGroupUpdate(Shape):
    name: Name | None = None
    grade_band: Annotated[str, StringConstraints(strip_whitespace=True, max_length=30)] | None = (
        None
    )
    leader_id: int | None = None
    member_ids: list[int] | None = None
    weekday: SchoolWeekday | None = None
    start_time: time | None = None
    minutes: Minutes | None = None
    online_room: RoomName | None = None


class WeeklySlot(Shape):
    """The slot the group's leader chooses (or the aligner found)."""

    weekday: SchoolWeekday
    start_time: time
    minutes: Minutes = 60
    online_room: RoomName | None = None


class ResearchGroupOut(Out):
    id: int
    alliance_id: int
    subject_id: int
    name: str
    grade_band: str
    leader_id: int | None
    member_ids: list[int]
    weekday: str
    start_time: time
    minutes: int
    online_room: str


# --- research session -------------------------------------------------------------------------
class ResearchSessionCreate(Shape):
    group_id: int
    term_id: int
    day: date
    start_time: time | None = None  # default: the group's slot
    minutes: Minutes | None = None
    topic: Topic = ""
    host_id: int | None = None
    place: RoomName | None = None  # default: the group's online room


class ResearchSessionUpdate(Shape):
    day: date | None = None
    start_time: time | None = None
    minutes: Minutes | None = None
    topic: Topic | None = None
    host_id: int | None = None
    place: RoomName | None = None
    status: SessionStatus | None = None
    minutes_text: str | None = None
    recording_id: int | None = None


class SessionMinutes(Shape):
    """What the host writes after a session: its 纪要, and whether it was held or cancelled."""

    minutes_text: Annotated[str, StringConstraints(max_length=20000)] = ""
    status: Literal["held", "cancelled"] | None = None


class ResearchSessionOut(Out):
    id: int
    group_id: int
    term_id: int
    day: date
    start_time: time
    minutes: int
    topic: str
    host_id: int | None
    place: str
    status: str
    minutes_text: str
    recording_id: int | None


# --- planning ---------------------------------------------------------------------------------
class SwapIn(Shape):
    first: date
    second: date


class TermPlanRequest(Shape):
    term_id: int
    topics: list[Topic] = Field(default_factory=list)
    # date -> teacher ids who cannot host that day
    absences: dict[date, list[int]] = Field(default_factory=dict)
    swaps: list[SwapIn] = Field(default_factory=list)


class TermPlanOut(Out):
    group_id: int
    term_id: int
    kept: list[ResearchSessionOut]
    planned: list[ResearchSessionOut]
    removed: int


class HostTally(Out):
    teacher_id: int
    teacher_name: str
    school_id: int
    held: int
    planned: int
    last_hosted: date | None


class RotationOut(Out):
    group_id: int
    term_id: int | None
    hosts: list[HostTally]


# --- attendance -------------------------------------------------------------------------------
class AttendanceIn(Shape):
    teacher_id: int
    joined_at: datetime
    left_at: datetime

    @field_validator("joined_at", "left_at")
    @classmethod
    def _aware(cls, value: datetime) -> datetime:
        if value.tzinfo is None:
            raise ValueError("时间需要带时区，例如 2026-09-16T15:30:00+08:00")
        return value


class AttendanceReport(Shape):
    records: Annotated[list[AttendanceIn], Field(min_length=1, max_length=500)]


class AttendanceOut(Out):
    teacher_id: int
    teacher_name: str
    joined_at: datetime
    left_at: datetime
    seconds: int


# --- visits -----------------------------------------------------------------------------------
class VisitCreate(Shape):
    kind: VisitKind
    teacher_id: int
    to_school_id: int
    day: date
    subject_id: int | None = None
    mode: VisitMode = "on_site"
    note: Annotated[str, StringConstraints(strip_whitespace=True, max_length=500)] = ""


class VisitUpdate(Shape):
    kind: VisitKind | None = None
    to_school_id: int | None = None
    day: date | None = None
    subject_id: int | None = None
    mode: VisitMode | None = None
    note: Annotated[str, StringConstraints(strip_whitespace=True, max_length=500)] | None = None


class VisitOut(Out):
    id: int
    kind: str
    teacher_id: int
    from_school_id: int
    to_school_id: int
    day: date
    subject_id: int | None
    mode: str
    note: str


# --- quotas -----------------------------------------------------------------------------------
class MonthQuota(Out):
    month: str  # YYYY-MM
    days: int
    required: int
    due: int  # what should be done by the as-of date
    met: bool
    behind: bool


class SitInQuota(Out):
    """跟班听课: a member-school teacher, at least one day a month at the lead school."""

    teacher_id: int
    teacher_name: str
    school_id: int
    school_name: str
    months: list[MonthQuota]
    met: bool
    behind: bool


class GuidanceQuota(Out):
    """指导: a lead-school subject leader, at least twice a term at each member school."""

    teacher_id: int
    teacher_name: str
    school_id: int  # the member school guided
    school_name: str
    visits: int
    required: int
    due: int
    met: bool
    behind: bool


class QuotaReport(Out):
    term_id: int
    alliance_id: int
    as_of: date
    sit_in: list[SitInQuota]
    guidance: list[GuidanceQuota]
    behind_sit_in: int
    behind_guidance: int
