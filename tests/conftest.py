"""Shared fixtures: a private PostgreSQL schema per test session (and one per test), and a
clean environment.

PostgreSQL comes from ``TH2ETL_TEST_DATABASE_URL`` (default
``postgresql://postgres@127.0.0.1:5432/test``). Without a server the PostgreSQL tests skip with
the reason printed, except under ``CI=true``, where a missing server fails them.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
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
def pg_schema(postgres: PostgresServer) -> Iterator[str]:
    """A schema of this test's own in the session's database, dropped afterwards."""
    import psycopg
    from psycopg import sql

    schema = f"{postgres.schema}_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(postgres.url, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
    try:
        yield schema
    finally:
        with psycopg.connect(postgres.url, autocommit=True) as admin:
            admin.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))


def is_th2etl_variable(key: str) -> bool:
    """Whether the environment variable ``key`` configures th2etl (storage, logs, paths)."""
    return key.startswith(("DATABASE_", "TH2ETL_", "LOG_")) or key.lower() == "pipelines_logs_dir"


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """Remove every th2etl-related environment variable for the test."""
    for key in list(os.environ):
        if is_th2etl_variable(key):
            monkeypatch.delenv(key, raising=False)
    return monkeypatch


def subprocess_env(**extra: str) -> dict[str, str]:
    """The environment for a th2etl subprocess: this one without th2etl's variables, with this
    checkout importable, then ``extra``."""
    env = {key: value for key, value in os.environ.items() if not is_th2etl_variable(key)}
    return {**env, "PYTHONPATH": str(ROOT), **extra}


def process_alive(pid: int) -> bool:
    """Whether process ``pid`` still executes (a zombie, ended but not yet reaped, does not)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return False
    return state not in ("Z", "X")


def wait_until(condition: Callable[[], bool], *, timeout: float, what: str) -> None:
    """Poll ``condition`` until it holds; fail the test naming ``what`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)
