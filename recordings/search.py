"""Chinese full-text search that works the same on SQLite and PostgreSQL: an index of terms.

Chinese has no spaces between words, and neither database segments it out of the box (SQLite
FTS5's trigram tokenizer needs three characters, PostgreSQL's parsers split on spaces), so
the library keeps its own index: every run of CJK characters gives its single characters and
its bigrams (``二次函数`` → 二 次 函 数 二次 次函 函数), every run of letters and digits one
lowercased word (``Unit 3`` → unit 3). A query is cut the same way and matches a recording
that has *all* of its terms: one character through its unigram, two or more through their
bigrams (a 3+ character query may, rarely, match its bigrams found apart). Full-width and
half-width forms are folded together (NFKC) first.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable
from typing import Protocol, TypeVar

from sqlalchemy import Select, func, select
from sqlalchemy.orm import InstrumentedAttribute

MAX_TERM_LENGTH = 64
# CJK unified ideographs (with extension A and compatibility ideographs), kana, hangul.
_CJK = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\u3040-\u30ff\uac00-\ud7af"
_TOKEN = re.compile(f"[{_CJK}]+|[^\\W_{_CJK}]+")
_CJK_RUN = re.compile(f"[{_CJK}]+")


def _normalise(text: str) -> str:
    return unicodedata.normalize("NFKC", text).lower()


def index_terms(*texts: str) -> set[str]:
    """Every term under which a text is found: CJK unigrams and bigrams, whole other words."""
    terms: set[str] = set()
    for text in texts:
        for token in _TOKEN.findall(_normalise(text)):
            if _CJK_RUN.fullmatch(token):
                terms.update(token)
                terms.update(token[i : i + 2] for i in range(len(token) - 1))
            else:
                terms.add(token[:MAX_TERM_LENGTH])
    return terms


def query_terms(query: str) -> set[str]:
    """The terms a recording must all have to match ``query`` (empty: nothing to search)."""
    terms: set[str] = set()
    for token in _TOKEN.findall(_normalise(query)):
        if _CJK_RUN.fullmatch(token):
            if len(token) == 1:
                terms.add(token)
            else:
                terms.update(token[i : i + 2] for i in range(len(token) - 1))
        else:
            terms.add(token[:MAX_TERM_LENGTH])
    return terms


class _TermRow(Protocol):
    term: str


Row = TypeVar("Row", bound=_TermRow)


def rewrite_terms(rows: list[Row], wanted: set[str], make: Callable[[str], Row]) -> None:
    """Bring an index relationship (``rows``) to exactly the ``wanted`` terms, touching only
    the terms that changed."""
    current = {row.term: row for row in rows}
    for term in current.keys() - wanted:
        rows.remove(current[term])
    for term in sorted(wanted - current.keys()):
        rows.append(make(term))


def having_all_terms(
    owner: InstrumentedAttribute[int], term: InstrumentedAttribute[str], terms: set[str]
) -> Select[int]:
    """The ids (``owner``, a column of an index table) that have every one of ``terms``: the
    same SQL on SQLite and PostgreSQL."""
    return (
        select(owner)
        .where(term.in_(sorted(terms)))
        .group_by(owner)
        .having(func.count(term) == len(terms))
    )
