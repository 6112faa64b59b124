"""postgres_loader -> postgres_exporter: the fast path (binary COPY out of the source piped into
binary COPY into the new table) gives the general path's table on the same inputs, leaves to it
what it cannot take, and keeps if_exists and the atomic replace."""

from __future__ import annotations

import logging
import threading
import uuid
from typing import Any

import psycopg
import pytest
from psycopg import sql

from tests.blocs.test_pg_unload import COLUMNS, ROWS, make_table
from tests.conftest import PostgresServer
from th2etl import Pipeline, create_bloc
from th2etl.pipelines import CancelToken, RunResult

pytestmark = pytest.mark.postgres

REFUSED = "the general path writes it"


def copy(
    postgres: PostgresServer,
    source: str,
    target: str,
    fused: bool,
    token: CancelToken | None = None,
    **export: Any,
) -> RunResult:
    pg = {"schema": postgres.schema, "dsn": postgres.url}
    read = create_bloc("read", "postgres_loader", {"table_name": source, **pg})
    write = create_bloc(
        "write",
        "postgres_exporter",
        {"table_name": target, "source_bloc": "read", **pg, **export},
    )
    # keep_outputs=False lets the engine fuse the two blocs; True keeps the rows: no fusion.
    return Pipeline("copy", [[read], [write]]).run(keep_outputs=not fused, cancel_token=token)


def contents(postgres: PostgresServer, table: str) -> tuple[list[Any], list[str]] | None:
    with psycopg.connect(postgres.url) as conn:
        found = conn.execute(
            "SELECT to_regclass(%s)", (sql.Identifier(postgres.schema, table).as_string(conn),)
        ).fetchone()
        if found is None or found[0] is None:
            return None
        types = conn.execute(
            "SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute WHERE attrelid"
            " = %s::regclass AND attnum > 0 AND NOT attisdropped ORDER BY attnum",
            (sql.Identifier(postgres.schema, table).as_string(conn),),
        ).fetchall()
        rows = conn.execute(
            sql.SQL("SELECT * FROM {}").format(sql.Identifier(postgres.schema, table))
        ).fetchall()
    return types, sorted(map(repr, rows))  # repr: Decimal('NaN') equals no Decimal


def both(
    postgres: PostgresServer,
    source: str,
    caplog: pytest.LogCaptureFixture,
    old: str | None = None,
    **export: Any,
) -> tuple[RunResult, Any, RunResult, Any, bool]:
    """The fast path's run and table, then the general path's on the same target name."""
    target = f"c_{uuid.uuid4().hex[:10]}"
    found: list[Any] = []
    for fused in (True, False):
        with psycopg.connect(postgres.url, autocommit=True) as conn:
            name = sql.Identifier(postgres.schema, target)
            conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(name))
        if old is not None:
            make_table(postgres, "old text", [old], name=target)
        with caplog.at_level(logging.INFO):
            found.append(copy(postgres, source, target, fused, **export))
        found.append(contents(postgres, target))
        if fused:
            found.append(REFUSED in caplog.text)
    fast, fast_table, refused, general, general_table = found
    return fast, fast_table, general, general_table, refused


def test_every_type_gives_the_general_paths_table(
    postgres: PostgresServer, caplog: pytest.LogCaptureFixture
) -> None:
    source = make_table(postgres, COLUMNS, ROWS)
    fast, fast_table, general, general_table, refused = both(postgres, source, caplog)
    assert fast.succeeded and general.succeeded, (fast.error, general.error)
    assert not refused  # the fast path wrote it
    assert fast_table == general_table
    assert fast_table is not None
    assert dict(fast_table[0])["i2"] == "bigint"
    assert dict(fast_table[0])["r"] == "double precision"
    assert fast.blocs["read"].rows_out == fast.blocs["write"].rows_in == len(ROWS)
    assert fast.blocs["write"].rows_out == 1


@pytest.mark.parametrize(
    ("columns", "rows", "taken"),
    [
        ("a int, b date, c text", ["1, NULL, NULL", "2, NULL, ''"], True),
        ("j jsonb, k int", ["'{\"b\": [1, 2.50]}', 1", "'\"text\"', 2"], False),
        ("c char(3), k int", ["'ab', 1", "'', 2"], False),
        ("i interval, k int", ["'1 mon', 1"], False),
    ],
    ids=["all-null columns", "jsonb", "char", "interval"],
)
def test_what_the_fast_path_cannot_take_the_general_path_writes(
    postgres: PostgresServer,
    caplog: pytest.LogCaptureFixture,
    columns: str,
    rows: list[str],
    taken: bool,
) -> None:
    source = make_table(postgres, columns, rows)
    fast, fast_table, general, general_table, refused = both(postgres, source, caplog)
    assert fast.error == general.error
    assert fast_table == general_table
    assert refused is not taken


def test_replace_swaps_atomically_and_fail_refuses_as_on_the_general_path(
    postgres: PostgresServer, caplog: pytest.LogCaptureFixture
) -> None:
    source = make_table(postgres, COLUMNS, ROWS)
    fast, fast_table, general, general_table, refused = both(postgres, source, caplog, "'x'")
    assert fast.succeeded and general.succeeded and not refused
    assert fast_table == general_table
    assert fast_table is not None and fast_table[0][0] == ("b", "boolean")
    fast, fast_table, general, general_table, _ = both(
        postgres, source, caplog, "'x'", if_exists="fail"
    )
    assert fast.error == general.error
    assert "already exists and if_exists is 'fail'" in (fast.error or "")
    assert fast_table == general_table == ([("old", "text")], ["('x',)"])


def test_an_empty_source_is_left_to_the_general_path(
    postgres: PostgresServer, caplog: pytest.LogCaptureFixture
) -> None:
    source = make_table(postgres, "a int, b text", [])
    fast, fast_table, general, general_table, refused = both(postgres, source, caplog, "'x'")
    assert fast.succeeded and general.succeeded
    assert refused
    assert fast_table == general_table == ([("old", "text")], [])


def test_a_table_replaced_by_its_own_rows(postgres: PostgresServer) -> None:
    table = make_table(postgres, "a int, b text", ["1, 'x'", "2, NULL"])
    result = copy(postgres, table, table, True)
    assert result.succeeded, result.error
    assert contents(postgres, table) == (
        [("a", "bigint"), ("b", "text")],
        ["(1, 'x')", "(2, None)"],
    )


@pytest.mark.parametrize(
    "view",
    [
        "SELECT i, 100 / (i - 30000) AS q FROM generate_series(1, 40000) i",
        "SELECT i, CASE WHEN i = 20000 THEN 'infinity' ELSE '2026-01-01' END::date AS d"
        " FROM generate_series(1, 40000) i",
    ],
    ids=["division by zero", "infinity"],
)
def test_a_failure_mid_copy_fails_both_paths_alike_and_keeps_the_old_table(
    postgres: PostgresServer, caplog: pytest.LogCaptureFixture, view: str
) -> None:
    name = f"bad_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(postgres.url, autocommit=True) as conn:
        target = sql.Identifier(postgres.schema, name).as_string(conn)
        conn.execute(f"CREATE VIEW {target} AS {view}".encode())
    fast, fast_table, general, general_table, refused = both(postgres, name, caplog, "'x'")
    assert not fast.succeeded and not general.succeeded
    assert refused
    assert fast.error == general.error
    assert fast.blocs["read"].status == "failed"
    assert fast_table == general_table == ([("old", "text")], ["('x',)"])


def test_a_cancel_mid_copy_keeps_the_old_table(
    postgres: PostgresServer, caplog: pytest.LogCaptureFixture
) -> None:
    view = f"slow_{uuid.uuid4().hex[:8]}"
    target = make_table(postgres, "old text", ["'x'"])
    with psycopg.connect(postgres.url, autocommit=True) as conn:
        function = sql.Identifier(postgres.schema, f"{view}_f")
        conn.execute(
            sql.SQL(
                "CREATE FUNCTION {}(i int) RETURNS int LANGUAGE sql VOLATILE AS "
                "'SELECT pg_sleep(0.001); SELECT i'"
            ).format(function)
        )
        conn.execute(
            sql.SQL(
                "CREATE VIEW {} AS SELECT {}(i) AS i, repeat('x', 200) AS t "
                "FROM generate_series(1, 1000000) i"
            ).format(sql.Identifier(postgres.schema, view), function)
        )
    token = CancelToken()

    def cancel_once_copying() -> None:
        # The new table's COPY is under way when the server shows it in pg_stat_activity.
        with psycopg.connect(postgres.url, autocommit=True) as conn:
            while not conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'COPY%%FROM STDIN%%'"
                " AND application_name = 'th2etl:write'"
            ).fetchone()[0]:  # type: ignore[index]
                threading.Event().wait(0.01)
        threading.Event().wait(0.2)
        token.cancel()

    watcher = threading.Thread(target=cancel_once_copying, daemon=True)
    watcher.start()
    with caplog.at_level(logging.INFO):
        result = copy(postgres, view, target, True, token)
    watcher.join(5)
    assert result.status == "cancelled", (result.status, result.error)
    assert REFUSED not in caplog.text
    assert contents(postgres, target) == ([("old", "text")], ["('x',)"])
    with psycopg.connect(postgres.url) as conn:
        left = conn.execute(
            "SELECT count(*) FROM pg_tables WHERE schemaname = %s AND tablename LIKE %s",
            (postgres.schema, "_th2etl_new%"),
        ).fetchone()
    assert left == (0,)
