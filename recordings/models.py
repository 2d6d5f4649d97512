"""Tables of the resource library: recorded lessons, who may see them, and where viewers stopped."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    CheckConstraint,
    Column,
    Date,
    ForeignKey,
    String,
    Table,
    UniqueConstraint,
    event,
    false,
    inspect,
)
from sqlalchemy.orm import Mapped, Session, mapped_column, relationship

from common.alliance.models import SchoolClass
from common.db import Base, TimestampMixin, db_now, utcnow
from recordings.search import MAX_TERM_LENGTH, index_terms, rewrite_terms

RECORDING_STATUSES = ("recording", "processing", "ready", "failed")

# Recordings of minors are never public: these classes (the lead class and the member classes
# of its sync group) may watch; staff see by their role's scope.
recording_classes = Table(
    "recording_classes",
    Base.metadata,
    Column("recording_id", ForeignKey("recordings.id", ondelete="CASCADE"), primary_key=True),
    Column("class_id", ForeignKey("classes.id", ondelete="CASCADE"), primary_key=True),
)


class Recording(TimestampMixin, Base):
    """One recorded lesson or meeting, with the timetable metadata it was recorded under."""

    __tablename__ = "recordings"
    __table_args__ = (
        CheckConstraint(
            "status IN ('recording', 'processing', 'ready', 'failed')", name="known_status"
        ),
    )
    # the written time read back with the write (RETURNING): a row keeps its ``updated_at``
    __mapper_args__ = {"eager_defaults": True}  # noqa: RUF012 (SQLAlchemy's own mapping)

    id: Mapped[int] = mapped_column(primary_key=True)
    alliance_id: Mapped[int] = mapped_column(
        ForeignKey("alliances.id", ondelete="CASCADE"), index=True
    )
    school_id: Mapped[int] = mapped_column(ForeignKey("schools.id", ondelete="CASCADE"))
    campus_id: Mapped[int | None] = mapped_column(
        ForeignKey("campuses.id", ondelete="SET NULL"), default=None
    )
    class_id: Mapped[int | None] = mapped_column(
        ForeignKey("classes.id", ondelete="SET NULL"), default=None
    )
    grade_level: Mapped[int | None] = mapped_column(default=None)
    sync_group_id: Mapped[int | None] = mapped_column(
        ForeignKey("sync_groups.id", ondelete="SET NULL"), default=None
    )
    research_session_id: Mapped[int | None] = mapped_column(
        ForeignKey("research_sessions.id", ondelete="SET NULL"), default=None
    )
    subject_id: Mapped[int | None] = mapped_column(
        ForeignKey("subjects.id", ondelete="SET NULL"), default=None
    )
    teacher_id: Mapped[int | None] = mapped_column(
        ForeignKey("teachers.id", ondelete="SET NULL"), default=None
    )
    date: Mapped[date] = mapped_column(Date, index=True)
    period: Mapped[int | None] = mapped_column(default=None)
    topic: Mapped[str] = mapped_column(String(200), default="")
    title: Mapped[str] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(20), default="recording")
    status_message: Mapped[str] = mapped_column(String(500), default="")
    # Relative to Settings.media_root; never served by a public URL.
    raw_path: Mapped[str] = mapped_column(String(500), default="")
    # {"mp4", "poster", "hls", "duration_s", "chapters": [...], "size_bytes"}: paths relative too.
    outputs: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    job_id: Mapped[str | None] = mapped_column(String(64), default=None)
    processed_at: Mapped[datetime | None] = mapped_column(default=None)
    # Exempt from the alliance's retention rule (kept in a collection, a model lesson).
    keep: Mapped[bool] = mapped_column(default=False, server_default=false())
    # When retention deleted the files; the row stays, so what was recorded is still counted.
    media_deleted_at: Mapped[datetime | None] = mapped_column(default=None)
    # When the row was made and last changed, on the database server's clock: processes on
    # other hosts judge by them a start on its way, a meeting finisher's lease and the resume
    # sweep's grace (``seconds_since``)
    created_at: Mapped[datetime] = mapped_column(default=db_now())
    updated_at: Mapped[datetime] = mapped_column(default=db_now(), onupdate=db_now())

    visible_classes: Mapped[list[SchoolClass]] = relationship(secondary=recording_classes)
    search_terms: Mapped[list[RecordingSearchTerm]] = relationship(
        cascade="all, delete-orphan", passive_deletes=True
    )


class RecordingRetention(TimestampMixin, Base):
    """How long an alliance keeps its recordings' files (days after the lesson)."""

    __tablename__ = "recording_retention"
    __table_args__ = (CheckConstraint("keep_days >= 1", name="positive_days"),)

    alliance_id: Mapped[int] = mapped_column(
        ForeignKey("alliances.id", ondelete="CASCADE"), primary_key=True
    )
    keep_days: Mapped[int]


class RecordingSearchTerm(Base):
    """One term of a recording's title or topic (``recordings.search``), kept on every write."""

    __tablename__ = "recording_search_terms"

    recording_id: Mapped[int] = mapped_column(
        ForeignKey("recordings.id", ondelete="CASCADE"), primary_key=True
    )
    term: Mapped[str] = mapped_column(String(MAX_TERM_LENGTH), primary_key=True, index=True)


@event.listens_for(Session, "before_flush")
def _reindex_recordings(session: Session, context: object, instances: object) -> None:
    """New recordings, and those whose title or topic changed, get their terms rewritten."""
    for recording in (*session.new, *session.dirty):
        if not isinstance(recording, Recording):
            continue
        state = inspect(recording)
        if recording in session.dirty and not (
            state.attrs.title.history.has_changes() or state.attrs.topic.history.has_changes()
        ):
            continue
        wanted = index_terms(recording.title or "", recording.topic or "")
        rewrite_terms(recording.search_terms, wanted, lambda term: RecordingSearchTerm(term=term))


class RecordingView(Base):
    """Where one account stopped in one recording (resume), and how often it came back."""

    __tablename__ = "recording_views"
    __table_args__ = (UniqueConstraint("account_id", "recording_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"))
    recording_id: Mapped[int] = mapped_column(
        ForeignKey("recordings.id", ondelete="CASCADE"), index=True
    )
    position_s: Mapped[float] = mapped_column(default=0.0)
    replays: Mapped[int] = mapped_column(default=1)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class RecordingCollection(TimestampMixin, Base):
    """单元合集: a teacher's ordered recordings of one course unit (``recordings.collections``)."""

    __tablename__ = "recording_collections"

    id: Mapped[int] = mapped_column(primary_key=True)
    alliance_id: Mapped[int] = mapped_column(
        ForeignKey("alliances.id", ondelete="CASCADE"), index=True
    )
    owner_account_id: Mapped[int | None] = mapped_column(
        ForeignKey("accounts.id", ondelete="SET NULL"), default=None
    )
    owner_name: Mapped[str] = mapped_column(String(100), default="")
    title: Mapped[str] = mapped_column(String(200))
    subject_id: Mapped[int | None] = mapped_column(
        ForeignKey("subjects.id", ondelete="SET NULL"), default=None
    )
    grade_level: Mapped[int | None] = mapped_column(default=None)
    unit_name: Mapped[str] = mapped_column(String(200), default="")
    items: Mapped[list[RecordingCollectionItem]] = relationship(
        cascade="all, delete-orphan", order_by="RecordingCollectionItem.position"
    )


class RecordingCollectionItem(Base):
    """One recording of a collection, at its place in the unit's order."""

    __tablename__ = "recording_collection_items"

    collection_id: Mapped[int] = mapped_column(
        ForeignKey("recording_collections.id", ondelete="CASCADE"), primary_key=True
    )
    recording_id: Mapped[int] = mapped_column(
        ForeignKey("recordings.id", ondelete="CASCADE"), primary_key=True, index=True
    )
    position: Mapped[int]
