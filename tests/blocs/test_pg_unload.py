"""postgres_loader -> csv_exporter: the fast path (the server's COPY output straight into the
file) writes the general path's file byte for byte, leaves to it what it cannot write so, and
leaves the target file as it was on failure and on cancel."""

from __future__ import annotations

import logging
import random
import struct
import threading
import uuid
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

from tests.conftest import PostgresServer
from th2etl import Pipeline, RunContext, create_bloc
from th2etl.blocs._cells import format_float
from th2etl.pipelines import CancelToken, RunResult

pytestmark = pytest.mark.postgres

REFUSED = "the rows are written one by one"

COLUMNS = (
    "b boolean, i2 smallint, i4 integer, i8 bigint, r real, f double precision, n numeric, "
    "n2 numeric(10, 2), t text, v varchar(20), d date, ts timestamp, tz timestamptz, "
    "tm time, u uuid, by bytea"
)
ROWS = [
    "true, 1, 2, 3, 0.1, 1.0, 1.50, 1.5, 'plain', 'v', '2026-01-31', '2026-01-31 10:00:00',"
    " '2026-01-31 10:00:00.5+00', '10:00:00', 'A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11', '\\x0102ff'",
    "false, -32768, -2147483648, -9223372036854775808, 'inf', 1e15, 'NaN', -0.01, '', '',"
    " '0001-01-01', '9999-12-31 23:59:59.999999', '2026-07-01 12:00:00.123456+00',"
    " '23:59:59.999999', NULL, ''",
    "NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,"
    " NULL",
    "true, 0, 0, 9223372036854775807, '-inf', 1234567890123456.5, 'Infinity', 0, "
    "E'a,b \"c\"\\r\\nd\\re', E' lead\\\\.', '9999-12-31', '2000-02-29 00:00:00.000001', "
    "'1900-01-01 00:00:00+00', '00:00:00.25', NULL, NULL",
    "false, 7, 7, 7, 3.4e38, 'nan', 0.0000001, 99999999.99, 'é ☃ ,', ';', '2026-01-01',"
    " '2026-01-01 00:00:00.5', '2026-01-01 00:00:00+00', '12:34:56.5', NULL, NULL",
    "true, 7, 7, 7, -0.0, -0.0, -1e-20, -5, '\\.', 'x', NULL, NULL, NULL, NULL, NULL, NULL",
    "true, 7, 7, 7, 1.5e-5, 5e-324, 123456789012345678901234567890.5, 5, 'x', 'x', NULL, NULL,"
    " NULL, NULL, NULL, NULL",
    "true, 7, 7, 7, 1e-5, 1.7976931348623157e308, 1e-30, 5, 'x', 'x', NULL, NULL, NULL, NULL,"
    " NULL, NULL",
]


def make_table(postgres: PostgresServer, columns: str, rows: list[str], name: str = "") -> str:
    table = name or f"u_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(postgres.url, autocommit=True) as conn:
        target = sql.Identifier(postgres.schema, table).as_string(conn)
        conn.execute(f"CREATE TABLE {target} ({columns})".encode())
        for row in rows:
            conn.execute(f"INSERT INTO {target} VALUES ({row})".encode())
    return table


def unload(
    postgres: PostgresServer, table: str, target: Path, fused: bool, **config: Any
) -> RunResult:
    read = create_bloc(
        "read",
        "postgres_loader",
        {"table_name": table, "schema": postgres.schema, "dsn": postgres.url},
    )
    write = create_bloc("write", "csv_exporter", {"file_path": str(target), **config})
    # keep_outputs=False lets the engine fuse the two blocs; True keeps the rows: no fusion.
    return Pipeline("unload", [[read], [write]]).run(keep_outputs=not fused)


def both(
    postgres: PostgresServer,
    table: str,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    **config: Any,
) -> tuple[RunResult, bytes, RunResult, bytes, bool]:
    with caplog.at_level(logging.INFO):
        fast = unload(postgres, table, tmp_path / "fast.csv", True, **config)
    refused = REFUSED in caplog.text
    general = unload(postgres, table, tmp_path / "general.csv", False, **config)
    read = {path: (tmp_path / path).read_bytes() for path in ("fast.csv", "general.csv")}
    return fast, read["fast.csv"], general, read["general.csv"], refused


def test_every_type_gives_the_general_paths_file_byte_for_byte(
    postgres: PostgresServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    table = make_table(postgres, COLUMNS, ROWS)
    fast, fast_file, general, general_file, refused = both(postgres, table, tmp_path, caplog)
    assert fast.succeeded and general.succeeded, (fast.error, general.error)
    assert not refused  # the fast path wrote it
    assert fast_file == general_file
    assert fast.blocs["read"].rows_out == fast.blocs["write"].rows_in == len(ROWS)
    assert fast.outputs == {}
    lines = fast_file.decode().split("\n")
    assert lines[0] == "b,i2,i4,i8,r,f,n,n2,t,v,d,ts,tz,tm,u,by"
    assert lines[1] == (
        "true,1,2,3,0.10000000149011612,1,1.50,1.50,plain,v,2026-01-31,2026-01-31 10:00:00,"
        "2026-01-31 10:00:00.5+00,10:00:00,a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11,\\x0102ff"
    )
    assert lines[3] == ",,,,,,,,,,,,,,,"
    assert lines[4].startswith(
        'true,0,0,9223372036854775807,-Infinity,1.2345678901234565e+15,Infinity,0.00,"a,b ""c""'
    )
    assert ",1e+15,NaN,-0.01,,,0001-01-01,9999-12-31 23:59:59.999999," in lines[2]


def test_the_general_path_writes_what_csv_loader_reads_back(
    postgres: PostgresServer, tmp_path: Path
) -> None:
    table = make_table(postgres, COLUMNS, ROWS)
    assert unload(postgres, table, tmp_path / "out.csv", fused=False).succeeded
    read = create_bloc(
        "read",
        "postgres_loader",
        {"table_name": table, "schema": postgres.schema, "dsn": postgres.url},
    )
    types = {"b": "bool", "i8": "int", "f": "float", "n": "decimal", "d": "date"}
    types |= {"ts": "datetime", "tz": "datetime"}
    path = str(tmp_path / "out.csv")
    load = create_bloc("load", "csv_loader", {"file_path": path, "types": types})
    original = read.run(RunContext("t"), [])
    reloaded = load.run(RunContext("t"), [])
    for before, after in zip(original, reloaded, strict=True):
        for column in types:
            # repr: NaN equals nothing; an aware datetime's zone may be another of equal offset
            assert after[column] == before[column] or repr(after[column]) == repr(before[column])


def test_a_bom_and_another_delimiter_too(
    postgres: PostgresServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    table = make_table(postgres, COLUMNS, ROWS)
    fast, fast_file, general, general_file, refused = both(
        postgres, table, tmp_path, caplog, delimiter=";", encoding="utf-8-sig"
    )
    assert fast.succeeded and general.succeeded and not refused
    assert fast_file == general_file
    assert fast_file.startswith(b"\xef\xbb\xbfb;i2;")
    assert b'\xc3\xa9 \xe2\x98\x83 ,;";";' in fast_file  # the delimiter quoted, not the comma


@pytest.mark.parametrize(
    ("columns", "rows"),
    [
        ("j jsonb, k int", ['\'{"b": [1, 2.50], "a": "é"}\', 1', "NULL, 2"]),
        ("c char(3), k int", ["'ab', 1", "'', 2"]),
        ("alone text", ["''", "NULL", "'x'"]),
        ("a int, b int", []),
    ],
    ids=["jsonb", "char", "one column", "no rows"],
)
def test_what_the_fast_path_cannot_write_so_the_general_path_writes(
    postgres: PostgresServer,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    columns: str,
    rows: list[str],
) -> None:
    table = make_table(postgres, columns, rows)
    fast, fast_file, general, general_file, refused = both(postgres, table, tmp_path, caplog)
    assert fast.succeeded and general.succeeded, (fast.error, general.error)
    assert fast_file == general_file
    assert fast.blocs["write"].rows_in == len(rows)
    if rows:
        assert refused


@pytest.mark.parametrize(
    "row", ["'infinity', 1", "'10000-01-01', 1", "'0044-03-15 BC', 1"], ids=["inf", "10000", "BC"]
)
def test_a_date_python_cannot_hold_fails_both_paths_alike_and_keeps_the_old_file(
    postgres: PostgresServer, tmp_path: Path, caplog: pytest.LogCaptureFixture, row: str
) -> None:
    table = make_table(postgres, "d date, k int", ["'2026-01-01', 0", row])
    for name in ("fast.csv", "general.csv"):
        (tmp_path / name).write_text("old\n")
    fast, fast_file, general, general_file, refused = both(postgres, table, tmp_path, caplog)
    assert not fast.succeeded and not general.succeeded
    assert refused
    assert fast.error == general.error
    assert fast.blocs["read"].status == "failed", fast.blocs["read"]
    assert fast_file == general_file == b"old\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fast.csv", "general.csv"]


def test_a_failure_mid_copy_keeps_the_old_file(
    postgres: PostgresServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    view = f"bad_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(postgres.url, autocommit=True) as conn:
        conn.execute(
            sql.SQL(
                "CREATE VIEW {} AS SELECT i, 100 / (i - 30000) AS q"
                " FROM generate_series(1, 40000) i"
            ).format(sql.Identifier(postgres.schema, view))
        )
    for name in ("fast.csv", "general.csv"):
        (tmp_path / name).write_text("old\n")
    fast, fast_file, general, general_file, refused = both(postgres, view, tmp_path, caplog)
    assert refused
    assert fast.error == general.error
    assert "division by zero" in (fast.error or "")
    assert fast.blocs["read"].status == "failed"
    assert fast_file == general_file == b"old\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fast.csv", "general.csv"]


def test_a_cancel_mid_copy_stops_the_server_and_keeps_the_old_file(
    postgres: PostgresServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    view = f"slow_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(postgres.url, autocommit=True) as conn:
        conn.execute(
            sql.SQL(
                "CREATE FUNCTION {}(i int) RETURNS int LANGUAGE sql VOLATILE AS "
                "'SELECT pg_sleep(0.001); SELECT i'"
            ).format(sql.Identifier(postgres.schema, f"{view}_f"))
        )
        conn.execute(
            sql.SQL(
                "CREATE VIEW {} AS SELECT {}(i) AS i, repeat('x', 200) AS t "
                "FROM generate_series(1, 1000000) i"
            ).format(
                sql.Identifier(postgres.schema, view),
                sql.Identifier(postgres.schema, f"{view}_f"),
            )
        )
    target = tmp_path / "out.csv"
    target.write_text("old\n")
    token = CancelToken()

    def cancel_once_written() -> None:
        while not any(p.stat().st_size for p in tmp_path.glob(".out.csv.*.tmp")):
            threading.Event().wait(0.01)
        token.cancel()

    watcher = threading.Thread(target=cancel_once_written, daemon=True)
    watcher.start()
    read = create_bloc(
        "read",
        "postgres_loader",
        {"table_name": view, "schema": postgres.schema, "dsn": postgres.url},
    )
    write = create_bloc("write", "csv_exporter", {"file_path": str(target)})
    with caplog.at_level(logging.INFO):
        result = Pipeline("unload", [[read], [write]]).run(keep_outputs=False, cancel_token=token)
    watcher.join(5)
    assert result.status == "cancelled", (result.status, result.error)
    assert REFUSED not in caplog.text  # the fast path was writing when the cancel came
    assert target.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["out.csv"]


def test_floats_are_written_as_postgresql_writes_them(postgres: PostgresServer) -> None:
    rnd = random.Random(11)
    values = [struct.unpack("<d", rnd.randbytes(8))[0] for _ in range(3000)]
    values += [rnd.uniform(-1, 1) * 10 ** rnd.randint(-8, 20) for _ in range(3000)]
    values += [float(rnd.randint(-(10**17), 10**17)) for _ in range(3000)]
    values += [float(rnd.randint(1, 10**6) * 10 ** rnd.randint(15, 300)) for _ in range(3000)]
    values += [1e15, 1e16, -1e15, 999999999999999.9, 1e-4, 9.999e-5, 0.0, -0.0, 5e-324]
    with psycopg.connect(postgres.url) as conn:
        written = conn.execute("SELECT v::text FROM unnest(%s::float8[]) v", (values,)).fetchall()
    for value, (text,) in zip(values, written, strict=True):
        assert format_float(value) == text, value


def test_columns_and_limit_are_those_of_the_general_path(
    postgres: PostgresServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    table = make_table(postgres, COLUMNS, ROWS)
    files = []
    for fused in (True, False):
        read = create_bloc(
            "read",
            "postgres_loader",
            {
                "table_name": table,
                "schema": postgres.schema,
                "dsn": postgres.url,
                "columns": ["tz", "b", "t"],
                "limit": 4,
            },
        )
        target = tmp_path / f"{fused}.csv"
        write = create_bloc("write", "csv_exporter", {"file_path": str(target)})
        with caplog.at_level(logging.INFO):
            result = Pipeline("unload", [[read], [write]]).run(keep_outputs=not fused)
        assert result.succeeded, result.error
        files.append(target.read_bytes())
    assert REFUSED not in caplog.text
    assert files[0] == files[1]
    assert files[0].decode().split("\n")[:2] == ["tz,b,t", "2026-01-31 10:00:00.5+00,true,plain"]
    assert files[0].count(b"\n") == 6  # the header, 4 rows, and a cell holding \r\n
