"""Storage fixtures: every contract test runs on SQLite and on PostgreSQL.

On PostgreSQL the storage uses the session's private schema; th2etl's tables are emptied after
each test. Tests that need a fresh database (migrations) make their own schema or file.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from th2etl.exceptions import StorageError
from th2etl.storage import DatabaseStorage, PostgresStorage, SQLiteStorage

_DATA_TABLES = (
    "th2etl_pipeline_blocs",
    "th2etl_schedulers",
    "th2etl_triggers",
    "th2etl_pipelines",
    "th2etl_blocs",
    "th2etl_bloc_runs",
    "th2etl_runs",
    "th2etl_instances",
    "th2etl_ticks",
    "th2etl_notification_rules",
    "th2etl_outbox",
)

OpenStorage = Callable[..., DatabaseStorage]
Open = Callable[[], DatabaseStorage]


@pytest.fixture(
    params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)],
)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def open_storage(
    backend: str, request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[OpenStorage]:
    """Open another storage (its own connection) on this test's database; closed at the end."""
    opened: list[DatabaseStorage] = []
    if backend == "postgresql":
        server = request.getfixturevalue("postgres")

        def make(**kwargs: Any) -> DatabaseStorage:
            storage = PostgresStorage(server.url, schema=server.schema, **kwargs)
            opened.append(storage)
            return storage
    else:
        path = tmp_path / "th2etl.db"

        def make(**kwargs: Any) -> DatabaseStorage:
            storage = SQLiteStorage(path, **kwargs)
            opened.append(storage)
            return storage

    yield make
    for storage in opened:
        storage.close()
    if backend == "postgresql":
        from psycopg import sql

        server = request.getfixturevalue("postgres")
        with server.connect(autocommit=True) as admin:
            admin.execute(
                sql.SQL("TRUNCATE {} CASCADE").format(
                    sql.SQL(", ").join(sql.Identifier(server.schema, t) for t in _DATA_TABLES)
                )
            )
            admin.execute(
                sql.SQL(
                    "UPDATE {} SET missed = NULL, overlap = NULL, max_active_runs = NULL, "
                    "timeout = NULL"
                ).format(sql.Identifier(server.schema, "th2etl_schedule_defaults"))
            )


@pytest.fixture
def storage(open_storage: OpenStorage) -> DatabaseStorage:
    return open_storage()


@pytest.fixture
def database(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Open]:
    """Opens storage on a database of this test's own (a new schema or file, migrated by the
    first opening): for migration tests."""
    opened: list[DatabaseStorage] = []
    if backend == "postgresql":
        server = request.getfixturevalue("postgres")
        schema = f"{server.schema}_{uuid.uuid4().hex[:6]}"

        def make() -> DatabaseStorage:
            opened.append(PostgresStorage(server.url, schema=schema))
            return opened[-1]
    else:

        def make() -> DatabaseStorage:
            opened.append(SQLiteStorage(tmp_path / "old.db"))
            return opened[-1]

    yield make
    for storage in opened:
        storage.close()
    if backend == "postgresql":
        from psycopg import sql

        with server.connect(autocommit=True) as admin:
            admin.execute(
                sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema))
            )


def assert_migration_gives_way(
    monkeypatch: pytest.MonkeyPatch, database: Open, postgres: Any, old: DatabaseStorage, table: str
) -> None:
    """While another session holds ``table`` (of ``old``, a database at an earlier version,
    closed), opening ``database`` gives way after 2 tries and changes nothing; once the lock is
    gone, it migrates to the latest version."""
    from psycopg import sql

    from th2etl.storage.migrations import LATEST_VERSION

    assert isinstance(old, PostgresStorage)
    monkeypatch.setattr(PostgresStorage, "migration_lock_timeout", 0.05)
    monkeypatch.setattr(PostgresStorage, "migration_attempts", 2)
    monkeypatch.setattr("th2etl.storage.postgres.time.sleep", lambda seconds: None)
    with postgres.connect() as reader:
        # A long read holds the table: ALTER TABLE would queue every session behind it.
        reader.execute(
            sql.SQL("LOCK TABLE {} IN ACCESS SHARE MODE").format(sql.Identifier(old.schema, table))
        )
        with pytest.raises(
            StorageError,
            match=r"could not be upgraded: its tables stayed locked by other sessions through 2 "
            r"tries of 0\.05s each; nothing was changed\. Find the long transactions in "
            r"pg_stat_activity",
        ):
            database()
        reader.rollback()
    monkeypatch.undo()
    assert database().schema_version() == LATEST_VERSION
