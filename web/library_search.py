"""Search of the library through 听评课 comments: the moments where a comment says the words.

Comments belong to research (research.review), what a viewer may see of the library to
recordings; this module, in the web layer that may use both, joins them. A comment is found
through the same term index as titles and topics (``recordings.search``: CJK characters and
bigrams, folded words), so the same SQL runs on SQLite and PostgreSQL: it must have every term
of the query (spaces separate words; Chinese needs none: ``板书设计`` finds “……板书设计清楚……”),
within the recordings the caller may see and whose 评课 they may read. Pupils and classroom
terminals never read comments, so they never find one.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from common.accounts.permissions import Principal
from common.errors import PermissionDeniedError
from recordings.models import Recording
from recordings.search import having_all_terms, query_terms
from recordings.service import visible_filter
from research import review
from research.review_models import ReviewComment, ReviewCommentSearchTerm

COMMENT_READERS = frozenset({"bureau", "alliance_admin", "school_admin", "teacher"})
EXCERPT_AROUND = 24  # characters shown either side of the first word found


@dataclass(frozen=True)
class CommentHit:
    recording_id: int
    recording_title: str
    comment_id: int
    at_seconds: float
    at: str  # mm:ss, as the player shows it
    author_name: str
    excerpt: str


def query_words(query: str) -> list[str]:
    """The words a comment must all contain (NFKC-folded, lowercased, deduplicated)."""
    words = unicodedata.normalize("NFKC", query).lower().split()
    return list(dict.fromkeys(words))


def excerpt(body: str, word: str) -> str:
    """The comment around ``word``'s first occurrence, with … where it was cut."""
    folded = unicodedata.normalize("NFKC", body).lower()
    # Folding keeps full-width text's length, so a place in it is the same place in the body.
    at = folded.find(word) if len(folded) == len(body) else body.lower().find(word)
    if at < 0:
        at = 0
    start = max(0, at - EXCERPT_AROUND)
    end = min(len(body), at + len(word) + EXCERPT_AROUND)
    return ("…" if start else "") + body[start:end] + ("…" if end < len(body) else "")


def may_search_comments(principal: Principal) -> bool:
    return principal.role in COMMENT_READERS


def search_comments(
    session: Session, principal: Principal, query: str, *, limit: int = 50
) -> list[CommentHit]:
    """Comments (and replies) containing every word of ``query`` in recordings the caller
    may see and review, newest lessons first, each lesson's in the order of the lesson."""
    if not may_search_comments(principal):
        raise PermissionDeniedError("学生和教室终端不能搜索评语", detail={"role": principal.role})
    words = query_words(query)
    terms = query_terms(query)
    if not terms:
        return []
    having_all = having_all_terms(
        ReviewCommentSearchTerm.comment_id, ReviewCommentSearchTerm.term, terms
    )
    stmt = (
        select(ReviewComment, Recording)
        .join(Recording, ReviewComment.recording_id == Recording.id)
        .where(visible_filter(principal), ReviewComment.id.in_(having_all))
    )
    stmt = stmt.order_by(
        Recording.date.desc(), Recording.id.desc(), ReviewComment.at_seconds, ReviewComment.id
    )
    hits: list[CommentHit] = []
    readable: dict[int, bool] = {}
    for comment, recording in session.execute(stmt):
        if recording.id not in readable:
            readable[recording.id] = review.may_read(principal, recording)
        if not readable[recording.id]:
            continue
        hits.append(
            CommentHit(
                recording_id=recording.id,
                recording_title=recording.title,
                comment_id=comment.id,
                at_seconds=comment.at_seconds,
                at=review.format_moment(comment.at_seconds),
                author_name=comment.author_name,
                excerpt=excerpt(comment.body, words[0]),
            )
        )
        if len(hits) >= limit:
            break
    return hits
