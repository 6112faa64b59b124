"""The PostgreSQL blocs in streaming runs: bounded memory, rollback, cancel, attempts that never
overlap (server-side cancel), retries that never write twice. Real PostgreSQL."""

from __future__ import annotations

import threading
import time
import tracemalloc
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import psycopg
import pytest
from psycopg import sql

from tests.conftest import PostgresServer
from tests.pipelines.test_streaming import Counter, write_csv
from th2etl import (
    CancelToken,
    Pipeline,
    RunContext,
    RunListener,
    RunStatus,
    TransformerBloc,
    create_bloc,
    register_bloc,
)
from th2etl.blocs import unregister_bloc
from th2etl.pipelines import BlocResult, BlocStatus
from th2etl.types import Rows

pytestmark = pytest.mark.postgres


class Deaf(TransformerBloc):
    """Passes rows on; its first attempt sleeps past its timeout, deaf to any cancel."""

    bloc_type = "test_deaf"
    per_batch = True
    streams_safely = True
    intervals: ClassVar[list[tuple[float, float]]] = []
    started: ClassVar[float | None] = None

    def run(self, context: RunContext, rows: Rows) -> Rows:
        if type(self).started is None:
            type(self).started = time.monotonic()
            if not self.intervals:
                time.sleep(0.6)
        return rows

    def stream(self, context: RunContext, batches: Any) -> Iterator[Rows]:
        type(self).started = None
        try:
            yield from super().stream(context, batches)
        finally:
            begun = type(self).started or time.monotonic()
            self.intervals.append((begun, time.monotonic()))


@pytest.fixture(autouse=True)
def types() -> Iterator[None]:
    register_bloc(Counter)
    register_bloc(Deaf)
    Counter.gates, Counter.fail_after, Counter.attempts = {}, {}, {}
    Deaf.intervals = []
    yield
    unregister_bloc(Counter.bloc_type)
    unregister_bloc(Deaf.bloc_type)


@pytest.fixture
def db(postgres: PostgresServer) -> Iterator[psycopg.Connection[Any]]:
    conn: psycopg.Connection[Any] = postgres.connect(autocommit=True)  # type: ignore[assignment]
    with conn:
        yield conn


@pytest.fixture
def table(postgres: PostgresServer, db: psycopg.Connection[Any]) -> str:
    """A table with one old row, to be kept or replaced."""
    name = f"s_{uuid.uuid4().hex[:10]}"
    db.execute(sql.SQL("CREATE TABLE {} (n bigint)").format(sql.Identifier(name)))
    db.execute(sql.SQL("INSERT INTO {} VALUES (-1)").format(sql.Identifier(name)))
    return name


def values(db: psycopg.Connection[Any], table: str) -> list[int]:
    query = sql.SQL("SELECT n FROM {} ORDER BY n").format(sql.Identifier(table))
    return [row[0] for row in db.execute(query)]


def exporter(postgres: PostgresServer, table: str, **config: Any) -> Any:
    settings = {
        "table_name": table,
        "schema": postgres.schema,
        "dsn": postgres.url,
        "source_bloc": "load",
        **config,
    }
    return create_bloc("export", "postgres_exporter", settings)


def test_an_upstream_failure_rolls_the_replace_back(
    postgres: PostgresServer, db: psycopg.Connection[Any], table: str
) -> None:
    Counter.fail_after["load"] = 300
    load = Counter("load", {}, description="1000")
    result = Pipeline("failing", [[load], [exporter(postgres, table)]]).run(batch_size=100)
    assert result.status is RunStatus.FAILED
    assert result.blocs["export"].status is BlocStatus.SKIPPED
    assert values(db, table) == [-1]


def test_cancelling_mid_stream_commits_nothing(
    postgres: PostgresServer, db: psycopg.Connection[Any], table: str
) -> None:
    token = CancelToken()
    gate = threading.Event()
    Counter.gates["load"] = gate

    class CancelWhenRowsArrive(RunListener):
        def bloc_progress(self, context: RunContext, result: BlocResult) -> None:
            if result.name == "export" and result.rows_in:
                token.cancel()
                gate.set()

    load = Counter("load", {}, description="1000")
    pipeline = Pipeline("cancel", [[load], [exporter(postgres, table, if_exists="append")]])
    result = pipeline.run(batch_size=100, cancel_token=token, listeners=[CancelWhenRowsArrive()])
    assert result.status is RunStatus.CANCELLED
    assert result.blocs["export"].status is BlocStatus.CANCELLED
    assert values(db, table) == [-1]


def test_a_timed_out_deaf_bloc_is_retried_only_after_it_ended_and_append_writes_once(
    postgres: PostgresServer, db: psycopg.Connection[Any], table: str
) -> None:
    load = Counter("load", {}, description="50")
    deaf = Deaf("deaf", {"timeout": 0.2, "retries": 1, "retry_delay": 0})
    export = exporter(postgres, table, if_exists="append", source_bloc="deaf")
    result = Pipeline("deaf", [[load], [deaf], [export]]).run(batch_size=10)
    assert result.status is RunStatus.SUCCEEDED, result.error
    assert result.blocs["deaf"].attempts == 2
    assert result.blocs["export"].attempts == 1
    (first_start, first_end), (second_start, _) = Deaf.intervals
    assert first_end - first_start >= 0.6  # it ignored the stop...
    assert second_start >= first_end  # ...and its retry waited for it
    assert values(db, table) == [-1, *range(50)]


def test_a_statement_blocked_on_the_server_is_cancelled_there_when_the_attempt_times_out(
    postgres: PostgresServer, db: psycopg.Connection[Any], table: str
) -> None:
    # The test holds a lock on the table: the exporter's COPY waits on the server. Only a
    # server-side cancel ends that attempt; the lock is released when the retry starts.
    locker = psycopg.connect(postgres.url, options=f"-c search_path={postgres.schema}")
    locker.execute(sql.SQL("LOCK TABLE {} IN ACCESS EXCLUSIVE MODE").format(sql.Identifier(table)))

    class ReleaseOnRetry(RunListener):
        def bloc_started(self, context: RunContext, bloc: Any, attempt: int) -> None:
            if bloc.name == "export" and attempt == 2:
                locker.commit()

    load = Counter("load", {}, description="30")
    export = exporter(postgres, table, if_exists="append", timeout=0.5, retries=1, retry_delay=0)
    try:
        result = Pipeline("locked", [[load], [export]]).run(
            batch_size=10, stop_grace=5, listeners=[ReleaseOnRetry()]
        )
    finally:
        locker.close()
    assert result.status is RunStatus.SUCCEEDED, result.error
    assert result.blocs["export"].attempts == 2
    assert values(db, table) == [-1, *range(30)]


@pytest.mark.parametrize("fused", [False, True], ids=["general path", "fast path"])
def test_bounded_memory_csv_to_postgres(
    postgres: PostgresServer, db: psycopg.Connection[Any], table: str, tmp_path: Path, fused: bool
) -> None:
    source = write_csv(tmp_path / "in.csv", 200_000)
    load = create_bloc(
        "load", "csv_loader", {"file_path": str(source), "types": {"id": "int", "amount": "int"}}
    )
    pipeline = Pipeline("bounded", [[load], [exporter(postgres, table)]])
    tracemalloc.start()
    try:
        # Keeping no rows lets the engine fuse the two blocs (the file goes straight to COPY);
        # the default keeps up to 10,000 rows of each bloc and streams dicts in batches.
        result = pipeline.run(batch_size=1000, keep_outputs=False if fused else None)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert result.status is RunStatus.SUCCEEDED, result.error
    # 200,000 rows of two ints as dicts take about 50 MB (see test_streaming).
    assert peak < 8_000_000, f"peak {peak:,} bytes"
    count = db.execute(
        sql.SQL("SELECT count(*), sum(id) FROM {}").format(sql.Identifier(table))
    ).fetchone()
    assert count == (200_000, sum(range(200_000)))
