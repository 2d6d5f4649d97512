"""Tables of 听评课: the alliance's rubric, comments pinned to a moment, scores, and links.

A rubric is versioned: saving it writes a new version, so scores given under an older one
keep the criteria they were given against (the report shows each with its own columns).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import CheckConstraint, ForeignKey, String, Text, UniqueConstraint, event, inspect
from sqlalchemy.orm import Mapped, Session, mapped_column, relationship

from common.db import Base, TimestampMixin, utcnow
from recordings.search import MAX_TERM_LENGTH, index_terms, rewrite_terms


class Rubric(Base):
    """One version of an alliance's 评课 rubric; the highest version is the current one."""

    __tablename__ = "rubrics"
    __table_args__ = (
        UniqueConstraint("alliance_id", "version"),
        CheckConstraint("version > 0", name="positive_version"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    alliance_id: Mapped[int] = mapped_column(
        ForeignKey("alliances.id", ondelete="CASCADE"), index=True
    )
    version: Mapped[int]
    name: Mapped[str] = mapped_column(String(100), default="课堂教学评价表")
    created_by_account_id: Mapped[int | None] = mapped_column(
        ForeignKey("accounts.id", ondelete="SET NULL"), default=None
    )
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    criteria: Mapped[list[RubricCriterion]] = relationship(
        order_by="RubricCriterion.position", cascade="all, delete-orphan"
    )


class RubricCriterion(Base):
    """One line of a rubric: what is judged, out of how many points, weighing how much."""

    __tablename__ = "rubric_criteria"
    __table_args__ = (
        UniqueConstraint("rubric_id", "name"),
        CheckConstraint("max_score > 0", name="positive_max_score"),
        CheckConstraint("weight > 0", name="positive_weight"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    rubric_id: Mapped[int] = mapped_column(ForeignKey("rubrics.id", ondelete="CASCADE"))
    position: Mapped[int]
    name: Mapped[str] = mapped_column(String(50))
    description: Mapped[str] = mapped_column(String(500), default="")
    max_score: Mapped[int]
    weight: Mapped[float] = mapped_column(default=1.0)


class ReviewComment(TimestampMixin, Base):
    """A 评语 pinned to a moment of a recording; a reply sits under its thread's first comment."""

    __tablename__ = "review_comments"
    __table_args__ = (CheckConstraint("at_seconds >= 0", name="non_negative_moment"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    recording_id: Mapped[int] = mapped_column(
        ForeignKey("recordings.id", ondelete="CASCADE"), index=True
    )
    parent_id: Mapped[int | None] = mapped_column(
        ForeignKey("review_comments.id", ondelete="CASCADE"), default=None, index=True
    )
    at_seconds: Mapped[float]
    body: Mapped[str] = mapped_column(Text)
    # The name is kept so the thread still reads right after an account is removed.
    author_account_id: Mapped[int | None] = mapped_column(
        ForeignKey("accounts.id", ondelete="SET NULL"), default=None
    )
    author_teacher_id: Mapped[int | None] = mapped_column(
        ForeignKey("teachers.id", ondelete="SET NULL"), default=None
    )
    author_name: Mapped[str] = mapped_column(String(100))
    edited_at: Mapped[datetime | None] = mapped_column(default=None)

    search_terms: Mapped[list[ReviewCommentSearchTerm]] = relationship(
        cascade="all, delete-orphan", passive_deletes=True
    )


class ReviewCommentSearchTerm(Base):
    """One term of a comment's text (``recordings.search``), kept on every write; the rows go
    with the comment (and so with its recording) through the foreign key."""

    __tablename__ = "review_comment_search_terms"

    comment_id: Mapped[int] = mapped_column(
        ForeignKey("review_comments.id", ondelete="CASCADE"), primary_key=True
    )
    term: Mapped[str] = mapped_column(String(MAX_TERM_LENGTH), primary_key=True, index=True)


@event.listens_for(Session, "before_flush")
def _reindex_comments(session: Session, context: object, instances: object) -> None:
    """New comments, and those whose text changed, get their terms rewritten."""
    for comment in (*session.new, *session.dirty):
        if not isinstance(comment, ReviewComment):
            continue
        if comment in session.dirty and not inspect(comment).attrs.body.history.has_changes():
            continue
        wanted = index_terms(comment.body or "")
        rewrite_terms(comment.search_terms, wanted, lambda term: ReviewCommentSearchTerm(term=term))


class Observation(TimestampMixin, Base):
    """One evaluator's 评课 of one recording: a score per criterion, weighted into `overall`."""

    __tablename__ = "observations"
    __table_args__ = (
        UniqueConstraint("recording_id", "evaluator_account_id"),
        CheckConstraint("overall >= 0 AND overall <= 100", name="overall_in_range"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    recording_id: Mapped[int] = mapped_column(
        ForeignKey("recordings.id", ondelete="CASCADE"), index=True
    )
    evaluator_account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"))
    evaluator_teacher_id: Mapped[int | None] = mapped_column(
        ForeignKey("teachers.id", ondelete="SET NULL"), default=None
    )
    evaluator_name: Mapped[str] = mapped_column(String(100))
    rubric_id: Mapped[int] = mapped_column(ForeignKey("rubrics.id", ondelete="CASCADE"))
    overall: Mapped[float]  # weighted share of full marks, 0–100
    remark: Mapped[str] = mapped_column(Text, default="")

    scores: Mapped[list[ObservationScore]] = relationship(
        cascade="all, delete-orphan", order_by="ObservationScore.id"
    )
    rubric: Mapped[Rubric] = relationship()


class ObservationScore(Base):
    __tablename__ = "observation_scores"
    __table_args__ = (
        UniqueConstraint("observation_id", "criterion_id"),
        CheckConstraint("score >= 0", name="non_negative_score"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    observation_id: Mapped[int] = mapped_column(ForeignKey("observations.id", ondelete="CASCADE"))
    criterion_id: Mapped[int] = mapped_column(ForeignKey("rubric_criteria.id", ondelete="CASCADE"))
    score: Mapped[float]


class ReviewedLesson(Base):
    """A 教研 session reviews a recorded lesson (评课 in the session; many to many)."""

    __tablename__ = "reviewed_lessons"

    research_session_id: Mapped[int] = mapped_column(
        ForeignKey("research_sessions.id", ondelete="CASCADE"), primary_key=True
    )
    recording_id: Mapped[int] = mapped_column(
        ForeignKey("recordings.id", ondelete="CASCADE"), primary_key=True, index=True
    )
    linked_by_account_id: Mapped[int | None] = mapped_column(
        ForeignKey("accounts.id", ondelete="SET NULL"), default=None
    )
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
