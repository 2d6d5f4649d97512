"""Alembic migrations build exactly the models' schema on SQLite and on a real PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import Engine, inspect

import common.models  # noqa: F401  (registers every table)
from common.db import Base, make_engine
from common.migrate import alembic_config, current_revision, upgrade


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def empty_database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'm.db'}"
        return
    server: str = request.getfixturevalue("postgres_server")
    admin = make_engine(server.rsplit("/", 1)[0] + "/postgres")
    with admin.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.exec_driver_sql("DROP DATABASE IF EXISTS tongke_migrations")
        connection.exec_driver_sql("CREATE DATABASE tongke_migrations")
    admin.dispose()
    yield server.rsplit("/", 1)[0] + "/tongke_migrations"


def _tables(engine: Engine) -> set[str]:
    return set(inspect(engine).get_table_names()) - {"alembic_version"}


def test_upgrade_builds_the_models_schema_and_check_finds_no_drift(empty_database: str) -> None:
    upgrade(empty_database)
    engine = make_engine(empty_database)
    try:
        assert _tables(engine) == set(Base.metadata.tables)
        assert current_revision(engine) is not None
        # Raises if the models and the migrations disagree (a forgotten migration).
        command.check(alembic_config(empty_database))
    finally:
        engine.dispose()


def test_downgrade_to_base_and_back_is_clean(empty_database: str) -> None:
    upgrade(empty_database)
    command.downgrade(alembic_config(empty_database), "base")
    engine = make_engine(empty_database)
    try:
        assert _tables(engine) == set()
    finally:
        engine.dispose()
    upgrade(empty_database)
    upgrade(empty_database)  # a second upgrade is a no-op
