"""Database engine, sessions and the declarative base shared by every domain package."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any, ClassVar

from sqlalchemy import DateTime, Engine, Float, MetaData, create_engine, event
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    return datetime.now(UTC)


class db_now(FunctionElement[datetime]):
    """The database server's clock now, stored as a ``DateTime`` column stores it. For a time
    that processes on other hosts compare (a lease, a grace): written and compared on this one
    clock, a host's skewed clock plays no part (``seconds_since``)."""

    type = DateTime(timezone=True)
    inherit_cache = True
    name = "db_now"


@compiles(db_now)
def _db_now(element: db_now, compiler: SQLCompiler, **kw: Any) -> str:
    # the statement's time, not the transaction's (now()): a write late in a long transaction
    return "statement_timestamp()"


@compiles(db_now, "sqlite")
def _db_now_sqlite(element: db_now, compiler: SQLCompiler, **kw: Any) -> str:
    # SQLAlchemy's own text form of a UTC time (microseconds; SQLite's clock has milliseconds)
    return "(strftime('%Y-%m-%d %H:%M:%f', 'now') || '000')"


class seconds_since(FunctionElement[float]):
    """Seconds from ``moment`` (a ``DateTime`` column) to the database server's clock now:
    how old a lease or a change is, whichever host wrote it and whichever host asks."""

    type = Float()
    inherit_cache = True
    name = "seconds_since"


@compiles(seconds_since)
def _seconds_since(element: seconds_since, compiler: SQLCompiler, **kw: Any) -> str:
    (moment,) = element.clauses
    since = compiler.process(moment, **kw)
    return f"CAST(EXTRACT(EPOCH FROM statement_timestamp() - {since}) AS DOUBLE PRECISION)"


@compiles(seconds_since, "sqlite")
def _seconds_since_sqlite(element: seconds_since, compiler: SQLCompiler, **kw: Any) -> str:
    # as numbers, not strings: the text forms of 'now' and of a stored time differ in length
    (moment,) = element.clauses
    return f"((julianday('now') - julianday({compiler.process(moment, **kw)})) * 86400.0)"


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map: ClassVar[dict[Any, Any]] = {datetime: DateTime(timezone=True)}


class TimestampMixin:
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


def make_engine(database_url: str) -> Engine:
    """An engine; SQLite gets foreign keys, WAL and a busy timeout (web and workers share it)."""
    if database_url.startswith("sqlite"):
        path = database_url.split(":///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(
            database_url, connect_args={"check_same_thread": False, "timeout": 15}
        )

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection, _record):  # type: ignore[no-untyped-def]
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA foreign_keys=ON")
            if path and path != ":memory:":
                cursor.execute("PRAGMA journal_mode=WAL")
            cursor.close()

        return engine
    return create_engine(database_url, pool_pre_ping=True, pool_size=5, max_overflow=10)


@lru_cache(maxsize=8)
def _cached_engine(database_url: str) -> Engine:
    return make_engine(database_url)


def get_engine(database_url: str) -> Engine:
    """The process-wide engine for a URL."""
    return _cached_engine(database_url)


def session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(bind=engine, expire_on_commit=False)


@contextmanager
def transaction(sessions: sessionmaker[Session]) -> Iterator[Session]:
    """A session that commits on success and rolls back on any error."""
    session = sessions()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


@contextmanager
def session_scope(engine: Engine) -> Iterator[Session]:
    """A transaction on `engine` (see `transaction`)."""
    with transaction(session_factory(engine)) as session:
        yield session
