"""听评课 comments, rubrics and scores (issue 7)

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-04 16:50:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "rubrics",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("alliance_id", sa.Integer(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("created_by_account_id", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("version > 0", name=op.f("ck_rubrics_positive_version")),
        sa.ForeignKeyConstraint(
            ["alliance_id"],
            ["alliances.id"],
            name=op.f("fk_rubrics_alliance_id_alliances"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["created_by_account_id"],
            ["accounts.id"],
            name=op.f("fk_rubrics_created_by_account_id_accounts"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_rubrics")),
        sa.UniqueConstraint("alliance_id", "version", name=op.f("uq_rubrics_alliance_id_version")),
    )
    op.create_index(op.f("ix_rubrics_alliance_id"), "rubrics", ["alliance_id"], unique=False)
    op.create_table(
        "observations",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("recording_id", sa.Integer(), nullable=False),
        sa.Column("evaluator_account_id", sa.Integer(), nullable=False),
        sa.Column("evaluator_teacher_id", sa.Integer(), nullable=True),
        sa.Column("evaluator_name", sa.String(length=100), nullable=False),
        sa.Column("rubric_id", sa.Integer(), nullable=False),
        sa.Column("overall", sa.Double(), nullable=False),
        sa.Column("remark", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "overall >= 0 AND overall <= 100", name=op.f("ck_observations_overall_in_range")
        ),
        sa.ForeignKeyConstraint(
            ["evaluator_account_id"],
            ["accounts.id"],
            name=op.f("fk_observations_evaluator_account_id_accounts"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["evaluator_teacher_id"],
            ["teachers.id"],
            name=op.f("fk_observations_evaluator_teacher_id_teachers"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["recording_id"],
            ["recordings.id"],
            name=op.f("fk_observations_recording_id_recordings"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["rubric_id"],
            ["rubrics.id"],
            name=op.f("fk_observations_rubric_id_rubrics"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_observations")),
        sa.UniqueConstraint(
            "recording_id",
            "evaluator_account_id",
            name=op.f("uq_observations_recording_id_evaluator_account_id"),
        ),
    )
    op.create_index(
        op.f("ix_observations_recording_id"), "observations", ["recording_id"], unique=False
    )
    op.create_table(
        "review_comments",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("recording_id", sa.Integer(), nullable=False),
        sa.Column("parent_id", sa.Integer(), nullable=True),
        sa.Column("at_seconds", sa.Double(), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("author_account_id", sa.Integer(), nullable=True),
        sa.Column("author_teacher_id", sa.Integer(), nullable=True),
        sa.Column("author_name", sa.String(length=100), nullable=False),
        sa.Column("edited_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("at_seconds >= 0", name=op.f("ck_review_comments_non_negative_moment")),
        sa.ForeignKeyConstraint(
            ["author_account_id"],
            ["accounts.id"],
            name=op.f("fk_review_comments_author_account_id_accounts"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["author_teacher_id"],
            ["teachers.id"],
            name=op.f("fk_review_comments_author_teacher_id_teachers"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["parent_id"],
            ["review_comments.id"],
            name=op.f("fk_review_comments_parent_id_review_comments"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["recording_id"],
            ["recordings.id"],
            name=op.f("fk_review_comments_recording_id_recordings"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_review_comments")),
    )
    op.create_index(
        op.f("ix_review_comments_parent_id"), "review_comments", ["parent_id"], unique=False
    )
    op.create_index(
        op.f("ix_review_comments_recording_id"), "review_comments", ["recording_id"], unique=False
    )
    op.create_table(
        "reviewed_lessons",
        sa.Column("research_session_id", sa.Integer(), nullable=False),
        sa.Column("recording_id", sa.Integer(), nullable=False),
        sa.Column("linked_by_account_id", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["linked_by_account_id"],
            ["accounts.id"],
            name=op.f("fk_reviewed_lessons_linked_by_account_id_accounts"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["recording_id"],
            ["recordings.id"],
            name=op.f("fk_reviewed_lessons_recording_id_recordings"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["research_session_id"],
            ["research_sessions.id"],
            name=op.f("fk_reviewed_lessons_research_session_id_research_sessions"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint(
            "research_session_id", "recording_id", name=op.f("pk_reviewed_lessons")
        ),
    )
    op.create_index(
        op.f("ix_reviewed_lessons_recording_id"), "reviewed_lessons", ["recording_id"], unique=False
    )
    op.create_table(
        "rubric_criteria",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("rubric_id", sa.Integer(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=50), nullable=False),
        sa.Column("description", sa.String(length=500), nullable=False),
        sa.Column("max_score", sa.Integer(), nullable=False),
        sa.Column("weight", sa.Double(), nullable=False),
        sa.CheckConstraint("max_score > 0", name=op.f("ck_rubric_criteria_positive_max_score")),
        sa.CheckConstraint("weight > 0", name=op.f("ck_rubric_criteria_positive_weight")),
        sa.ForeignKeyConstraint(
            ["rubric_id"],
            ["rubrics.id"],
            name=op.f("fk_rubric_criteria_rubric_id_rubrics"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_rubric_criteria")),
        sa.UniqueConstraint("rubric_id", "name", name=op.f("uq_rubric_criteria_rubric_id_name")),
    )
    op.create_table(
        "observation_scores",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("observation_id", sa.Integer(), nullable=False),
        sa.Column("criterion_id", sa.Integer(), nullable=False),
        sa.Column("score", sa.Double(), nullable=False),
        sa.CheckConstraint("score >= 0", name=op.f("ck_observation_scores_non_negative_score")),
        sa.ForeignKeyConstraint(
            ["criterion_id"],
            ["rubric_criteria.id"],
            name=op.f("fk_observation_scores_criterion_id_rubric_criteria"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["observation_id"],
            ["observations.id"],
            name=op.f("fk_observation_scores_observation_id_observations"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_observation_scores")),
        sa.UniqueConstraint(
            "observation_id",
            "criterion_id",
            name=op.f("uq_observation_scores_observation_id_criterion_id"),
        ),
    )


def downgrade() -> None:
    op.drop_table("observation_scores")
    op.drop_table("rubric_criteria")
    op.drop_index(op.f("ix_reviewed_lessons_recording_id"), table_name="reviewed_lessons")
    op.drop_table("reviewed_lessons")
    op.drop_index(op.f("ix_review_comments_recording_id"), table_name="review_comments")
    op.drop_index(op.f("ix_review_comments_parent_id"), table_name="review_comments")
    op.drop_table("review_comments")
    op.drop_index(op.f("ix_observations_recording_id"), table_name="observations")
    op.drop_table("observations")
    op.drop_index(op.f("ix_rubrics_alliance_id"), table_name="rubrics")
    op.drop_table("rubrics")
