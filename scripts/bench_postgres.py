"""Benchmark of the PostgreSQL blocs against psql's \\copy (and pandas, when installed).

    .venv/bin/python scripts/bench_postgres.py [--rows 1000000] [--dsn postgresql://...]

Generates a CSV of ``--rows`` rows and 8 columns (two ints, a short and a long text, a float, an
ISO timestamp, a bool and a nullable int; about 100 MB for a million rows) in a temporary
folder, then, against one PostgreSQL server, in a schema of its own dropped at the end:

* load: ``psql \\copy ... FROM`` into an empty table, vs a th2etl pipeline ``csv_loader`` (with
  ``types``) -> ``postgres_exporter`` (``replace``) run in a child process, whose peak RSS is
  reported (``getrusage`` of that process);
* unload: ``psql \\copy ... TO`` a file, vs ``postgres_loader`` into rows (child process);
* pandas ``read_csv`` + ``to_sql`` (plain, and with a COPY ``method``) on the same file, when
  pandas and SQLAlchemy are importable; they are never th2etl dependencies.

Each measurement runs ``--repeat`` times (default 3) and the best run counts, for every
contender alike. A ratio is the th2etl rate as a fraction of psql's (psql time / th2etl
time); the targets are >= 0.30 for load and >= 0.35 for unload. The database comes from ``--dsn``,
``TH2ETL_BENCH_DATABASE_URL`` or ``postgresql://postgres@127.0.0.1:5432/test``.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import json
import os
import random
import resource
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
LOAD_TARGET, UNLOAD_TARGET = 0.30, 0.35


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


def child(mode: str, **arguments: Any) -> dict[str, Any]:
    """Run one measurement in a fresh Python process; it prints a JSON line with its figures."""
    result = subprocess.run(
        [sys.executable, __file__, "--child", mode, json.dumps(arguments)],
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        raise SystemExit(f"the {mode} measurement failed:\n{result.stderr}")
    return dict(json.loads(result.stdout.strip().splitlines()[-1]))


def best(repeat: int, mode: str, **arguments: Any) -> dict[str, Any]:
    """The fastest of ``repeat`` runs (this machine may be busy with other work)."""
    return min((child(mode, **arguments) for _ in range(repeat)), key=lambda run: run["seconds"])


def _peak_rss_mb() -> float:
    # ru_maxrss is in kilobytes on Linux.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_child(mode: str, arguments: dict[str, Any]) -> None:
    started = time.perf_counter()
    out: dict[str, Any] = {}
    if mode == "th2etl_load":
        from th2etl import Pipeline, create_bloc

        load = create_bloc("load", "csv_loader", {"file_path": arguments["csv"], "types": TYPES})
        export = create_bloc(
            "export",
            "postgres_exporter",
            {
                "table_name": arguments["table"],
                "schema": arguments["schema"],
                "source_bloc": "load",
                "if_exists": "replace",
                "dsn": arguments["dsn"],
            },
        )
        started = time.perf_counter()
        result = Pipeline("bench_load", [[load], [export]]).run()
        if not result.succeeded:
            raise SystemExit(result.summary())
        out["blocs"] = {name: round(bloc.duration, 2) for name, bloc in result.blocs.items()}
    elif mode == "th2etl_unload":
        from th2etl import create_bloc
        from th2etl.pipelines.context import RunContext

        loader = create_bloc(
            "unload",
            "postgres_loader",
            {
                "table_name": arguments["table"],
                "schema": arguments["schema"],
                "dsn": arguments["dsn"],
            },
        )
        started = time.perf_counter()
        out["rows"] = len(loader.run(RunContext("bench_unload"), []))
    elif mode in ("pandas", "pandas_copy"):
        import pandas
        import sqlalchemy

        engine = sqlalchemy.create_engine(
            arguments["dsn"].replace("postgresql://", "postgresql+psycopg://", 1)
        )
        frame = pandas.read_csv(arguments["csv"], parse_dates=["created_at"])
        frame.to_sql(
            arguments["table"],
            engine,
            schema=arguments["schema"],
            if_exists="replace",
            index=False,
            chunksize=10_000 if mode == "pandas" else None,
            method=_pandas_copy if mode == "pandas_copy" else None,
        )
        engine.dispose()
    out["seconds"] = round(time.perf_counter() - started, 3)
    out["peak_rss_mb"] = round(_peak_rss_mb(), 1)
    print(json.dumps(out))


def _pandas_copy(table: Any, conn: Any, keys: list[str], data_iter: Any) -> int:
    """pandas' documented COPY recipe, written for psycopg 3."""
    from psycopg import sql

    dbapi = conn.connection.dbapi_connection
    target = (
        sql.Identifier(table.schema, table.name) if table.schema else sql.Identifier(table.name)
    )
    columns = sql.SQL(", ").join(map(sql.Identifier, keys))
    count = 0
    with (
        dbapi.cursor() as cur,
        cur.copy(sql.SQL("COPY {} ({}) FROM STDIN").format(target, columns)) as copy,
    ):
        for row in data_iter:
            copy.write_row(row)
            count += 1
    return count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--dsn", default=DEFAULT_DSN)
    parser.add_argument("--no-pandas", action="store_true", help="skip the pandas runs")
    parser.add_argument(
        "--repeat", type=int, default=3, help="runs of each measurement; the best one counts"
    )
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        run_child(args.child[0], json.loads(args.child[1]))
        return

    import psycopg
    from psycopg import sql

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
        admin.execute(
            sql.SQL("CREATE TABLE {} ({})").format(sql.Identifier(schema, "psql_load"), definition)
        )
        target = f'"{schema}".psql_load'
        truncate = sql.SQL("TRUNCATE {}").format(sql.Identifier(schema, "psql_load"))
        copy_in = f"\\copy {target} FROM '{data}' WITH (FORMAT csv, HEADER true)"
        psql_loads = []
        for _ in range(args.repeat):
            admin.execute(truncate)  # into an empty table each time
            psql_loads.append(psql(args.dsn, copy_in))
        psql_load = min(psql_loads)
        load = best(
            args.repeat,
            "th2etl_load",
            csv=str(data),
            dsn=args.dsn,
            schema=schema,
            table="th2etl_load",
        )
        load_ratio = psql_load / load["seconds"]
        print(f"load   psql \\copy FROM           {psql_load:7.2f} s")
        print(
            f"load   th2etl csv -> postgres     {load['seconds']:7.2f} s  ratio {load_ratio:.2f} "
            f"(target >= {LOAD_TARGET})  peak RSS {load['peak_rss_mb']:.0f} MB  "
            f"blocs {load['blocs']}"
        )
        copy_out = f"\\copy {target} TO '{folder / 'unload.txt'}'"
        psql_unload = min(psql(args.dsn, copy_out) for _ in range(args.repeat))
        unload = best(args.repeat, "th2etl_unload", dsn=args.dsn, schema=schema, table="psql_load")
        unload_ratio = psql_unload / unload["seconds"]
        print(f"unload psql \\copy TO             {psql_unload:7.2f} s")
        print(
            f"unload th2etl postgres_loader     {unload['seconds']:7.2f} s  ratio "
            f"{unload_ratio:.2f} (target >= {UNLOAD_TARGET})  peak RSS "
            f"{unload['peak_rss_mb']:.0f} MB"
        )
        if not args.no_pandas:
            _bench_pandas(args.dsn, schema, data, psql_load, args.repeat)
        verdict = load_ratio >= LOAD_TARGET and unload_ratio >= UNLOAD_TARGET
        print("targets met" if verdict else "TARGETS MISSED")
    finally:
        admin.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))
        admin.close()
        shutil.rmtree(folder, ignore_errors=True)


def _bench_pandas(dsn: str, schema: str, data: Path, psql_load: float, repeat: int) -> None:
    try:
        import pandas  # noqa: F401
        import sqlalchemy  # noqa: F401
    except ImportError:
        print("pandas: not installed (pip install pandas sqlalchemy to compare)")
        return
    for mode, label in (
        ("pandas_copy", "read_csv + to_sql(COPY)"),
        ("pandas", "read_csv + to_sql"),
    ):
        # Plain to_sql takes ~15x as long as psql: one run says enough.
        runs = repeat if mode == "pandas_copy" else 1
        figures = best(runs, mode, csv=str(data), dsn=dsn, schema=schema, table=f"{mode}_load")
        print(
            f"load   pandas {label:24} {figures['seconds']:7.2f} s  ratio "
            f"{psql_load / figures['seconds']:.2f}  peak RSS {figures['peak_rss_mb']:.0f} MB"
        )


if __name__ == "__main__":
    main()
