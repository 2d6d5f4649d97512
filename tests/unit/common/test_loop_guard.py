"""The database loop guard: a statement on a thread running an event loop is caught, one in
``asyncio.to_thread`` (or with no loop at all) is not."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pytest
from pydantic import ValidationError
from sqlalchemy import Engine, text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from structlog.testing import capture_logs

from common.db import make_engine, session_factory, transaction
from common.loop_guard import (
    DatabaseOnEventLoop,
    LoopOffence,
    db_loop_guard,
    install_db_loop_guard,
)
from common.settings import Settings
from streaming.lifecycle import lesson_occurrences
from tests.fixtures.loop_guard import failing_on_refusals

HERE = "tests/unit/common/test_loop_guard.py"


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    engine = make_engine(f"sqlite:///{tmp_path / 'guard.db'}")
    with engine.begin() as connection:
        connection.exec_driver_sql("CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT)")
    yield engine
    engine.dispose()


def count_notes(engine: Engine) -> int:
    with engine.connect() as connection:
        found = connection.scalar(text("SELECT count(*) FROM notes"))  # the statement runs here
        return int(found or 0)


def line_of(marker: str) -> int:
    """The line of this file carrying ``marker`` (where the guard must point)."""
    lines = Path(__file__).read_text(encoding="utf-8").splitlines()
    return next(number for number, line in enumerate(lines, 1) if line.endswith(marker))


async def test_a_statement_on_the_loop_is_logged_with_where_it_came_from(engine: Engine) -> None:
    with capture_logs() as logs, db_loop_guard("log") as guard:
        count_notes(engine)  # the first call
        count_notes(engine)  # the same place again: counted, not logged again
    expected = LoopOffence(
        "SELECT count(*) FROM notes", f"{HERE}:{line_of('# the statement runs here')}"
    )
    assert guard.found == [expected]
    assert guard.counts[expected] == 2
    warnings = [entry for entry in logs if entry["event"] == "db_on_event_loop"]
    assert warnings == [
        {
            "event": "db_on_event_loop",
            "log_level": "warning",
            "statement": expected.statement,
            "where": expected.where,
            "called_from": [f"{HERE}:{line_of('# the first call')}"],
        }
    ]
    assert expected.in_tests


async def test_a_transaction_on_the_loop_points_at_its_with_block_not_common_db(
    engine: Engine,
) -> None:
    sessions = session_factory(engine)
    with db_loop_guard("log") as guard, transaction(sessions) as session:
        session.execute(text("INSERT INTO notes (body) VALUES ('板书')"))  # inserted on the loop
    (offence,) = guard.found
    assert offence.statement == "INSERT INTO notes (body) VALUES ('板书')"
    assert offence.where == f"{HERE}:{line_of('# inserted on the loop')}"


class Base(DeclarativeBase):
    pass


class Note(Base):
    __tablename__ = "notes"
    id: Mapped[int] = mapped_column(primary_key=True)
    body: Mapped[str]


async def test_an_orm_flush_points_at_the_product_code_not_sqlalchemys_wrappers(
    engine: Engine,
) -> None:
    sessions = session_factory(engine)
    with db_loop_guard("log") as guard, transaction(sessions) as session:
        session.add(Note(body="教研"))
        session.flush()  # the flush on the loop
    (offence,) = guard.found
    assert offence.statement.startswith("INSERT INTO notes")
    assert offence.where == f"{HERE}:{line_of('# the flush on the loop')}"


async def test_the_same_work_in_a_thread_is_not_caught(engine: Engine) -> None:
    with db_loop_guard("raise") as guard:
        assert await asyncio.to_thread(count_notes, engine) == 0
        sessions = session_factory(engine)

        def write() -> None:
            with transaction(sessions) as session:
                session.execute(text("INSERT INTO notes (body) VALUES ('x')"))

        await asyncio.to_thread(write)
    assert guard.found == []
    assert count_notes(engine) == 1


def test_no_loop_at_all_is_not_caught(engine: Engine) -> None:
    with db_loop_guard("raise") as guard:
        count_notes(engine)  # a plain function, as FastAPI's threadpool runs a def route
        done = threading.Thread(target=count_notes, args=(engine,))
        done.start()
        done.join()
    assert guard.found == []


async def test_raise_mode_refuses_the_statement_and_nothing_is_written(engine: Engine) -> None:
    sessions = session_factory(engine)
    with db_loop_guard("raise") as guard:
        with (
            pytest.raises(DatabaseOnEventLoop, match="INSERT INTO notes"),
            transaction(sessions) as session,
        ):
            session.execute(text("INSERT INTO notes (body) VALUES ('y')"))
        assert len(guard.found) == 1
    assert count_notes(engine) == 0  # rolled back; and the guard is gone: this read passes


def test_off_installs_nothing_and_removing_leaves_no_listener(engine: Engine) -> None:
    def listeners() -> int:  # on every engine, this one included
        return len(engine.dispatch.before_cursor_execute)

    before = listeners()
    assert install_db_loop_guard("off") is None
    assert listeners() == before
    guard = install_db_loop_guard("log")
    assert guard is not None
    assert listeners() == before + 1
    guard.remove()
    assert listeners() == before


def test_the_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings(_env_file=None).db_loop_guard == "off"
    monkeypatch.setenv("TONGKE_DB_LOOP_GUARD", "raise")
    assert Settings(_env_file=None).db_loop_guard == "raise"
    assert Settings(_env_file=None).db_loop_guard_allow == []
    monkeypatch.setenv("TONGKE_DB_LOOP_GUARD_ALLOW", '["tests/", "web/routers/x.py:12"]')
    assert Settings(_env_file=None).db_loop_guard_allow == ["tests/", "web/routers/x.py:12"]
    monkeypatch.setenv("TONGKE_DB_LOOP_GUARD", "loud")
    with pytest.raises(ValidationError):
        Settings(_env_file=None)


async def test_an_allowed_prefix_lets_the_tests_own_statements_pass_but_not_the_products(
    engine: Engine,
) -> None:
    """As the tests run it (tests/fixtures/loop_guard.py): a statement written in a test
    passes; product code a test calls on its loop is refused all the same."""
    with db_loop_guard("raise") as guard:
        guard.allow = ("tests/",)
        assert count_notes(engine) == 0  # the innermost frame is this test module: passed
        with (
            pytest.raises(DatabaseOnEventLoop, match=r"streaming/lifecycle\.py"),
            session_factory(engine)() as session,
        ):
            lesson_occurrences(session, date(2026, 9, 21))  # product code: refused
    assert [offence.where.split(":")[0] for offence in guard.found] == ["streaming/lifecycle.py"]


async def test_a_refusal_the_product_code_went_on_from_still_fails_the_test(
    engine: Engine,
) -> None:
    """``in_process_loop_guard`` (tests that drive jobs and meeting recordings on their own
    loop): product code that logs the refusal and goes on, as a background job does, still
    fails the test; the test's own statements pass."""
    with (
        pytest.raises(pytest.fail.Exception, match=r"streaming/lifecycle\.py"),
        failing_on_refusals(),
    ):
        assert count_notes(engine) == 0
        with session_factory(engine)() as session, contextlib.suppress(DatabaseOnEventLoop):
            lesson_occurrences(session, date(2026, 9, 21))  # a job logs it and goes on
