"""th2etl prune of 1,000,000 run rows on PostgreSQL, and the latency of recording new runs
meanwhile (target: p99 < 100 ms).

    .venv/bin/python scripts/bench_prune.py [--rows 1000000] [--database-url URL]

In a schema of its own: ``--rows`` ended runs (10 % of them scheduler ticks, each with one bloc
run) older than 30 days are loaded with one INSERT ... SELECT. A recorder thread then records
new runs through its own storage (``start_run``, a bloc, ``finish_run``: what the engine's
recorder does), first alone (the reference), then while ``prune(older_than=30d)`` deletes the
old rows in batches. Printed: prune seconds and rows/s, the recording latency (p50, p99, max)
alone and during the prune, and peak RSS.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import sys
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from th2etl.pipelines.result import BlocResult, BlocStatus
from th2etl.retention import DEFAULT_BATCH_SIZE, DEFAULT_PAUSE, prune
from th2etl.storage import DatabaseStorage

LOAD = (
    # A bulk load: the status triggers are skipped (rows are inserted already ended).
    "SET session_replication_role = replica",
    "INSERT INTO th2etl_runs (run_id, pipeline_name, status, started_at, finished_at, "
    "scheduler_name, scheduled_time, variables, owner_id, started_by, log) "
    "SELECT 'old-' || n, 'pipeline_' || mod(n, 50), "
    "CASE WHEN mod(n, 5) = 0 THEN 'failed' ELSE 'succeeded' END, "
    "%(start)s::timestamptz + n * interval '1 second', "
    "%(start)s::timestamptz + n * interval '1 second' + interval '30 seconds', "
    "CASE WHEN mod(n, 10) = 0 THEN 'sched_' || mod(n, 20) END, "
    "CASE WHEN mod(n, 10) = 0 THEN %(start)s::timestamptz + n * interval '1 minute' END, "
    "'{}', 'bench', 'bench', 'a line of log ' || n FROM generate_series(1, %(rows)s) AS n",
    "INSERT INTO th2etl_bloc_runs (run_id, bloc_name, position, bloc_type, stage, status, "
    "attempts, rows_in, rows_out, duration) SELECT run_id, 'load', 0, 'csv_loader', 1, "
    "'succeeded', 1, 10, 10, 0.5 FROM th2etl_runs WHERE scheduler_name IS NOT NULL",
    "SET session_replication_role = origin",
    "ANALYZE th2etl_runs",
    "ANALYZE th2etl_bloc_runs",
)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


class Recorder(threading.Thread):
    """Records runs one after another through its own storage, timing each."""

    def __init__(self, storage: DatabaseStorage) -> None:
        super().__init__(daemon=True)
        self.storage = storage
        self.latencies: list[float] = []
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            run_id = f"new-{uuid.uuid4().hex}"
            start = time.perf_counter()
            now = datetime.now(UTC)
            self.storage.start_run(run_id, "fresh", started_at=now)
            self.storage.record_bloc_run(
                run_id, BlocResult("load", "csv_loader", 1, BlocStatus.SUCCEEDED)
            )
            self.storage.finish_run(run_id, "succeeded", finished_at=now, error=None)
            self.latencies.append(time.perf_counter() - start)
            time.sleep(0.005)


def record_for(storage: DatabaseStorage, seconds: float) -> list[float]:
    recorder = Recorder(storage)
    recorder.start()
    time.sleep(seconds)
    recorder.stop.set()
    recorder.join()
    return recorder.latencies


def describe(name: str, latencies: list[float]) -> str:
    ms = [value * 1000 for value in latencies]
    return (
        f"  recording a run, {name:<14} n={len(ms):<5} p50 {statistics.median(ms):6.1f} ms  "
        f"p99 {percentile(ms, 0.99):6.1f} ms  max {max(ms):6.1f} ms"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--database-url", default="postgresql://postgres@127.0.0.1:5432/test")
    parser.add_argument("--reference-seconds", type=float, default=10.0)
    parser.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE)
    parser.add_argument("--pause", type=float, default=DEFAULT_PAUSE)
    args = parser.parse_args()
    import psycopg
    from psycopg import sql

    schema = f"bench_prune_{uuid.uuid4().hex[:8]}"
    storage = DatabaseStorage(args.database_url, schema=schema)
    recording = DatabaseStorage(args.database_url, schema=schema)
    try:
        old = datetime.now(UTC) - timedelta(days=400)
        started = time.perf_counter()
        with psycopg.connect(args.database_url, autocommit=True) as conn:
            conn.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(schema)))
            for statement in LOAD:
                params = {"start": old, "rows": args.rows} if "%(" in statement else None
                conn.execute(statement, params)  # type: ignore[arg-type]
        print(f"loaded {args.rows:,} ended runs in {time.perf_counter() - started:.1f} s")
        alone = record_for(recording, args.reference_seconds)
        recorder = Recorder(recording)
        recorder.start()
        started = time.perf_counter()
        result = prune(
            storage,
            timedelta(days=30),
            now=datetime.now(UTC),
            batch_size=args.batch_size,
            pause=args.pause,
        )
        seconds = time.perf_counter() - started
        recorder.stop.set()
        recorder.join()
        print(f"batches of {args.batch_size}, {args.pause * 1000:.0f} ms apart")
        print(
            f"prune deleted {result.runs:,} runs ({result.ticks:,} ticks kept) in {seconds:.1f} s "
            f"= {result.runs / seconds:,.0f} runs/s"
        )
        print(describe("alone", alone))
        print(describe("during prune", recorder.latencies))
        p99 = percentile(recorder.latencies, 0.99) * 1000
        print(
            f"  p99 during prune / alone = {p99 / (percentile(alone, 0.99) * 1000):.2f}; "
            f"target p99 < 100 ms: {'met' if p99 < 100 else 'NOT met'}"
        )
        print(f"  peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")
    finally:
        storage.close()
        recording.close()
        with psycopg.connect(args.database_url, autocommit=True) as admin:
            admin.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))


if __name__ == "__main__":
    main()
