"""recording storage and renditions (issue 6): search term index, retention

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-04 16:50:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from recordings.search import index_terms

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    terms = op.create_table(
        "recording_search_terms",
        sa.Column("recording_id", sa.Integer(), nullable=False),
        sa.Column("term", sa.String(length=64), nullable=False),
        sa.ForeignKeyConstraint(
            ["recording_id"],
            ["recordings.id"],
            name=op.f("fk_recording_search_terms_recording_id_recordings"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("recording_id", "term", name=op.f("pk_recording_search_terms")),
    )
    op.create_index(
        op.f("ix_recording_search_terms_term"), "recording_search_terms", ["term"], unique=False
    )
    # Recordings made before the index: their titles and topics, indexed once.
    recordings = sa.table(
        "recordings", sa.column("id", sa.Integer), sa.column("title"), sa.column("topic")
    )
    connection = op.get_bind()
    rows = [
        {"recording_id": recording_id, "term": term}
        for recording_id, title, topic in connection.execute(
            sa.select(recordings.c.id, recordings.c.title, recordings.c.topic)
        )
        for term in sorted(index_terms(title or "", topic or ""))
    ]
    if rows:
        op.bulk_insert(terms, rows)

    op.create_table(
        "recording_retention",
        sa.Column("alliance_id", sa.Integer(), nullable=False),
        sa.Column("keep_days", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("keep_days >= 1", name=op.f("ck_recording_retention_positive_days")),
        sa.ForeignKeyConstraint(
            ["alliance_id"],
            ["alliances.id"],
            name=op.f("fk_recording_retention_alliance_id_alliances"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("alliance_id", name=op.f("pk_recording_retention")),
    )
    # Plain ADD COLUMN (no table rebuild on SQLite, which would cascade to its references).
    op.add_column(
        "recordings", sa.Column("keep", sa.Boolean(), server_default=sa.false(), nullable=False)
    )
    op.add_column(
        "recordings", sa.Column("media_deleted_at", sa.DateTime(timezone=True), nullable=True)
    )


def downgrade() -> None:
    # Plain DROP COLUMN too (SQLite >= 3.35): a table rebuild would cascade-delete references.
    op.drop_column("recordings", "media_deleted_at")
    op.drop_column("recordings", "keep")
    op.drop_table("recording_retention")
    op.drop_index(op.f("ix_recording_search_terms_term"), table_name="recording_search_terms")
    op.drop_table("recording_search_terms")
