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

Both stream: the loader yields batches as the server sends rows; the exporter COPYs each batch
as it arrives (:mod:`th2etl.blocs._pg_writer`) and commits only once its input ended, which the
engine allows only after every earlier stage succeeded. A cancelled run, or an attempt past its
``timeout``, cancels the statement in flight on the server and rolls back.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from enum import StrEnum
from functools import partial
from itertools import chain, islice
from typing import IO, TYPE_CHECKING, Any, ClassVar

import psycopg
from psycopg import sql
from psycopg.pq import Format
from psycopg.rows import dict_row

from th2etl._postgres import check_conninfo, check_identifier, connect, describe_conninfo
from th2etl.blocs._pg_columns import quick_names, row_names
from th2etl.blocs._pg_fast import Refused, copy_csv, plan_csv
from th2etl.blocs._pg_interval import delete_interval, interval_bounds, require_interval
from th2etl.blocs._pg_unload import copy_table, unload_csv
from th2etl.blocs._pg_writer import AppendWriter, NewTableWriter, one_line
from th2etl.blocs.base import Bloc, ConfigField, ExporterBloc, LoaderBloc, collect
from th2etl.blocs.files import CsvLoaderBloc
from th2etl.blocs.registry import register_bloc
from th2etl.exceptions import (
    BlocError,
    ConfigurationError,
    DatabaseUnavailableError,
    NotFoundError,
    Th2etlError,
    ValidationError,
)
from th2etl.types import Rows

if TYPE_CHECKING:
    from th2etl.pipelines.context import RunContext

__all__ = ["IfExists", "PostgresExporterBloc", "PostgresLoaderBloc"]

_Connection = psycopg.Connection[Any]
_Fill = Callable[[_Connection, str, str], int]  # creates and fills a table: the rows written


class IfExists(StrEnum):
    """What ``postgres_exporter`` does when its table already exists."""

    FAIL = "fail"
    REPLACE = "replace"
    APPEND = "append"
    REPLACE_INTERVAL = "replace_interval"
    """Replace only the rows of the run's data interval (:mod:`th2etl.blocs._pg_interval`)."""


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
    def _session(self, context: RunContext) -> Iterator[tuple[_Connection, str]]:
        """A connection and its description; any PostgreSQL error becomes a th2etl one.

        While it is open, a cancel of the bloc's attempt (its timeout, the run's cancel) also
        cancels the statement in flight on the server, so a blocked COPY or query ends now.
        """
        conn, database = self._connect()
        unhook = context.on_cancel(conn.cancel_safe)
        try:
            with conn:
                yield conn, database
        except psycopg.errors.QueryCanceled as exc:
            if not context.cancel_requested:
                raise BlocError(
                    f"{self.where}: PostgreSQL ({database}) cancelled the statement: "
                    f"{one_line(str(exc))}; anything written was rolled back"
                ) from None
            raise BlocError(
                f"{self.where}: stopped (the run was cancelled, or the bloc ran past its "
                "timeout); its statement was cancelled on the server and anything written was "
                "rolled back"
            ) from None
        except psycopg.OperationalError as exc:
            raise DatabaseUnavailableError(
                f"{self.where}: the connection to PostgreSQL ({database}) failed: "
                f"{one_line(str(exc))}; anything written was rolled back"
            ) from None
        except psycopg.Error as exc:
            raise BlocError(
                f"{self.where}: PostgreSQL ({database}) refused: {one_line(str(exc))}; "
                "anything written was rolled back"
            ) from None
        finally:
            unhook()

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
        return collect(self.stream(context, [rows]))

    def stream(self, context: RunContext, batches: Iterable[Rows]) -> Iterator[Rows]:
        with self._session(context) as (conn, database):
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
            yield from _fetch_batches(conn, query, params, binary, context.batch_size)

    def write_csv(self, context: RunContext, handle: IO[bytes], delimiter: str) -> int | None:
        """``csv_exporter``'s fast path, when the engine fused this bloc into it: write the rows
        to ``handle`` as the exporter would (:mod:`th2etl.blocs._pg_unload`); return the rows
        written, or None when the exporter must write them from the rows (for any refusal or
        error: reading the rows then fails with this bloc's own message)."""
        try:
            with self._session(context) as (conn, _):
                source = self._source(conn)
                if source is None:
                    return None
                rows = unload_csv(context, conn, *source, handle, delimiter)
                if rows is None:
                    context.logger.info(
                        "%s: the rows are written one by one (a column type, the delimiter, "
                        "the encoding or no rows at all)",
                        self.where,
                    )
                return rows
        except (Th2etlError, psycopg.Error) as exc:
            if context.cancel_requested:
                raise BlocError(
                    f"{self.where}: stopped (the run was cancelled, or the bloc ran past its "
                    "timeout); its statement was cancelled on the server"
                ) from None
            context.logger.info("%s: the rows are written one by one (%s)", self.where, exc)
            return None

    def copy_into(self, context: RunContext, target: _Connection, schema: str, table: str) -> int:
        """``postgres_exporter``'s fast path, when the engine fused this bloc into it: create
        ``schema.table`` on ``target`` and COPY the rows into it as the exporter would
        (:mod:`th2etl.blocs._pg_unload`); return the rows written. Raises
        :class:`~th2etl.blocs._pg_fast.Refused` for any refusal or error: the exporter then
        writes the rows, and reading them fails with this bloc's own message."""
        try:
            with self._session(context) as (conn, _):
                source = self._source(conn)
                if source is None:
                    raise Refused("no such table or column: the general path names it")
                return copy_table(context, conn, *source, target, schema, table)
        except (Th2etlError, psycopg.Error) as exc:
            if context.cancel_requested:
                raise BlocError(
                    f"{self.where}: stopped (the run was cancelled, or the bloc ran past its "
                    "timeout); its statement was cancelled on the server"
                ) from None
            raise Refused(str(exc)) from None

    def _source(self, conn: _Connection) -> tuple[sql.Composed, list[tuple[str, int]]] | None:
        """The FROM clause (and LIMIT) of the rows, and their columns (name, type oid)."""
        schema, table = self._table_config(conn)
        found = _find_table(conn, schema, table)
        if found is None:
            return None
        names = self.config.get("columns") or list(found.columns)
        if any(name not in found.columns for name in names):
            return None
        query = sql.SQL("FROM {}").format(sql.Identifier(schema, table))
        if self.config.get("limit") is not None:
            query = sql.SQL("{} LIMIT {}").format(query, sql.Literal(int(self.config["limit"])))
        return query, [(name, found.columns[name][1]) for name in names]


def _fetch_batches(
    conn: _Connection, query: sql.Composed, params: Any, binary: bool, size: int
) -> Iterator[Rows]:
    """The rows of ``query`` as dicts, in batches of ``size``.

    Measured on 1,000,000 rows x 8 columns (scripts/bench_postgres.py, PostgreSQL 15, psycopg
    3.3): a chunked stream of binary rows into dict_row 1.06 s; the same in text 1.15 s;
    fetchall of binary rows 1.2-1.4 s; a server-side cursor 1.6 s; COPY TO STDOUT (FORMAT
    BINARY) with set_types and Copy.rows() 1.7 s as tuples and 2.4 s as dicts (rows are parsed
    one call at a time). The chunked stream is the fastest and holds one chunk besides a batch.
    """
    with conn.cursor(binary=binary, row_factory=dict_row) as cur:
        if psycopg.capabilities.has_stream_chunked():
            rows = cur.stream(query, params, size=_STREAM_CHUNK)
            while batch := list(islice(rows, size)):
                yield batch
            return
    # libpq older than 17: a server-side cursor keeps memory bounded the same way.
    with (
        conn.transaction(),
        conn.cursor("th2etl_loader", binary=binary, row_factory=dict_row) as named,
    ):
        named.execute(query, params)
        while batch := named.fetchmany(size):
            yield batch


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
            help="When the table exists: fail, replace (atomically), append, or "
            "replace_interval (replace the rows of the run's data interval, atomically)",
        ),
        ConfigField(
            "interval_column",
            "str",
            help="With replace_interval: the date, timestamp or timestamptz column that says "
            "which interval a row belongs to",
        ),
        _DSN_FIELD,
    )
    streams_safely = True  # COPYs batches as they come; commits only once its input ended

    @classmethod
    def check_config(cls, config: dict[str, Any], where: str) -> None:
        if not config.get("source_bloc"):
            raise ValidationError(
                f"{where}: missing required config key 'source_bloc' (the bloc whose rows "
                "are exported, e.g. 'source_bloc': 'clean')"
            )
        cls._check_common(config, where)
        mode, column = config.get("if_exists"), config.get("interval_column")
        if mode == IfExists.REPLACE_INTERVAL.value and not column:
            raise ValidationError(
                f"{where}: if_exists 'replace_interval' needs interval_column, the date or "
                "timestamp column whose value falls in the run's data interval (e.g. "
                "'interval_column': 'order_date')"
            )
        if column and mode != IfExists.REPLACE_INTERVAL.value and "${" not in str(mode):
            raise ValidationError(
                f"{where}: interval_column {column!r} is read only with if_exists "
                f"'replace_interval', not {mode!r}; set if_exists or remove interval_column"
            )

    def run(self, context: RunContext, rows: Rows) -> Rows:
        return collect(self.stream(context, [rows]))

    @classmethod
    def fuses(cls, source: Bloc) -> bool:
        if isinstance(source, PostgresLoaderBloc):
            return True
        return isinstance(source, CsvLoaderBloc) and plan_csv(source) is not None

    def stream(self, context: RunContext, batches: Iterable[Rows]) -> Iterator[Rows]:
        mode = IfExists(self.config["if_exists"])
        if mode is IfExists.REPLACE_INTERVAL:
            require_interval(self.where, context.logical_time)
        fused = getattr(batches, "fused", None)  # the engine fused the source into this bloc
        fill = self._filler(context, fused) if mode in (IfExists.REPLACE, IfExists.FAIL) else None
        if fill is not None:
            fast = self._fast(context, fill, batches, mode)
            if fast is not None:
                yield [{"table": fast[0], "rows": fast[1], "if_exists": mode.value}]
                return
        pending = iter(batches)
        first = next((batch for batch in pending if batch), None)  # waits for the first rows
        if first is not None:  # bad keys are refused before connecting
            names, _ = quick_names(first, self.where) or row_names(first, self.where)
            if not names:
                raise BlocError(
                    f"{self.where}: the {len(first)} rows have no columns (every row is {{}}); "
                    "nothing can be written"
                )
        with self._session(context) as (conn, database):
            schema, table, label, found = self._target(conn, database, mode)
            if found is not None and found.kind not in ("r", "p"):
                raise BlocError(
                    f"{self.where}: {label!r} is not a table (relkind {found.kind!r}, e.g. a "
                    "view); point table_name at a table or a new name"
                )
            if found is None and first is None:
                raise BlocError(
                    f"{self.where}: no rows to export and table {label!r} does not exist, so its "
                    "columns are unknown; create the table first, or check the source bloc"
                )
            rows = chain([first], pending) if first is not None else pending
            replaced = None
            if found is not None and mode is IfExists.REPLACE_INTERVAL:
                column = str(self.config["interval_column"])
                if column not in found.columns:
                    raise BlocError(
                        f"{self.where}: table {label!r} has no interval_column {column!r} (its "
                        f"columns: {', '.join(found.columns)}); nothing was written"
                    )
                bounds = interval_bounds(
                    self.where, context.logical_time, column, found.columns[column][0]
                )
                columns = {name: type_ for name, (type_, _) in found.columns.items()}
                appender = AppendWriter(self.where, context, conn, schema, table, columns)
                with conn.transaction():  # the interval's old rows go only if the new ones came
                    replaced = delete_interval(conn, schema, table, column, bounds)
                    for batch in rows:
                        appender.write(batch)
                written = appender.rows
            elif found is not None and mode is IfExists.APPEND:
                columns = {name: type_ for name, (type_, _) in found.columns.items()}
                appender = AppendWriter(self.where, context, conn, schema, table, columns)
                with conn.transaction():
                    for batch in rows:
                        appender.write(batch)
                written = appender.rows
            elif found is not None and first is None:
                with conn.transaction():  # replace with no rows: empty it, keep its columns
                    for _ in rows:
                        pass  # the end of the input: every earlier stage succeeded
                    conn.execute(sql.SQL("DELETE FROM {}").format(sql.Identifier(schema, table)))
                written = 0
            else:
                written = self._create(context, conn, rows, schema, table, found is not None)
        outcome = {"table": label, "rows": written, "if_exists": mode.value}
        if replaced is not None:
            outcome["replaced"] = replaced
        yield [outcome]

    def _filler(self, context: RunContext, fused: Bloc | None) -> _Fill | None:
        """How the fused source fills a new table itself, if it can."""
        if isinstance(fused, PostgresLoaderBloc):
            return partial(fused.copy_into, context)
        plan = plan_csv(fused) if isinstance(fused, CsvLoaderBloc) else None
        if plan is None:
            return None
        where = self.where
        return lambda conn, schema, table: copy_csv(where, context, conn, schema, table, plan)

    def _fast(
        self, context: RunContext, fill: _Fill, batches: Any, mode: IfExists
    ) -> tuple[str, int] | None:
        """The source's data straight into COPY (:mod:`th2etl.blocs._pg_fast`,
        :mod:`th2etl.blocs._pg_unload`): the label and the rows written, or None when the
        general path must do it (nothing was changed then)."""
        with self._session(context) as (conn, database):
            schema, table, label, found = self._target(conn, database, mode)
            if found is not None and found.kind not in ("r", "p"):
                return None  # the general path says what is wrong
            new = f"_th2etl_new_{uuid.uuid4().hex[:16]}" if found is not None else table
            with conn.transaction():
                try:
                    with conn.transaction():  # a savepoint: a refusal undoes the fast path
                        rows = fill(conn, schema, new)
                except Refused as refused:
                    context.logger.info("%s: the general path writes it (%s)", self.where, refused)
                    return None
                batches.skip(rows)  # the end of the input: every earlier stage succeeded
                if found is not None:
                    conn.execute(sql.SQL("DROP TABLE {}").format(sql.Identifier(schema, table)))
                    conn.execute(
                        sql.SQL("ALTER TABLE {} RENAME TO {}").format(
                            sql.Identifier(schema, new), sql.Identifier(table)
                        )
                    )
        return label, rows

    def _target(
        self, conn: _Connection, database: str, mode: IfExists
    ) -> tuple[str, str, str, _Table | None]:
        """The target's schema, table, label and what is there now (None: no such relation);
        refused when its schema is missing, or when it exists and ``if_exists`` is 'fail'."""
        schema, table = self._table_config(conn)
        label = _label(schema, table)
        _require_schema(conn, schema, self.where, database)
        found = _find_table(conn, schema, table)
        if found is not None and mode is IfExists.FAIL:
            raise self._exists_error(label)
        return schema, table, label, found

    def _exists_error(self, label: str) -> BlocError:
        return BlocError(
            f"{self.where}: table {label!r} already exists and if_exists is 'fail'; nothing was "
            "written. Use if_exists 'replace' or 'append', or another table_name"
        )

    def _create(
        self,
        context: RunContext,
        conn: _Connection,
        rows: Iterator[Rows],
        schema: str,
        table: str,
        replace: bool,
    ) -> int:
        """Create the table (under a temporary name when an old one is replaced), COPY every
        batch, then swap: all in ONE transaction, so a failure, a cancel or a killed process
        (the server rolls back) leaves no half-filled table and no temporary one. Binary COPY
        with the column types set measured fastest (1,000,000 rows x 8 columns: 0.73 s,
        against 1.2 s for text COPY with the types set, 1.55 s typed by each Python value)."""
        label = _label(schema, table)
        new = f"_th2etl_new_{uuid.uuid4().hex[:16]}" if replace else table
        writer = NewTableWriter(self.where, context, conn, schema, new, label)
        try:
            with conn.transaction():
                for batch in rows:
                    writer.write(batch)
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
                f"on it ({one_line(exc.diag.message_detail)}); the table is unchanged. Drop "
                "those objects first, or use if_exists 'append'"
            ) from None
        return writer.rows
