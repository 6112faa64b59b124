"""PostgreSQL storage's connection pool (TH2ETL_POOL_SIZE): concurrent callers do not wait on
one another, the size is checked at start-up, close() leaves no connection behind, and a forked
child never uses its parent's connections."""

from __future__ import annotations

import os
import threading
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import PostgresServer, wait_until
from th2etl.configs.settings import get_settings
from th2etl.exceptions import ConfigurationError
from th2etl.storage import DatabaseStorage, PostgresStorage, SQLiteStorage


def _connections(postgres: PostgresServer, storage: PostgresStorage) -> int:
    with postgres.connect(autocommit=True) as admin:  # type: ignore[attr-defined]
        row = admin.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s",
            (storage.application_name(),),
        ).fetchone()
    return int(row[0])


@pytest.fixture
def pooled(postgres: PostgresServer, pg_schema: str) -> Iterator[PostgresStorage]:
    storage = PostgresStorage(postgres.url, schema=pg_schema, pool_size=4)
    try:
        yield storage
    finally:
        storage.close()


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (
            "0",
            r"TH2ETL_POOL_SIZE '0' is not allowed; use a whole number from 1 to 1000, or unset "
            r"it for the default 10",
        ),
        ("1001", r"TH2ETL_POOL_SIZE '1001' is not allowed; use a whole number from 1 to 1000"),
        ("four", r"TH2ETL_POOL_SIZE 'four' is not allowed; use a whole number from 1 to 1000"),
        ("2.5", r"TH2ETL_POOL_SIZE '2.5' is not allowed"),
    ],
)
def test_a_bad_pool_size_setting_is_refused_with_the_allowed_range(
    value: str, message: str
) -> None:
    with pytest.raises(ConfigurationError, match=message):
        get_settings({"TH2ETL_POOL_SIZE": value})


@pytest.mark.postgres
def test_the_pool_size_setting_reaches_the_storage(
    postgres: PostgresServer, pg_schema: str
) -> None:
    assert get_settings({}).pool_size == 10
    settings = get_settings(
        {"DATABASE_URL": postgres.url, "DATABASE_SCHEMA": pg_schema, "TH2ETL_POOL_SIZE": "3"}
    )
    with DatabaseStorage.from_settings(settings) as storage:
        assert isinstance(storage, PostgresStorage)
        assert storage.pool_size == 3
        # A heartbeat's storage has one connection of its own, not a pool.
        assert storage.reopen().pool_size == 1


@pytest.mark.parametrize("size", [0, -3, 1001, 2.0, True, "4"])
def test_a_bad_pool_size_argument_is_refused(size: Any, tmp_path: Path) -> None:
    message = (
        rf"pool_size {size!r} is not allowed; use a whole number of connections from 1 to "
        r"1000 \(1: one connection for every call\), e.g. 10"
    )
    with pytest.raises(ConfigurationError, match=message):
        PostgresStorage("postgresql://nobody@127.0.0.1:1/none", pool_size=size, connect=False)
    with pytest.raises(ConfigurationError, match=message):
        SQLiteStorage(tmp_path / "th2etl.db", pool_size=size, connect=False)


@pytest.mark.postgres
@pytest.mark.slow
def test_api_requests_proceed_while_a_transaction_holds_a_connection(
    pooled: PostgresStorage,
) -> None:
    """A long transaction (here: open until the test says so) keeps one connection; the API's
    requests borrow others and answer meanwhile, without seeing its uncommitted writes."""
    from tests.api.servers import uvicorn_server
    from th2etl.api import create_app
    from th2etl.helpers.th2etl_client import Th2etlClient

    pooled.create_bloc("committed", "example_transformer")
    inside = threading.Event()
    release = threading.Event()
    failures: list[BaseException] = []

    def hold() -> None:
        try:
            with pooled.transaction():
                pooled.create_bloc("uncommitted", "example_transformer")
                inside.set()
                assert release.wait(60), "the test never released the transaction"
        except BaseException as exc:
            failures.append(exc)
            inside.set()

    holder = threading.Thread(target=hold)
    # listing_ttl=0: the listing reads the storage at every request. With the default it may
    # serve its copy for 0.1 s after a write made outside the API (this transaction's).
    app = create_app(pooled, api_key="", listing_ttl=0)
    with uvicorn_server(app) as url:
        client = Th2etlClient(base_url=url, timeout=30)
        holder.start()
        assert inside.wait(30)
        try:
            answers: list[list[str]] = []
            barrier = threading.Barrier(4)

            def request() -> None:
                barrier.wait()
                answers.append([bloc["name"] for bloc in client.list_blocs()])
                client.list_runs(limit=50)

            requests = [threading.Thread(target=request) for _ in range(4)]
            for thread in requests:
                thread.start()
            for thread in requests:
                thread.join(60)
            # Every request answered while the transaction was still open.
            assert not release.is_set() and holder.is_alive()
            assert answers == [["committed"]] * 4
        finally:
            release.set()
            holder.join(60)
        assert not failures
        assert [bloc["name"] for bloc in client.list_blocs()] == ["committed", "uncommitted"]


@pytest.mark.postgres
def test_concurrent_callers_use_at_most_pool_size_connections_and_close_leaves_none(
    postgres: PostgresServer, pooled: PostgresStorage
) -> None:
    pooled.create_bloc("b", "example_transformer")
    assert _connections(postgres, pooled) == 1  # idle, the pool keeps one
    barrier = threading.Barrier(12)
    errors: list[BaseException] = []

    def call() -> None:
        try:
            barrier.wait()
            for _ in range(20):
                with pooled.transaction():
                    assert pooled.get_bloc("b").name == "b"
                    pooled.list_runs(limit=5)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=call) for _ in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors
    assert 1 <= _connections(postgres, pooled) <= 4
    pooled.close()
    wait_until(lambda: _connections(postgres, pooled) == 0, timeout=30, what="no connection left")
    # A later call opens the pool again.
    assert pooled.get_bloc("b").name == "b"
    pooled.close()
    wait_until(lambda: _connections(postgres, pooled) == 0, timeout=30, what="closed again")


@pytest.mark.postgres
def test_a_connection_borrowed_during_close_is_closed_when_given_back(
    postgres: PostgresServer, pooled: PostgresStorage
) -> None:
    inside = threading.Event()
    release = threading.Event()

    def hold() -> None:
        with pooled.transaction():
            pooled.create_bloc("late", "example_transformer")
            inside.set()
            release.wait(60)

    holder = threading.Thread(target=hold)
    holder.start()
    assert inside.wait(30)
    pooled.close()
    release.set()
    holder.join(60)
    wait_until(lambda: _connections(postgres, pooled) == 0, timeout=30, what="no connection left")
    assert pooled.get_bloc("late").name == "late"  # it committed


@pytest.mark.postgres
def test_a_forked_child_opens_connections_of_its_own(pooled: PostgresStorage) -> None:
    parent_pid = pooled._one("SELECT pg_backend_pid()")[0]
    read, write = os.pipe()
    with warnings.catch_warnings():
        # Python 3.12 warns about fork() in a threaded process (the pool has threads): the
        # child here runs no thread of its parent's and exits without cleanup.
        warnings.simplefilter("ignore", DeprecationWarning)
        child = os.fork()
    if child == 0:  # pragma: no cover - the child reports through the pipe
        code = 1
        try:
            pid = pooled._one("SELECT pg_backend_pid()")[0]
            pooled.create_bloc("from_child", "example_transformer")
            os.write(write, str(pid).encode())
            code = 0
        finally:
            os._exit(code)
    os.close(write)
    with os.fdopen(read) as pipe:
        child_pid = pipe.read()
    _, status = os.waitpid(child, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert child_pid and int(child_pid) != parent_pid
    # The parent's session survived the child (which never closed it).
    assert pooled._one("SELECT pg_backend_pid()")[0] == parent_pid
    assert pooled.get_bloc("from_child").name == "from_child"


@pytest.mark.postgres
def test_a_call_that_finds_every_connection_busy_names_the_pool_size(
    postgres: PostgresServer, pg_schema: str
) -> None:
    from th2etl.exceptions import DatabaseUnavailableError

    storage = PostgresStorage(postgres.url, schema=pg_schema, pool_size=2)
    storage.pool_wait = 0.2
    inside = threading.Barrier(3)
    release = threading.Event()

    def hold() -> None:
        with storage.transaction():
            storage.list_blocs()
            inside.wait(30)
            release.wait(60)

    holders = [threading.Thread(target=hold) for _ in range(2)]
    try:
        for thread in holders:
            thread.start()
        inside.wait(30)
        with pytest.raises(
            DatabaseUnavailableError,
            match=rf"all 2 connections to PostgreSQL database '{postgres.dbname}' .* stayed "
            r"busy for 0\.2s; raise TH2ETL_POOL_SIZE \(now 2\), or look for long transactions",
        ):
            storage.list_blocs()
    finally:
        release.set()
        for thread in holders:
            thread.join(60)
    assert storage.list_blocs() == []
    storage.close()
