"""The session's real servers answer the way the application will talk to them."""

from __future__ import annotations

import pytest
import redis
from sqlalchemy import create_engine, text


@pytest.mark.postgres
def test_postgres_server_accepts_queries(postgres_server: str) -> None:
    engine = create_engine(postgres_server)
    try:
        with engine.connect() as conn:
            one = conn.execute(text("SELECT 1")).scalar_one()
            encoding = conn.execute(text("SHOW server_encoding")).scalar_one()
            echoed = conn.execute(text("SELECT :name"), {"name": "城关中学"}).scalar_one()
            database = conn.execute(text("SELECT current_database()")).scalar_one()
    finally:
        engine.dispose()

    assert one == 1
    assert encoding == "UTF8"
    assert echoed == "城关中学"
    assert database == "tongke_test"


@pytest.mark.redis
def test_redis_server_answers_ping(redis_server: str) -> None:
    client = redis.Redis.from_url(redis_server)
    try:
        assert client.ping() is True
    finally:
        client.close()
