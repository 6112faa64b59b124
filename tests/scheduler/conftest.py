"""Fixtures of the database-driven scheduler tests."""

from __future__ import annotations

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
