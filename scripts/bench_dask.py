"""Benchmark runs on a Dask cluster against plain ``client.submit`` doing the same work.

    .venv/bin/python scripts/bench_dask.py [--runs 200] [--rows 10000] [--rounds 4]

Starts a 2-worker ``LocalCluster`` (nanny processes, 1 thread each) on 127.0.0.1 whose workers
use a PostgreSQL schema of the benchmark's own (``TH2ETL_TEST_DATABASE_URL``, default
``postgresql://postgres@127.0.0.1:5432/test``; dropped at the end). Each run is a 2-bloc
pipeline: ``csv_loader`` reading a CSV of ``--rows`` rows, then ``example_transformer`` over
them. This process owns the runs, as one scheduler process does: it records each run
(``queued``) and submits it, all of them at once.

Three ways of doing the ``--runs`` runs, measured in the same rounds:

* **plain**: a function calling the same two blocs (each over all ``--rows`` rows), through
  ``client.submit``: no engine, no records, no child process;
* **dask**: :class:`~th2etl.executors.dask.DaskExecutor`: recorded (``queued`` by this
  process, inside the timing), fenced, executed in a child process on its worker, recorded
  there;
* **process**: the :class:`~th2etl.executors.process.ProcessExecutor` on this machine, 2 runs
  at a time.

The machine may be shared, and its load changes: the runs are split into ``--rounds`` rounds
and each round runs the three one after the other, in a rotating order, so that a change of
load falls on all three alike. Prints each one's wall time and CPU time (this process and every
process under it: scheduler, workers, their children; not PostgreSQL's), the overhead of dask
over plain (target: at most 1.5x), runs per second against the process executor, the peak RSS
of this process and of each Dask worker, and the load average.
"""

from __future__ import annotations

import argparse
import csv
import os
import resource
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil
import psycopg
from psycopg import sql

from th2etl.blocs.registry import create_bloc
from th2etl.configs.settings import get_settings
from th2etl.executors.base import RunHandle, RunJob
from th2etl.executors.dask import DaskExecutor
from th2etl.executors.process import ProcessExecutor
from th2etl.pipelines import RunContext
from th2etl.pipelines.result import RunStatus
from th2etl.storage import DatabaseStorage

URL = os.environ.get("TH2ETL_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test")


def plain_run(path: str) -> int:
    """The same two blocs, called directly: no engine, no records, no child process."""
    context = RunContext("plain")
    rows = create_bloc("load", "csv_loader", {"file_path": path}).run(context, [])
    out = create_bloc("double", "example_transformer", {"factor": 2}).run(context, rows)
    return len(out)


def write_csv(path: Path, rows: int) -> None:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "name", "amount", "day"])
        for i in range(rows):
            writer.writerow([i, f"name {i}", f"{i * 1.5:.2f}", "2026-12-03"])


class Owner:
    """Records and submits runs of one pipeline, as a scheduler process does."""

    def __init__(self, storage: DatabaseStorage, pipeline: str) -> None:
        self.storage = storage
        self.pipeline = storage.build_pipeline(pipeline)

    def job(self) -> RunJob:
        run_id = uuid.uuid4().hex
        self.storage.create_run(run_id, self.pipeline.name, owner_id="bench", started_by="python")
        return RunJob(run_id, self.pipeline)

    def through_dask(self, executor: DaskExecutor, runs: int) -> None:
        _finish([executor.submit(self.job()) for _ in range(runs)])

    def through_processes(self, executor: ProcessExecutor, runs: int, width: int = 2) -> None:
        slots = threading.Semaphore(width)
        handles: list[RunHandle] = []
        for _ in range(runs):
            slots.acquire()
            handle = executor.submit(self.job())
            threading.Thread(target=lambda h=handle: (h.wait(), slots.release())).start()
            handles.append(handle)
        _finish(handles)


def _finish(handles: list[RunHandle]) -> None:
    results = [handle.wait() for handle in handles]
    bad = [r for r in results if r is None or r.status is not RunStatus.SUCCEEDED]
    if bad:
        raise SystemExit(f"{len(bad)} run(s) did not succeed, e.g. {bad[0]}")


def tree_cpu() -> float:
    """CPU seconds of this process and every process under it (ended ones that were waited
    for count in their parent's children times)."""
    total = 0.0
    me = psutil.Process()
    for process in [me, *me.children(recursive=True)]:
        try:
            times = process.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += times.user + times.system + times.children_user + times.children_system
    return total


def worker_peak_rss() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def measure(
    ways: dict[str, Callable[[int], None]], runs: int, rounds: int
) -> dict[str, tuple[float, float]]:
    """Wall and CPU seconds of each way over ``runs`` runs, in ``rounds`` rotating rounds."""
    spent = dict.fromkeys(ways, (0.0, 0.0))
    names = list(ways)
    for round_ in range(rounds):
        count = runs // rounds + (1 if round_ < runs % rounds else 0)
        for name in names[round_ % len(names) :] + names[: round_ % len(names)]:
            cpu, wall = tree_cpu(), time.perf_counter()
            ways[name](count)
            wall, cpu = time.perf_counter() - wall, tree_cpu() - cpu
            spent[name] = (spent[name][0] + wall, spent[name][1] + cpu)
    return spent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=4)
    args = parser.parse_args()
    from distributed import Client, LocalCluster

    schema = f"bench_dask_{os.getpid()}"
    with psycopg.connect(URL, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
    env = {"DATABASE_URL": URL, "DATABASE_SCHEMA": schema}
    workers: dict[str, Any] = {}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            path = str(Path(tmp) / "rows.csv")
            write_csv(Path(path), args.rows)
            cluster = LocalCluster(
                processes=True,
                n_workers=2,
                threads_per_worker=1,
                host="127.0.0.1",
                dashboard_address="127.0.0.1:0",  # ":0" would listen on every interface
                env=env,
            )
            client = Client(cluster, set_as_default=False)
            storage = DatabaseStorage.from_settings(get_settings(env))
            dask = DaskExecutor(client, storage)
            processes = ProcessExecutor(storage)
            try:
                storage.create_bloc("load", "csv_loader", {"file_path": path})
                storage.create_bloc("double", "example_transformer", {"factor": 2})
                storage.create_pipeline("bench", [["load"], ["double"]])
                owner = Owner(storage, "bench")

                def plain(runs: int) -> None:
                    futures = [client.submit(plain_run, path, pure=False) for _ in range(runs)]
                    assert all(n == args.rows for n in client.gather(futures))

                ways: dict[str, Callable[[int], None]] = {
                    "plain": plain,
                    "dask": lambda runs: owner.through_dask(dask, runs),
                    "process": lambda runs: owner.through_processes(processes, runs),
                }
                # Warm up: the workers import th2etl, start their forkers, open the database.
                measure(ways, 4, 1)
                spent = measure(ways, args.runs, args.rounds)
                workers = client.run(worker_peak_rss)
            finally:
                processes.shutdown()
                dask.shutdown()
                storage.close()
                client.close()
                cluster.close()
    finally:
        with psycopg.connect(URL, autocommit=True) as admin:
            admin.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))

    n = args.runs
    print(
        f"{n} runs of 2 blocs x {args.rows:,} rows, 2 Dask workers of 1 thread, "
        f"{args.rounds} rounds; load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}"
    )
    for name, label in (
        ("plain", "plain client.submit"),
        ("dask", "th2etl on Dask"),
        ("process", "process executor, 2 at once"),
    ):
        wall, cpu = spent[name]
        print(
            f"  {label:28} {wall:7.2f} s ({n / wall:5.1f} runs/s), CPU {1000 * cpu / n:6.1f} ms/run"
        )
    (plain_wall, plain_cpu), (dask_wall, dask_cpu) = spent["plain"], spent["dask"]
    print(
        f"(a) Dask overhead: {dask_wall / plain_wall:.2f}x wall (target <= 1.5x), "
        f"{dask_cpu / plain_cpu:.2f}x CPU; "
        f"{1000 * (dask_cpu - plain_cpu) / n:+.1f} ms of CPU per run"
    )
    print(f"(b) Dask runs/s over process-executor runs/s: {spent['process'][0] / dask_wall:.2f}x")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS: this process {peak:.0f} MB; workers " + ", ".join(
        f"{rss / 1024:.0f} MB" for rss in workers.values()
    ))  # fmt: skip


if __name__ == "__main__":
    main()
