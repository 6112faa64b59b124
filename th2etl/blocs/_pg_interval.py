"""``postgres_exporter`` with ``if_exists: replace_interval``: an idempotent load per interval.

The run's data interval (:mod:`th2etl.logical_time`) says which rows are its own: those whose
``interval_column`` falls in ``[interval_start, interval_end)``. In ONE transaction the bloc
deletes them, then appends its rows (COPY), so a rerun or a backfill of an interval leaves the
table as one clean run would, and a failure leaves it as it was. The bounds are compared in the
column's own terms: a ``date`` column with the interval's local dates, a ``timestamp`` column
with its local wall-clock times, a ``timestamptz`` column with the instants. A table that does
not exist yet is created from the rows, as ``replace`` does. A run without an interval (a
manual run is for one moment) is refused: nothing would be replaced, so a rerun would
duplicate rows.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from psycopg import sql

from th2etl.exceptions import BlocError

if TYPE_CHECKING:
    import psycopg

    from th2etl.logical_time import LogicalTime

__all__ = ["delete_interval", "interval_bounds", "require_interval"]

_DATE_TYPES = {"date"}
_LOCAL_TYPES = {"timestamp without time zone"}
_INSTANT_TYPES = {"timestamp with time zone"}


def require_interval(where: str, logical_time: LogicalTime | None) -> LogicalTime:
    """The run's logical time, refused when it has no interval (before anything is written)."""
    if logical_time is None or logical_time.interval_start == logical_time.interval_end:
        moment = "" if logical_time is None else f" ({logical_time.scheduled_time.isoformat()})"
        raise BlocError(
            f"{where}: if_exists 'replace_interval' needs the run's data interval, and this run "
            f"is for a single moment{moment}: nothing would be replaced and a rerun would "
            "duplicate rows. Run it from its scheduler or with th2etl backfill, or use "
            "if_exists 'append' or 'replace'"
        )
    return logical_time


def interval_bounds(
    where: str, logical_time: LogicalTime | None, column: str, column_type: str
) -> tuple[Any, Any]:
    """``[start, end)`` of the run's interval as values of a ``column_type`` column."""
    logical_time = require_interval(where, logical_time)
    start: datetime = logical_time.interval_start
    end: datetime = logical_time.interval_end
    if column_type in _DATE_TYPES:
        if start.date() == end.date():
            raise BlocError(
                f"{where}: interval_column {column!r} is a date, and the run's interval "
                f"{start.isoformat()} to {end.isoformat()} is within one day: whole days "
                "cannot be replaced; use a timestamp or timestamptz column"
            )
        return start.date(), end.date()
    if column_type in _LOCAL_TYPES:
        return start.replace(tzinfo=None), end.replace(tzinfo=None)
    if column_type in _INSTANT_TYPES:
        return start, end
    raise BlocError(
        f"{where}: interval_column {column!r} is of type {column_type}; replace_interval "
        "compares it with the run's data interval, so use a date, timestamp or timestamptz "
        "column"
    )


def delete_interval(
    conn: psycopg.Connection[Any], schema: str, table: str, column: str, bounds: tuple[Any, Any]
) -> int:
    """Delete the rows of ``[bounds)`` (inside the caller's transaction); how many."""
    cursor = conn.execute(
        sql.SQL("DELETE FROM {} WHERE {} >= %s AND {} < %s").format(
            sql.Identifier(schema, table), sql.Identifier(column), sql.Identifier(column)
        ),
        bounds,
    )
    return int(cursor.rowcount)
