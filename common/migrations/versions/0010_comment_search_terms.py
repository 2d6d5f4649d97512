"""comment search terms: 听评课 comments on the CJK character + bigram index (issue 6)

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-04 22:20:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from recordings.search import index_terms

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    terms = op.create_table(
        "review_comment_search_terms",
        sa.Column("comment_id", sa.Integer(), nullable=False),
        sa.Column("term", sa.String(length=64), nullable=False),
        sa.ForeignKeyConstraint(
            ["comment_id"],
            ["review_comments.id"],
            name=op.f("fk_review_comment_search_terms_comment_id_review_comments"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("comment_id", "term", name=op.f("pk_review_comment_search_terms")),
    )
    op.create_index(
        op.f("ix_review_comment_search_terms_term"),
        "review_comment_search_terms",
        ["term"],
        unique=False,
    )
    # Comments written before the index: their text, indexed once.
    comments = sa.table("review_comments", sa.column("id", sa.Integer), sa.column("body"))
    connection = op.get_bind()
    rows = [
        {"comment_id": comment_id, "term": term}
        for comment_id, body in connection.execute(sa.select(comments.c.id, comments.c.body))
        for term in sorted(index_terms(body or ""))
    ]
    if rows:
        op.bulk_insert(terms, rows)


def downgrade() -> None:
    op.drop_index(
        op.f("ix_review_comment_search_terms_term"), table_name="review_comment_search_terms"
    )
    op.drop_table("review_comment_search_terms")
