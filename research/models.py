"""Tables of 教研: research groups, their sessions and attendance, and 跟班听课 / 指导 visits."""

from __future__ import annotations

from datetime import date, datetime, time

from sqlalchemy import (
    CheckConstraint,
    Column,
    Date,
    ForeignKey,
    String,
    Table,
    Text,
    Time,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from common.alliance.models import Teacher
from common.db import Base, TimestampMixin

SESSION_STATUSES = ("planned", "held", "cancelled")
VISIT_KINDS = ("sit_in", "guidance")  # 跟班听课 / 指导
VISIT_MODES = ("on_site", "online")

research_group_members = Table(
    "research_group_members",
    Base.metadata,
    Column(
        "research_group_id", ForeignKey("research_groups.id", ondelete="CASCADE"), primary_key=True
    ),
    Column("teacher_id", ForeignKey("teachers.id", ondelete="CASCADE"), primary_key=True),
)


class ResearchGroup(TimestampMixin, Base):
    """A subject's 教研组 across the alliance's schools, meeting weekly at the leader's slot."""

    __tablename__ = "research_groups"
    __table_args__ = (
        UniqueConstraint("alliance_id", "name"),
        CheckConstraint("minutes > 0", name="positive_minutes"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    alliance_id: Mapped[int] = mapped_column(ForeignKey("alliances.id", ondelete="CASCADE"))
    subject_id: Mapped[int] = mapped_column(ForeignKey("subjects.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(100))
    grade_band: Mapped[str] = mapped_column(String(30), default="")  # e.g. 三至六年级
    leader_id: Mapped[int | None] = mapped_column(
        ForeignKey("teachers.id", ondelete="SET NULL"), default=None
    )
    weekday: Mapped[str] = mapped_column(String(3))
    start_time: Mapped[time] = mapped_column(Time)
    minutes: Mapped[int] = mapped_column(default=60)
    online_room: Mapped[str] = mapped_column(String(100), default="")

    leader: Mapped[Teacher | None] = relationship(foreign_keys=[leader_id])
    members: Mapped[list[Teacher]] = relationship(
        secondary=research_group_members, order_by="Teacher.id"
    )


class ResearchSession(TimestampMixin, Base):
    """One 集体教研 with the four fixed points (四定): time, place, topic, host."""

    __tablename__ = "research_sessions"
    __table_args__ = (
        UniqueConstraint("group_id", "day", "start_time"),
        CheckConstraint("minutes > 0", name="positive_minutes"),
        CheckConstraint("status IN ('planned', 'held', 'cancelled')", name="known_status"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    group_id: Mapped[int] = mapped_column(ForeignKey("research_groups.id", ondelete="CASCADE"))
    term_id: Mapped[int] = mapped_column(ForeignKey("terms.id", ondelete="CASCADE"))
    day: Mapped[date] = mapped_column(Date)
    start_time: Mapped[time] = mapped_column(Time)
    minutes: Mapped[int] = mapped_column(default=60)
    topic: Mapped[str] = mapped_column(String(200), default="")
    host_id: Mapped[int | None] = mapped_column(
        ForeignKey("teachers.id", ondelete="SET NULL"), default=None
    )
    place: Mapped[str] = mapped_column(String(100), default="")
    status: Mapped[str] = mapped_column(String(10), default="planned")
    minutes_text: Mapped[str] = mapped_column(Text, default="")  # 纪要
    # The session's recording (issue 6); no foreign key until the recordings table exists.
    recording_id: Mapped[int | None] = mapped_column(default=None)

    group: Mapped[ResearchGroup] = relationship()
    host: Mapped[Teacher | None] = relationship(foreign_keys=[host_id])


class Attendance(Base):
    """Who joined a session and for how long, accumulated from join/leave reports."""

    __tablename__ = "research_attendance"
    __table_args__ = (
        UniqueConstraint("session_id", "teacher_id"),
        CheckConstraint("seconds >= 0", name="non_negative_seconds"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    session_id: Mapped[int] = mapped_column(ForeignKey("research_sessions.id", ondelete="CASCADE"))
    teacher_id: Mapped[int] = mapped_column(ForeignKey("teachers.id", ondelete="CASCADE"))
    joined_at: Mapped[datetime]
    left_at: Mapped[datetime]
    seconds: Mapped[int] = mapped_column(default=0)

    teacher: Mapped[Teacher] = relationship()


class Visit(TimestampMixin, Base):
    """A 跟班听课 day at the lead school, or a subject leader's 指导 visit to a member school."""

    __tablename__ = "visits"
    __table_args__ = (
        CheckConstraint("from_school_id <> to_school_id", name="other_school"),
        CheckConstraint("kind IN ('sit_in', 'guidance')", name="known_kind"),
        CheckConstraint("mode IN ('on_site', 'online')", name="known_mode"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(10))
    teacher_id: Mapped[int] = mapped_column(ForeignKey("teachers.id", ondelete="CASCADE"))
    from_school_id: Mapped[int] = mapped_column(ForeignKey("schools.id", ondelete="CASCADE"))
    to_school_id: Mapped[int] = mapped_column(ForeignKey("schools.id", ondelete="CASCADE"))
    day: Mapped[date] = mapped_column(Date)
    subject_id: Mapped[int | None] = mapped_column(
        ForeignKey("subjects.id", ondelete="SET NULL"), default=None
    )
    mode: Mapped[str] = mapped_column(String(10), default="on_site")
    note: Mapped[str] = mapped_column(String(500), default="")

    teacher: Mapped[Teacher] = relationship()
