"""The fast paths out of ``postgres_loader``: the server's COPY ... TO STDOUT output, as it
comes, into ``csv_exporter``'s temporary file (:func:`unload_csv`) or into ``postgres_exporter``'s
new table (:func:`copy_table`), with no Python value and no dict per row.

**Into a CSV file.**
Used when the engine fuses the two blocs (nothing sits between them and the run keeps no rows,
see :mod:`th2etl.pipelines.engine`), the exporter writes UTF-8 (with or without a BOM), the
connection's encoding is UTF-8, and the table has two columns or more (a single NULL cell would
be an empty line, which a CSV reader skips; the general path writes ``""``).

The file is the general path's, byte for byte. The server writes each value in the written
form of :mod:`th2etl.blocs._cells` when the session has ``DateStyle`` ISO, ``extra_float_digits``
1 and ``bytea_output`` hex, and the SELECT turns what differs: a boolean into ``true`` /
``false``, an empty text into NULL (an empty cell, as the general path writes ``""``), a real
into double precision (the float psycopg hands the general path). A column of any other type
than those in :data:`_FORMS` (json, interval, arrays, char(n), ...) leaves the table to the
general path. A date, timestamp or time that Python cannot hold (year 0 or 10000, infinity,
24:00) fails the COPY on purpose: the general path then fails with its own message. Any refusal
returns None before or after writing; the caller writes the file again from the start.

**Into a table** that ``postgres_exporter`` creates (``replace`` or ``fail``): binary COPY out of
a SELECT that casts each column to the type the general path would create for its Python values
(smallint and integer -> bigint, real -> double precision, varchar -> text; the others stay),
piped into binary COPY into the new table, inside the exporter's transaction. A typed column
with no value at all becomes text, as on the general path. The same types as for a file are
taken, the same dates refused; json and jsonb are not (their Python values decide the column
type on the general path). Any refusal raises :class:`~th2etl.blocs._pg_fast.Refused`: the
exporter's savepoint undoes it and the general path runs.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import IO, TYPE_CHECKING, Any

import psycopg
from psycopg import generators, sql
from psycopg.pq import ExecStatus

from th2etl.blocs._pg_fast import Refused, untype_empty_columns
from th2etl.exceptions import BlocError

if TYPE_CHECKING:
    from th2etl.pipelines.context import RunContext

__all__ = ["copy_table", "unload_csv"]

_Connection = psycopg.Connection[Any]


def _out_of_range(kind: str, low: str, high: str) -> str:
    # A cast of a text that is no date fails the statement: PostgreSQL has no raise() in SQL.
    return (
        "CASE WHEN {c} BETWEEN '" + low + "' AND '" + high + "' THEN {c} "
        "WHEN {c} IS NOT NULL THEN ('th2etl: out of Python''s range: ' || {c})::" + kind + " END"
    )


_FORMS: dict[int, str] = {
    16: "{c}::text",  # bool: 'true' / 'false'
    20: "{c}",  # int8
    21: "{c}",  # int2
    23: "{c}",  # int4
    700: "{c}::float8",  # float4: psycopg hands over the float8 of the same value
    701: "{c}",  # float8
    1700: "{c}",  # numeric
    25: "NULLIF({c}, '')",  # text
    1043: "NULLIF({c}, '')",  # varchar
    2950: "{c}",  # uuid
    17: "{c}",  # bytea
    1082: _out_of_range("date", "0001-01-01", "9999-12-31"),
    1114: _out_of_range("timestamp", "0001-01-01", "9999-12-31 23:59:59.999999"),
    # Python holds it in the session's time zone: a day of margin at both ends.
    1184: _out_of_range("timestamptz", "0001-01-02 00:00:00+00", "9999-12-30 00:00:00+00"),
    1083: _out_of_range("time", "00:00:00", "23:59:59.999999"),
}
"""Type oid -> the SELECT expression that writes a column of that type in its written form."""


def unload_csv(
    context: RunContext,
    conn: _Connection,
    query: sql.Composable,
    columns: list[tuple[str, int]],
    handle: IO[bytes],
    delimiter: str,
) -> int | None:
    """Write the rows of ``query`` (a FROM clause and any LIMIT, selecting ``columns``: name
    and type oid) to ``handle`` with a header line; return the rows written, or None when the
    general path must write them (what was written is then to be discarded)."""
    if (
        len(columns) < 2
        or len(delimiter) != 1
        or not delimiter.isascii()
        or delimiter in '"\r\n\\'
        or conn.info.encoding != "utf-8"
        or any(oid not in _FORMS for _, oid in columns)
    ):
        return None
    zone = getattr(conn.info.timezone, "key", None)
    if any(oid == 1184 for _, oid in columns) and zone != conn.info.parameter_status("TimeZone"):
        return None  # psycopg did not find the session's zone: it uses UTC instead
    selected = sql.SQL(", ").join(
        sql.SQL("{} AS {}").format(
            sql.SQL(_FORMS[oid].replace("{c}", "{0}")).format(sql.Identifier(name)),
            sql.Identifier(name),
        )
        for name, oid in columns
    )
    statement = sql.SQL("COPY (SELECT {} {}) TO STDOUT (FORMAT csv, HEADER, DELIMITER {})").format(
        selected, query, sql.Literal(delimiter)
    )
    conn.execute("SET DateStyle = ISO; SET extra_float_digits = 1; SET bytea_output = hex")
    lines = _copy_out(context, conn, statement, handle.write)
    return lines - 1 if lines > 1 else None  # no rows: the general path writes its empty file


_RANGES = {oid: _FORMS[oid] for oid in (1082, 1114, 1184, 1083)}
_TABLE_TYPES: dict[int, tuple[str, str]] = {
    16: ("{c}", "boolean"),
    20: ("{c}", "bigint"),
    21: ("{c}::int8", "bigint"),
    23: ("{c}::int8", "bigint"),
    700: ("{c}::float8", "double precision"),
    701: ("{c}", "double precision"),
    1700: ("{c}", "numeric"),
    25: ("{c}", "text"),
    1043: ("{c}::text", "text"),
    2950: ("{c}", "uuid"),
    17: ("{c}", "bytea"),
    1082: (_RANGES[1082], "date"),
    1114: (_RANGES[1114], "timestamp"),
    1184: (_RANGES[1184], "timestamp with time zone"),
    1083: (_RANGES[1083], "time"),
}
"""Type oid -> the SELECT expression and the type of the new table's column."""


def copy_table(
    context: RunContext,
    source: _Connection,
    query: sql.Composable,
    columns: list[tuple[str, int]],
    target: _Connection,
    schema: str,
    table: str,
) -> int:
    """Create ``schema.table`` on ``target`` and fill it with the rows of ``query`` on
    ``source`` (as for :func:`unload_csv`); return the rows written. Raises :class:`Refused`."""
    if any(oid not in _TABLE_TYPES for _, oid in columns):
        raise Refused("a column type whose rows decide the new column's type")
    definition = sql.SQL(", ").join(
        sql.SQL("{} {}").format(sql.Identifier(name), sql.SQL(_TABLE_TYPES[oid][1]))
        for name, oid in columns
    )
    target.execute(
        sql.SQL("CREATE TABLE {} ({})").format(sql.Identifier(schema, table), definition)
    )
    selected = sql.SQL(", ").join(
        sql.SQL(_TABLE_TYPES[oid][0].replace("{c}", "{0}")).format(sql.Identifier(name))
        for name, oid in columns
    )
    out = sql.SQL("COPY (SELECT {} {}) TO STDOUT (FORMAT binary)").format(selected, query)
    into = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT binary)").format(
        sql.Identifier(schema, table),
        sql.SQL(", ").join(sql.Identifier(name) for name, _ in columns),
    )
    with target.cursor() as cur:
        with cur.copy(into) as copy:
            pending = bytearray()

            def drained() -> None:  # libpq's buffer is empty: pass on what was read
                if len(pending) >= _PIPE_CHUNK:
                    copy.write(pending)
                    pending.clear()

            _copy_out(context, source, out, pending.extend, drained)
            if pending:
                copy.write(pending)
        rows = cur.rowcount
    if rows <= 0:
        raise Refused("no rows: the general path decides what an empty input does")
    untype_empty_columns(
        target, schema, table, [name for name, oid in columns if _TABLE_TYPES[oid][1] != "text"]
    )
    return rows


_PIPE_CHUNK = 1 << 18  # bytes passed on per COPY write


def _copy_out(
    context: RunContext,
    conn: _Connection,
    statement: sql.Composed,
    write: Callable[[Any], Any],
    drained: Callable[[], None] | None = None,
) -> int:
    """COPY ``statement`` out of ``conn``, each line to ``write``; the lines written.
    ``drained`` is called whenever libpq has nothing buffered, before waiting for more.

    libpq hands over one line per call: what it has buffered is taken without psycopg's
    generator machinery around each line (0.8 s instead of 1.25 s of CPU for 1,000,000 lines),
    and psycopg waits only when the buffer is empty.
    """
    lines = 0
    pgconn = conn.pgconn
    get = pgconn.get_copy_data
    with conn.cursor() as cur, cur.copy(statement) as copy:
        while True:
            size, data = get(1)  # what libpq has, without waiting
            if size > 0:
                write(data)
                lines += 1
            elif size == 0:
                if context.cancel_requested:
                    raise BlocError("cancelled")  # the bloc's session says so
                if drained is not None:
                    drained()
                more = copy.read()  # waits, and ends the COPY when the server did
                if not more:
                    break
                write(more)
                lines += 1
            else:  # the server ended the COPY: take its result, as copy.read() would
                result = conn.wait(generators.fetch_many(pgconn))[-1]
                if result.status != ExecStatus.COMMAND_OK:
                    raise psycopg.errors.error_from_result(result, encoding=conn.info.encoding)
                break
    return lines
