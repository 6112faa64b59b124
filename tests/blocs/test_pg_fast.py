"""The fast path (csv_loader's file straight into postgres_exporter's COPY) gives the general
path's result on the same inputs, and leaves to it whatever the accepted syntax refuses."""

from __future__ import annotations

import logging
import re
import uuid
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

from tests.conftest import PostgresServer
from th2etl import Pipeline, create_bloc
from th2etl.pipelines import RunResult

pytestmark = pytest.mark.postgres

TYPES = {
    "n": "int",
    "x": "float",
    "d": "decimal",
    "ok": "bool",
    "day": "date",
    "at": "datetime",
    "none": "int",
}
GOOD = (
    "n,x,d,ok,day,at,none,note\n"
    ' -12 ,1.5,12.50,on,2026-01-31,2026-01-31T10:00,,"two\nlines"\n'
    "+7,0x1p3,1e3,Of,2026-02-01,2026-02-01 10:00:00.5,,\n"
    '3,-inf,NaN,tr,,,"",plain\n'
    '"4",.5,-0.001,YES,2026-03-01,2026-03-01 23:59:59.123456,,""\n'
)


def run(postgres: PostgresServer, csv: Path, fused: bool, **loader: Any) -> tuple[RunResult, str]:
    table = f"f_{uuid.uuid4().hex[:10]}"
    load = create_bloc("load", "csv_loader", {"file_path": str(csv), "types": TYPES, **loader})
    export = create_bloc(
        "export",
        "postgres_exporter",
        {
            "table_name": table,
            "schema": postgres.schema,
            "dsn": postgres.url,
            "source_bloc": "load",
        },
    )
    # keep_outputs=False lets the engine fuse the two blocs; True keeps the rows: no fusion.
    return Pipeline("fast", [[load], [export]]).run(keep_outputs=not fused), table


def contents(postgres: PostgresServer, table: str) -> tuple[list[Any], list[Any]]:
    with psycopg.connect(postgres.url) as conn:
        types = conn.execute(
            "SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute WHERE attrelid"
            " = %s::regclass AND attnum > 0 ORDER BY attnum",
            (sql.Identifier(postgres.schema, table).as_string(conn),),
        ).fetchall()
        rows = conn.execute(
            sql.SQL("SELECT * FROM {}").format(sql.Identifier(postgres.schema, table))
        ).fetchall()
    return types, sorted(map(repr, rows))  # repr: Decimal('NaN') equals no Decimal


def both(postgres: PostgresServer, csv: Path, caplog: pytest.LogCaptureFixture) -> Any:
    with caplog.at_level(logging.INFO):
        fast, fast_table = run(postgres, csv, fused=True)
    refused = "the general path writes it" in caplog.text
    general, general_table = run(postgres, csv, fused=False)
    return fast, fast_table, general, general_table, refused


def test_the_fast_path_gives_the_general_paths_table(
    postgres: PostgresServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    csv = tmp_path / "good.csv"
    csv.write_text(GOOD)
    fast, fast_table, general, general_table, refused = both(postgres, csv, caplog)
    assert fast.succeeded and general.succeeded, (fast.error, general.error)
    assert not refused  # the fast path took it
    assert contents(postgres, fast_table) == contents(postgres, general_table)
    types, rows = contents(postgres, fast_table)
    assert dict(types)["none"] == "text"  # a typed column without a value, as on the general path
    assert dict(types)["at"] == "timestamp without time zone"
    assert len(rows) == 4
    assert fast.blocs["load"].rows_out == fast.blocs["export"].rows_in == 4


@pytest.mark.parametrize(
    ("cells", "message"),
    [
        ("1_000,1,1,t,2026-01-01,2026-01-01", r"row 1, column n: '1_000' is not a int"),
        ("1,1_0,1,t,2026-01-01,2026-01-01", r"row 1, column x: '1_0' is not a float"),
        ("1,1,1,yess,2026-01-01,2026-01-01", r"row 1, column ok: 'yess' is not a bool"),
        ("1,1,1,t,2026/01/01,2026-01-01", r"row 1, column day: '2026/01/01' is not a date"),
        ("1,1,1,t,2026-01-01,Jan 1 2026", r"row 1, column at: 'Jan 1 2026' is not a datetime"),
        ("1,1,1,t,2026-01-01,2026-01-01 24:00", r"'2026-01-01 24:00' is not a datetime"),
        ("1,1,1,t,2026-01-01,2026-01-01T24:00:00", r"'2026-01-01T24:00:00' is not a datetime"),
        ("1,1,1,t,2026-01-01,2026-01-01 23:59:60", r"'2026-01-01 23:59:60' is not a datetime"),
        ("1,1,1,t,2026-01-01,2026-01-01 1:00", r"'2026-01-01 1:00' is not a datetime"),
        ("1,1,1,t,2026-01-01,20260101", r"row 1, column at: '20260101' is not a datetime"),
        ("1,1,1,t,20260101,2026-01-01", r"row 1, column day: '20260101' is not a date"),
        ("\u0661,1,1,t,2026-01-01,2026-01-01", "row 1, column n: '\u0661' is not a int"),
        ("1,1,1,t,2026-01-01,2026-01-01,,x,extra", r"line 2: 9 fields where the header has 8"),
    ],
)
def test_what_the_syntax_refuses_both_paths_refuse_with_the_same_message(
    postgres: PostgresServer,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    cells: str,
    message: str,
) -> None:
    csv = tmp_path / "bad.csv"
    cells = cells if cells.count(",") == 8 else cells + ",,x"
    csv.write_text("n,x,d,ok,day,at,none,note\n" + cells + "\n")
    fast, _, general, _, refused = both(postgres, csv, caplog)
    assert not fast.succeeded and not general.succeeded
    assert refused
    assert fast.error == general.error
    assert fast.error is not None
    assert re.search(message, fast.error), fast.error


def test_a_malformed_line_far_down_is_named_and_nothing_is_committed(
    postgres: PostgresServer, tmp_path: Path
) -> None:
    csv = tmp_path / "long.csv"
    lines = [f"{n},1.5,1,t,2026-01-01,2026-01-01 10:00,,x" for n in range(30_000)]
    lines[24_999] = "25000,1.5,1,t,2026-01-01,2026-01-01 10:00,,x,oops"
    csv.write_text("n,x,d,ok,day,at,none,note\n" + "\n".join(lines) + "\n")
    result, table = run(postgres, csv, fused=True)
    assert result.error is not None
    assert "line 25001: 9 fields where the header has 8" in result.error
    with psycopg.connect(postgres.url) as conn:
        found = conn.execute(
            "SELECT 1 FROM pg_tables WHERE schemaname = %s AND tablename = %s",
            (postgres.schema, table),
        ).fetchone()
    assert found is None


def test_naive_and_aware_datetimes_mixed_are_refused_on_both_paths(
    postgres: PostgresServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    csv = tmp_path / "zones.csv"
    csv.write_text(
        "n,x,d,ok,day,at,none,note\n"
        "1,1,1,t,2026-01-01,2026-01-01 10:00,,x\n"
        "2,1,1,t,2026-01-01,2026-01-01 10:00+02:00,,x\n"
    )
    fast, _, general, _, refused = both(postgres, csv, caplog)
    assert refused
    assert fast.error == general.error
    assert "mixes datetimes with a time zone" in (fast.error or "")


@pytest.mark.parametrize("end", ["\n", "\r\n"], ids=["lf", "crlf"])
def test_a_refused_datetime_among_many_good_ones_is_found(
    postgres: PostgresServer, tmp_path: Path, caplog: pytest.LogCaptureFixture, end: str
) -> None:
    # Checked by shape, chunk by chunk: the one bad cell (a 60th second, which PostgreSQL would
    # take) must still be found, with the datetime in the last column too.
    csv = tmp_path / "many.csv"
    lines = [f"{n},1.5,1,t,2026-01-01,x,,2026-01-01 10:00:{n % 60:02d}" for n in range(30_000)]
    csv.write_text(end.join(["n,x,d,ok,day,note,none,at", *lines, ""]))
    fast, fast_table, general, general_table, refused = both(postgres, csv, caplog)
    assert fast.succeeded and general.succeeded
    assert contents(postgres, fast_table) == contents(postgres, general_table)
    assert not refused
    lines[20_000] = "20000,1.5,1,t,2026-01-01,x,,2026-01-01 10:00:60"
    csv.write_text(end.join(["n,x,d,ok,day,note,none,at", *lines, ""]))
    caplog.clear()
    fast, _, general, _, refused = both(postgres, csv, caplog)
    assert refused
    assert fast.error == general.error
    assert "row 20001, column at: '2026-01-01 10:00:60' is not a datetime" in (fast.error or "")
