"""Scheduler benchmarks (issue #4): ``.venv/bin/python scripts/bench_scheduler.py``.

1. Fake-clock simulation rate: ticks per second through ``FakeClock.advance`` with a no-op
   pipeline (target > 10,000/s), for one scheduler and for a manager of ten.
2. Idle cost: CPU seconds per minute of wall time used by a manager holding 1,000 schedulers
   that are not due (target < 0.5 s/min), measured over ``--idle-seconds`` and scaled; once
   in-code, once database-driven (SQLite, following the database every 5 s).
3. Start delay with the system clock: from a tick's due instant to its pipeline's first bloc
   (p50/p99, target p99 < 50 ms). Cron is minute-granular, so the schedulers here use a
   trigger firing every ``--interval`` seconds (a CronTrigger subclass defined below, used
   only by this script); everything else is the real scheduler on the real clock.

Takes about a minute and a half with the defaults.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from th2etl.blocs import TransformerBloc, register_bloc
from th2etl.clock import FakeClock
from th2etl.pipelines import Pipeline, RunContext
from th2etl.scheduler import (
    CronScheduler,
    CronTrigger,
    SchedulerManager,
    load_scheduler_manager,
)
from th2etl.types import Rows


@register_bloc(replace=True)
class BenchNoop(TransformerBloc):
    bloc_type = "bench_noop"
    summary = "Does nothing (benchmarks)."

    def run(self, context: RunContext, rows: Rows) -> Rows:
        return []


DELAYS: list[float] = []
_DELAYS_LOCK = threading.Lock()


class RecordStart(TransformerBloc):
    bloc_type = "bench_record_start"

    def run(self, context: RunContext, rows: Rows) -> Rows:
        assert context.scheduled_time is not None
        delay = (datetime.now(UTC) - context.scheduled_time).total_seconds()
        with _DELAYS_LOCK:
            DELAYS.append(delay)
        return []


class EveryInterval(CronTrigger):
    """Fires every ``seconds`` from ``origin`` (benchmark only: cron has no seconds)."""

    def __init__(self, seconds: float, origin: datetime) -> None:
        super().__init__("* * * * *")
        self.step = timedelta(seconds=seconds)
        self.origin = origin

    def iter_fire_times(self, after: datetime) -> Iterator[datetime]:
        count = max(0, int((after - self.origin) / self.step) - 1)
        instant = self.origin + count * self.step
        while True:
            if instant > after:
                yield instant
            instant += self.step

    def next_fire_time(self, after: datetime) -> datetime:
        return next(iter(self.iter_fire_times(after)))


def noop_pipeline(name: str) -> Pipeline:
    return Pipeline(name, [[BenchNoop("noop")]])


def bench_simulation(ticks: int) -> None:
    clock = FakeClock(datetime(2026, 1, 1, tzinfo=UTC))
    scheduler = CronScheduler(noop_pipeline("sim"), "* * * * *", clock=clock, logs_dir=None)
    scheduler.start()
    began = time.perf_counter()
    results = clock.advance(timedelta(minutes=ticks))
    elapsed = time.perf_counter() - began
    scheduler.stop()
    assert len(results) == ticks
    print(f"fake-clock simulation, 1 scheduler:   {ticks / elapsed:>10,.0f} ticks/s ({ticks} runs)")

    clock = FakeClock(datetime(2026, 1, 1, tzinfo=UTC))
    schedulers = [
        CronScheduler(noop_pipeline(f"p{n}"), "* * * * *", name=f"s{n}", logs_dir=None)
        for n in range(10)
    ]
    manager = SchedulerManager(schedulers, clock=clock)
    manager.start()
    began = time.perf_counter()
    results = clock.advance(timedelta(minutes=ticks // 10))
    elapsed = time.perf_counter() - began
    manager.stop()
    print(f"fake-clock simulation, 10 schedulers: {len(results) / elapsed:>10,.0f} ticks/s")


def _idle_cpu(manager: SchedulerManager, seconds: float) -> float:
    thread = threading.Thread(target=manager.start, kwargs={"handle_signals": False})
    thread.start()
    time.sleep(1.0)  # let it settle into its sleep
    cpu0, wall0 = time.process_time(), time.perf_counter()
    time.sleep(seconds)
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    manager.stop()
    thread.join()
    return cpu / wall * 60


def bench_idle(seconds: float) -> None:
    schedulers = [
        CronScheduler(noop_pipeline(f"idle{n}"), "0 0 1 1 *", name=f"idle{n}", logs_dir=None)
        for n in range(1000)
    ]
    per_minute = _idle_cpu(SchedulerManager(schedulers), seconds)
    print(f"idle manager, 1,000 in-code schedulers:  {per_minute:.4f} CPU s per wall minute")

    from th2etl.storage import SQLiteStorage

    with tempfile.TemporaryDirectory() as folder:
        storage = SQLiteStorage(Path(folder) / "bench.db")
        try:
            storage.create_bloc("noop", "bench_noop")
            storage.create_pipeline("idle", stages=[["noop"]])
            storage.create_trigger("yearly", "idle", "0 0 1 1 *")
            for n in range(1000):
                storage.create_scheduler(f"idle{n}", "idle", "yearly")
            manager = load_scheduler_manager(storage, logs_dir=None)
            assert len(manager) == 1000
            per_minute = _idle_cpu(manager, seconds)
        finally:
            storage.close()
    print(
        f"idle manager, 1,000 stored schedulers:   {per_minute:.4f} CPU s per wall minute "
        "(SQLite, revision polled every 5 s, heartbeat every 10 s)"
    )
    bench_idle_postgres(seconds)


def bench_idle_postgres(seconds: float) -> None:
    """The same on PostgreSQL (``TH2ETL_TEST_DATABASE_URL``), in a schema dropped afterwards."""
    import os
    import uuid

    import psycopg
    from psycopg import sql

    from th2etl.storage import PostgresStorage

    url = os.environ.get("TH2ETL_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test")
    schema = f"bench_sched_{uuid.uuid4().hex[:8]}"
    try:
        admin = psycopg.connect(url, autocommit=True, connect_timeout=3)
    except psycopg.OperationalError as exc:
        print(f"idle manager on PostgreSQL: skipped ({url} unreachable: {exc})")
        return
    with admin:
        admin.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
        try:
            with PostgresStorage(url, schema=schema) as storage:
                storage.create_bloc("noop", "bench_noop")
                storage.create_pipeline("idle", stages=[["noop"]])
                storage.create_trigger("yearly", "idle", "0 0 1 1 *")
                for n in range(1000):
                    storage.create_scheduler(f"idle{n}", "idle", "yearly")
                manager = load_scheduler_manager(storage, logs_dir=None)
                per_minute = _idle_cpu(manager, seconds)
        finally:
            admin.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))
    print(
        f"idle manager, 1,000 stored schedulers:   {per_minute:.4f} CPU s per wall minute "
        "(PostgreSQL)"
    )


def bench_latency(count: int, interval: float, seconds: float) -> None:
    origin = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=2)
    schedulers = [
        CronScheduler(
            Pipeline(f"lat{n}", [[RecordStart("record")]]),
            EveryInterval(interval, origin + timedelta(seconds=interval * n / count)),
            name=f"lat{n}",
            logs_dir=None,
        )
        for n in range(count)
    ]
    manager = SchedulerManager(schedulers)
    thread = threading.Thread(target=manager.start, kwargs={"handle_signals": False})
    thread.start()
    time.sleep(seconds + 2)
    manager.stop()
    thread.join()
    delays = sorted(d * 1000 for d in DELAYS)
    p50 = statistics.median(delays)
    p99 = delays[min(len(delays) - 1, int(len(delays) * 0.99))]
    print(
        f"start delay, system clock, {count} schedulers every {interval:g} s: "
        f"p50 {p50:.2f} ms, p99 {p99:.2f} ms, max {delays[-1]:.2f} ms ({len(delays)} runs)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--ticks", type=int, default=50_000)
    parser.add_argument("--idle-seconds", type=float, default=15.0)
    parser.add_argument("--latency-seconds", type=float, default=30.0)
    parser.add_argument("--schedulers", type=int, default=25)
    parser.add_argument("--interval", type=float, default=2.0)
    args = parser.parse_args()
    bench_simulation(args.ticks)
    bench_idle(args.idle_seconds)
    bench_latency(args.schedulers, args.interval, args.latency_seconds)


if __name__ == "__main__":
    main()
