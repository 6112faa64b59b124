"""COPY of batches into one table, inside the exporter's transaction, for ``postgres_exporter``.

Two writers, one COPY per batch:

* :class:`NewTableWriter` fills a table it creates. The columns come from the first batch
  (:mod:`th2etl.blocs._pg_columns`); a later batch that needs more (a new key, a column that
  held only None so far, int joined by float) widens the table with ``ALTER TABLE`` before its
  COPY, following the same rules as a single list of rows would; a mix those rules refuse is
  refused, naming a row of each kind. The types of a batch are first guessed from its first
  values (binary COPY refuses a wrong guess, inside a savepoint); on a refusal the batch is
  typed from every value and COPYed again.
* :class:`AppendWriter` writes into an existing table with text COPY: the server parses each
  value into the column's own type, as ``psql \\copy`` would.

Errors name the row (counted over the whole stream), the column and the value.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Callable, Iterator, Sequence
from functools import partial
from itertools import islice
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg import sql
from psycopg.adapt import PyFormat
from psycopg.types.json import Jsonb, JsonbDumper

from th2etl.blocs._pg_columns import (
    Column,
    bases_of,
    decide,
    full_columns,
    quick_columns,
    quick_names,
    row_names,
    row_values,
    zones_error,
)
from th2etl.exceptions import BlocError
from th2etl.types import Rows

if TYPE_CHECKING:
    from th2etl.pipelines.context import RunContext

__all__ = ["AppendWriter", "NewTableWriter", "one_line"]

_Connection = psycopg.Connection[Any]

# "COPY t, line 3, column amount: "abc"" (text) or "COPY t, line 3, column amount" (binary).
_COPY_CONTEXT = re.compile(r", line (\d+), column (.*)$", re.DOTALL)
_CHUNK = 65536  # rows written between two looks at context.cancel_requested


class _Retry(Exception):
    """psycopg refused a value while the column types were guessed: type every value."""


def one_line(text: str | None) -> str:
    return " ".join((text or "").split())


class _Writer:
    """What both writers share: the COPY of one batch and its error messages."""

    def __init__(
        self, where: str, context: RunContext, conn: _Connection, schema: str, label: str
    ) -> None:
        self.where = where
        self.context = context
        self.conn = conn
        self.schema = schema
        self.label = label
        self.rows = 0  # written so far

    def _copy(
        self,
        statement: sql.Composed,
        values: Iterator[Sequence[Any]],
        rows: Rows,
        *,
        names: list[str],
        copy_types: list[str] | None,
        checks: list[Callable[[Any], None]],
        types: dict[str, str],
        guessed: bool,
    ) -> None:
        """COPY ``values`` (one tuple per row of ``rows``); map any failure to row and column."""
        done = 0
        conn = self.conn
        try:
            with conn.cursor() as cur, cur.copy(statement) as copy:
                if copy_types is not None:
                    copy.set_types(copy_types)
                write = copy.write_row
                # A plain loop over a C iterator: enumerate() or a check per row cost 15-20 %.
                while done < len(rows):
                    if self.context.cancel_requested:
                        raise BlocError(
                            f"{self.where}: the run was cancelled while writing table "
                            f"{self.label!r}; nothing was written, the table is unchanged"
                        )
                    for record in islice(values, _CHUNK):
                        write(record)
                    done += _CHUNK
        except psycopg.Error as exc:
            if conn.broken:
                raise  # the connection is gone: the bloc's session says so
            if exc.diag.sqlstate is not None:
                raise self._server_error(exc, rows, names, types) from None
            if guessed:
                raise _Retry from None
            raise self._client_error(exc, rows, done, names, checks) from None
        except (TypeError, ValueError, OverflowError, KeyError) as exc:
            if guessed:
                raise _Retry from None
            raise self._client_error(exc, rows, done, names, checks) from None

    def _server_error(
        self, exc: psycopg.Error, rows: Rows, names: list[str], types: dict[str, str]
    ) -> BlocError:
        if isinstance(exc, psycopg.errors.QueryCanceled) and self.context.cancel_requested:
            return BlocError(
                f"{self.where}: the run was cancelled while writing table {self.label!r} (the "
                "statement was cancelled on the server); nothing was written, the table is "
                "unchanged"
            )
        found = _COPY_CONTEXT.search(exc.diag.context or "")
        if found is None:
            return BlocError(
                f"{self.where}: writing to table {self.label!r} failed: {one_line(str(exc))}; "
                "nothing was written, the table is unchanged"
            )
        line = int(found.group(1))
        column = _match_column(found.group(2), names)
        number = self.rows + line
        if column is None or not 0 < line <= len(rows):
            return BlocError(
                f"{self.where}: row {number} could not be written to table {self.label!r}: "
                f"{one_line(exc.diag.message_primary)} ({one_line(exc.diag.context)}); "
                "nothing was written, the table is unchanged"
            )
        value = rows[line - 1].get(column)
        return BlocError(
            f"{self.where}: row {number}, column {column!r}: value {value!r:.80} does not fit "
            f"the column ({types[column]}) of table {self.label!r}: "
            f"{one_line(exc.diag.message_primary)}; nothing was written, the table is unchanged"
        )

    def _client_error(
        self,
        exc: Exception,
        rows: Rows,
        done: int,
        names: list[str],
        checks: list[Callable[[Any], None]],
    ) -> BlocError:
        """psycopg refused a value of the chunk starting at ``done``: find it."""
        end = min(done + _CHUNK, len(rows))
        for number in range(done, end):
            row = rows[number]
            for name, check in zip(names, checks, strict=True):
                value = row.get(name)
                try:
                    check(value)
                except Exception as detail:
                    return BlocError(
                        f"{self.where}: row {self.rows + number + 1}, column {name!r}: value "
                        f"{value!r:.80} cannot be written to table {self.label!r} "
                        f"({one_line(str(detail))}); nothing was written, the table is unchanged"
                    )
        return BlocError(
            f"{self.where}: a row between {self.rows + done + 1} and {self.rows + end} cannot "
            f"be written to table {self.label!r} ({type(exc).__name__}: {one_line(str(exc))}); "
            "nothing was written, the table is unchanged"
        )


class NewTableWriter(_Writer):
    """Creates ``schema.name`` from the first batch and COPYs every batch into it."""

    def __init__(
        self,
        where: str,
        context: RunContext,
        conn: _Connection,
        schema: str,
        name: str,
        label: str,
    ) -> None:
        super().__init__(where, context, conn, schema, label)
        self.name = name
        self.columns: dict[str, Column] = {}
        self._bases: dict[str, set[type]] = {}
        self._examples: dict[tuple[str, type], str] = {}

    def write(self, batch: Rows) -> None:
        guess = quick_names(batch, self.where)
        names, uniform = guess or row_names(batch, self.where)
        if batch and not names:
            raise BlocError(
                f"{self.where}: the {len(batch)} rows have no columns (every row is {{}}); "
                "nothing can be written"
            )
        saved = dict(self.columns), dict(self._bases)
        try:
            columns = quick_columns(batch, names, uniform, self.where, self.rows)
            # A savepoint: a refused guess must not abort the transaction of earlier batches.
            with self.conn.transaction():
                self._copy_batch(batch, names, uniform, columns, guessed=True)
        except _Retry:
            self.columns, self._bases = saved  # the savepoint undid any CREATE or ALTER
            names, uniform = row_names(batch, self.where)
            columns = full_columns(batch, names, uniform, self.where, self.rows)
            self._copy_batch(batch, names, uniform, columns, guessed=False)
        self.rows += len(batch)

    def _copy_batch(
        self, batch: Rows, names: list[str], uniform: bool, columns: list[Column], guessed: bool
    ) -> None:
        self._fit(batch, columns)
        typed = [self.columns[name] for name in names]
        self._copy(
            sql.SQL("COPY {} ({}) FROM STDIN (FORMAT BINARY)").format(
                sql.Identifier(self.schema, self.name),
                sql.SQL(", ").join(map(sql.Identifier, names)),
            ),
            row_values(batch, names, uniform),
            batch,
            names=names,
            copy_types=[column.copy_type for column in typed],
            checks=[column.check for column in typed],
            types={column.name: column.sql_type for column in typed},
            guessed=guessed,
        )

    def _fit(self, batch: Rows, columns: list[Column]) -> None:
        """Create the table, or widen it, so that it takes ``columns``."""
        if not self.columns:
            definition = sql.SQL(", ").join(
                sql.SQL("{} {}").format(sql.Identifier(column.name), sql.SQL(column.sql_type))
                for column in columns
            )
            self.conn.execute(
                sql.SQL("CREATE TABLE {} ({})").format(
                    sql.Identifier(self.schema, self.name), definition
                )
            )
            for column in columns:
                self._remember(column, batch)
            return
        for column in columns:
            current = self.columns.get(column.name)
            if current is None:
                self._alter("ADD COLUMN {} " + column.sql_type, column)
                self._remember(column, batch)
            elif column.sql_type == current.sql_type or not column.accepts:
                continue  # same type, or only None in this batch
            elif not current.accepts:
                self._alter("ALTER COLUMN {} TYPE " + column.sql_type + " USING NULL", column)
                self._remember(column, batch)
            else:
                wider = self._widen(current, column, batch)
                if wider.sql_type != current.sql_type:
                    using = "{}::int::" if current.sql_type == "boolean" else "{}::"
                    if wider.sql_type == "jsonb":
                        using = "to_jsonb({})"
                    else:
                        using += wider.sql_type
                    self._alter("ALTER COLUMN {} TYPE " + wider.sql_type + " USING " + using, wider)
                self._remember(wider, batch)

    def _widen(self, current: Column, column: Column, batch: Rows) -> Column:
        """The column that takes the values so far and those of ``batch``, or the refusal."""
        name = column.name
        for kind in bases_of(column) - self._bases[name]:
            self._examples.setdefault((name, kind), self._find(name, kind, batch))
        bases = self._bases[name] | bases_of(column)
        if bases <= {bool, int} and "numeric" in (current.sql_type, column.sql_type):
            return Column(name, "numeric", "numeric", (int,))  # ints past bigint's range
        if bases == {dt.datetime}:  # with a time zone and without one
            earlier = self._examples[(name, dt.datetime)]
            here = self._find(name, dt.datetime, batch)
            aware = current.copy_type == "timestamptz"
            raise zones_error(
                self.where, name, earlier if aware else here, here if aware else earlier
            )
        return decide(name, bases, self.where, lambda kind: self._examples[(name, kind)])

    def _find(self, name: str, kind: type, batch: Rows) -> str:
        """The first value of ``kind`` in column ``name`` of ``batch``, with its row number."""
        for number, row in enumerate(batch, start=self.rows + 1):
            value = row.get(name)
            if value is not None and issubclass(type(value), kind):
                return f"row {number}: {value!r:.40}"
        return "row ?"

    def _remember(self, column: Column, batch: Rows) -> None:
        self.columns[column.name] = column
        self._bases[column.name] = bases_of(column)
        for kind in bases_of(column):
            if (column.name, kind) not in self._examples:
                self._examples[(column.name, kind)] = self._find(column.name, kind, batch)

    def _alter(self, change: str, column: Column) -> None:
        self.conn.execute(
            sql.SQL("ALTER TABLE {} " + change).format(
                sql.Identifier(self.schema, self.name), sql.Identifier(column.name)
            )
        )


class AppendWriter(_Writer):
    """COPYs every batch into an existing table whose columns are ``table_columns`` (name ->
    SQL type), refusing a key the table does not have."""

    def __init__(
        self,
        where: str,
        context: RunContext,
        conn: _Connection,
        schema: str,
        table: str,
        table_columns: dict[str, str],
    ) -> None:
        super().__init__(where, context, conn, schema, f"{schema}.{table}")
        self.table = table
        self.table_columns = table_columns
        conn.adapters.register_dumper(dict, JsonbDumper)

    def write(self, batch: Rows) -> None:
        names, uniform = row_names(batch, self.where)
        unknown = [name for name in names if name not in self.table_columns]
        if unknown:
            raise BlocError(
                f"{self.where}: the rows have a column {unknown[0]!r}, which table "
                f"{self.label!r} does not have (its columns: {', '.join(self.table_columns)}); "
                "nothing was written. Rename or drop that key with a transformer, or add the "
                "column to the table"
            )
        if not batch:
            return
        # Text COPY: the server parses each value into the column's own type, so a str goes
        # into a date or numeric(10, 2) column as psql would take it, and a value that does not
        # fit is reported by the server with its line and column. (Binary COPY would need the
        # Python value to match the column's type exactly, and psycopg's binary dumper for
        # integer wraps an out-of-range int around instead of refusing it.) dict values, and
        # lists bound for json columns, are sent as JSON.
        json_positions = [
            position
            for position, name in enumerate(names)
            if self.table_columns[name] in ("json", "jsonb")
        ]
        values: Iterator[Sequence[Any]] = row_values(batch, names, uniform)
        if json_positions:
            values = _with_json(values, json_positions)
        self._copy(
            sql.SQL("COPY {} ({}) FROM STDIN").format(
                sql.Identifier(self.schema, self.table),
                sql.SQL(", ").join(map(sql.Identifier, names)),
            ),
            values,
            batch,
            names=names,
            copy_types=None,
            checks=[partial(_text_check, self.conn)] * len(names),
            types={name: self.table_columns[name] for name in names},
            guessed=False,
        )
        self.rows += len(batch)


def _text_check(conn: _Connection, value: Any) -> None:
    if value is not None:
        conn.adapters.get_dumper(type(value), PyFormat.TEXT)
        if isinstance(value, dict | list):
            json.dumps(value)


def _with_json(values: Iterator[Sequence[Any]], positions: list[int]) -> Iterator[Sequence[Any]]:
    for record in values:
        if any(isinstance(record[p], dict | list) for p in positions):
            items = list(record)
            for p in positions:
                if isinstance(items[p], dict | list):
                    items[p] = Jsonb(items[p])
            yield items
        else:
            yield record


def _match_column(text: str, names: list[str]) -> str | None:
    """The column named at the start of a COPY context's tail (names may hold ':' or ',')."""
    matches = [name for name in names if text == name or text.startswith(f"{name}:")]
    return max(matches, key=len) if matches else None
