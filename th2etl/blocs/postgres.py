"""PostgreSQL blocs: ``postgres_loader`` and ``postgres_exporter``, both over the COPY protocol.

Connection: the bloc's ``dsn`` config when given (a URL or key=value string, usually
``${env:NAME}``), else the database of the settings (``DATABASE_URL`` / ``DATABASE_*``).

``postgres_exporter`` never leaves a table half written:

* ``replace`` creates the new table under a temporary name, COPYs into it, drops the old table
  and renames the new one, all in ONE transaction. Readers see the old table until the commit,
  then the new one; a failure (or a killed process: the server rolls the transaction back)
  leaves the old table and its rows as they were, and no temporary table behind. The new table
  is built from the rows, so the old table's indexes, constraints and grants are not kept; use
  ``append`` on a table you manage yourself.
* ``append`` COPYs in one transaction: every row or none.
* ``fail`` refuses when the table exists and writes nothing.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from enum import StrEnum
from functools import partial
from itertools import islice
from typing import TYPE_CHECKING, Any, ClassVar

import psycopg
from psycopg import sql
from psycopg.adapt import PyFormat
from psycopg.pq import Format
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb, JsonbDumper

from th2etl._postgres import check_conninfo, check_identifier, connect, describe_conninfo
from th2etl.blocs._pg_columns import (
    Column,
    full_columns,
    quick_columns,
    quick_names,
    row_names,
    row_values,
)
from th2etl.blocs.base import ConfigField, ExporterBloc, LoaderBloc
from th2etl.blocs.registry import register_bloc
from th2etl.exceptions import (
    BlocError,
    ConfigurationError,
    DatabaseUnavailableError,
    NotFoundError,
    ValidationError,
)
from th2etl.types import Rows

if TYPE_CHECKING:
    from th2etl.pipelines.context import RunContext

__all__ = ["IfExists", "PostgresExporterBloc", "PostgresLoaderBloc"]

_Connection = psycopg.Connection[Any]


class IfExists(StrEnum):
    """What ``postgres_exporter`` does when its table already exists."""

    FAIL = "fail"
    REPLACE = "replace"
    APPEND = "append"


_DSN_FIELD = ConfigField(
    "dsn",
    "str",
    help="PostgreSQL connection string, e.g. ${env:WAREHOUSE_URL}; "
    "default: the settings' database (DATABASE_URL / DATABASE_*)",
)
_SCHEMA_FIELD = ConfigField(
    "schema", "str", help="The database schema; default: the connection's current schema"
)


class _PostgresBloc:
    """What both blocs share: config checks and the connection."""

    name: str
    bloc_type: ClassVar[str]
    config: dict[str, Any]

    @staticmethod
    def _check_common(config: dict[str, Any], where: str) -> None:
        for key, kind in (("table_name", "table_name"), ("schema", "schema")):
            value = config.get(key)
            if isinstance(value, str) and "${" not in value:
                check_identifier(kind, value, where)
        dsn = config.get("dsn")
        if isinstance(dsn, str) and "${" not in dsn:
            check_conninfo(dsn, f"{where}: config key 'dsn'")

    @property
    def where(self) -> str:
        return f"bloc {self.name!r} ({self.bloc_type})"

    def _conninfo(self) -> str:
        dsn = self.config.get("dsn")
        if dsn:
            check_conninfo(dsn, f"{self.where}: config key 'dsn'")
            return str(dsn)
        from th2etl.configs.settings import get_settings

        settings = get_settings()
        if settings.backend != "postgresql":
            raise ConfigurationError(
                f"{self.where} needs a PostgreSQL database, but none is configured (th2etl "
                f"stores its definitions in SQLite at {settings.sqlite_path}); set DATABASE_URL="
                "postgresql://user:password@host:5432/dbname (or DATABASE_HOST, DATABASE_NAME, "
                "DATABASE_USER, DATABASE_PASSWORD), or give the bloc a 'dsn' config such as "
                "'${env:WAREHOUSE_URL}'"
            )
        return settings.postgres_conninfo()

    @contextmanager
    def _session(self) -> Iterator[tuple[_Connection, str]]:
        """A connection and its description; any PostgreSQL error becomes a th2etl one."""
        conn, database = self._connect()
        try:
            with conn:
                yield conn, database
        except psycopg.OperationalError as exc:
            raise DatabaseUnavailableError(
                f"{self.where}: the connection to PostgreSQL ({database}) failed: "
                f"{_one_line(str(exc))}; anything written was rolled back"
            ) from None
        except psycopg.Error as exc:
            raise BlocError(
                f"{self.where}: PostgreSQL ({database}) refused: {_one_line(str(exc))}; "
                "anything written was rolled back"
            ) from None

    def _connect(self) -> tuple[_Connection, str]:
        conninfo = self._conninfo()
        # Autocommit: catalog reads hold no transaction; writes open explicit ones.
        conn = connect(
            conninfo,
            where=self.where,
            application_name=f"th2etl:{self.name}",
            autocommit=True,
        )
        return conn, describe_conninfo(conninfo)

    def _table_config(self, conn: _Connection) -> tuple[str, str]:
        table = check_identifier("table_name", self.config["table_name"], self.where)
        schema = self.config.get("schema")
        if schema is None:
            schema = conn.execute("SELECT current_schema()").fetchone()[0]  # type: ignore[index]
            if schema is None:
                raise BlocError(
                    f"{self.where}: the connection has no current schema (its search_path "
                    "names no existing schema); set the bloc's 'schema' config"
                )
        return str(schema), table


@dataclass(frozen=True)
class _Table:
    """A relation found in the catalog."""

    kind: str  # pg_class.relkind
    columns: dict[str, tuple[str, int]]  # name -> (type as SQL, type oid), in column order


def _find_table(conn: _Connection, schema: str, table: str) -> _Table | None:
    # Names are compared as data, not parsed: no quoting rule can be fooled.
    found = conn.execute(
        "SELECT c.oid, c.relkind FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE n.nspname = %s AND c.relname = %s",
        (schema, table),
    ).fetchone()
    if found is None:
        return None
    columns = conn.execute(
        "SELECT attname, format_type(atttypid, atttypmod), atttypid FROM pg_attribute"
        " WHERE attrelid = %s AND attnum > 0 AND NOT attisdropped ORDER BY attnum",
        (found[0],),
    ).fetchall()
    return _Table(str(found[1]), {name: (type_, int(oid)) for name, type_, oid in columns})


def _require_schema(conn: _Connection, schema: str, where: str, database: str) -> None:
    found = conn.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", (schema,)).fetchone()
    if found is None:
        raise NotFoundError(
            f"{where}: schema {schema!r} does not exist ({database}); create it "
            f'(CREATE SCHEMA "{schema}") or fix the schema config'
        )


def _label(schema: str, table: str) -> str:
    return f"{schema}.{table}"


# --- postgres_loader ----------------------------------------------------------------------

_STREAM_CHUNK = 5000


@register_bloc
class PostgresLoaderBloc(_PostgresBloc, LoaderBloc):
    bloc_type = "postgres_loader"
    summary = "Loads the rows of a PostgreSQL table (or view)."
    config_fields = (
        ConfigField("table_name", "str", required=True, help="The name of the table to load"),
        _SCHEMA_FIELD,
        ConfigField("columns", "list", help="Load only these columns, in this order"),
        ConfigField("limit", "int", help="Load at most this many rows"),
        _DSN_FIELD,
    )

    @classmethod
    def check_config(cls, config: dict[str, Any], where: str) -> None:
        cls._check_common(config, where)
        columns = config.get("columns")
        if isinstance(columns, list):
            if not columns:
                raise ValidationError(
                    f"{where}: columns is an empty list; name at least one column, "
                    "or leave columns out to load them all"
                )
            for column in columns:
                check_identifier("column name in columns", column, where)
            duplicates = sorted({column for column in columns if columns.count(column) > 1})
            if duplicates:
                raise ValidationError(
                    f"{where}: columns names {duplicates[0]!r} more than once; "
                    "list each column once"
                )
        limit = config.get("limit")
        if isinstance(limit, int) and limit < 0:
            raise ValidationError(
                f"{where}: limit must be 0 or more, got {limit}; leave it out to load every row"
            )

    def run(self, context: RunContext, rows: Rows) -> Rows:
        with self._session() as (conn, database):
            schema, table = self._table_config(conn)
            found = _find_table(conn, schema, table)
            if found is None:
                _require_schema(conn, schema, self.where, database)
                raise NotFoundError(
                    f"{self.where}: table {_label(schema, table)!r} does not exist ({database})"
                    f"; tables in schema {schema!r}: {_list_tables(conn, schema)}"
                )
            names = self.config.get("columns") or list(found.columns)
            unknown = [name for name in names if name not in found.columns]
            if unknown:
                raise ValidationError(
                    f"{self.where}: columns names {unknown[0]!r}, which table "
                    f"{_label(schema, table)!r} does not have; its columns: "
                    f"{', '.join(found.columns)}"
                )
            query = sql.SQL("SELECT {} FROM {}").format(
                sql.SQL(", ").join(map(sql.Identifier, names)), sql.Identifier(schema, table)
            )
            params: tuple[int, ...] = ()
            if self.config.get("limit") is not None:
                query = sql.SQL("{} LIMIT %s").format(query)
                params = (int(self.config["limit"]),)
            # Binary results unless a column's type has no binary loader (an enum, a type from
            # an extension): psycopg would hand such values over as raw bytes, text gives str.
            binary = all(
                conn.adapters.get_loader(found.columns[name][1], Format.BINARY) is not None
                for name in names
            )
            return _fetch_rows(conn, query, params, binary)


def _fetch_rows(conn: _Connection, query: sql.Composed, params: Any, binary: bool) -> Rows:
    """Every row of ``query`` as dicts.

    Measured on 1,000,000 rows x 8 columns (scripts/bench_postgres.py, PostgreSQL 15, psycopg
    3.3): a chunked stream of binary rows into dict_row 1.06 s (640 MB peak); the same in text
    1.15 s; fetchall of binary rows 1.2-1.4 s (930 MB peak: libpq holds the whole result while
    Python builds the rows); a server-side cursor 1.6 s; COPY TO STDOUT (FORMAT BINARY) with
    set_types and Copy.rows() 1.7 s as tuples and 2.4 s as dicts (rows are parsed one call at a
    time). The chunked stream is the fastest and holds one chunk besides the rows.
    """
    with conn.cursor(binary=binary, row_factory=dict_row) as cur:
        if psycopg.capabilities.has_stream_chunked():
            return list(cur.stream(query, params, size=_STREAM_CHUNK))
    # libpq older than 17: a server-side cursor keeps memory bounded the same way.
    out: Rows = []
    with (
        conn.transaction(),
        conn.cursor("th2etl_loader", binary=binary, row_factory=dict_row) as named,
    ):
        named.execute(query, params)
        while batch := named.fetchmany(_STREAM_CHUNK):
            out.extend(batch)
    return out


def _list_tables(conn: _Connection, schema: str, limit: int = 20) -> str:
    names = [
        row[0]
        for row in conn.execute(
            "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE n.nspname = %s AND c.relkind IN ('r', 'p', 'v', 'm', 'f')"
            " ORDER BY c.relname LIMIT %s",
            (schema, limit + 1),
        )
    ]
    if not names:
        return "none"
    shown = ", ".join(names[:limit])
    return shown + (", ..." if len(names) > limit else "")


# --- postgres_exporter ---------------------------------------------------------------------

# "COPY t, line 3, column amount: "abc"" (text) or "COPY t, line 3, column amount" (binary).
_COPY_CONTEXT = re.compile(r", line (\d+), column (.*)$", re.DOTALL)
_CHUNK = 65536  # rows written between two looks at context.cancel_requested


class _Retry(Exception):
    """psycopg refused a value while the column types were guessed: type every value."""


@register_bloc
class PostgresExporterBloc(_PostgresBloc, ExporterBloc):
    bloc_type = "postgres_exporter"
    summary = (
        "Writes its source bloc's rows to a PostgreSQL table with COPY; "
        "replace is atomic, append is all-or-nothing."
    )
    config_fields = (
        ConfigField("table_name", "str", required=True, help="The name of the destination table"),
        _SCHEMA_FIELD,
        ConfigField(
            "if_exists",
            "str",
            default=IfExists.REPLACE.value,
            choices=tuple(mode.value for mode in IfExists),
            help="When the table exists: fail, replace (atomically) or append",
        ),
        _DSN_FIELD,
    )

    @classmethod
    def check_config(cls, config: dict[str, Any], where: str) -> None:
        if not config.get("source_bloc"):
            raise ValidationError(
                f"{where}: missing required config key 'source_bloc' (the bloc whose rows "
                "are exported, e.g. 'source_bloc': 'clean')"
            )
        cls._check_common(config, where)

    def run(self, context: RunContext, rows: Rows) -> Rows:
        mode = IfExists(self.config["if_exists"])
        guess = quick_names(rows, self.where)
        names, uniform = guess or row_names(rows, self.where)
        if rows and not names:
            raise BlocError(
                f"{self.where}: the {len(rows)} rows have no columns (every row is {{}}); "
                "nothing can be written"
            )
        with self._session() as (conn, database):
            schema, table = self._table_config(conn)
            label = _label(schema, table)
            _require_schema(conn, schema, self.where, database)
            found = _find_table(conn, schema, table)
            if found is not None and mode is IfExists.FAIL:
                raise self._exists_error(label)
            if found is not None and found.kind not in ("r", "p"):
                raise BlocError(
                    f"{self.where}: {label!r} is not a table (relkind {found.kind!r}, e.g. a "
                    "view); point table_name at a table or a new name"
                )
            if found is None and not rows:
                raise BlocError(
                    f"{self.where}: no rows to export and table {label!r} does not exist, so its "
                    "columns are unknown; create the table first, or check the source bloc"
                )
            if found is not None and mode is IfExists.APPEND:
                names, uniform = row_names(rows, self.where)
                self._append(context, conn, rows, names, uniform, schema, table, found)
            elif found is not None and not rows:
                with conn.transaction():  # replace with no rows: empty it, keep its columns
                    conn.execute(sql.SQL("DELETE FROM {}").format(sql.Identifier(schema, table)))
            else:
                target = (schema, table, found is not None)
                try:
                    columns = quick_columns(rows, names, uniform, self.where)
                    self._create_and_copy(context, conn, rows, columns, uniform, target, True)
                except _Retry:
                    names, uniform = row_names(rows, self.where)
                    columns = full_columns(rows, names, uniform, self.where)
                    self._create_and_copy(context, conn, rows, columns, uniform, target, False)
        return [{"table": label, "rows": len(rows), "if_exists": mode.value}]

    def _exists_error(self, label: str) -> BlocError:
        return BlocError(
            f"{self.where}: table {label!r} already exists and if_exists is 'fail'; nothing was "
            "written. Use if_exists 'replace' or 'append', or another table_name"
        )

    def _create_and_copy(
        self,
        context: RunContext,
        conn: _Connection,
        rows: Rows,
        columns: list[Column],
        uniform: bool,
        target: tuple[str, str, bool],
        guessed: bool,
    ) -> None:
        schema, table, replace = target
        label = _label(schema, table)
        # The new table gets a temporary name only when an old one must stay readable until the
        # swap. Either way everything happens in one transaction, so a failure, or a killed
        # process (the server rolls back), leaves no half-filled table and no temporary one.
        # Binary COPY with the column types set, because it measured fastest on 1,000,000 rows
        # x 8 columns: 0.73 s, against 1.2 s for text COPY with the types set and 1.55 s for
        # text COPY typed by each Python value (psql's \copy of the same rows as CSV: 1.2 s).
        new = f"_th2etl_new_{uuid.uuid4().hex[:16]}" if replace else table
        names = [column.name for column in columns]
        definition = sql.SQL(", ").join(
            sql.SQL("{} {}").format(sql.Identifier(column.name), sql.SQL(column.sql_type))
            for column in columns
        )
        try:
            with conn.transaction():
                conn.execute(
                    sql.SQL("CREATE TABLE {} ({})").format(sql.Identifier(schema, new), definition)
                )
                self._copy(
                    context,
                    conn,
                    sql.SQL("COPY {} ({}) FROM STDIN (FORMAT BINARY)").format(
                        sql.Identifier(schema, new), sql.SQL(", ").join(map(sql.Identifier, names))
                    ),
                    row_values(rows, names, uniform),
                    rows,
                    label,
                    names=names,
                    copy_types=[column.copy_type for column in columns],
                    checks=[column.check for column in columns],
                    types={column.name: column.sql_type for column in columns},
                    guessed=guessed,
                )
                if replace:
                    conn.execute(sql.SQL("DROP TABLE {}").format(sql.Identifier(schema, table)))
                    conn.execute(
                        sql.SQL("ALTER TABLE {} RENAME TO {}").format(
                            sql.Identifier(schema, new), sql.Identifier(table)
                        )
                    )
        except psycopg.errors.DuplicateTable:
            raise BlocError(
                f"{self.where}: table {label!r} was created by another session while this bloc "
                "was writing it; nothing was written. Run the bloc again"
            ) from None
        except psycopg.errors.DependentObjectsStillExist as exc:
            raise BlocError(
                f"{self.where}: table {label!r} cannot be replaced because other objects depend "
                f"on it ({_one_line(exc.diag.message_detail)}); the table is unchanged. Drop "
                "those objects first, or use if_exists 'append'"
            ) from None

    def _append(
        self,
        context: RunContext,
        conn: _Connection,
        rows: Rows,
        names: list[str],
        uniform: bool,
        schema: str,
        table: str,
        found: _Table,
    ) -> None:
        label = _label(schema, table)
        unknown = [name for name in names if name not in found.columns]
        if unknown:
            raise BlocError(
                f"{self.where}: the rows have a column {unknown[0]!r}, which table {label!r} "
                f"does not have (its columns: {', '.join(found.columns)}); nothing was written. "
                "Rename or drop that key with a transformer, or add the column to the table"
            )
        if not rows:
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
            if found.columns[name][0] in ("json", "jsonb")
        ]
        values: Iterator[Sequence[Any]] = row_values(rows, names, uniform)
        if json_positions:
            values = _with_json(values, json_positions)
        conn.adapters.register_dumper(dict, JsonbDumper)
        with conn.transaction():
            self._copy(
                context,
                conn,
                sql.SQL("COPY {} ({}) FROM STDIN").format(
                    sql.Identifier(schema, table), sql.SQL(", ").join(map(sql.Identifier, names))
                ),
                values,
                rows,
                label,
                names=names,
                copy_types=None,
                checks=[partial(_text_check, conn)] * len(names),
                types={name: found.columns[name][0] for name in names},
                guessed=False,
            )

    def _copy(
        self,
        context: RunContext,
        conn: _Connection,
        statement: sql.Composed,
        values: Iterator[Sequence[Any]],
        rows: Rows,
        label: str,
        *,
        names: list[str],
        copy_types: list[str] | None,
        checks: list[Callable[[Any], None]],
        types: dict[str, str],
        guessed: bool,
    ) -> None:
        """COPY ``values`` (one tuple per row of ``rows``); map any failure to row and column."""
        done = 0
        try:
            with conn.cursor() as cur, cur.copy(statement) as copy:
                if copy_types is not None:
                    copy.set_types(copy_types)
                write = copy.write_row
                # A plain loop over a C iterator: enumerate() or a check per row cost 15-20 %.
                while done < len(rows):
                    for record in islice(values, _CHUNK):
                        write(record)
                    done += _CHUNK
                    if context.cancel_requested:
                        raise BlocError(
                            f"{self.where}: the run was cancelled while writing table "
                            f"{label!r}; nothing was written, the table is unchanged"
                        )
        except psycopg.Error as exc:
            if conn.broken:
                raise  # the connection is gone: _session says so
            if exc.diag.sqlstate is not None:
                raise self._server_error(exc, rows, names, types, label) from None
            if guessed:
                raise _Retry from None
            raise self._client_error(exc, rows, done, names, checks, label) from None
        except (TypeError, ValueError, OverflowError, KeyError) as exc:
            if guessed:
                raise _Retry from None
            raise self._client_error(exc, rows, done, names, checks, label) from None

    def _server_error(
        self,
        exc: psycopg.Error,
        rows: Rows,
        names: list[str],
        types: dict[str, str],
        label: str,
    ) -> BlocError:
        found = _COPY_CONTEXT.search(exc.diag.context or "")
        if found is None:
            return BlocError(
                f"{self.where}: writing to table {label!r} failed: {_one_line(str(exc))}; "
                "nothing was written, the table is unchanged"
            )
        line = int(found.group(1))
        column = _match_column(found.group(2), names)
        if column is None or not 0 < line <= len(rows):
            return BlocError(
                f"{self.where}: row {line} could not be written to table {label!r}: "
                f"{_one_line(exc.diag.message_primary)} ({_one_line(exc.diag.context)}); "
                "nothing was written, the table is unchanged"
            )
        value = rows[line - 1].get(column)
        return BlocError(
            f"{self.where}: row {line}, column {column!r}: value {value!r:.80} does not fit the "
            f"column ({types[column]}) of table {label!r}: "
            f"{_one_line(exc.diag.message_primary)}; nothing was written, the table is unchanged"
        )

    def _client_error(
        self,
        exc: Exception,
        rows: Rows,
        done: int,
        names: list[str],
        checks: list[Callable[[Any], None]],
        label: str,
    ) -> BlocError:
        """psycopg refused a value of the chunk starting at ``done``: find it."""
        for number in range(done, min(done + _CHUNK, len(rows))):
            row = rows[number]
            for name, check in zip(names, checks, strict=True):
                value = row.get(name)
                try:
                    check(value)
                except Exception as detail:
                    return BlocError(
                        f"{self.where}: row {number + 1}, column {name!r}: value {value!r:.80} "
                        f"cannot be written to table {label!r} ({_one_line(str(detail))}); "
                        "nothing was written, the table is unchanged"
                    )
        return BlocError(
            f"{self.where}: a row between {done + 1} and {min(done + _CHUNK, len(rows))} cannot "
            f"be written to table {label!r} ({type(exc).__name__}: {_one_line(str(exc))}); "
            "nothing was written, the table is unchanged"
        )


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


def _one_line(text: str | None) -> str:
    return " ".join((text or "").split())
