"""recordings: library, visibility, views (issue 6)

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23 19:44:52.221438
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "recordings",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("alliance_id", sa.Integer(), nullable=False),
        sa.Column("school_id", sa.Integer(), nullable=False),
        sa.Column("campus_id", sa.Integer(), nullable=True),
        sa.Column("class_id", sa.Integer(), nullable=True),
        sa.Column("grade_level", sa.Integer(), nullable=True),
        sa.Column("sync_group_id", sa.Integer(), nullable=True),
        sa.Column("research_session_id", sa.Integer(), nullable=True),
        sa.Column("subject_id", sa.Integer(), nullable=True),
        sa.Column("teacher_id", sa.Integer(), nullable=True),
        sa.Column("date", sa.Date(), nullable=False),
        sa.Column("period", sa.Integer(), nullable=True),
        sa.Column("topic", sa.String(length=200), nullable=False),
        sa.Column("title", sa.String(length=200), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("status_message", sa.String(length=500), nullable=False),
        sa.Column("raw_path", sa.String(length=500), nullable=False),
        sa.Column("outputs", sa.JSON(), nullable=False),
        sa.Column("job_id", sa.String(length=64), nullable=True),
        sa.Column("processed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "status IN ('recording', 'processing', 'ready', 'failed')",
            name=op.f("ck_recordings_known_status"),
        ),
        sa.ForeignKeyConstraint(
            ["alliance_id"],
            ["alliances.id"],
            name=op.f("fk_recordings_alliance_id_alliances"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["campus_id"],
            ["campuses.id"],
            name=op.f("fk_recordings_campus_id_campuses"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["class_id"],
            ["classes.id"],
            name=op.f("fk_recordings_class_id_classes"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["research_session_id"],
            ["research_sessions.id"],
            name=op.f("fk_recordings_research_session_id_research_sessions"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["school_id"],
            ["schools.id"],
            name=op.f("fk_recordings_school_id_schools"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["subject_id"],
            ["subjects.id"],
            name=op.f("fk_recordings_subject_id_subjects"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["sync_group_id"],
            ["sync_groups.id"],
            name=op.f("fk_recordings_sync_group_id_sync_groups"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["teacher_id"],
            ["teachers.id"],
            name=op.f("fk_recordings_teacher_id_teachers"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_recordings")),
    )
    with op.batch_alter_table("recordings", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_recordings_alliance_id"), ["alliance_id"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_recordings_date"), ["date"], unique=False)

    op.create_table(
        "recording_classes",
        sa.Column("recording_id", sa.Integer(), nullable=False),
        sa.Column("class_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["class_id"],
            ["classes.id"],
            name=op.f("fk_recording_classes_class_id_classes"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["recording_id"],
            ["recordings.id"],
            name=op.f("fk_recording_classes_recording_id_recordings"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("recording_id", "class_id", name=op.f("pk_recording_classes")),
    )
    op.create_table(
        "recording_views",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("recording_id", sa.Integer(), nullable=False),
        sa.Column("position_s", sa.Double(), nullable=False),
        sa.Column("replays", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["accounts.id"],
            name=op.f("fk_recording_views_account_id_accounts"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["recording_id"],
            ["recordings.id"],
            name=op.f("fk_recording_views_recording_id_recordings"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_recording_views")),
        sa.UniqueConstraint(
            "account_id", "recording_id", name=op.f("uq_recording_views_account_id_recording_id")
        ),
    )
    with op.batch_alter_table("recording_views", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_recording_views_recording_id"), ["recording_id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("recording_views", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_recording_views_recording_id"))

    op.drop_table("recording_views")
    op.drop_table("recording_classes")
    with op.batch_alter_table("recordings", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_recordings_date"))
        batch_op.drop_index(batch_op.f("ix_recordings_alliance_id"))

    op.drop_table("recordings")
