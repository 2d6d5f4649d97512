"""Shared fixtures: demo-seeded databases (SQLite and a real PostgreSQL), the app, API clients."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from common.alliance.demo import seed_demo
from common.db import make_engine, session_scope
from common.migrate import upgrade_engine
from common.settings import Settings
from research.demo import seed_research
from tests.fixtures.loop_guard import DB_LOOP_GUARD_SETTINGS, caught_in
from web.app import create_app

pytest_plugins = ["tests.fixtures.servers", "tests.fixtures.recordings", "tests.fixtures.processes"]

DEMO_PASSWORD = "tongke-demo"


@dataclass
class DemoDatabase:
    url: str
    sessions: sessionmaker[Session]


@pytest.fixture(scope="session")
def sqlite_demo_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated, demo-seeded SQLite file, copied for each test."""
    path = tmp_path_factory.mktemp("template") / "demo.db"
    engine = make_engine(f"sqlite:///{path}")
    upgrade_engine(engine)
    with session_scope(engine) as session:
        seed_demo(session, password=DEMO_PASSWORD)
        seed_research(session)
    engine.dispose()
    return path


@pytest.fixture(scope="session")
def postgres_demo_engine(postgres_server: str) -> Iterator[Engine]:
    """A real PostgreSQL, migrated and seeded once; each test runs in a rolled-back transaction."""
    engine = make_engine(postgres_server)
    with engine.begin() as connection:
        connection.exec_driver_sql("DROP SCHEMA public CASCADE")
        connection.exec_driver_sql("CREATE SCHEMA public")
    upgrade_engine(engine)
    with session_scope(engine) as session:
        seed_demo(session, password=DEMO_PASSWORD)
        seed_research(session)
    yield engine
    engine.dispose()


def _sqlite_database(template: Path, tmp_path: Path) -> Iterator[DemoDatabase]:
    path = tmp_path / "tongke.db"
    shutil.copy(template, path)
    url = f"sqlite:///{path}"
    engine = make_engine(url)
    yield DemoDatabase(url, sessionmaker(bind=engine, expire_on_commit=False))
    engine.dispose()


def _postgres_database(engine: Engine) -> Iterator[DemoDatabase]:
    connection = engine.connect()
    transaction = connection.begin()
    sessions = sessionmaker(
        bind=connection, expire_on_commit=False, join_transaction_mode="create_savepoint"
    )
    try:
        yield DemoDatabase(engine.url.render_as_string(hide_password=False), sessions)
    finally:
        transaction.rollback()
        connection.close()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[DemoDatabase]:
    """The demo alliance in SQLite and in PostgreSQL: each test runs against both."""
    if request.param == "sqlite":
        yield from _sqlite_database(request.getfixturevalue("sqlite_demo_template"), tmp_path)
    else:
        yield from _postgres_database(request.getfixturevalue("postgres_demo_engine"))


@pytest.fixture
def sqlite_db(sqlite_demo_template: Path, tmp_path: Path) -> Iterator[DemoDatabase]:
    """The demo alliance in SQLite only, for tests whose subject is not the database."""
    yield from _sqlite_database(sqlite_demo_template, tmp_path)


def make_test_app(database: DemoDatabase, tmp_path: Path, **overrides: object) -> FastAPI:
    """The web app on ``database``; its database loop guard at ``raise`` unless overridden."""
    settings = Settings(
        environment="test",
        database_url=database.url,
        media_root=tmp_path / "media",
        **{**DB_LOOP_GUARD_SETTINGS, **overrides},  # type: ignore[arg-type]
    )
    app = create_app(settings)
    app.state.sessions = database.sessions
    _apps_built.append(app)
    return app


_apps_built: list[FastAPI] = []


@pytest.fixture(autouse=True)
def _no_database_work_on_the_apps_loops() -> Iterator[None]:
    """Fail a test whose apps' guards refused a statement, even one that a background task or
    a start-up step logged and went on from (tests.fixtures.loop_guard)."""
    _apps_built.clear()
    yield
    found = caught_in(_apps_built)
    _apps_built.clear()
    if found:
        pytest.fail("database work on an event loop (db_on_event_loop):\n" + "\n".join(found))


@pytest.fixture
def app(db: DemoDatabase, tmp_path: Path) -> FastAPI:
    return make_test_app(db, tmp_path)


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app) as test_client:
        yield test_client


@pytest.fixture
def sqlite_client(sqlite_db: DemoDatabase, tmp_path: Path) -> Iterator[TestClient]:
    """The web app on the SQLite demo alliance, started (for tests whose subject is not the
    database)."""
    with TestClient(make_test_app(sqlite_db, tmp_path)) as test_client:
        yield test_client


def bearer(client: TestClient, username: str, password: str = DEMO_PASSWORD) -> dict[str, str]:
    """Authorization headers for a demo login."""
    response = client.post("/api/auth/token", json={"username": username, "password": password})
    assert response.status_code == 200, response.text
    return {"Authorization": f"Bearer {response.json()['access_token']}"}
