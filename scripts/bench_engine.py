"""Benchmark the engine against plain concurrent.futures doing the same work, in one run.

    .venv/bin/python scripts/bench_engine.py [--rows 1000000] [--repeats 21] [--engine-only]

Prints the engine's cost per bloc, whole runs of ``Pipeline.run()`` (plan, threads, results)
divided by the blocs, next to a bare ThreadPoolExecutor that calls the same blocs'
``run(context, [])`` stage after stage (a pool made per run, as many workers as the widest
stage), the two measured in alternation so that the machine's load hits both alike; target: at
most 2x. Of ``--repeats`` runs each: the median and best wall time, and the median CPU time of
the process (all threads), which other work on a shared machine stretches less:

(a) 100 stages x 1 no-op bloc: a chain, one bloc at a time, so every bloc's start, hand-off to a
    thread and back, and result are on the critical path;
(b) 10 stages x 10 no-op blocs: each stage fans out to 10 blocs in parallel and waits for all.

Then (c) the wall time of one stage of 20 blocs sleeping 0.5 s each (target < 0.6 s) and (d)
csv_loader rows/s on a generated 8-column CSV as a ratio to csv.DictReader into a list (target
>= 0.8), unless ``--engine-only``.
"""

from __future__ import annotations

import argparse
import csv
import os
import random
import statistics
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from th2etl import Bloc, LoaderBloc, Pipeline, RunContext, create_bloc, register_bloc
from th2etl.types import Rows


@register_bloc
class NoOp(LoaderBloc):
    bloc_type = "bench_noop"

    def run(self, context: RunContext, rows: Rows) -> Rows:
        return []


@register_bloc
class Sleeper(LoaderBloc):
    bloc_type = "bench_sleep"

    def run(self, context: RunContext, rows: Rows) -> Rows:
        time.sleep(0.5)
        return []


def best_of(repeats: int, func: Callable[[], Any]) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        func()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def baseline(stages: list[list[Bloc]], context: RunContext) -> None:
    """The same blocs' ``run`` on a bare ThreadPoolExecutor, stage after stage."""
    with ThreadPoolExecutor(max_workers=max(len(stage) for stage in stages)) as pool:
        for stage in stages:
            futures = [pool.submit(bloc.run, context, []) for bloc in stage]
            for future in futures:
                future.result()


def overhead(stages: int, width: int, repeats: int) -> dict[str, float]:
    """Seconds per bloc for the engine (``ours``) and the bare pool (``bare``): the median and
    best wall time, and the median CPU time of the process (every thread; what the work costs,
    which other programs on the machine stretch less than the wall time). The two are measured
    in alternation so that a change of the machine's load hits both alike."""
    pipeline = Pipeline(
        f"bench_{stages}x{width}",
        [[create_bloc(f"b{s}_{w}", "bench_noop") for w in range(width)] for s in range(stages)],
    )
    context = RunContext("bench")
    times: dict[str, list[tuple[float, float]]] = {"ours": [], "bare": []}

    def ours() -> None:
        result = pipeline.run()
        assert result.succeeded, result.error

    for _ in range(repeats):
        for name, work in (("ours", ours), ("bare", lambda: baseline(pipeline.stages, context))):
            wall, cpu = time.perf_counter(), time.process_time()
            work()
            times[name].append((time.perf_counter() - wall, time.process_time() - cpu))
    tasks = stages * width
    figures: dict[str, float] = {}
    for name, runs in times.items():
        figures[name] = statistics.median(wall for wall, _ in runs) / tasks
        figures[f"{name}_best"] = min(wall for wall, _ in runs) / tasks
        figures[f"{name}_cpu"] = statistics.median(cpu for _, cpu in runs) / tasks
    return figures


def write_csv(path: Path, rows: int) -> None:
    rng = random.Random(42)
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "name", "comment", "amount", "created", "flag", "maybe", "qty"])
        for i in range(rows):
            writer.writerow(
                [
                    i,
                    f"name{i % 1000}",
                    "lorem ipsum dolor sit amet " * rng.randint(1, 3),
                    f"{rng.random() * 1000:.4f}",
                    f"2026-01-{1 + i % 28:02d}T12:{i % 60:02d}:00",
                    "true" if i % 2 else "false",
                    "" if i % 5 == 0 else i % 97,
                    i % 13,
                ]
            )


def csv_ratio(path: Path) -> tuple[float, float, float]:
    def bare() -> None:
        with path.open(newline="") as handle:
            list(csv.DictReader(handle))

    loader = create_bloc("bench_load", "csv_loader", {"file_path": str(path)})
    typed = create_bloc(
        "bench_load_typed",
        "csv_loader",
        {
            "file_path": str(path),
            "types": {"id": "int", "amount": "float", "flag": "bool", "maybe": "int", "qty": "int"},
        },
    )
    context = RunContext("bench")
    bare_s = best_of(3, bare)
    ours_s = best_of(3, lambda: loader.run(context, []))
    typed_s = best_of(1, lambda: typed.run(context, []))
    return bare_s, ours_s, typed_s


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=21)
    parser.add_argument("--engine-only", action="store_true", help="only (a) and (b)")
    args = parser.parse_args()

    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"engine orchestration cost per bloc ({args.repeats} runs each, load average {load})")
    for stages, width in ((100, 1), (10, 10)):
        f = overhead(stages, width, args.repeats)
        print(
            f"  ({stages} stages x {width} blocs) th2etl {f['ours'] * 1e6:.0f} us/bloc "
            f"(best {f['ours_best'] * 1e6:.0f}, CPU {f['ours_cpu'] * 1e6:.0f}), "
            f"ThreadPoolExecutor {f['bare'] * 1e6:.0f} us/task (best {f['bare_best'] * 1e6:.0f}, "
            f"CPU {f['bare_cpu'] * 1e6:.0f}): ratio {f['ours'] / f['bare']:.2f}x median, "
            f"{f['ours_best'] / f['bare_best']:.2f}x best, "
            f"{f['ours_cpu'] / f['bare_cpu']:.2f}x CPU (target <= 2x)"
        )

    if args.engine_only:
        return
    sleepers = Pipeline(
        "bench_sleepers", [[create_bloc(f"sleep{i}", "bench_sleep") for i in range(20)]]
    )
    start = time.perf_counter()
    result = sleepers.run()
    wall = time.perf_counter() - start
    print(
        f"  (1 stage x 20 blocs sleeping 0.5 s) {wall:.3f} s, {result.status.value} "
        "(target < 0.6 s)"
    )

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "bench.csv"
        write_csv(path, args.rows)
        size = path.stat().st_size / 1e6
        bare_s, ours_s, typed_s = csv_ratio(path)
        print(f"csv_loader on {args.rows:,} rows x 8 columns ({size:.0f} MB)")
        print(f"  csv.DictReader into a list  {args.rows / bare_s:12,.0f} rows/s")
        print(
            f"  csv_loader                  {args.rows / ours_s:12,.0f} rows/s, "
            f"ratio {bare_s / ours_s:.2f} (target >= 0.8)"
        )
        print(
            f"  csv_loader with 5 types     {args.rows / typed_s:12,.0f} rows/s, "
            f"ratio {bare_s / typed_s:.2f}"
        )


if __name__ == "__main__":
    main()
