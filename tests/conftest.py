"""Shared fixtures: a private PostgreSQL schema per test session, and paths.

PostgreSQL comes from ``TH2ETL_TEST_DATABASE_URL`` (default
``postgresql://postgres@127.0.0.1:5432/test``). Without a server the PostgreSQL tests skip with
the reason printed, except under ``CI=true``, where a missing server fails them.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

TEST_DATABASE_URL = os.environ.get(
    "TH2ETL_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test"
)


@dataclass(frozen=True)
class PostgresServer:
    """The session's PostgreSQL: ``url`` of the database and this session's ``schema``."""

    url: str
    schema: str
    host: str
    port: int
    dbname: str
    user: str

    def connect(self, **kwargs: object) -> object:
        import psycopg

        return psycopg.connect(self.url, options=f"-c search_path={self.schema}", **kwargs)


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """A real PostgreSQL server and a schema of this session's own, dropped at the end."""
    import psycopg
    from psycopg import sql

    try:
        admin = psycopg.connect(TEST_DATABASE_URL, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        reason = f"PostgreSQL is not reachable at {TEST_DATABASE_URL}: {exc}".strip()
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{reason} (CI=true: PostgreSQL tests may not skip)", pytrace=False)
        pytest.skip(reason)
    schema = f"th2etl_test_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    info = admin.info
    with admin:
        admin.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
        try:
            yield PostgresServer(
                url=TEST_DATABASE_URL,
                schema=schema,
                host=info.host,
                port=info.port,
                dbname=info.dbname,
                user=info.user,
            )
        finally:
            admin.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """Remove every th2etl-related environment variable for the test."""
    for key in list(os.environ):
        if key.startswith(("DATABASE_", "TH2ETL_", "LOG_")) or key.lower() == "pipelines_logs_dir":
            monkeypatch.delenv(key, raising=False)
    return monkeypatch
