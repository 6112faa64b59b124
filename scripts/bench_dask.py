"""Benchmark runs on a Dask cluster against plain ``client.submit`` doing the same work.

    .venv/bin/python scripts/bench_dask.py [--runs 200] [--rows 10000]

Starts a 2-worker ``LocalCluster`` (nanny processes, 1 thread each) on 127.0.0.1 whose workers
use a PostgreSQL schema of the benchmark's own (``TH2ETL_TEST_DATABASE_URL``, default
``postgresql://postgres@127.0.0.1:5432/test``; dropped at the end). Each run is a 2-bloc
pipeline: ``csv_loader`` reading a CSV of ``--rows`` rows, then ``example_transformer`` over
them. One process records the runs and submits them all, as a scheduler does.

Prints (a) the wall time of the runs through :class:`~th2etl.executors.dask.DaskExecutor`
(recorded, fenced, each in a child process on its worker) against the same two blocs called
by a plain function through ``client.submit`` (target: at most 1.5x); (b) runs per second
through Dask against the ``process`` executor on this machine, 2 runs at a time; and the peak
RSS of this process and of each Dask worker.
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
from pathlib import Path

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


def queued(storage: DatabaseStorage, pipeline: str, count: int) -> list[RunJob]:
    built = storage.build_pipeline(pipeline)
    jobs = []
    for _ in range(count):
        run_id = uuid.uuid4().hex
        storage.create_run(run_id, pipeline, owner_id="bench-dask", started_by="python")
        jobs.append(RunJob(run_id, built))
    return jobs


def through_dask(executor: DaskExecutor, jobs: list[RunJob]) -> float:
    start = time.perf_counter()
    handles = [executor.submit(job) for job in jobs]
    return _finish(handles, start)


def through_processes(executor: ProcessExecutor, jobs: list[RunJob], width: int) -> float:
    slots = threading.Semaphore(width)
    start = time.perf_counter()
    handles: list[RunHandle] = []
    for job in jobs:
        slots.acquire()
        handle = executor.submit(job)
        threading.Thread(target=lambda h=handle: (h.wait(), slots.release()), daemon=True).start()
        handles.append(handle)
    return _finish(handles, start)


def _finish(handles: list[RunHandle], start: float) -> float:
    statuses = [handle.wait() for handle in handles]
    elapsed = time.perf_counter() - start
    bad = [r for r in statuses if r is None or r.status is not RunStatus.SUCCEEDED]
    if bad:
        raise SystemExit(f"{len(bad)} run(s) did not succeed, e.g. {bad[0]}")
    return elapsed


def worker_peak_rss() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--rows", type=int, default=10_000)
    args = parser.parse_args()
    from distributed import Client, LocalCluster

    schema = f"bench_dask_{os.getpid()}"
    with psycopg.connect(URL, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
    env = {"DATABASE_URL": URL, "DATABASE_SCHEMA": schema}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "rows.csv"
            write_csv(path, args.rows)
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
            try:
                storage.create_bloc("load", "csv_loader", {"file_path": str(path)})
                storage.create_bloc("double", "example_transformer", {"factor": 2})
                storage.create_pipeline("bench", [["load"], ["double"]])
                dask = DaskExecutor(client, storage)
                # Warm up: both workers import th2etl and open their database once.
                through_dask(dask, queued(storage, "bench", 4))
                client.gather([client.submit(plain_run, str(path), pure=False) for _ in "ab"])

                start = time.perf_counter()
                futures = [
                    client.submit(plain_run, str(path), pure=False) for _ in range(args.runs)
                ]
                assert all(n == args.rows for n in client.gather(futures))
                plain = time.perf_counter() - start
                ours = through_dask(dask, queued(storage, "bench", args.runs))
                processes = ProcessExecutor(storage)
                local = through_processes(processes, queued(storage, "bench", args.runs), 2)
                processes.shutdown()
                workers = client.run(worker_peak_rss)
            finally:
                storage.close()
                client.close()
                cluster.close()
    finally:
        with psycopg.connect(URL, autocommit=True) as admin:
            admin.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))

    print(f"{args.runs} runs of 2 blocs x {args.rows:,} rows, 2 Dask workers of 1 thread")
    print(f"(a) plain client.submit:        {plain:7.2f} s  ({args.runs / plain:6.1f} runs/s)")
    print(f"    th2etl on Dask:             {ours:7.2f} s  ({args.runs / ours:6.1f} runs/s)")
    print(f"    overhead: {ours / plain:.2f}x (target <= 1.5x)")
    print(f"(b) process executor, 2 at once: {local:6.2f} s  ({args.runs / local:6.1f} runs/s)")
    print(f"    Dask runs/s over process runs/s: {local / ours:.2f}x")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS: this process {peak:.0f} MB; workers " + ", ".join(
        f"{rss / 1024:.0f} MB" for rss in workers.values()
    ))  # fmt: skip


if __name__ == "__main__":
    main()
