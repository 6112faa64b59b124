"""Backfill overhead (issue #13): ``.venv/bin/python scripts/bench_backfill.py [--count 10000]``.

On PostgreSQL (``TH2ETL_BENCH_DATABASE_URL``, default the test server), in a schema of its own
dropped afterwards, with a 1-bloc stored pipeline (``example_transformer``, no rows):

* reference: ``--count`` recorded ``storage.run_pipeline()`` calls, one after another, in one
  process (each records its run, its bloc and its log lines, and heartbeats for it through a
  RunOwner of its own), then the same with ``instance_id=`` (the caller owns the runs, as a
  backfill does);
* backfill: a backfill of ``--count`` fire times of a minutely schedule (plan, one claim per
  tick, the same recorded run), on each ``--executors`` (``thread``: a thread of this process
  per run; ``process``: a worker process per run, from the forkserver, as ``th2etl backfill``
  does by default) with each ``--max-active``.

Prints runs per second of each and the overhead per run of the backfill against the reference
(target <= 2x), the load average and the peak RSS of this process and of its largest child.
Each line is printed as soon as it is measured.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import psycopg
from psycopg import sql

from th2etl.executors import make_executor
from th2etl.scheduler.backfill import Backfill, plan_backfill
from th2etl.storage import PostgresStorage

URL = os.environ.get("TH2ETL_BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test")


def reference(storage: PostgresStorage, count: int, **options: str) -> float:
    started = time.perf_counter()
    for _ in range(count):
        result = storage.run_pipeline("one_bloc", **options)
        assert result.succeeded, result.error
    return time.perf_counter() - started


def backfill(
    storage: PostgresStorage, scheduler: str, count: int, max_active: int, kind: str
) -> float:
    end = datetime(2026, 1, 1, tzinfo=UTC)
    start = end - timedelta(minutes=count - 1)
    executor = make_executor(kind, storage)
    try:
        began = time.perf_counter()
        plan = plan_backfill(storage, scheduler, start, end, now=datetime.now(UTC))
        assert len(plan.to_run) == count, len(plan.to_run)
        report = Backfill(storage, plan, max_active=max_active, executor=executor).run()
        elapsed = time.perf_counter() - began
    finally:
        executor.shutdown()
    assert report.succeeded == count, report.to_dict()
    return elapsed


def _numbers(text: str) -> list[int]:
    return [int(part) for part in text.split(",")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=10_000, help="runs of each kind")
    parser.add_argument("--executors", default="thread,process", help="comma-separated")
    parser.add_argument("--max-active", type=_numbers, default=[1, 4], help="e.g. 1,4")
    parser.add_argument("--no-owned", action="store_true", help="skip the owned reference")
    args = parser.parse_args()
    count = args.count
    schema = f"th2etl_bench_h13_{uuid.uuid4().hex[:8]}"
    try:
        with PostgresStorage(URL, schema=schema) as storage:
            storage.create_bloc("noop", "example_transformer")
            storage.create_pipeline("one_bloc", [["noop"]])
            storage.create_trigger("minutely", cron_expression="* * * * *")
            print(f"{count} runs of a 1-bloc pipeline on {storage.describe()}", flush=True)
            print(f"load average before: {_load()}", flush=True)
            ref = reference(storage, count)
            print(
                f"storage.run_pipeline() x {count}: {count / ref:8.1f} runs/s "
                f"({ref / count * 1000:.2f} ms/run)  [load {_load()}]",
                flush=True,
            )
            owned = None
            if not args.no_owned:
                # The caller owns the runs (as a backfill does): no heartbeat thread per run.
                owned = reference(storage, count, instance_id="bench")
                print(
                    f"storage.run_pipeline(instance_id=...) x {count}: {count / owned:8.1f} "
                    f"runs/s ({owned / count * 1000:.2f} ms/run)  [load {_load()}]",
                    flush=True,
                )
            for kind in args.executors.split(","):
                for max_active in args.max_active:
                    name = f"{kind}_{max_active}"
                    storage.create_scheduler(name, "one_bloc", "minutely", enabled=False)
                    elapsed = backfill(storage, name, count, max_active, kind)
                    line = (
                        f"backfill executor={kind} --max-active {max_active}: "
                        f"{count / elapsed:8.1f} runs/s ({elapsed / count * 1000:.2f} ms/run), "
                        f"{elapsed / ref:.2f}x storage.run_pipeline() (target <= 2x)"
                    )
                    if owned is not None:
                        line += f", {elapsed / owned:.2f}x with the caller as owner"
                    print(f"{line}  [load {_load()}]", flush=True)
    finally:
        with psycopg.connect(URL, autocommit=True) as admin:
            admin.execute(
                sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema))
            )
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    child = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(f"peak RSS: {peak:.0f} MiB (largest child: {child:.0f} MiB)", flush=True)


def _load() -> str:
    return " ".join(f"{value:.2f}" for value in os.getloadavg())


if __name__ == "__main__":
    main()
