"""lesson runs for the bureau dashboard (issue 7)

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-04 16:50:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "lesson_runs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("sync_group_id", sa.Integer(), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("lead_period", sa.Integer(), nullable=False),
        sa.Column("planned_start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("planned_end", sa.DateTime(timezone=True), nullable=False),
        sa.Column("lead_intervals", sa.JSON(), nullable=False),
        sa.Column("lead_live_seconds", sa.Integer(), nullable=False),
        sa.Column("held", sa.Boolean(), nullable=False),
        sa.Column("recording_id", sa.Integer(), nullable=True),
        sa.Column("checkpointed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("lead_live_seconds >= 0", name=op.f("ck_lesson_runs_non_negative_live")),
        sa.ForeignKeyConstraint(
            ["recording_id"],
            ["recordings.id"],
            name=op.f("fk_lesson_runs_recording_id_recordings"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["sync_group_id"],
            ["sync_groups.id"],
            name=op.f("fk_lesson_runs_sync_group_id_sync_groups"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_lesson_runs")),
        sa.UniqueConstraint(
            "sync_group_id",
            "day",
            "lead_period",
            name=op.f("uq_lesson_runs_sync_group_id_day_lead_period"),
        ),
    )
    op.create_index(op.f("ix_lesson_runs_day"), "lesson_runs", ["day"], unique=False)
    op.create_index(
        op.f("ix_lesson_runs_sync_group_id"), "lesson_runs", ["sync_group_id"], unique=False
    )
    op.create_table(
        "lesson_run_classrooms",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("participant_id", sa.String(length=64), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("school_id", sa.Integer(), nullable=True),
        sa.Column("intervals", sa.JSON(), nullable=False),
        sa.Column("seconds", sa.Integer(), nullable=False),
        sa.CheckConstraint(
            "seconds >= 0", name=op.f("ck_lesson_run_classrooms_non_negative_seconds")
        ),
        sa.ForeignKeyConstraint(
            ["run_id"],
            ["lesson_runs.id"],
            name=op.f("fk_lesson_run_classrooms_run_id_lesson_runs"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["school_id"],
            ["schools.id"],
            name=op.f("fk_lesson_run_classrooms_school_id_schools"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_lesson_run_classrooms")),
        sa.UniqueConstraint(
            "run_id",
            "participant_id",
            name=op.f("uq_lesson_run_classrooms_run_id_participant_id"),
        ),
    )


def downgrade() -> None:
    op.drop_table("lesson_run_classrooms")
    op.drop_index(op.f("ix_lesson_runs_sync_group_id"), table_name="lesson_runs")
    op.drop_index(op.f("ix_lesson_runs_day"), table_name="lesson_runs")
    op.drop_table("lesson_runs")
