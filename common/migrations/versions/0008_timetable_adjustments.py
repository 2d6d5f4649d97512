"""timetable adjustments: 调课 applied as dated changes (issues 4 and 8)

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-04 19:07:00.418681
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "timetable_adjustments",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("term_id", sa.Integer(), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("absent_teacher_id", sa.Integer(), nullable=False),
        sa.Column("reason", sa.String(length=200), nullable=False),
        sa.Column("created_by", sa.Integer(), nullable=True),
        sa.Column("status", sa.String(length=10), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["absent_teacher_id"],
            ["teachers.id"],
            name=op.f("fk_timetable_adjustments_absent_teacher_id_teachers"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["created_by"],
            ["accounts.id"],
            name=op.f("fk_timetable_adjustments_created_by_accounts"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["term_id"],
            ["terms.id"],
            name=op.f("fk_timetable_adjustments_term_id_terms"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_timetable_adjustments")),
    )
    with op.batch_alter_table("timetable_adjustments", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_timetable_adjustments_term_id"), ["term_id"], unique=False
        )

    op.create_table(
        "timetable_adjustment_items",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("adjustment_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=10), nullable=False),
        sa.Column("lesson_id", sa.Integer(), nullable=False),
        sa.Column("sync_group_id", sa.Integer(), nullable=True),
        sa.Column("old_date", sa.Date(), nullable=False),
        sa.Column("old_period", sa.Integer(), nullable=False),
        sa.Column("old_room_id", sa.Integer(), nullable=True),
        sa.Column("new_date", sa.Date(), nullable=True),
        sa.Column("new_period", sa.Integer(), nullable=True),
        sa.Column("new_room_id", sa.Integer(), nullable=True),
        sa.Column("substitute_teacher_id", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(
            ["adjustment_id"],
            ["timetable_adjustments.id"],
            name=op.f("fk_timetable_adjustment_items_adjustment_id_timetable_adjustments"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["lesson_id"],
            ["lessons.id"],
            name=op.f("fk_timetable_adjustment_items_lesson_id_lessons"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["new_room_id"],
            ["rooms.id"],
            name=op.f("fk_timetable_adjustment_items_new_room_id_rooms"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["old_room_id"],
            ["rooms.id"],
            name=op.f("fk_timetable_adjustment_items_old_room_id_rooms"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["substitute_teacher_id"],
            ["teachers.id"],
            name=op.f("fk_timetable_adjustment_items_substitute_teacher_id_teachers"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["sync_group_id"],
            ["sync_groups.id"],
            name=op.f("fk_timetable_adjustment_items_sync_group_id_sync_groups"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_timetable_adjustment_items")),
    )
    with op.batch_alter_table("timetable_adjustment_items", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_timetable_adjustment_items_adjustment_id"),
            ["adjustment_id"],
            unique=False,
        )


def downgrade() -> None:
    with op.batch_alter_table("timetable_adjustment_items", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_timetable_adjustment_items_adjustment_id"))

    op.drop_table("timetable_adjustment_items")
    with op.batch_alter_table("timetable_adjustments", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_timetable_adjustments_term_id"))

    op.drop_table("timetable_adjustments")
