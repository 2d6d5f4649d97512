"""The job queue, the worker and the daily jobs run here on the test's own loop."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.fixtures.loop_guard import failing_on_refusals


@pytest.fixture(autouse=True)
def _loop_guard() -> Iterator[None]:
    """Product database work on that loop fails the test (tests.fixtures.loop_guard)."""
    with failing_on_refusals():
        yield
