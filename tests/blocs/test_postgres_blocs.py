"""postgres_loader and postgres_exporter against a real PostgreSQL, in the session's schema."""

from __future__ import annotations

import datetime as dt
import os
import re
import signal
import subprocess
import sys
import textwrap
import threading
import tracemalloc
import uuid
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import psycopg
import pytest
from psycopg import sql

from tests.conftest import PostgresServer, wait_until
from th2etl import BlocError, ConfigurationError, Pipeline, RunContext, ValidationError, create_bloc
from th2etl.exceptions import DatabaseUnavailableError, NotFoundError
from th2etl.types import Rows

pytestmark = pytest.mark.postgres

REPO = Path(__file__).resolve().parents[2]


# --- helpers -------------------------------------------------------------------------------


@pytest.fixture
def db(postgres: PostgresServer) -> Iterator[psycopg.Connection[Any]]:
    """An autocommit connection whose search_path is the session's schema."""
    conn: psycopg.Connection[Any] = postgres.connect(autocommit=True)  # type: ignore[assignment]
    with conn:
        yield conn


@pytest.fixture
def table() -> str:
    return f"t_{uuid.uuid4().hex[:10]}"


def export(
    postgres: PostgresServer, rows: Rows, table: str, name: str = "export", **config: Any
) -> Rows:
    settings = {"table_name": table, "schema": postgres.schema, "source_bloc": "load"}
    settings.setdefault("dsn", postgres.url)
    settings.update(config)
    return create_bloc(name, "postgres_exporter", settings).run(RunContext("test"), rows)


def load(postgres: PostgresServer, table: str, **config: Any) -> Rows:
    settings = {"table_name": table, "schema": postgres.schema, "dsn": postgres.url, **config}
    return create_bloc("read", "postgres_loader", settings).run(RunContext("test"), [])


def column_types(db: psycopg.Connection[Any], schema: str, table: str) -> dict[str, str]:
    return dict(
        db.execute(
            "SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute"
            " WHERE attrelid = %s::regclass AND attnum > 0 AND NOT attisdropped ORDER BY attnum",
            (sql.Identifier(schema, table).as_string(db),),
        ).fetchall()
    )


def table_rows(db: psycopg.Connection[Any], schema: str, table: str) -> list[tuple[Any, ...]]:
    query = sql.SQL("SELECT * FROM {} ORDER BY 1").format(sql.Identifier(schema, table))
    return db.execute(query).fetchall()


def leftover_tables(db: psycopg.Connection[Any], schema: str) -> list[str]:
    return [
        row[0]
        for row in db.execute(
            "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE n.nspname = %s AND c.relname LIKE '\\_th2etl\\_new\\_%%'",
            (schema,),
        )
    ]


EVERY_TYPE: Rows = [
    {
        "id": 1,
        "amount": 2.5,
        "price": Decimal("10.25"),
        "active": True,
        "label": "first",
        "day": dt.date(2026, 11, 25),
        "at": dt.datetime(2026, 11, 25, 8, 30, 15, 123456),
        "at_utc": dt.datetime(2026, 11, 25, 8, 30, tzinfo=dt.UTC),
        "doc": {"tags": ["a", "b"], "n": 1},
        "items": [1, 2, 3],
        "nothing": None,
    },
    {
        "id": -(2**62),
        "amount": -0.0,
        "price": Decimal("-0.000001"),
        "active": False,
        "label": "tab\there, new\nline, back\\slash, quote ' \" and é",
        "day": dt.date(1, 1, 1),
        "at": dt.datetime(9999, 12, 31, 23, 59, 59),
        "at_utc": dt.datetime(2026, 3, 29, 1, 30, tzinfo=ZoneInfo("Europe/Paris")),
        "doc": {},
        "items": [],
        "nothing": None,
    },
    {
        "id": None,
        "amount": None,
        "price": None,
        "active": None,
        "label": None,
        "day": None,
        "at": None,
        "at_utc": None,
        "doc": None,
        "items": None,
        "nothing": None,
    },
]


# --- if_exists and types -------------------------------------------------------------------


def test_replace_creates_the_table_with_types_inferred_from_the_rows(
    postgres: PostgresServer, db: psycopg.Connection[Any], table: str
) -> None:
    output = export(postgres, EVERY_TYPE, table)
    assert output == [{"table": f"{postgres.schema}.{table}", "rows": 3, "if_exists": "replace"}]
    assert column_types(db, postgres.schema, table) == {
        "id": "bigint",
        "amount": "double precision",
        "price": "numeric",
        "active": "boolean",
        "label": "text",
        "day": "date",
        "at": "timestamp without time zone",
        "at_utc": "timestamp with time zone",
        "doc": "jsonb",
        "items": "jsonb",
        "nothing": "text",
    }


def test_every_python_type_round_trips(postgres: PostgresServer, table: str) -> None:
    export(postgres, EVERY_TYPE, table)
    loaded = sorted(load(postgres, table), key=lambda row: (row["id"] is None, row["id"] or 0))
    expected = sorted(EVERY_TYPE, key=lambda row: (row["id"] is None, row["id"] or 0))
    assert loaded == expected
    assert [type(row["price"]) for row in loaded[:2]] == [Decimal, Decimal]
    assert loaded[0]["at_utc"].utcoffset() is not None


def test_columns_keep_first_seen_order_and_missing_keys_are_null(
    postgres: PostgresServer, db: psycopg.Connection[Any], table: str
) -> None:
    rows = [{"b": 1, "a": "x"}, {"a": "y", "c": dt.date(2026, 1, 2)}, {"b": 3}]
    export(postgres, rows, table)
    assert list(column_types(db, postgres.schema, table)) == ["b", "a", "c"]
    assert sorted(table_rows(db, postgres.schema, table), key=repr) == sorted(
        [(1, "x", None), (None, "y", dt.date(2026, 1, 2)), (3, None, None)], key=repr
    )


def test_rows_with_as_many_but_different_keys_get_every_column(
    postgres: PostgresServer, db: psycopg.Connection[Any], table: str
) -> None:
    export(postgres, [{"a": 1, "b": 2}, {"a": 3, "c": 4}], table)
    assert column_types(db, postgres.schema, table) == {"a": "bigint", "b": "bigint", "c": "bigint"}
    assert table_rows(db, postgres.schema, table) == [(1, 2, None), (3, None, 4)]


@pytest.mark.parametrize(
    ("values", "expected_type"),
    [
        ([1, 2.5], "double precision"),
        ([True, 2], "bigint"),
        ([1, Decimal("2.5")], "numeric"),
        ([1, 2**70], "numeric"),
        ([{"a": 1}, "text", 3], "jsonb"),
        ([None, None], "text"),
        ([dt.time(1, 2), None], "time without time zone"),
        ([uuid.UUID(int=5)], "uuid"),
        ([b"\x00\x01"], "bytea"),
    ],
)
def test_mixed_values_widen_to_a_type_that_holds_them(
    postgres: PostgresServer,
    db: psycopg.Connection[Any],
    table: str,
    values: list[Any],
    expected_type: str,
) -> None:
    export(postgres, [{"n": value} for value in values], table)
    assert column_types(db, postgres.schema, table) == {"n": expected_type}
    assert [row["n"] for row in load(postgres, table)] == values


def test_replace_swaps_in_a_table_built_from_the_new_rows(
    postgres: PostgresServer, db: psycopg.Connection[Any], table: str
) -> None:
    export(postgres, [{"a": 1, "b": "x"}], table)
    export(postgres, [{"c": 2.5}, {"c": 3.5}], table)
    assert column_types(db, postgres.schema, table) == {"c": "double precision"}
    assert table_rows(db, postgres.schema, table) == [(2.5,), (3.5,)]
    assert leftover_tables(db, postgres.schema) == []


def test_replace_with_no_rows_empties_the_table_and_keeps_its_columns(
    postgres: PostgresServer, db: psycopg.Connection[Any], table: str
) -> None:
    export(postgres, [{"a": 1}], table)
    assert export(postgres, [], table)[0]["rows"] == 0
    assert column_types(db, postgres.schema, table) == {"a": "bigint"}
    assert table_rows(db, postgres.schema, table) == []


def test_append_adds_rows_and_the_server_parses_text_into_the_columns_types(
    postgres: PostgresServer, db: psycopg.Connection[Any], table: str
) -> None:
    db.execute(
        sql.SQL(
            "CREATE TABLE {} (id int, amount numeric(10, 2), day date, doc jsonb, tags text[])"
        ).format(sql.Identifier(postgres.schema, table))
    )
    rows = [
        {"id": 1, "amount": "12.50", "day": "2026-11-25", "doc": {"k": [1]}, "tags": ["a"]},
        {"id": "2", "day": dt.date(2026, 1, 1), "doc": [1, 2]},
        {"id": 3, "doc": '{"raw": "json text"}'},
    ]
    output = export(postgres, rows, table, if_exists="append")
    assert output == [{"table": f"{postgres.schema}.{table}", "rows": 3, "if_exists": "append"}]
    export(postgres, [{"id": 4}], table, if_exists="append")
    assert table_rows(db, postgres.schema, table) == [
        (1, Decimal("12.50"), dt.date(2026, 11, 25), {"k": [1]}, ["a"]),
        (2, None, dt.date(2026, 1, 1), [1, 2], None),
        (3, None, None, {"raw": "json text"}, None),
        (4, None, None, None, None),
    ]


def test_append_creates_a_missing_table(
    postgres: PostgresServer, db: psycopg.Connection[Any], table: str
) -> None:
    export(postgres, [{"a": 1}], table, if_exists="append")
    export(postgres, [{"a": 2}], table, if_exists="append")
    assert table_rows(db, postgres.schema, table) == [(1,), (2,)]


def test_append_refuses_a_key_the_table_lacks_before_writing_anything(
    postgres: PostgresServer, db: psycopg.Connection[Any], table: str
) -> None:
    export(postgres, [{"a": 1, "b": 2}], table)
    with pytest.raises(
        BlocError,
        match=r"the rows have a column 'zz', which table '.*' does not have "
        r"\(its columns: a, b\); nothing was written",
    ):
        export(postgres, [{"a": 5}, {"a": 6, "zz": 1}], table, if_exists="append")
    assert table_rows(db, postgres.schema, table) == [(1, 2)]


def test_append_value_that_does_not_fit_names_row_column_and_value_and_writes_nothing(
    postgres: PostgresServer, db: psycopg.Connection[Any], table: str
) -> None:
    export(postgres, [{"id": 1, "amount": 1}], table)
    rows = [{"id": 2, "amount": 5}, {"id": 3, "amount": 6}, {"id": 4, "amount": "12,5"}]
    with pytest.raises(
        BlocError,
        match=r"row 3, column 'amount': value '12,5' does not fit the column \(bigint\) of "
        r"table '.*': invalid input syntax for type bigint: \"12,5\"; nothing was written",
    ):
        export(postgres, rows, table, if_exists="append")
    with pytest.raises(BlocError, match=r"row 1, column 'amount': value 1180591620717411303424"):
        export(postgres, [{"id": 9, "amount": 2**70}], table, if_exists="append")
    assert table_rows(db, postgres.schema, table) == [(1, 1)]


def test_fail_refuses_an_existing_table_and_writes_nothing(
    postgres: PostgresServer, db: psycopg.Connection[Any], table: str
) -> None:
    assert export(postgres, [{"a": 1}], table, if_exists="fail")[0]["rows"] == 1
    with pytest.raises(
        BlocError,
        match=r"table '.*' already exists and if_exists is 'fail'; nothing was written. "
        r"Use if_exists 'replace' or 'append'",
    ):
        export(postgres, [{"a": 2}], table, if_exists="fail")
    assert table_rows(db, postgres.schema, table) == [(1,)]


# --- failures leave the old table ------------------------------------------------------------


def test_replace_failing_in_the_middle_of_the_copy_keeps_the_old_table(
    postgres: PostgresServer, db: psycopg.Connection[Any], table: str
) -> None:
    export(postgres, [{"id": 1, "name": "old"}], table)
    rows: Rows = [{"id": n, "name": f"new {n}"} for n in range(1, 20_001)]
    rows[14_999] = {"id": 15_000, "name": "NUL \x00 here"}
    with pytest.raises(
        BlocError,
        match=r"row 15000, column 'name': value 'NUL \\x00 here' does not fit the column "
        r"\(text\) of table '.*': invalid byte sequence for encoding \"UTF8\": 0x00; "
        "nothing was written, the table is unchanged",
    ):
        export(postgres, rows, table)
    assert table_rows(db, postgres.schema, table) == [(1, "old")]
    assert column_types(db, postgres.schema, table) == {"id": "bigint", "name": "text"}
    assert leftover_tables(db, postgres.schema) == []


def test_a_value_psycopg_cannot_encode_names_row_and_column_and_keeps_the_old_table(
    postgres: PostgresServer, db: psycopg.Connection[Any], table: str
) -> None:
    export(postgres, [{"id": 1}], table)
    rows = [{"id": 1, "doc": {"a": 1}}, {"id": 2, "doc": {"when": dt.date(2026, 1, 1)}}]
    with pytest.raises(
        BlocError,
        match=r"row 2, column 'doc': value \{'when': datetime.date\(2026, 1, 1\)\} cannot be "
        r"written to table '.*' \(Object of type date is not JSON serializable\)",
    ):
        export(postgres, rows, table)
    assert table_rows(db, postgres.schema, table) == [(1,)]


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (
            [1, "x"],
            r"column 'v' mixes int and str values \(row 1: 1; row 2: 'x'\); give the column "
            "one type",
        ),
        (["x", 2.5], r"column 'v' mixes float and str values \(row 2: 2.5; row 1: 'x'\)"),
        (
            [dt.datetime(2026, 1, 1), dt.datetime(2026, 1, 1, tzinfo=dt.UTC)],
            r"column 'v' mixes datetimes with a time zone \(row 2: .*\) and without one "
            r"\(row 1: .*\); make them all aware",
        ),
        ([dt.datetime(2026, 1, 1), dt.date(2026, 1, 1)], r"column 'v' mixes date and datetime"),
        (
            [1, object()],
            r"row 2, column 'v' holds <object object at .*>, a object, which postgres_exporter "
            r"cannot store; convert it to int, float, Decimal, bool, str, date, datetime, dict",
        ),
    ],
)
def test_values_that_cannot_share_a_column_are_refused_before_anything_is_written(
    postgres: PostgresServer,
    db: psycopg.Connection[Any],
    table: str,
    values: list[Any],
    message: str,
) -> None:
    export(postgres, [{"v": "old"}], table)
    with pytest.raises(BlocError, match=message):
        export(postgres, [{"v": value} for value in values], table)
    assert table_rows(db, postgres.schema, table) == [("old",)]


def test_a_dependent_view_stops_replace_and_the_table_stays(
    postgres: PostgresServer, db: psycopg.Connection[Any], table: str
) -> None:
    export(postgres, [{"a": 1}], table)
    view = f"{table}_view"
    db.execute(
        sql.SQL("CREATE VIEW {} AS SELECT a FROM {}").format(
            sql.Identifier(postgres.schema, view), sql.Identifier(postgres.schema, table)
        )
    )
    with pytest.raises(
        BlocError,
        match=r"cannot be replaced because other objects depend on it \(view .* depends on "
        r"table .*\); the table is unchanged. Drop those objects first, or use if_exists 'append'",
    ):
        export(postgres, [{"a": 2}], table)
    assert table_rows(db, postgres.schema, table) == [(1,)]
    with pytest.raises(BlocError, match=r"'.*_view' is not a table \(relkind 'v', e.g. a view\)"):
        export(postgres, [{"a": 2}], view, if_exists="append")


def test_a_cancelled_run_stops_the_copy_and_keeps_the_old_table(
    postgres: PostgresServer, db: psycopg.Connection[Any], table: str
) -> None:
    export(postgres, [{"a": 1}], table)
    context = RunContext("test")
    context._request_cancel()
    bloc = create_bloc(
        "export",
        "postgres_exporter",
        {"table_name": table, "schema": postgres.schema, "source_bloc": "x", "dsn": postgres.url},
    )
    with pytest.raises(BlocError, match="the run was cancelled while writing table"):
        bloc.run(context, [{"a": n} for n in range(70_000)])
    assert table_rows(db, postgres.schema, table) == [(1,)]


class _PausingDict(dict[str, Any]):
    """A JSON value that, once psycopg encodes it during the COPY, signals and waits."""

    reached = threading.Event()
    release = threading.Event()

    def items(self) -> Any:
        type(self).reached.set()
        assert type(self).release.wait(60), "the test never released the COPY"
        return super().items()


def _copy_progress(db: psycopg.Connection[Any], application_name: str) -> int | None:
    found = db.execute(
        "SELECT p.tuples_processed FROM pg_stat_progress_copy p"
        " JOIN pg_stat_activity a ON a.pid = p.pid WHERE a.application_name = %s",
        (application_name,),
    ).fetchone()
    return None if found is None else int(found[0])


def test_readers_see_the_old_table_during_a_replace_and_the_new_one_after(
    postgres: PostgresServer, db: psycopg.Connection[Any], table: str
) -> None:
    export(postgres, [{"id": n, "doc": {}} for n in range(3)], table)
    rows: Rows = [{"id": n, "doc": {"n": n}} for n in range(50_000)]
    rows[40_000] = {"id": 40_000, "doc": _PausingDict(n=40_000)}
    _PausingDict.reached.clear()
    _PausingDict.release.clear()
    name = f"replacer-{uuid.uuid4().hex[:6]}"
    errors: list[BaseException] = []
    seen: list[int] = []
    stop = threading.Event()

    def replace() -> None:
        try:
            export(postgres, rows, table, name=name)
        except BaseException as exc:
            errors.append(exc)

    def read() -> None:
        with postgres.connect(autocommit=True) as reader:  # type: ignore[attr-defined]
            query = sql.SQL("SELECT count(*) FROM {}").format(
                sql.Identifier(postgres.schema, table)
            )
            while not stop.is_set():
                seen.append(reader.execute(query).fetchone()[0])

    count = sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(postgres.schema, table))
    writer = threading.Thread(target=replace)
    reader = threading.Thread(target=read)
    reader.start()
    writer.start()
    try:
        assert _PausingDict.reached.wait(60), "the exporter never reached its COPY"
        assert _copy_progress(db, f"th2etl:{name}") is not None, "no COPY in progress"
        assert db.execute(count).fetchone()[0] == 3  # type: ignore[index]
        assert leftover_tables(db, postgres.schema) == []  # the new table is not visible yet
    finally:
        _PausingDict.release.set()
        writer.join(60)
        stop.set()
        reader.join(60)
    assert errors == []
    assert db.execute(count).fetchone()[0] == 50_000  # type: ignore[index]
    assert seen and set(seen) <= {3, 50_000}


KILL_SCRIPT = """
import sys, time
from th2etl import RunContext, create_bloc

class Marker(dict):
    def items(self):
        print("COPYING", flush=True)
        time.sleep(600)
        return super().items()

url, schema, table, name = sys.argv[1:5]
rows = [{"id": n, "doc": {"n": n}} for n in range(200_000)]
rows[150_000] = {"id": 150_000, "doc": Marker(n=1)}
bloc = create_bloc(name, "postgres_exporter", {
    "table_name": table, "schema": schema, "source_bloc": "x", "dsn": url})
bloc.run(RunContext("killed"), rows)
print("FINISHED", flush=True)
"""


@pytest.mark.slow
def test_sigkill_in_the_middle_of_a_replace_leaves_the_old_table_intact(
    postgres: PostgresServer, db: psycopg.Connection[Any], table: str, tmp_path: Path
) -> None:
    export(postgres, [{"id": 1, "doc": {"old": True}}, {"id": 2, "doc": None}], table)
    script = tmp_path / "replace.py"
    script.write_text(textwrap.dedent(KILL_SCRIPT))
    name = f"killme-{uuid.uuid4().hex[:6]}"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    process = subprocess.Popen(
        [sys.executable, str(script), postgres.url, postgres.schema, table, name],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert process.stdout is not None
        marker = process.stdout.readline()
        assert marker == "COPYING\n", process.stderr.read() if process.stderr else marker
        # The server confirms a COPY of this bloc's connection is under way with rows in it.
        wait_until(
            lambda: (_copy_progress(db, f"th2etl:{name}") or 0) > 0,
            timeout=30,
            what="COPY progress reported by the server",
        )
        process.send_signal(signal.SIGKILL)
        process.wait(30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(30)
        for stream in (process.stdout, process.stderr):
            if stream is not None:
                stream.close()
    assert process.returncode == -signal.SIGKILL
    # The server notices the dead client and rolls its transaction back.
    wait_until(
        lambda: (
            not db.execute(
                "SELECT 1 FROM pg_stat_activity WHERE application_name = %s", (f"th2etl:{name}",)
            ).fetchone()
        ),
        timeout=30,
        what="the killed client's backend to go",
    )
    assert table_rows(db, postgres.schema, table) == [(1, {"old": True}), (2, None)]
    assert leftover_tables(db, postgres.schema) == []


# --- identifiers ---------------------------------------------------------------------------

WEIRD_NAMES = [
    'x"; DROP TABLE victim; --',
    "with space",
    "Upper.Case;Dots",
    "quote'single",
    "ünïcode ✓",
]


@pytest.fixture
def weird_schema(postgres: PostgresServer, db: psycopg.Connection[Any]) -> Iterator[str]:
    name = f'Sch "{uuid.uuid4().hex[:6]}"; DROP TABLE victim; -- .X'
    db.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(name)))
    try:
        yield name
    finally:
        db.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(name)))


@pytest.mark.parametrize("name", WEIRD_NAMES)
def test_table_and_schema_names_are_identifiers_and_nothing_else_runs(
    postgres: PostgresServer, db: psycopg.Connection[Any], weird_schema: str, name: str
) -> None:
    db.execute("CREATE TABLE IF NOT EXISTS victim (id int)")
    db.execute(
        sql.SQL("CREATE TABLE IF NOT EXISTS {} (id int)").format(
            sql.Identifier(weird_schema, "victim")
        )
    )
    column = f"{name} col"
    for mode in ("fail", "replace", "replace", "append"):
        export(postgres, [{column: 1}], name, schema=weird_schema, if_exists=mode)
    rows = load(postgres, name, schema=weird_schema, columns=[column])
    assert rows == [{column: 1}, {column: 1}]
    found = db.execute(
        "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE n.nspname = %s AND c.relkind = 'r' ORDER BY 1",
        (weird_schema,),
    ).fetchall()
    assert found == sorted([(name,), ("victim",)])
    assert db.execute("SELECT to_regclass('victim')").fetchone() == ("victim",)


def test_an_upper_case_table_is_not_its_lower_case_twin(
    postgres: PostgresServer, db: psycopg.Connection[Any], table: str
) -> None:
    export(postgres, [{"a": 1}], table)
    export(postgres, [{"b": "upper"}], table.upper())
    assert load(postgres, table) == [{"a": 1}]
    assert load(postgres, table.upper()) == [{"b": "upper"}]


# --- postgres_loader -----------------------------------------------------------------------


def test_loader_reads_a_subset_of_columns_in_order_and_a_limit(
    postgres: PostgresServer, table: str
) -> None:
    export(postgres, [{"a": n, "b": f"x{n}", "c": n * 1.5} for n in range(10)], table)
    assert load(postgres, table, columns=["c", "a"], limit=2) == [
        {"c": 0.0, "a": 0},
        {"c": 1.5, "a": 1},
    ]
    assert load(postgres, table, limit=0) == []
    assert len(load(postgres, table)) == 10


def test_loader_reads_views_and_types_without_a_binary_loader_as_text(
    postgres: PostgresServer, db: psycopg.Connection[Any], table: str
) -> None:
    mood = f"mood_{uuid.uuid4().hex[:6]}"
    db.execute(
        sql.SQL("CREATE TYPE {} AS ENUM ('sad', 'happy')").format(
            sql.Identifier(postgres.schema, mood)
        )
    )
    db.execute(
        sql.SQL("CREATE TABLE {} (id int, feeling {}, at interval, net inet)").format(
            sql.Identifier(postgres.schema, table), sql.Identifier(postgres.schema, mood)
        )
    )
    db.execute(
        sql.SQL("INSERT INTO {} VALUES (1, 'happy', '1 day', '10.0.0.1')").format(
            sql.Identifier(postgres.schema, table)
        )
    )
    db.execute(
        sql.SQL("CREATE VIEW {} AS SELECT id, feeling FROM {}").format(
            sql.Identifier(postgres.schema, f"{table}_v"), sql.Identifier(postgres.schema, table)
        )
    )
    [row] = load(postgres, table)
    assert row["feeling"] == "happy"
    assert row["at"] == dt.timedelta(days=1)
    assert str(row["net"]) == "10.0.0.1"
    assert load(postgres, f"{table}_v") == [{"id": 1, "feeling": "happy"}]


def test_loader_names_a_missing_table_and_lists_the_schema_s_tables(
    postgres: PostgresServer, db: psycopg.Connection[Any], weird_schema: str
) -> None:
    for name in ("b_table", "a_table"):
        export(postgres, [{"a": 1}], name, schema=weird_schema)
    with pytest.raises(
        NotFoundError,
        match=rf"table '{re.escape(weird_schema)}.nope' does not exist \(host 127.0.0.1, port "
        rf"5432, database {postgres.dbname}, user {postgres.user}\); tables in schema "
        rf"'{re.escape(weird_schema)}': a_table, b_table$",
    ):
        load(postgres, "nope", schema=weird_schema)


def test_loader_refuses_an_unknown_column(postgres: PostgresServer, table: str) -> None:
    export(postgres, [{"a": 1, "b": 2}], table)
    with pytest.raises(
        ValidationError,
        match=r"columns names 'zz', which table '.*' does not have; its columns: a, b",
    ):
        load(postgres, table, columns=["a", "zz"])


def test_a_missing_schema_is_named(postgres: PostgresServer) -> None:
    with pytest.raises(
        NotFoundError,
        match=r"schema 'no_such_schema_x' does not exist \(host .*\); create it "
        r"\(CREATE SCHEMA \"no_such_schema_x\"\) or fix the schema config",
    ):
        export(postgres, [{"a": 1}], "t", schema="no_such_schema_x")
    with pytest.raises(NotFoundError, match=r"schema 'no_such_schema_x' does not exist"):
        load(postgres, "t", schema="no_such_schema_x")


# --- connection ----------------------------------------------------------------------------


def test_without_dsn_the_blocs_use_database_url(
    postgres: PostgresServer, clean_env: pytest.MonkeyPatch, table: str
) -> None:
    clean_env.setenv("DATABASE_URL", postgres.url)
    where = {"table_name": table, "schema": postgres.schema}
    export_bloc = create_bloc("export", "postgres_exporter", {**where, "source_bloc": "x"})
    load_bloc = create_bloc("read", "postgres_loader", where)
    assert export_bloc.run(RunContext("test"), [{"a": 1}])[0]["rows"] == 1
    assert load_bloc.run(RunContext("test"), []) == [{"a": 1}]


def test_without_dsn_or_database_settings_the_message_says_how_to_connect(
    clean_env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    clean_env.setenv("TH2ETL_SQLITE_PATH", str(tmp_path / "th2etl.db"))
    bloc = create_bloc("to_db", "postgres_exporter", {"table_name": "t", "source_bloc": "x"})
    with pytest.raises(
        ConfigurationError,
        match=r"bloc 'to_db' \(postgres_exporter\) needs a PostgreSQL database, but none is "
        r"configured \(th2etl stores its definitions in SQLite at .*th2etl.db\); set "
        r"DATABASE_URL=postgresql://user:password@host:5432/dbname .* or give the bloc a 'dsn'",
    ):
        bloc.run(RunContext("test"), [{"a": 1}])


def test_dsn_from_an_environment_reference_in_a_pipeline(
    postgres: PostgresServer, clean_env: pytest.MonkeyPatch, table: str, tmp_path: Path
) -> None:
    clean_env.setenv("WAREHOUSE_URL", postgres.url)
    data = tmp_path / "in.csv"
    data.write_text("id,amount,day\n1,2.5,2026-11-25\n2,,2026-11-26\n")
    common = {"table_name": table, "schema": postgres.schema, "dsn": "${env:WAREHOUSE_URL}"}
    blocs = [
        create_bloc(
            "load",
            "csv_loader",
            {"file_path": str(data), "types": {"id": "int", "amount": "float", "day": "date"}},
        ),
        create_bloc("export", "postgres_exporter", {**common, "source_bloc": "load"}),
        create_bloc("read", "postgres_loader", common),
    ]
    result = Pipeline("csv_to_pg", [[blocs[0]], [blocs[1]], [blocs[2]]]).run()
    assert result.succeeded, result.summary()
    assert result.outputs["read"] == [
        {"id": 1, "amount": 2.5, "day": dt.date(2026, 11, 25)},
        {"id": 2, "amount": None, "day": dt.date(2026, 11, 26)},
    ]


def test_an_unreachable_database_fails_fast_naming_it_without_the_password() -> None:
    bloc = create_bloc(
        "to_db",
        "postgres_exporter",
        {
            "table_name": "t",
            "source_bloc": "x",
            "dsn": "postgresql://etl:s3cr3t-pw@127.0.0.1:1/warehouse",
        },
    )
    with pytest.raises(DatabaseUnavailableError) as caught:
        bloc.run(RunContext("test"), [{"a": 1}])
    message = str(caught.value)
    assert "s3cr3t-pw" not in message
    assert re.search(
        r"bloc 'to_db' \(postgres_exporter\): cannot connect to PostgreSQL at host 127.0.0.1, "
        r"port 1, database warehouse, user etl: .*Connection refused.*; check that the server",
        message,
    ), message


# --- bad config and bad rows -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("bloc_type", "config", "message"),
    [
        ("postgres_exporter", {"source_bloc": "x"}, r"missing required config key 'table_name'"),
        ("postgres_exporter", {"table_name": "t"}, r"missing required config key 'source_bloc'"),
        (
            "postgres_exporter",
            {"table_name": "t", "source_bloc": "x", "if_exists": "merge"},
            r"config key 'if_exists' is 'merge'; use one of 'fail', 'replace', 'append'",
        ),
        (
            "postgres_exporter",
            {"table_name": "t" * 64, "source_bloc": "x"},
            r"table_name 't{64}' is 64 bytes long; PostgreSQL names hold at most 63 bytes",
        ),
        (
            "postgres_loader",
            {"table_name": "t", "schema": "é" * 32},
            r"schema 'é{32}' is 64 bytes long",
        ),
        ("postgres_loader", {"table_name": ""}, r"table_name must be a non-empty string"),
        ("postgres_loader", {"table_name": "a\x00b"}, r"contains a NUL character"),
        (
            "postgres_loader",
            {"table_name": "t", "dsn": "host=db password=hunter2 oops"},
            r"config key 'dsn': the connection string is not valid; write it as a URL",
        ),
        ("postgres_loader", {"table_name": "t", "columns": []}, r"columns is an empty list"),
        (
            "postgres_loader",
            {"table_name": "t", "columns": ["a", "b", "a"]},
            r"columns names 'a' more than once",
        ),
        ("postgres_loader", {"table_name": "t", "columns": [1]}, r"column name in columns must be"),
        ("postgres_loader", {"table_name": "t", "limit": -1}, r"limit must be 0 or more, got -1"),
        ("postgres_loader", {"table_name": "t", "limit": "ten"}, r"'limit' must be an integer"),
    ],
)
def test_bad_config_is_refused_when_the_bloc_is_defined(
    bloc_type: str, config: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValidationError, match=message) as caught:
        create_bloc("b", bloc_type, config)
    assert "hunter2" not in str(caught.value)


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ([{"a": 1}, ["not", "a", "dict"]], r"row 2 is a list, not a dict"),
        ([{1: "x"}], r"the rows have a key 1 \(int\); column names must be strings"),
        ([{}, {}], r"the 2 rows have no columns \(every row is \{\}\); nothing can be written"),
        ([{"c" * 64: 1}], r"column name 'c{64}' is 64 bytes long"),
    ],
)
def test_bad_rows_are_refused_before_connecting(rows: Rows, message: str) -> None:
    bloc = create_bloc(
        "b",
        "postgres_exporter",
        {"table_name": "t", "source_bloc": "x", "dsn": "postgresql://u@127.0.0.1:1/db"},
    )
    with pytest.raises(BlocError, match=message):
        bloc.run(RunContext("test"), rows)


def test_no_rows_for_a_missing_table_is_refused(postgres: PostgresServer, table: str) -> None:
    with pytest.raises(
        BlocError,
        match=r"no rows to export and table '.*' does not exist, so its columns are unknown",
    ):
        export(postgres, [], table)


def test_a_connection_killed_during_the_copy_fails_the_bloc_and_keeps_the_old_table(
    postgres: PostgresServer, db: psycopg.Connection[Any], table: str
) -> None:
    export(postgres, [{"id": 1, "doc": {}}], table)
    rows: Rows = [{"id": n, "doc": {"n": n}} for n in range(30_000)]
    rows[20_000] = {"id": 20_000, "doc": _PausingDict(n=1)}
    _PausingDict.reached.clear()
    _PausingDict.release.clear()
    name = f"terminated-{uuid.uuid4().hex[:6]}"
    errors: list[BaseException] = []

    def replace() -> None:
        try:
            export(postgres, rows, table, name=name)
        except BaseException as exc:
            errors.append(exc)

    writer = threading.Thread(target=replace)
    writer.start()
    try:
        assert _PausingDict.reached.wait(60), "the exporter never reached its COPY"
        [(terminated,)] = db.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = %s",
            (f"th2etl:{name}",),
        ).fetchall()
        assert terminated
    finally:
        _PausingDict.release.set()
        writer.join(60)
    [error] = errors
    assert isinstance(error, DatabaseUnavailableError), error
    assert re.search(
        rf"bloc '{name}' \(postgres_exporter\): the connection to PostgreSQL \(host .*\) failed: "
        r".*; anything written was rolled back",
        str(error),
    ), error
    assert table_rows(db, postgres.schema, table) == [(1, {})]
    assert leftover_tables(db, postgres.schema) == []


@pytest.fixture
def powerless_role(postgres: PostgresServer, db: psycopg.Connection[Any]) -> Iterator[str]:
    """A login role with no rights on the session's schema."""
    role = f"th2etl_nobody_{uuid.uuid4().hex[:8]}"
    db.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(role)))
    try:
        yield role
    finally:
        db.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))


def test_an_error_from_the_server_becomes_a_bloc_error_naming_the_database(
    postgres: PostgresServer, powerless_role: str, table: str
) -> None:
    export(postgres, [{"a": 1}], table)
    dsn = (
        f"host={postgres.host} port={postgres.port} dbname={postgres.dbname} user={powerless_role}"
    )
    with pytest.raises(
        BlocError,
        match=rf"bloc 'read' \(postgres_loader\): PostgreSQL \(host {postgres.host}, port "
        rf"{postgres.port}, database {postgres.dbname}, user {powerless_role}\) refused: "
        r"permission denied for schema .*; anything written was rolled back",
    ):
        load(postgres, table, dsn=dsn)


def test_loader_without_chunked_streaming_uses_a_server_side_cursor(
    postgres: PostgresServer, table: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    export(postgres, [{"a": n} for n in range(12_000)], table)
    # libpq before 17 has no chunked mode: force that path on this libpq.
    monkeypatch.setattr(psycopg.capabilities, "has_stream_chunked", lambda: False)
    assert load(postgres, table) == [{"a": n} for n in range(12_000)]


@pytest.mark.parametrize("uniform", [True, False], ids=["same keys", "varying keys"])
def test_the_export_holds_no_second_copy_of_the_rows(
    postgres: PostgresServer, table: str, uniform: bool
) -> None:
    tracemalloc.start()
    try:
        rows: Rows = [
            {"id": n, "name": f"name {n}", "amount": n / 3, "day": dt.date(2026, 1, 1 + n % 28)}
            for n in range(100_000)
        ]
        if not uniform:
            rows[50_000] = {"id": 50_000, "other": "x"}
        size = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        export(postgres, rows, table)
        peak = tracemalloc.get_traced_memory()[1] - size
    finally:
        tracemalloc.stop()
    # Strings or tuples of every row would take about as much as the rows; allow 10 %.
    assert peak < size / 10, f"the export allocated {peak:,} bytes for {size:,} bytes of rows"
