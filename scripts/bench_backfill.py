"""Backfill overhead (issue #13): ``.venv/bin/python scripts/bench_backfill.py [--count 10000]``.

On PostgreSQL (``TH2ETL_BENCH_DATABASE_URL``, default the test server), in a schema of its own
dropped afterwards, with a 1-bloc stored pipeline (``example_transformer``, no rows):

* reference: ``--count`` recorded ``storage.run_pipeline()`` calls, one after another, in one
  process (each records its run, its bloc and its log lines, and heartbeats for it through a
  RunOwner of its own), then the same with ``instance_id=`` (the caller owns the runs, as a
  backfill does);
* backfill: ``th2etl backfill`` of ``--count`` fire times of a minutely schedule (plan, one
  claim per tick, the same recorded run), with ``--max-active 1`` and then ``4`` (the runs of
  a backfill execute in threads of its process).

Prints runs per second of each and the overhead per run of the backfill against the reference
(target <= 2x), and the peak RSS. Takes about a minute with the defaults on a quiet machine.
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

from th2etl.scheduler.backfill import Backfill, plan_backfill
from th2etl.storage import PostgresStorage

URL = os.environ.get("TH2ETL_BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test")


def reference(storage: PostgresStorage, count: int, **options: str) -> float:
    started = time.perf_counter()
    for _ in range(count):
        result = storage.run_pipeline("one_bloc", **options)
        assert result.succeeded, result.error
    return time.perf_counter() - started


def backfill(storage: PostgresStorage, scheduler: str, count: int, max_active: int) -> float:
    end = datetime(2026, 1, 1, tzinfo=UTC)
    start = end - timedelta(minutes=count - 1)
    began = time.perf_counter()
    plan = plan_backfill(storage, scheduler, start, end, now=datetime.now(UTC))
    assert len(plan.to_run) == count, len(plan.to_run)
    report = Backfill(storage, plan, max_active=max_active).run()
    elapsed = time.perf_counter() - began
    assert report.succeeded == count, report.to_dict()
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=10_000, help="runs of each kind")
    args = parser.parse_args()
    schema = f"th2etl_bench_{uuid.uuid4().hex[:8]}"
    try:
        with PostgresStorage(URL, schema=schema) as storage:
            storage.create_bloc("noop", "example_transformer")
            storage.create_pipeline("one_bloc", [["noop"]])
            storage.create_trigger("minutely", cron_expression="* * * * *")
            for name in ("serial", "parallel"):
                storage.create_scheduler(name, "one_bloc", "minutely", enabled=False)
            print(f"{args.count} runs of a 1-bloc pipeline on {storage.describe()}")
            ref = reference(storage, args.count)
            # The caller owns the runs (as a backfill does): no heartbeat thread per run.
            owned = reference(storage, args.count, instance_id="bench")
            serial = backfill(storage, "serial", args.count, 1)
            parallel = backfill(storage, "parallel", args.count, 4)
    finally:
        with psycopg.connect(URL, autocommit=True) as admin:
            admin.execute(
                sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema))
            )
    per_run = ref / args.count
    print(
        f"storage.run_pipeline() x {args.count}: {args.count / ref:8.0f} runs/s "
        f"({per_run * 1000:.2f} ms/run)"
    )
    print(
        f"storage.run_pipeline(instance_id=...) x {args.count}: {args.count / owned:8.0f} runs/s "
        f"({owned / args.count * 1000:.2f} ms/run)"
    )
    for label, elapsed in (
        ("backfill --max-active 1", serial),
        ("backfill --max-active 4", parallel),
    ):
        print(
            f"{label}: {args.count / elapsed:8.0f} runs/s ({elapsed / args.count * 1000:.2f} "
            f"ms/run), {elapsed / ref:.2f}x storage.run_pipeline() (target <= 2x), "
            f"{elapsed / owned:.2f}x with the caller as owner"
        )
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS: {peak:.0f} MiB")


if __name__ == "__main__":
    main()
