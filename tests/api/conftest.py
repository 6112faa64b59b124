"""Fixtures for the API tests: real storage on SQLite and on PostgreSQL (``pg_schema``, a schema
per test, is in tests/conftest.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import PostgresServer
from th2etl.configs.settings import get_settings

LOCAL = "http://127.0.0.1"
"""The base URL for FastAPI's TestClient: its default Host 'testserver' is not a name the
service answers (th2etl.api.security), as a real client on loopback would not send it."""


def postgres_settings_env(
    postgres: PostgresServer, schema: str, port: int | None = None
) -> dict[str, str]:
    """Environment variables that point th2etl at ``schema`` of the test PostgreSQL server
    (through ``port`` instead of the server's own when given, e.g. a proxy)."""
    return {
        "DATABASE_HOST": "127.0.0.1" if port is not None else postgres.host,
        "DATABASE_PORT": str(port if port is not None else postgres.port),
        "DATABASE_NAME": postgres.dbname,
        "DATABASE_USER": postgres.user,
        "DATABASE_SCHEMA": schema,
        "DATABASE_SSL_MODE": "disable",
    }


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def storage(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    """A real DatabaseStorage on SQLite, then on PostgreSQL."""
    from th2etl.storage import DatabaseStorage

    if request.param == "sqlite":
        store = DatabaseStorage(tmp_path / "th2etl.db")
    else:
        postgres = request.getfixturevalue("postgres")
        schema = request.getfixturevalue("pg_schema")
        store = DatabaseStorage.from_settings(get_settings(postgres_settings_env(postgres, schema)))
    try:
        yield store
    finally:
        store.close()
