"""Fixtures of the database-driven scheduler tests."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from th2etl.clock import FakeClock

from .helpers import START, register_stored_bloc_types, unregister_stored_bloc_types


@pytest.fixture
def stored_bloc_types() -> Iterator[None]:
    """The test bloc types that stored blocs name (storage validates through the registry)."""
    register_stored_bloc_types()
    yield
    unregister_stored_bloc_types()


@pytest.fixture
def schema(pg_schema: str) -> str:
    """A schema of this test's own (the storage migrates it on open), dropped afterwards."""
    return pg_schema


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(START)


@pytest.fixture
def logging_restored() -> Iterator[None]:
    """``th2etl run`` in this process configures logging: put it back for the next tests."""
    root, package = logging.getLogger(), logging.getLogger("th2etl")
    saved = (root.level, list(root.handlers), package.level)
    yield
    root.setLevel(saved[0])
    for handler in [h for h in root.handlers if h not in saved[1]]:
        root.removeHandler(handler)
        handler.close()
    package.setLevel(saved[2])
