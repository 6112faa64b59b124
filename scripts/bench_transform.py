"""Benchmark of ``example_transformer`` in the middle of a CSV -> CSV run, as whole processes.

    .venv/bin/python scripts/bench_transform.py [--rows 1000000] [--repeat 3]

Generates the CSV of ``scripts/bench_postgres.py`` (``--rows`` rows, 8 typed columns, about
100 MB per million rows) in a temporary folder, stores two pipelines in a SQLite file there, and
times each as a whole ``th2etl run PIPELINE`` process (start-up included; ``os.wait4`` gives the
process's CPU time and peak RSS):

* copy: ``csv_loader`` (with ``types``) -> ``csv_exporter``;
* transform: ``csv_loader`` -> ``example_transformer`` (``factor`` 2) -> ``csv_exporter``.

The transformer's cost per row is (transform - copy) / rows of CPU time (the wall time is shown
too, but other work on the machine stretches it). The whole run's cost per row is given next to
a hand-written Python process doing the same transform on the same file (``csv.DictReader``,
th2etl's own cell parsers, x2, its cell formats, ``csv.DictWriter``), measured in the same run.
The peak RSS of the transform run is its memory: a few batches per bloc, whatever ``--rows``
(run it with ``--rows 5000000`` to see it stay flat). Each measurement runs ``--repeat`` times
and the run of least CPU counts, for every contender alike. The load into PostgreSQL of the
same transform is in ``scripts/bench_postgres.py``.
"""

from __future__ import annotations

import argparse
import csv
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_postgres import COLUMNS, TYPES, generate_csv


def store_pipelines(folder: Path, data: Path) -> None:
    from th2etl.storage import DatabaseStorage

    with DatabaseStorage(folder / "th2etl.db") as storage:  # type: ignore[abstract]
        storage.create_bloc("load", "csv_loader", {"file_path": str(data), "types": TYPES})
        storage.create_bloc("double", "example_transformer", {"factor": 2})
        for name, source in (("write_copy", "load"), ("write_doubled", "double")):
            storage.create_bloc(
                name,
                "csv_exporter",
                {"file_path": str(folder / f"{name}.csv"), "source_bloc": source},
            )
        storage.create_pipeline("bench_copy", [["load"], ["write_copy"]])
        storage.create_pipeline("bench_transform", [["load"], ["double"], ["write_doubled"]])


def by_hand(source: str, target: str) -> None:
    """The reference: the same typed read, x2 on every number, and write, in plain Python
    (with th2etl's own cell parsers and writer's formats, so both do the same work)."""
    from th2etl.blocs import _cells

    by_type = {
        "int": _cells.parse_int,
        "float": _cells.parse_float,
        "bool": _cells.parse_bool,
        "datetime": _cells.parse_datetime,
    }
    parsers = {name: by_type[kind] for name, kind in TYPES.items()}
    with open(source, newline="") as inp, open(target, "w", newline="") as out:
        reader = csv.DictReader(inp)
        writer = csv.DictWriter(out, fieldnames=[name for name, _, _ in COLUMNS])
        writer.writeheader()
        for row in reader:
            typed: dict[str, Any] = {}
            for key, value in row.items():
                parse = parsers.get(key)
                cell: Any = None if value == "" and parse else (parse(value) if parse else value)
                if isinstance(cell, int | float) and not isinstance(cell, bool):
                    cell *= 2
                typed[key] = _cells.format_cell(cell)
            writer.writerow(typed)


class Figures:
    """One whole process: wall seconds, CPU seconds (user + system: what the work costs, less
    sensitive than the wall time to other work on the machine) and peak RSS in MB."""

    def __init__(self, command: list[str], env: dict[str, str], cwd: Path) -> None:
        started = time.perf_counter()
        process = subprocess.Popen(
            command, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        )
        assert process.stdout is not None
        output = process.stdout.read()
        _, status, usage = os.wait4(process.pid, 0)
        self.wall = time.perf_counter() - started
        if status != 0:
            raise SystemExit(f"{' '.join(command)} failed:\n{output.decode()}")
        self.cpu = usage.ru_utime + usage.ru_stime
        self.rss = usage.ru_maxrss / 1024  # kilobytes on Linux


def best(repeat: int, measure: Callable[[], Figures]) -> Figures:
    """The run of least CPU time of ``repeat`` (this machine may be busy with other work)."""
    return min((measure() for _ in range(repeat)), key=lambda figures: figures.cpu)


def th2etl_run(folder: Path, pipeline: str) -> Figures:
    env = {**os.environ, "TH2ETL_SQLITE_PATH": str(folder / "th2etl.db")}
    env = {k: v for k, v in env.items() if not k.startswith("DATABASE_")}
    return Figures([sys.executable, "-m", "th2etl.runner", "run", pipeline], env, folder)


def hand_process(data: Path, folder: Path) -> Figures:
    command = [sys.executable, __file__, "--by-hand", str(data), str(folder / "by_hand.csv")]
    return Figures(command, dict(os.environ), folder)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument(
        "--repeat", type=int, default=3, help="runs of each measurement; the best one counts"
    )
    parser.add_argument("--by-hand", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.by_hand:
        by_hand(*args.by_hand)
        return

    folder = Path(tempfile.mkdtemp(prefix="th2etl_bench_transform_"))
    try:
        data = folder / "bench.csv"
        generate_csv(data, args.rows)
        load = " ".join(f"{x:.2f}" for x in os.getloadavg())
        print(
            f"data: {args.rows:,} rows x {len(COLUMNS)} columns, "
            f"{data.stat().st_size / 1e6:.0f} MB; load average {load}; best of {args.repeat}"
        )
        store_pipelines(folder, data)
        copy = best(args.repeat, lambda: th2etl_run(folder, "bench_copy"))
        transform = best(args.repeat, lambda: th2etl_run(folder, "bench_transform"))
        hand = best(args.repeat, lambda: hand_process(data, folder))
        rows = args.rows
        for label, figures in (
            ("csv -> csv (th2etl run)", copy),
            ("csv -> example_transformer -> csv", transform),
            ("the same by hand (csv module)", hand),
        ):
            print(
                f"  {label:36} wall {figures.wall:6.2f} s, CPU {figures.cpu:6.2f} s = "
                f"{figures.cpu / rows * 1e6:5.2f} us/row, peak RSS {figures.rss:4.0f} MB"
            )
        print(
            f"  example_transformer alone: {(transform.cpu - copy.cpu) / rows * 1e6:.2f} us/row "
            f"of CPU; the transform run costs {transform.cpu / hand.cpu:.2f}x the CPU of the "
            "hand-written loop"
        )
        doubled = folder / "write_doubled.csv"
        with doubled.open(newline="") as handle:
            written = sum(1 for _ in csv.reader(handle)) - 1
        if written != rows:
            raise SystemExit(f"the transform run wrote {written} rows, not {rows}")
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
