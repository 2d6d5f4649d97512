"""Database work on a thread that runs an asyncio event loop, caught as it happens (opt-in).

The SFU forwards every classroom of a process on one event loop (an SFU worker's, or the web
process's when it hosts the rooms itself). A synchronous SQLAlchemy statement there blocks
every live lesson for as long as SQLite's write lock or a slow PostgreSQL takes to answer; such
work belongs in ``asyncio.to_thread`` (the whole transaction) or in a plain ``def`` route,
which FastAPI runs in its threadpool.

``TONGKE_DB_LOOP_GUARD`` (``Settings.db_loop_guard``): ``off`` (the default) installs nothing;
``log`` logs ``db_on_event_loop`` once per place (the statement's first words, the
innermost frame outside SQLAlchemy and ``common.db``, and the project's frames that led
there) and counts the repeats; ``raise`` also
refuses the statement with ``DatabaseOnEventLoop``. The listener is on every ``Engine`` of
the process, made before or after it is installed. Places whose ``where`` starts with one of
the guard's ``allow`` prefixes (``Settings.db_loop_guard_allow``) pass unseen: the tests list
``tests/`` there (their own sync reads in async test functions) and nothing else by default.
"""

from __future__ import annotations

import asyncio
import sys
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any, Literal

import sqlalchemy
from sqlalchemy import Engine, event

from common.logging import get_logger

log = get_logger(__name__)

LoopGuardMode = Literal["off", "log", "raise"]

PROJECT_ROOT = Path(__file__).absolute().parent.parent  # as code objects name their files
# Frames that say nothing about who asked: SQLAlchemy (its files, and the wrappers it
# generates: "<sqlalchemy generated warned() wrapper ...>"), the session helpers, the guard,
# and context managers (a ``with transaction(...)`` commits from inside common.db).
_SQLALCHEMY_PLACES = (f"{Path(sqlalchemy.__file__ or '').parent}/", "<sqlalchemy")
_PLUMBING_FILES = (str(PROJECT_ROOT / "common" / "db.py"), __file__, "/contextlib.py")
_VENV = PROJECT_ROOT / ".venv"
STATEMENT_WORDS = 6
CALLERS_SHOWN = 3
# distinct places remembered, a log line each and the repeats counted (past it: a line each time)
MAX_PLACES = 1000


class DatabaseOnEventLoop(RuntimeError):
    """A statement was about to run on a thread that runs an event loop (``raise`` mode)."""


@dataclass(frozen=True)
class LoopOffence:
    """Where a statement ran on an event loop: its first words and the innermost frame
    outside SQLAlchemy and ``common.db`` (``path:line``, relative to the project); with the
    project's frames that led there (outwards, a few), which do not tell places apart."""

    statement: str
    where: str
    called_from: tuple[str, ...] = field(default=(), compare=False)

    @property
    def in_tests(self) -> bool:
        return self.where.startswith("tests/")


def _first_words(statement: str) -> str:
    return " ".join(statement.split()[:STATEMENT_WORDS])


def _shown_path(filename: str) -> str:
    path = Path(filename)
    return str(path.relative_to(PROJECT_ROOT)) if path.is_relative_to(PROJECT_ROOT) else filename


def _plumbing(frame: FrameType) -> bool:
    filename = frame.f_code.co_filename
    return filename.startswith(_SQLALCHEMY_PLACES) or filename.endswith(_PLUMBING_FILES)


def _ours(frame: FrameType) -> bool:
    path = Path(frame.f_code.co_filename)
    return path.is_relative_to(PROJECT_ROOT) and not path.is_relative_to(_VENV)


def _place(frame: FrameType) -> str:
    return f"{_shown_path(frame.f_code.co_filename)}:{frame.f_lineno}"


def _offence(statement: str, frame: FrameType | None) -> LoopOffence:
    while frame is not None and _plumbing(frame):
        frame = frame.f_back
    if frame is None:
        return LoopOffence(_first_words(statement), "?")
    callers: list[str] = []
    caller = frame.f_back
    while caller is not None and len(callers) < CALLERS_SHOWN:
        if _ours(caller) and not _plumbing(caller):
            callers.append(_place(caller))
        caller = caller.f_back
    return LoopOffence(_first_words(statement), _place(frame), tuple(callers))


class DbLoopGuard:
    """One installed guard; ``counts`` holds what it found, place by place."""

    def __init__(self, mode: Literal["log", "raise"], allow: Sequence[str] = ()) -> None:
        self.mode = mode
        self.allow = tuple(allow)
        self.counts: dict[LoopOffence, int] = {}
        self._lock = threading.Lock()
        self._installed = False

    @property
    def found(self) -> list[LoopOffence]:
        """The places found, in the order first seen."""
        with self._lock:
            return list(self.counts)

    def install(self) -> None:
        if not self._installed:
            event.listen(Engine, "before_cursor_execute", self._before_cursor_execute)
            self._installed = True

    def remove(self) -> None:
        if self._installed:
            event.remove(Engine, "before_cursor_execute", self._before_cursor_execute)
            self._installed = False

    def _before_cursor_execute(
        self,
        _connection: Any,
        _cursor: Any,
        statement: str,
        _parameters: Any,
        _context: Any,
        _executemany: bool,
    ) -> None:
        # the running loop of *this* thread: None in asyncio.to_thread's and FastAPI's workers
        if asyncio._get_running_loop() is None:
            return
        offence = _offence(statement, sys._getframe(1))
        if offence.where.startswith(self.allow):
            return
        with self._lock:
            seen = self.counts.get(offence)
            if seen is not None:
                self.counts[offence] = seen + 1
            elif len(self.counts) < MAX_PLACES:
                self.counts[offence] = 1
        if seen is None:
            log.warning(
                "db_on_event_loop",
                statement=offence.statement,
                where=offence.where,
                called_from=list(offence.called_from),
            )
        if self.mode == "raise":
            raise DatabaseOnEventLoop(
                f"database statement on an event loop's thread at {offence.where}: "
                f"{offence.statement} (move it into asyncio.to_thread)"
            )


def install_db_loop_guard(mode: LoopGuardMode, allow: Sequence[str] = ()) -> DbLoopGuard | None:
    """Install a guard in ``mode`` on every engine of the process (``off``: nothing), letting
    the places that start with one of ``allow`` pass."""
    if mode == "off":
        return None
    guard = DbLoopGuard(mode, allow)
    guard.install()
    return guard


@contextmanager
def db_loop_guard(mode: Literal["log", "raise"]) -> Iterator[DbLoopGuard]:
    """A guard installed for the ``with`` block (tests collect with ``log``)."""
    guard = DbLoopGuard(mode)
    guard.install()
    try:
        yield guard
    finally:
        guard.remove()
