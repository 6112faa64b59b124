"""Benchmark of streaming runs against psql's \\copy, as whole processes, in one run.

    .venv/bin/python scripts/bench_postgres.py [--rows 1000000] [--dsn postgresql://...]

Generates a CSV of ``--rows`` rows and 8 columns (two ints, a short and a long text, a float, an
ISO timestamp, a bool and a nullable int; about 100 MB for a million rows) in a temporary
folder, stores the pipelines below in a SQLite file there, and times each as a whole
``th2etl run PIPELINE`` process (start-up included; ``os.wait4`` gives that process's peak RSS),
against ``psql`` doing the same work, in a schema of its own dropped at the end:

* load: ``csv_loader`` (with ``types``) -> ``postgres_exporter`` (``replace``), vs ``psql
  \\copy ... FROM``; target >= 0.70 of psql's rate at <= 100 MB;
* transform: the same with ``example_transformer`` in the middle: its cost per row;
* unload: ``postgres_loader`` -> ``csv_exporter``, vs ``psql \\copy ... TO``; target >= 0.50;
* table to table: ``postgres_loader`` -> ``postgres_exporter``, vs ``psql \\copy TO STDOUT |
  psql \\copy FROM STDIN``; target >= 0.50;
* polars + ADBC (``read_csv`` + ``write_database``), when importable: the fastest Python
  peer; never a th2etl dependency (``pip install polars pyarrow adbc-driver-postgresql`` into
  the environment that runs this script).

th2etl's modules are byte-compiled first, as ``pip install`` does: where
``PYTHONDONTWRITEBYTECODE`` is set, an editable install would otherwise compile them from
source at every start (about 0.3 s of CPU per ``th2etl run``).

Each measurement runs ``--repeat`` times (default 3) and the best run counts, for every
contender alike. A ratio is th2etl's rate as a fraction of psql's (psql time / th2etl time).
Run it with ``--rows 5000000`` too: the peak RSS should stay within 15 % of the 1M figure. The
database comes from ``--dsn``, ``TH2ETL_BENCH_DATABASE_URL`` or
``postgresql://postgres@127.0.0.1:5432/test``.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

DEFAULT_DSN = os.environ.get(
    "TH2ETL_BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test"
)
COLUMNS = (
    ("id", "bigint", "int"),
    ("category", "bigint", "int"),
    ("name", "text", None),
    ("description", "text", None),
    ("price", "double precision", "float"),
    ("created_at", "timestamp", "datetime"),
    ("active", "boolean", "bool"),
    ("parent_id", "bigint", "int"),
)
TYPES = {name: kind for name, _, kind in COLUMNS if kind}
LOAD_TARGET, UNLOAD_TARGET, COPY_TARGET, RSS_TARGET = 0.70, 0.50, 0.50, 100


def generate_csv(path: Path, rows: int) -> None:
    rnd = random.Random(42)
    words = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta"]
    words += ["eta", "theta", "iota", "kappa", "lambda", "mu"]
    start = dt.datetime(2024, 1, 1)
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow([name for name, _, _ in COLUMNS])
        for i in range(1, rows + 1):
            writer.writerow(
                [
                    i,
                    rnd.randrange(1000),
                    f"{rnd.choice(words)}{i % 97}",
                    " ".join(rnd.choice(words) for _ in range(9)),
                    round(rnd.random() * 1000, 2),
                    (start + dt.timedelta(seconds=7 * i)).isoformat(),
                    "true" if i % 3 else "false",
                    "" if i % 5 == 0 else rnd.randrange(1_000_000),
                ]
            )


def psql(dsn: str, command: str) -> float:
    started = time.perf_counter()
    subprocess.run(
        ["psql", dsn, "-X", "-q", "-v", "ON_ERROR_STOP=1", "-c", command],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    return time.perf_counter() - started


def shell(command: str) -> float:
    started = time.perf_counter()
    subprocess.run(["bash", "-o", "pipefail", "-c", command], check=True)
    return time.perf_counter() - started


def th2etl_run(folder: Path, pipeline: str) -> tuple[float, float]:
    """Seconds and peak RSS (MB) of one ``th2etl run PIPELINE`` process."""
    env = {**os.environ, "TH2ETL_SQLITE_PATH": str(folder / "th2etl.db")}
    env = {k: v for k, v in env.items() if not k.startswith("DATABASE_")}
    started = time.perf_counter()
    process = subprocess.Popen(
        [sys.executable, "-m", "th2etl.runner", "run", pipeline],
        env=env,
        cwd=folder,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    assert process.stdout is not None
    output = process.stdout.read()
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - started
    if status != 0:
        raise SystemExit(f"th2etl run {pipeline} failed:\n{output.decode()}")
    return seconds, usage.ru_maxrss / 1024  # kilobytes on Linux


def best(repeat: int, measure: Any) -> Any:
    """The fastest of ``repeat`` runs (this machine may be busy with other work)."""
    runs = [measure() for _ in range(repeat)]
    return min(runs, key=lambda run: run[0] if isinstance(run, tuple) else run)


def store_pipelines(folder: Path, data: Path, dsn: str, schema: str) -> None:
    from th2etl.storage import DatabaseStorage

    pg = {"schema": schema, "dsn": dsn}
    with DatabaseStorage(folder / "th2etl.db") as storage:
        storage.create_bloc("load", "csv_loader", {"file_path": str(data), "types": TYPES})
        storage.create_bloc("double", "example_transformer", {"factor": 2})
        for name, source in (("export", "load"), ("export_doubled", "double")):
            storage.create_bloc(
                name,
                "postgres_exporter",
                {"table_name": f"th2etl_{name}", "source_bloc": source, **pg},
            )
        storage.create_bloc("read", "postgres_loader", {"table_name": "psql_load", **pg})
        storage.create_bloc("write", "csv_exporter", {"file_path": str(folder / "unload.csv")})
        storage.create_bloc(
            "copy",
            "postgres_exporter",
            {"table_name": "th2etl_copy", "source_bloc": "read", **pg},
        )
        storage.create_pipeline("bench_load", [["load"], ["export"]])
        storage.create_pipeline("bench_transform", [["load"], ["double"], ["export_doubled"]])
        storage.create_pipeline("bench_unload", [["read"], ["write"]])
        storage.create_pipeline("bench_copy", [["read"], ["copy"]])


def polars_child(arguments: dict[str, Any]) -> None:
    import polars

    started = time.perf_counter()
    frame = polars.read_csv(arguments["csv"], try_parse_dates=True)
    frame.write_database(
        f'"{arguments["schema"]}".polars_load',
        arguments["dsn"],
        if_table_exists="replace",
        engine="adbc",
    )
    print(json.dumps({"seconds": round(time.perf_counter() - started, 3)}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--dsn", default=DEFAULT_DSN)
    parser.add_argument(
        "--repeat", type=int, default=3, help="runs of each measurement; the best one counts"
    )
    parser.add_argument(
        "--load-only", action="store_true", help="only the CSV load (e.g. to compare RSS at 5M)"
    )
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        polars_child(json.loads(args.child[1]))
        return

    import psycopg
    from psycopg import sql

    import th2etl

    subprocess.run(
        [sys.executable, "-m", "compileall", "-q", str(Path(th2etl.__file__).parent)],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    folder = Path(tempfile.mkdtemp(prefix="th2etl_bench_"))
    schema = f"th2etl_bench_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    admin = psycopg.connect(args.dsn, autocommit=True)
    try:
        data = folder / "bench.csv"
        started = time.perf_counter()
        generate_csv(data, args.rows)
        size_mb = data.stat().st_size / 1e6
        print(
            f"data: {args.rows:,} rows x {len(COLUMNS)} columns, {size_mb:.0f} MB "
            f"(generated in {time.perf_counter() - started:.1f} s)"
        )
        admin.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
        definition = sql.SQL(", ").join(
            sql.SQL("{} {}").format(sql.Identifier(name), sql.SQL(kind))
            for name, kind, _ in COLUMNS
        )
        for table in ("psql_load", "psql_copy"):
            admin.execute(
                sql.SQL("CREATE TABLE {} ({})").format(sql.Identifier(schema, table), definition)
            )
        store_pipelines(folder, data, args.dsn, schema)
        target = f'"{schema}".psql_load'
        truncate = sql.SQL("TRUNCATE {}").format(sql.Identifier(schema, "psql_load"))

        def psql_load() -> float:
            admin.execute(truncate)  # into an empty table each time
            return psql(args.dsn, f"\\copy {target} FROM '{data}' WITH (FORMAT csv, HEADER true)")

        reference = best(args.repeat, psql_load)
        verdicts = []

        def report(label: str, ref: float, figures: tuple[float, float], goal: float) -> float:
            seconds, rss = figures
            ratio = ref / seconds
            verdicts.append(ratio >= goal and rss <= RSS_TARGET)
            print(
                f"{label:34} {seconds:7.2f} s  ratio {ratio:.2f} (target >= {goal})  "
                f"peak RSS {rss:.0f} MB"
            )
            return seconds

        print(f"{'load   psql copy FROM':34} {reference:7.2f} s")
        load = report(
            "load   th2etl run csv -> postgres",
            reference,
            best(args.repeat, lambda: th2etl_run(folder, "bench_load")),
            LOAD_TARGET,
        )
        if args.load_only:
            return
        transformed = best(args.repeat, lambda: th2etl_run(folder, "bench_transform"))
        print(
            f"{'load   + example_transformer':34} {transformed[0]:7.2f} s  "
            f"{(transformed[0] - load) / args.rows * 1e6:.2f} us per row for the transformer  "
            f"peak RSS {transformed[1]:.0f} MB"
        )
        copy_out = f"\\copy {target} TO '{folder / 'unload.txt'}' WITH (FORMAT csv, HEADER true)"
        unload_ref = best(args.repeat, lambda: psql(args.dsn, copy_out))
        print(f"{'unload psql copy TO':34} {unload_ref:7.2f} s")
        report(
            "unload th2etl run postgres -> csv",
            unload_ref,
            best(args.repeat, lambda: th2etl_run(folder, "bench_unload")),
            UNLOAD_TARGET,
        )
        other = f'"{schema}".psql_copy'
        pipe = (
            f"psql '{args.dsn}' -X -q -c '\\copy {target} TO STDOUT' | "
            f"psql '{args.dsn}' -X -q -c '\\copy {other} FROM STDIN'"
        )
        empty = sql.SQL("TRUNCATE {}").format(sql.Identifier(schema, "psql_copy"))
        copy_ref = best(args.repeat, lambda: (admin.execute(empty), shell(pipe))[1])
        print(f"{'copy   psql TO STDOUT | FROM STDIN':34} {copy_ref:7.2f} s")
        report(
            "copy   th2etl run postgres -> pg",
            copy_ref,
            best(args.repeat, lambda: th2etl_run(folder, "bench_copy")),
            COPY_TARGET,
        )
        _bench_polars(args.dsn, schema, data, reference, args.repeat)
        print("targets met" if all(verdicts) else "TARGETS MISSED")
    finally:
        admin.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))
        admin.close()
        shutil.rmtree(folder, ignore_errors=True)


def _bench_polars(dsn: str, schema: str, data: Path, reference: float, repeat: int) -> None:
    try:
        import adbc_driver_postgresql  # noqa: F401
        import polars  # noqa: F401
    except ImportError:
        print("polars + ADBC: not installed (pip install polars pyarrow adbc-driver-postgresql)")
        return

    def measure() -> tuple[float, float]:
        arguments = json.dumps({"csv": str(data), "dsn": dsn, "schema": schema})
        started = time.perf_counter()
        process = subprocess.Popen([sys.executable, __file__, "--child", "polars", arguments])
        _, status, usage = os.wait4(process.pid, 0)
        if status != 0:
            raise SystemExit("the polars run failed")
        return time.perf_counter() - started, usage.ru_maxrss / 1024

    seconds, rss = best(repeat, measure)
    print(
        f"{'load   polars + ADBC':34} {seconds:7.2f} s  ratio {reference / seconds:.2f}  "
        f"peak RSS {rss:.0f} MB"
    )


if __name__ == "__main__":
    main()
