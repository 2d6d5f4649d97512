"""recording collections: 单元合集 of recordings by course unit (issue 6)

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-04 19:40:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "recording_collections",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("alliance_id", sa.Integer(), nullable=False),
        sa.Column("owner_account_id", sa.Integer(), nullable=True),
        sa.Column("owner_name", sa.String(length=100), nullable=False),
        sa.Column("title", sa.String(length=200), nullable=False),
        sa.Column("subject_id", sa.Integer(), nullable=True),
        sa.Column("grade_level", sa.Integer(), nullable=True),
        sa.Column("unit_name", sa.String(length=200), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["alliance_id"],
            ["alliances.id"],
            name=op.f("fk_recording_collections_alliance_id_alliances"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["owner_account_id"],
            ["accounts.id"],
            name=op.f("fk_recording_collections_owner_account_id_accounts"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["subject_id"],
            ["subjects.id"],
            name=op.f("fk_recording_collections_subject_id_subjects"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_recording_collections")),
    )
    op.create_index(
        op.f("ix_recording_collections_alliance_id"),
        "recording_collections",
        ["alliance_id"],
        unique=False,
    )
    op.create_table(
        "recording_collection_items",
        sa.Column("collection_id", sa.Integer(), nullable=False),
        sa.Column("recording_id", sa.Integer(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["collection_id"],
            ["recording_collections.id"],
            name=op.f("fk_recording_collection_items_collection_id_recording_collections"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["recording_id"],
            ["recordings.id"],
            name=op.f("fk_recording_collection_items_recording_id_recordings"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint(
            "collection_id", "recording_id", name=op.f("pk_recording_collection_items")
        ),
    )
    op.create_index(
        op.f("ix_recording_collection_items_recording_id"),
        "recording_collection_items",
        ["recording_id"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index(
        op.f("ix_recording_collection_items_recording_id"),
        table_name="recording_collection_items",
    )
    op.drop_table("recording_collection_items")
    op.drop_index(op.f("ix_recording_collections_alliance_id"), table_name="recording_collections")
    op.drop_table("recording_collections")
