"""postgres_exporter if_exists 'replace_interval': a rerun of an interval leaves the table as one
clean run would, atomically; on a real PostgreSQL, in the session's schema."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterator
from typing import Any
from zoneinfo import ZoneInfo

import psycopg
import pytest
from psycopg import sql

from tests.conftest import PostgresServer
from th2etl import BlocError, RunContext, ValidationError, create_bloc
from th2etl.logical_time import LogicalTime
from th2etl.types import Rows

pytestmark = pytest.mark.postgres

NEW_YORK = ZoneInfo("America/New_York")


def day(text: str) -> LogicalTime:
    """The logical time of a daily run at midnight in New York covering ``text``."""
    start = dt.datetime.fromisoformat(text).replace(tzinfo=NEW_YORK)
    end = (start + dt.timedelta(days=1)).replace(tzinfo=NEW_YORK)  # 23 h on 2026-03-08
    return LogicalTime(end, start, end, "America/New_York")


@pytest.fixture
def db(postgres: PostgresServer) -> Iterator[psycopg.Connection[Any]]:
    conn: psycopg.Connection[Any] = postgres.connect(autocommit=True)  # type: ignore[assignment]
    with conn:
        yield conn


@pytest.fixture
def table() -> str:
    return f"t_{uuid.uuid4().hex[:10]}"


def export(
    postgres: PostgresServer,
    table: str,
    rows: Rows,
    logical_time: LogicalTime | None,
    **config: Any,
) -> Rows:
    settings = {
        "table_name": table,
        "schema": postgres.schema,
        "source_bloc": "load",
        "dsn": postgres.url,
        "if_exists": "replace_interval",
        "interval_column": "day",
        **config,
    }
    context = RunContext("daily", logical_time=logical_time)
    return create_bloc("export", "postgres_exporter", settings).run(context, rows)


def contents(db: psycopg.Connection[Any], schema: str, table: str) -> list[tuple[Any, ...]]:
    query = sql.SQL("SELECT * FROM {} ORDER BY 1, 2").format(sql.Identifier(schema, table))
    return db.execute(query).fetchall()


def test_a_rerun_replaces_only_its_interval(
    postgres: PostgresServer, db: psycopg.Connection[Any], table: str
) -> None:
    first = [{"day": "2026-03-07", "order": 1}, {"day": "2026-03-07", "order": 2}]
    db.execute(
        sql.SQL('CREATE TABLE {} (day date, "order" integer)').format(
            sql.Identifier(postgres.schema, table)
        )
    )
    assert export(postgres, table, first, day("2026-03-07")) == [
        {
            "table": f"{postgres.schema}.{table}",
            "rows": 2,
            "if_exists": "replace_interval",
            "replaced": 0,
        }
    ]
    export(postgres, table, [{"day": "2026-03-08", "order": 3}], day("2026-03-08"))
    # The 7th again (a rerun, a backfill): its rows are replaced, the 8th's stay.
    again = export(postgres, table, [{"day": "2026-03-07", "order": 9}], day("2026-03-07"))
    assert again[0]["replaced"] == 2 and again[0]["rows"] == 1
    assert contents(db, postgres.schema, table) == [
        (dt.date(2026, 3, 7), 9),
        (dt.date(2026, 3, 8), 3),
    ]


def test_timestamps_compare_in_their_own_terms(
    postgres: PostgresServer, db: psycopg.Connection[Any], table: str
) -> None:
    db.execute(
        sql.SQL("CREATE TABLE {} (day timestamptz, local timestamp)").format(
            sql.Identifier(postgres.schema, table)
        )
    )
    late = dt.datetime(2026, 3, 8, 23, 30, tzinfo=NEW_YORK)  # 03:30 UTC on the 9th
    rows = [{"day": late.isoformat(), "local": "2026-03-08T23:30:00"}]
    export(postgres, table, rows, day("2026-03-08"))
    # By instant (timestamptz) the late order is within the New York day: replaced.
    assert export(postgres, table, rows, day("2026-03-08"))[0]["replaced"] == 1
    # By wall-clock time (timestamp) too.
    local = export(postgres, table, rows, day("2026-03-08"), interval_column="local")
    assert local[0]["replaced"] == 1
    assert len(contents(db, postgres.schema, table)) == 1


def test_a_failed_load_keeps_the_intervals_old_rows(
    postgres: PostgresServer, db: psycopg.Connection[Any], table: str
) -> None:
    db.execute(
        sql.SQL("CREATE TABLE {} (day date, amount integer)").format(
            sql.Identifier(postgres.schema, table)
        )
    )
    export(postgres, table, [{"day": "2026-03-07", "amount": 1}], day("2026-03-07"))
    bad = [{"day": "2026-03-07", "amount": 2}, {"day": "2026-03-07", "amount": "lots"}]
    with pytest.raises(BlocError, match="amount"):
        export(postgres, table, bad, day("2026-03-07"))
    assert contents(db, postgres.schema, table) == [(dt.date(2026, 3, 7), 1)]


def test_refusals(postgres: PostgresServer, db: psycopg.Connection[Any], table: str) -> None:
    db.execute(
        sql.SQL("CREATE TABLE {} (day text, hour date)").format(
            sql.Identifier(postgres.schema, table)
        )
    )
    rows = [{"day": "2026-03-07", "hour": "2026-03-07"}]
    manual = LogicalTime.at(dt.datetime(2026, 3, 7, tzinfo=dt.UTC))
    with pytest.raises(
        BlocError,
        match=r"needs the run's data interval, and this run is for a "
        r"single moment \(2026-03-07T00:00:00\+00:00\)",
    ):
        export(postgres, table, rows, manual)
    with pytest.raises(BlocError, match=r"interval_column 'day' is of type text; .* use a date"):
        export(postgres, table, rows, day("2026-03-07"))
    hourly = LogicalTime(
        dt.datetime(2026, 3, 7, 11, tzinfo=dt.UTC),
        dt.datetime(2026, 3, 7, 10, tzinfo=dt.UTC),
        dt.datetime(2026, 3, 7, 11, tzinfo=dt.UTC),
        "UTC",
    )
    with pytest.raises(BlocError, match="interval_column 'hour' is a date, and the run's interval"):
        export(postgres, table, rows, hourly, interval_column="hour")
    with pytest.raises(
        BlocError, match=r"has no interval_column 'nope' \(its columns: day, hour\)"
    ):
        export(postgres, table, rows, day("2026-03-07"), interval_column="nope")
    assert contents(db, postgres.schema, table) == []
    with pytest.raises(ValidationError, match="'replace_interval' needs interval_column"):
        create_bloc(
            "x",
            "postgres_exporter",
            {"table_name": "t", "source_bloc": "a", "if_exists": "replace_interval"},
        )
    with pytest.raises(ValidationError, match="interval_column 'day' is read only with if_exists"):
        create_bloc(
            "x",
            "postgres_exporter",
            {"table_name": "t", "source_bloc": "a", "interval_column": "day"},
        )
