"""Benchmark of DatabaseStorage against raw psycopg / sqlite3 single statements.

    .venv/bin/python scripts/bench_storage.py [--blocs 10000] [--pipelines 2000] [--dsn ...]
                                              [--backend both|sqlite|postgresql]

On each backend, in a database of its own (a temporary SQLite file; a PostgreSQL schema
``th2etl_bench_<random>``), both removed at the end:

* th2etl: ``create_bloc`` x N (validated through the registry), ``create_pipeline`` x M (three
  stages of four blocs, validated against the stored blocs), ``get_bloc`` / ``get_pipeline`` of
  each, ``list_blocs()`` and ``list_pipelines()``;
* raw: the equivalent single statements on a plain connection (autocommit; for SQLite the same
  WAL / ``synchronous=NORMAL`` settings): one ``INSERT`` per bloc or pipeline into a table of
  the same shape, one ``SELECT ... WHERE name = ?`` per get, one ``SELECT ... ORDER BY name`` per
  list. th2etl also stores one row per (pipeline, bloc), which keeps a used bloc from being
  deleted; the "same rows" line compares create_pipeline with raw statements writing those rows
  too (a transaction of 1 + 4 INSERTs).

th2etl and raw run interleaved, in chunks of 200 operations, so that both see the same load on
the machine; gets are the best of three such passes, lists the median of five alternating
calls.

The ratio is th2etl's rate as a fraction of raw's; the targets are >= 0.5 for create and get,
and ``list_pipelines()`` of 2,000 pipelines under 100 ms on PostgreSQL. The PostgreSQL database
comes from ``--dsn``, ``TH2ETL_BENCH_DATABASE_URL`` or ``postgresql://postgres@127.0.0.1:5432/test``.
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from th2etl.storage import DatabaseStorage, PostgresStorage, SQLiteStorage

DEFAULT_DSN = os.environ.get(
    "TH2ETL_BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test"
)
CREATE_TARGET = GET_TARGET = 0.5
LIST_PIPELINES_TARGET_MS = 100.0
CHUNK = 200
RAW_TABLES = (
    "CREATE TABLE raw_blocs (name TEXT PRIMARY KEY, bloc_type TEXT NOT NULL, config {json} "
    "NOT NULL, description TEXT NOT NULL, created_at {ts} NOT NULL, updated_at {ts} NOT NULL)",
    "CREATE TABLE raw_pipelines (name TEXT PRIMARY KEY, stages {json} NOT NULL, description "
    "TEXT NOT NULL, created_at {ts} NOT NULL, updated_at {ts} NOT NULL)",
    "CREATE TABLE raw_pipeline_blocs (pipeline_name TEXT NOT NULL, bloc_name TEXT NOT NULL, "
    "position INTEGER NOT NULL, PRIMARY KEY (pipeline_name, bloc_name))",
)

Action = Callable[[int], object]


@dataclass
class Side:
    """One way of doing each benchmarked operation, on item number ``i``."""

    create_bloc: Action
    create_pipeline: Action
    get_bloc: Action
    get_pipeline: Action
    list_blocs: Callable[[], object]
    list_pipelines: Callable[[], object]


def pipeline_stages(index: int, blocs: int) -> list[list[str]]:
    base = (index * 4) % (blocs - 3)
    return [[f"bloc_{base}"], [f"bloc_{base + 1}", f"bloc_{base + 2}"], [f"bloc_{base + 3}"]]


def th2etl_side(storage: DatabaseStorage, blocs: int) -> Side:
    return Side(
        create_bloc=lambda i: storage.create_bloc(
            f"bloc_{i}", "example_transformer", config={"factor": i % 7 + 1}
        ),
        create_pipeline=lambda i: storage.create_pipeline(
            f"pipeline_{i}", stages=pipeline_stages(i, blocs), description="bench"
        ),
        get_bloc=lambda i: storage.get_bloc(f"bloc_{i}"),
        get_pipeline=lambda i: storage.get_pipeline(f"pipeline_{i}"),
        list_blocs=storage.list_blocs,
        list_pipelines=storage.list_pipelines,
    )


def raw_side(
    execute: Callable[[str, Sequence[Any]], Any], mark: str, stamp: Any, blocs: int
) -> tuple[Side, Action]:
    """Single statements with the driver's placeholder ``mark``; plus "the same rows"."""
    p = mark
    insert_bloc = f"INSERT INTO raw_blocs VALUES ({p}, {p}, {p}, {p}, {p}, {p})"
    insert_pipeline = f"INSERT INTO raw_pipelines VALUES ({p}, {p}, {p}, {p}, {p})"
    insert_member = f"INSERT INTO raw_pipeline_blocs VALUES ({p}, {p}, {p})"
    get_bloc = f"SELECT * FROM raw_blocs WHERE name = {p}"
    get_pipeline = f"SELECT * FROM raw_pipelines WHERE name = {p}"

    def now() -> Any:
        return stamp(datetime.now(UTC))

    def pipeline_rows(i: int) -> None:
        """What th2etl writes for a pipeline: its row and one row per bloc, one transaction."""
        stages = pipeline_stages(i, blocs)
        execute("BEGIN", ())
        execute(insert_pipeline, (f"rows_{i}", json.dumps(stages), "bench", now(), now()))
        for position, bloc in enumerate(b for stage in stages for b in stage):
            execute(insert_member, (f"rows_{i}", bloc, position))
        execute("COMMIT", ())

    side = Side(
        create_bloc=lambda i: execute(
            insert_bloc,
            (
                f"bloc_{i}",
                "example_transformer",
                json.dumps({"factor": i % 7 + 1}),
                "",
                now(),
                now(),
            ),
        ),
        create_pipeline=lambda i: execute(
            insert_pipeline,
            (f"pipeline_{i}", json.dumps(pipeline_stages(i, blocs)), "bench", now(), now()),
        ),
        get_bloc=lambda i: execute(get_bloc, (f"bloc_{i}",)).fetchone(),
        get_pipeline=lambda i: execute(get_pipeline, (f"pipeline_{i}",)).fetchone(),
        list_blocs=lambda: execute("SELECT * FROM raw_blocs ORDER BY name", ()).fetchall(),
        list_pipelines=lambda: execute("SELECT * FROM raw_pipelines ORDER BY name", ()).fetchall(),
    )
    return side, pipeline_rows


def interleaved(count: int, actions: Sequence[Action]) -> list[float]:
    """Seconds each action took over items 0..count-1, run in alternating chunks."""
    totals = [0.0] * len(actions)
    for start in range(0, count, CHUNK):
        items = range(start, min(start + CHUNK, count))
        for k, action in enumerate(actions):
            started = time.perf_counter()
            for item in items:
                action(item)
            totals[k] += time.perf_counter() - started
    return totals


def alternating_median(runs: int, actions: Sequence[Callable[[], object]]) -> list[float]:
    times: list[list[float]] = [[] for _ in actions]
    for _ in range(runs):
        for k, action in enumerate(actions):
            started = time.perf_counter()
            action()
            times[k].append(time.perf_counter() - started)
    return [statistics.median(t) for t in times]


def measure(ours: Side, raw: Side, rows: Action, blocs: int, pipelines: int) -> dict[str, Any]:
    """{operation: (th2etl seconds, raw seconds)}."""
    figures: dict[str, Any] = {}
    figures["create_bloc"] = interleaved(blocs, [ours.create_bloc, raw.create_bloc])
    mine, theirs, same = interleaved(pipelines, [ours.create_pipeline, raw.create_pipeline, rows])
    figures["create_pipeline"] = (mine, theirs)
    figures["same_rows"] = (mine, same)
    # Reads change nothing: the best of three passes each, against bursts of load.
    passes = [interleaved(blocs, [ours.get_bloc, raw.get_bloc]) for _ in range(3)]
    figures["get_bloc"] = [min(side) for side in zip(*passes, strict=True)]
    passes = [interleaved(pipelines, [ours.get_pipeline, raw.get_pipeline]) for _ in range(3)]
    figures["get_pipeline"] = [min(side) for side in zip(*passes, strict=True)]
    figures["list_blocs"] = alternating_median(5, [ours.list_blocs, raw.list_blocs])
    figures["list_pipelines"] = alternating_median(5, [ours.list_pipelines, raw.list_pipelines])
    return figures


def run_sqlite(blocs: int, pipelines: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="th2etl_bench_") as folder:
        storage = SQLiteStorage(Path(folder) / "th2etl.db")
        conn = sqlite3.connect(Path(folder) / "raw.db", isolation_level=None)
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            for statement in RAW_TABLES:
                conn.execute(statement.format(json="TEXT", ts="TEXT"))
            raw, rows = raw_side(
                conn.execute, "?", lambda moment: moment.isoformat(timespec="microseconds"), blocs
            )
            return measure(th2etl_side(storage, blocs), raw, rows, blocs, pipelines)
        finally:
            conn.close()
            storage.close()


def run_postgres(dsn: str, blocs: int, pipelines: int) -> dict[str, Any]:
    schema = f"th2etl_bench_{uuid.uuid4().hex[:8]}"
    try:
        storage = PostgresStorage(dsn, schema=schema)
        conn = psycopg.connect(dsn, autocommit=True)
        try:
            conn.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(schema)))
            for statement in RAW_TABLES:
                conn.execute(statement.format(json="JSON", ts="TIMESTAMPTZ"))  # type: ignore[arg-type]
            raw, rows = raw_side(conn.execute, "%s", lambda moment: moment, blocs)  # type: ignore[arg-type]
            return measure(th2etl_side(storage, blocs), raw, rows, blocs, pipelines)
        finally:
            conn.close()
            storage.close()
    finally:
        with psycopg.connect(dsn, autocommit=True) as admin:
            admin.execute(
                sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema))
            )


def report(backend: str, figures: dict[str, Any], blocs: int, pipelines: int) -> bool:
    print(f"\n{backend}")
    print(f"  {'operation':<16} {'th2etl':>12} {'raw':>12} {'ratio':>6}  target")
    ok = True
    for operation in ("create_bloc", "create_pipeline", "same_rows", "get_bloc", "get_pipeline"):
        count = blocs if operation.endswith("bloc") else pipelines
        mine, theirs = (count / seconds for seconds in figures[operation])
        ratio = mine / theirs
        if operation == "same_rows":
            print(
                f"  {'  (same rows)':<16} {mine:>10,.0f}/s {theirs:>10,.0f}/s {ratio:>6.2f}  "
                "raw also writes the 4 bloc rows, in one transaction"
            )
            continue
        target = CREATE_TARGET if operation.startswith("create") else GET_TARGET
        ok = ok and ratio >= target
        verdict = "ok" if ratio >= target else "MISSED"
        print(
            f"  {operation:<16} {mine:>10,.0f}/s {theirs:>10,.0f}/s {ratio:>6.2f}  "
            f">= {target} {verdict}"
        )
    for operation, count in (("list_blocs", blocs), ("list_pipelines", pipelines)):
        mine, theirs = (seconds * 1000 for seconds in figures[operation])
        line = (
            f"  {operation:<16} {mine:>10.1f}ms {theirs:>10.1f}ms {theirs / mine:>6.2f}  "
            f"({count:,} records)"
        )
        if operation == "list_pipelines" and backend == "postgresql":
            passed = mine < LIST_PIPELINES_TARGET_MS
            ok = ok and passed
            line += f" < {LIST_PIPELINES_TARGET_MS:.0f}ms {'ok' if passed else 'MISSED'}"
        print(line)
    return ok


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--blocs", type=int, default=10_000)
    parser.add_argument("--pipelines", type=int, default=2_000)
    parser.add_argument("--dsn", default=DEFAULT_DSN)
    parser.add_argument("--backend", choices=("both", "sqlite", "postgresql"), default="both")
    args = parser.parse_args(argv)
    if args.blocs < 8 or args.pipelines < 1:
        parser.error("use at least 8 blocs and 1 pipeline")
    print(f"{args.blocs:,} blocs, {args.pipelines:,} pipelines; python {sys.version.split()[0]}")
    ok = True
    if args.backend in ("both", "sqlite"):
        figures = run_sqlite(args.blocs, args.pipelines)
        ok = report("sqlite", figures, args.blocs, args.pipelines) and ok
    if args.backend in ("both", "postgresql"):
        figures = run_postgres(args.dsn, args.blocs, args.pipelines)
        ok = report("postgresql", figures, args.blocs, args.pipelines) and ok
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
