"""Opening storage: backends, migrations, versions, unreachable and lost databases."""

from __future__ import annotations

import contextlib
import functools
import socket
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from psycopg import sql

from th2etl import DatabaseStorage
from th2etl.configs.settings import get_settings
from th2etl.exceptions import (
    ConfigurationError,
    DatabaseUnavailableError,
    SchemaVersionError,
    StorageError,
)
from th2etl.storage import PostgresStorage, SQLiteStorage
from th2etl.storage._core import TABLES
from th2etl.storage.migrations import LATEST_VERSION, load_migrations, sqlite_statements

from .conftest import Open, OpenStorage

Fresh = Callable[[], DatabaseStorage]


@pytest.fixture
def fresh(database: Open) -> Fresh:
    """Open storage on a database th2etl has never seen (a new schema or file)."""
    return database


def _raw(storage: DatabaseStorage, statement: str, params: tuple[Any, ...] = ()) -> list[Any]:
    """Run SQL on the storage's own database with a separate plain connection."""
    if isinstance(storage, PostgresStorage):
        import psycopg

        with psycopg.connect(storage._conninfo, autocommit=True) as conn:
            conn.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(storage.schema)))
            cursor = conn.execute(statement.replace("?", "%s"), params)  # type: ignore[arg-type]
            return cursor.fetchall() if cursor.description else []
    assert isinstance(storage, SQLiteStorage)
    with sqlite3.connect(storage.path) as conn:
        rows = conn.execute(statement, params).fetchall()
    conn.close()
    return rows


def test_migrations_record_their_version(fresh: Fresh) -> None:
    storage = fresh()
    assert storage.schema_version() == LATEST_VERSION
    rows = _raw(storage, "SELECT version, name FROM th2etl_migrations ORDER BY version")
    assert rows == [(m.version, m.name) for m in load_migrations(storage.backend)]
    assert rows[0] == (1, "initial") and ("run_lifecycle" in dict(rows).values())
    storage.close()
    assert fresh().schema_version() == LATEST_VERSION  # a second open applies nothing


def test_tables_carry_the_prefix(fresh: Fresh) -> None:
    storage = fresh()
    if isinstance(storage, PostgresStorage):
        names = _raw(
            storage,
            "SELECT table_name FROM information_schema.tables WHERE table_schema = ?",
            (storage.schema,),
        )
    else:
        names = _raw(storage, "SELECT name FROM sqlite_master WHERE type = 'table'")
    assert len(names) == len(TABLES)
    assert all(name.startswith("th2etl_") for (name,) in names), names


def test_opening_a_fresh_database_at_once(fresh: Fresh) -> None:
    """Several processes' connections migrate one fresh database at the same moment."""
    barrier = threading.Barrier(5)
    outcomes: list[object] = []

    def open_it() -> None:
        barrier.wait()
        try:
            outcomes.append(fresh().schema_version())
        except Exception as exc:
            outcomes.append(exc)

    threads = [threading.Thread(target=open_it) for _ in range(5)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert outcomes == [LATEST_VERSION] * 5
    assert _raw(fresh(), "SELECT COUNT(*) FROM th2etl_migrations") == [(LATEST_VERSION,)]


def test_a_newer_schema_is_refused(fresh: Fresh) -> None:
    storage = fresh()
    storage.create_bloc("keep", "example_transformer")
    storage.close()
    _raw(
        storage,
        "INSERT INTO th2etl_migrations (version, name, th2etl_version, applied_at) "
        "VALUES (?, ?, ?, ?)",
        (LATEST_VERSION + 1, "future", "9.9.9", "2030-01-01T00:00:00+00:00"),
    )
    with pytest.raises(
        SchemaVersionError,
        match=rf"are at schema version {LATEST_VERSION + 1}, written by th2etl 9\.9\.9; this "
        rf"th2etl \(.*\) knows versions up to {LATEST_VERSION}\. Upgrade th2etl to 9\.9\.9 or "
        r"newer \(pip install --upgrade 'th2etl>=9\.9\.9'\)",
    ):
        fresh()
    assert _raw(storage, "SELECT name FROM th2etl_blocs") == [("keep",)]


def test_migration_files_match_across_backends() -> None:
    postgres = load_migrations("postgresql")
    sqlite = load_migrations("sqlite")
    assert [m.version for m in postgres] == [m.version for m in sqlite]
    assert [m.version for m in postgres] == list(range(1, LATEST_VERSION + 1))
    statements = sqlite_statements(sqlite[0].sql)
    triggers = [s for s in statements if s.startswith("CREATE TRIGGER")]
    assert len(triggers) == 14
    assert all(s.endswith("END;") for s in triggers)


def test_the_factory_picks_the_backend(tmp_path: Path) -> None:
    with DatabaseStorage(tmp_path / "a.db") as storage:
        assert isinstance(storage, SQLiteStorage)
        assert storage.describe() == f"SQLite database at {tmp_path / 'a.db'}"
    with DatabaseStorage(f"sqlite:///{tmp_path / 'b.db'}") as storage:
        assert isinstance(storage, SQLiteStorage) and storage.path == tmp_path / "b.db"
    lazy = DatabaseStorage("postgresql://u@127.0.0.1:1/x", connect=False)
    assert isinstance(lazy, PostgresStorage) and isinstance(lazy, DatabaseStorage)
    lazy_kv = DatabaseStorage("host=127.0.0.1 port=1 dbname=x", connect=False)
    assert isinstance(lazy_kv, PostgresStorage)
    assert lazy_kv.describe() == "PostgreSQL database 'x' on 127.0.0.1:1, schema 'public'"


def test_a_bad_schema_name_is_refused() -> None:
    with pytest.raises(ConfigurationError, match=r"schema 'x\"; DROP' is not a usable schema"):
        PostgresStorage("postgresql://u@127.0.0.1/x", schema='x"; DROP', connect=False)


def test_sqlite_in_a_missing_folder(tmp_path: Path) -> None:
    path = tmp_path / "no" / "th2etl.db"
    with pytest.raises(
        DatabaseUnavailableError,
        match=rf"cannot open the SQLite database at {path}: folder {path.parent} does not exist",
    ):
        SQLiteStorage(path)


def test_sqlite_path_that_is_a_folder_or_under_a_file(tmp_path: Path) -> None:
    with pytest.raises(
        DatabaseUnavailableError,
        match=rf"cannot open the SQLite database at {tmp_path}: it is a folder; set "
        rf"TH2ETL_SQLITE_PATH to a file, e.g. {tmp_path / 'th2etl.db'}",
    ):
        SQLiteStorage(tmp_path)
    (tmp_path / "notes").write_text("")
    with pytest.raises(
        DatabaseUnavailableError,
        match=rf"at {tmp_path / 'notes' / 'th2etl.db'}: {tmp_path / 'notes'} is a file, not a "
        "folder; set TH2ETL_SQLITE_PATH to a file in an existing folder",
    ):
        SQLiteStorage(tmp_path / "notes" / "th2etl.db")


def test_sqlite_file_that_is_not_a_database(tmp_path: Path) -> None:
    path = tmp_path / "notes.db"
    path.write_text("not a database, just some text " * 100)
    with pytest.raises(DatabaseUnavailableError, match=r"file is not a database"):
        SQLiteStorage(path)
    assert path.read_text().startswith("not a database")


def test_an_old_sqlite_library_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sqlite3, "sqlite_version_info", (3, 31, 1))
    monkeypatch.setattr(sqlite3, "sqlite_version", "3.31.1")
    with pytest.raises(
        StorageError, match=r"th2etl needs SQLite 3\.38 or newer .* uses SQLite 3\.31\.1"
    ):
        SQLiteStorage(tmp_path / "old.db")


@pytest.mark.postgres
def test_unreachable_postgres_names_host_port_db_not_password() -> None:
    url = "postgresql://etl:hunter2-secret@127.0.0.1:1/salesdb"
    with pytest.raises(DatabaseUnavailableError) as caught:
        PostgresStorage(url)
    message = str(caught.value)
    assert "cannot connect to PostgreSQL database 'salesdb' on 127.0.0.1:1" in message
    assert "(timeout 5s)" in message
    assert "hunter2" not in message and "hunter2" not in repr(caught.value.__cause__)
    lazy = PostgresStorage(url, connect=False)
    with pytest.raises(DatabaseUnavailableError, match=r"'salesdb' on 127\.0\.0\.1:1"):
        lazy.list_blocs()
    assert "hunter2" not in repr(lazy)


@pytest.mark.postgres
def test_unreachable_postgres_from_settings(clean_env: pytest.MonkeyPatch) -> None:
    settings = get_settings(
        {
            "DATABASE_HOST": "127.0.0.1",
            "DATABASE_PORT": "1",
            "DATABASE_NAME": "warehouse",
            "DATABASE_USER": "etl",
            "DATABASE_PASSWORD": "s3cr3t-pw",
        }
    )
    with pytest.raises(DatabaseUnavailableError) as caught:
        DatabaseStorage.from_settings(settings)
    assert "PostgreSQL database 'warehouse' on 127.0.0.1:1" in str(caught.value)
    assert "s3cr3t" not in str(caught.value)


@pytest.mark.postgres
def test_from_settings_opens_postgres_in_the_configured_schema(
    postgres: Any, clean_env: pytest.MonkeyPatch
) -> None:
    for key, value in {
        "DATABASE_HOST": postgres.host,
        "DATABASE_PORT": str(postgres.port),
        "DATABASE_NAME": postgres.dbname,
        "DATABASE_USER": postgres.user,
        "DATABASE_SCHEMA": postgres.schema,
    }.items():
        clean_env.setenv(key, value)
    with DatabaseStorage.from_settings() as storage:
        assert isinstance(storage, PostgresStorage)
        assert storage.schema == postgres.schema
        storage.check_connection()


@pytest.mark.postgres
@pytest.mark.parametrize("backend", ["postgresql"])
def test_reconnects_after_its_connection_is_killed(
    backend: str, open_storage: OpenStorage, postgres: Any
) -> None:
    storage = open_storage()
    storage.create_bloc("before", "example_transformer")

    def backend_pid() -> int:
        # One caller at a time: the pool holds one connection (it grows only when callers wait).
        return int(storage._one("SELECT pg_backend_pid()")[0])  # type: ignore[attr-defined]

    for _ in range(2):
        pid = backend_pid()
        with postgres.connect(autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
        with pytest.raises(
            DatabaseUnavailableError,
            match=rf"lost the connection to PostgreSQL database '{postgres.dbname}' on "
            rf"{postgres.host}:{postgres.port}, schema '{postgres.schema}'.*the next call "
            "connects again",
        ):
            storage.get_bloc("before")
        # The next call connects again by itself, reads and writes.
        assert "before" in [b.name for b in storage.list_blocs()]
        storage.create_bloc(f"after{pid}", "example_transformer")
    assert len(storage.list_blocs()) == 3
    # A health check does not report a connection that merely died while idle.
    pid = backend_pid()
    with postgres.connect(autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
    storage.check_connection()
    assert backend_pid() != pid


@pytest.mark.postgres
def test_a_connection_lost_right_after_it_opened_is_database_unavailable(postgres: Any) -> None:
    """The server goes away between the connection's handshake and its first statement."""
    from tests.tcp_proxy import TcpProxy

    class CutAtFirstStatement(TcpProxy):
        def relay(self, client: socket.socket, upstream: socket.socket) -> list[Any]:
            def forward() -> None:
                with contextlib.suppress(OSError):
                    while (data := client.recv(65536)) and b"SET TIME ZONE" not in data:
                        upstream.sendall(data)
                for sock in (client, upstream):
                    with contextlib.suppress(OSError):
                        sock.shutdown(socket.SHUT_RDWR)

            return [forward, functools.partial(self.pump, upstream, client)]

    with CutAtFirstStatement(postgres.host, postgres.port) as proxy:
        url = f"postgresql://{postgres.user}@127.0.0.1:{proxy.port}/{postgres.dbname}"
        with pytest.raises(
            DatabaseUnavailableError,
            match=rf"cannot connect to PostgreSQL database '{postgres.dbname}' on "
            rf"127\.0\.0\.1:{proxy.port}, schema 'public' \(timeout 5s\): .*; check that the "
            "server runs",
        ):
            PostgresStorage(url)


@pytest.mark.postgres
def test_survives_a_database_outage(postgres: Any) -> None:
    """The network to PostgreSQL goes away and comes back: calls fail clearly meanwhile, then
    work again without reopening the storage."""
    from tests.tcp_proxy import TcpProxy

    schema = f"{postgres.schema}_outage"
    proxy = TcpProxy(postgres.host, postgres.port)
    proxy.start()
    url = f"postgresql://{postgres.user}:pw-not-shown@127.0.0.1:{proxy.port}/{postgres.dbname}"
    storage = PostgresStorage(url, schema=schema)
    try:
        storage.create_bloc("a", "example_transformer")
        proxy.stop()
        with pytest.raises(DatabaseUnavailableError, match=r"lost the connection to PostgreSQL"):
            storage.get_bloc("a")
        with pytest.raises(
            DatabaseUnavailableError,
            match=rf"cannot connect to PostgreSQL database '{postgres.dbname}' on "
            rf"127\.0\.0\.1:{proxy.port}, schema '{schema}'",
        ) as caught:
            storage.list_blocs()
        assert "pw-not-shown" not in str(caught.value)
        proxy.start()
        assert storage.get_bloc("a").name == "a"
        storage.create_bloc("b", "example_transformer")
        assert [b.name for b in storage.list_blocs()] == ["a", "b"]
    finally:
        storage.close()
        proxy.stop()
        with postgres.connect(autocommit=True) as admin:
            admin.execute(
                sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema))
            )


def test_migrate_false_trusts_that_the_schema_is_current(tmp_path: Path) -> None:
    """What a worker process opens: its owner migrated the database, so it skips the check."""
    with SQLiteStorage(tmp_path / "owned.db") as owner:
        owner.create_bloc("b", "example_transformer")
        with owner.reopen() as heartbeats:  # the owner's own reopen trusts it too
            assert heartbeats.schema_version() == owner.schema_version()
    with SQLiteStorage(tmp_path / "owned.db", migrate=False) as worker:
        assert worker.get_bloc("b").name == "b"
    # On a fresh file nothing is created: it is not for a database nobody opened.
    with (
        SQLiteStorage(tmp_path / "fresh.db", migrate=False) as fresh,
        pytest.raises(StorageError, match=r"no such table"),
    ):
        fresh.list_blocs()
