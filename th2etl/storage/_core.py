"""What both SQL backends share: connections, SQL templates, migrations.

**Connections.** By default a storage object has one connection, and a lock serialises its
users: SQLite's choice (an embedded file has one writer at a time anyway) and that of a
PostgreSQL storage opened with ``pool_size=1`` (a heartbeat's). A PostgreSQL storage with a
larger ``pool_size`` borrows a connection from a pool for each call instead (see
:mod:`th2etl.storage.postgres`), so that concurrent API requests and runs do not wait for one
another. Either way a transaction (:meth:`SqlCore._session`, :meth:`SqlCore.transaction`) keeps
one connection from BEGIN to COMMIT, and the calls a thread makes inside
:meth:`SqlCore.transaction` use that thread's transaction.

SQL is written once as templates: ``{blocs}`` stands for the quoted (schema-qualified on
PostgreSQL) ``th2etl_blocs`` table and ``%s`` for a parameter; ``column {in_list}`` tests
membership in a list passed as one parameter (:meth:`SqlCore._list_param`), so that the
statement does not change with the list's length. A backend compiles a template
once (identifiers quoted by the driver, ``?`` placeholders for SQLite) and keeps the result.
Templates are built from fixed fragments only; values always travel as parameters.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
import weakref
from abc import abstractmethod
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any, NoReturn, Protocol

from th2etl.clock import Clock, SystemClock
from th2etl.exceptions import (
    DatabaseUnavailableError,
    SchemaVersionError,
    StorageError,
    ValidationError,
)
from th2etl.storage.base import Storage
from th2etl.storage.migrations import LATEST_VERSION, Migration, load_migrations

__all__ = ["TABLES", "Conflict", "Session", "SqlCore", "keep_inherited"]

TABLES = (
    "migrations",
    "revision",
    "blocs",
    "pipelines",
    "pipeline_blocs",
    "triggers",
    "schedulers",
    "runs",
    "bloc_runs",
    "instances",
    "ticks",
    "notification_rules",
    "outbox",
    "schedule_defaults",
)

MAX_STATEMENTS = 256
"""Compiled statements kept per storage object (shared by its pooled connections; psycopg's
own prepared statements are bounded per connection by its ``prepared_max``). Templates are
fixed text: a count never changes one (a list of values is one parameter, ``column
{in_list}``; LIMIT is a parameter), so normal use stays far below this bound."""

_MIGRATIONS_TABLE = """
CREATE TABLE IF NOT EXISTS {migrations} (
    version INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    th2etl_version TEXT NOT NULL,
    applied_at TEXT NOT NULL
)"""


def th2etl_version() -> str:
    from th2etl import __version__

    return __version__


class Conflict(StorageError):
    """A constraint refused a write: ``kind`` is ``"unique"`` or ``"foreign_key"``.

    Internal: the shared code turns it into AlreadyExistsError / InUseError / ValidationError.
    """

    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(detail)
        self.kind = kind


class _Connection(Protocol):
    def execute(self, query: Any, params: Any = ..., /) -> Any: ...
    def close(self) -> None: ...


class Session:
    """One connection, for the duration of one transaction.

    ``pipeline`` (PostgreSQL) queues statements and sends them together: rows are fetched when
    asked for, and :meth:`run` syncs to learn its row count.
    """

    __slots__ = ("_compile", "conn", "pipeline")

    def __init__(
        self, conn: _Connection, compile: Callable[[str], Any], pipeline: Any = None
    ) -> None:
        self.conn = conn
        self._compile = compile
        self.pipeline = pipeline

    def one(self, template: str, params: Sequence[Any] = ()) -> Any:
        """The first row, or None."""
        return self.conn.execute(self._compile(template), params).fetchone()

    def all(self, template: str, params: Sequence[Any] = ()) -> list[Any]:
        return list(self.conn.execute(self._compile(template), params).fetchall())

    def run(self, template: str, params: Sequence[Any] = ()) -> int:
        """Execute; return the number of rows changed."""
        cursor = self.conn.execute(self._compile(template), params)
        if self.pipeline is not None:
            self.pipeline.sync()
        return int(cursor.rowcount)


class _Local(threading.local):
    outer: Session | None = None
    """This thread's open :meth:`SqlCore.transaction`."""


# Storage objects of this process: a child made by os.fork() forgets their connections.
_live: weakref.WeakSet[SqlCore] = weakref.WeakSet()
# What children inherited: kept, never closed nor collected (closing a connection a parent
# shares would end the parent's session).
_inherited: list[Any] = []


def keep_inherited(connections: Any) -> None:
    """In a child made by os.fork(): keep the parent's ``connections`` (a connection, a pool)
    from being closed or collected."""
    if connections is not None:
        _inherited.append(connections)


def _forget_inherited_connections() -> None:
    for storage in list(_live):
        storage._after_fork()


os.register_at_fork(after_in_child=_forget_inherited_connections)


class SqlCore(Storage):
    """Connection handling and value conversion; a backend fills in the abstract hooks."""

    backend: str = ""
    _begin_write = "BEGIN"
    _begin_read: str | None = "BEGIN"
    """How a read-only session begins; None: its statements run on their own (no BEGIN, no
    COMMIT: two round trips fewer), for a backend where a read transaction gives no more
    than that."""

    def __init__(self, *, clock: Clock | None = None, migrate: bool = True) -> None:
        self.clock: Clock = clock or SystemClock()
        self._lock = threading.RLock()
        self._conn: Any = None
        self._compiled: dict[str, Any] = {}
        self._compile_lock = threading.Lock()
        # migrate=False: a process that opened this database (with this th2etl) migrated it
        # already; a worker or a heartbeat connection skips the check and its round trips.
        self._version: int | None = None if migrate else LATEST_VERSION
        self._local = _Local()
        _live.add(self)

    # --- backend hooks ----------------------------------------------------------------------

    @abstractmethod
    def _connect(self) -> Any:
        """A new connection; raises DatabaseUnavailableError when it cannot be made."""

    @abstractmethod
    def _compile_template(self, conn: Any, template: str) -> Any:
        """The template as a statement the driver runs (identifiers quoted, placeholders)."""

    @abstractmethod
    def _translate(self, exc: BaseException, conn: Any = None) -> BaseException:
        """A driver error (raised on ``conn``, if known) as a th2etl error (Conflict,
        DatabaseUnavailableError, StorageError); anything else unchanged."""

    @abstractmethod
    def _connection_lost(self, conn: Any) -> bool:
        """Whether ``conn`` can no longer be used after an error."""

    @abstractmethod
    def _migrate(self, conn: Any) -> int:
        """Bring the schema up to date (serialised across processes); return its version."""

    def _batch(self, conn: Any) -> contextlib.AbstractContextManager[Any]:
        """A context in which statements may be queued and sent together (None: one by one)."""
        return contextlib.nullcontext()

    def _getconn(self) -> tuple[Any, Any]:
        """``(source, connection)`` for this thread alone until :meth:`_putconn`; the default
        is the one connection, under the lock (a pooled backend overrides the three)."""
        self._lock.acquire()
        try:
            return None, self._conn if self._conn is not None else self._connection()
        except BaseException:
            self._lock.release()
            raise

    def _putconn(self, source: Any, conn: Any) -> None:
        self._lock.release()

    def _discard(self, conn: Any) -> None:
        """``conn`` is lost or unusable: the next call must not get it again."""
        if conn is self._conn:
            self._drop_connection()

    def _after_fork(self) -> None:
        """In a child made by os.fork(): forget the parent's connections without closing them
        (the child connects again when it needs to)."""
        keep_inherited(self._conn)
        self._conn = None
        self._lock = threading.RLock()
        self._compile_lock = threading.Lock()
        self._local = _Local()

    @abstractmethod
    def _time_in(self, value: datetime) -> Any: ...

    @abstractmethod
    def _time_out(self, value: Any) -> datetime: ...

    @abstractmethod
    def _json_out(self, value: Any) -> Any: ...

    # --- connection -------------------------------------------------------------------------

    def _connection(self) -> Any:
        if self._conn is None:
            conn = self._connect()
            try:
                if self._version is None:
                    self._version = self._migrate(conn)
            except BaseException as exc:
                conn.close()
                raise self._translate(exc, conn) from exc
            self._conn = conn
        return self._conn

    def _drop_connection(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):  # it is broken already: closing is a courtesy
                conn.close()

    def _compiler(self, conn: Any) -> Callable[[str], Any]:
        def compile(template: str) -> Any:
            compiled = self._compiled.get(template)
            return compiled if compiled is not None else self._compile(conn, template)

        return compile

    def _compile(self, conn: Any, template: str) -> Any:
        compiled = self._compile_template(conn, template)
        with self._compile_lock:  # pooled connections compile from several threads
            if template not in self._compiled and len(self._compiled) >= MAX_STATEMENTS:
                self._compiled.pop(next(iter(self._compiled)))  # the oldest goes
            self._compiled[template] = compiled
        return compiled

    def _list_param(self, values: Sequence[Any]) -> Any:
        """``values`` as the one parameter of ``{in_list}`` (``column {in_list}``)."""
        return list(values)

    @contextmanager
    def _session(self, *, write: bool = True) -> Iterator[Session]:
        """A connection of this thread's, inside BEGIN ... COMMIT (inside this thread's
        :meth:`transaction`, part of it).

        Driver errors come out translated; a lost connection is dropped so that the next call
        connects again.
        """
        outer = self._local.outer
        if outer is not None:
            try:
                yield outer
            except BaseException as exc:
                translated = self._translate(exc, outer.conn)
                if translated is exc:
                    raise
                raise translated from exc
            return
        begin = self._begin_write if write else self._begin_read
        with self._borrowed(begin, batch=begin is not None) as session:
            yield session

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """Every storage call made inside (by this thread) is one transaction: committed when
        the block ends, rolled back entirely when it raises. It keeps one connection: with a
        single connection other threads wait meanwhile, with a pool they use others.

        Keep it short: on SQLite it holds the database's write lock, on PostgreSQL the rows
        it wrote. On PostgreSQL a statement that failed inside it (even one whose error was
        caught) aborts the whole transaction, so let the error end the block.
        """
        if self._local.outer is not None:
            raise StorageError("storage.transaction() is already open; they do not nest")
        with self._borrowed(self._begin_write, batch=False):
            yield

    @contextmanager
    def _borrowed(self, begin: str | None, *, batch: bool) -> Iterator[Session]:
        """A connection of this thread's until the block ends, inside ``begin`` ... COMMIT
        (``begin`` None: each statement commits on its own), with statements queued and sent
        together when ``batch``. Storage calls this thread makes inside the block join it: a
        call of its own would borrow another connection and could wait for the rows this one
        locked."""
        source, conn = self._getconn()
        try:
            with self._batch(conn) if batch else contextlib.nullcontext() as pipeline:
                if begin is not None:
                    conn.execute(begin)
                self._local.outer = session = Session(conn, self._compiler(conn), pipeline)
                try:
                    yield session
                finally:
                    self._local.outer = None
                if begin is not None:
                    conn.execute("COMMIT")
        except BaseException as exc:
            self._raise_failed(conn, exc, in_transaction=begin is not None)
        finally:
            self._putconn(source, conn)

    def _execute(self, template: str, params: Sequence[Any], fetch: int) -> Any:
        """One statement, committed on its own (a single statement is atomic, triggers
        included): ``fetch`` 1 gives the first row, 2 all rows, 0 the number of rows changed.
        The hot path of gets and single-row writes, hence no context manager."""
        outer = self._local.outer
        if outer is not None:
            source, conn = None, outer.conn
        else:
            source, conn = self._getconn()
        try:
            compiled = self._compiled.get(template)
            cursor = conn.execute(
                compiled if compiled is not None else self._compile(conn, template), params
            )
            if fetch == 1:
                return cursor.fetchone()
            if fetch == 2:
                return cursor.fetchall()
            return cursor.rowcount
        except BaseException as exc:
            self._raise_failed(conn, exc, in_transaction=False)
        finally:
            if outer is None:
                self._putconn(source, conn)

    def _one(self, template: str, params: Sequence[Any] = ()) -> Any:
        return self._execute(template, params, 1)

    def _all(self, template: str, params: Sequence[Any] = ()) -> list[Any]:
        return list(self._execute(template, params, 2))

    def _run(self, template: str, params: Sequence[Any] = ()) -> int:
        return int(self._execute(template, params, 0))

    def _raise_failed(self, conn: Any, exc: BaseException, *, in_transaction: bool) -> NoReturn:
        """Clean up after ``exc`` (raised on ``conn``), then raise it, translated."""
        translated = self._translate(exc, conn)
        if self._connection_lost(conn):
            self._discard(conn)
        elif in_transaction:
            try:
                conn.execute("ROLLBACK")
            except Exception:
                self._discard(conn)
        if translated is exc:
            raise exc
        raise translated from exc

    def close(self) -> None:
        with self._lock:
            self._drop_connection()

    def _connected(self) -> bool:
        """Whether a connection is open already (before any call, or after close: no)."""
        return self._conn is not None

    def check_connection(self) -> None:
        had_connection = self._connected()
        try:
            self._one("SELECT 1")
        except DatabaseUnavailableError:
            if not had_connection:
                raise
            # A connection that died while idle (a server restart) says nothing about now.
            self._one("SELECT 1")

    def schema_version(self) -> int:
        if self._version is None:
            source, conn = self._getconn()  # opening migrates
            self._putconn(source, conn)
        assert self._version is not None
        return self._version

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.describe()!r})"

    # --- migrations -------------------------------------------------------------------------

    def _apply_migrations(self, db: Session, run_script: Callable[[str], None]) -> int:
        """Inside the caller's transaction and lock: create the version table, refuse a newer
        schema, apply what is missing and record it. Return the version reached."""
        db.run(_MIGRATIONS_TABLE)
        row = db.one(
            "SELECT version, th2etl_version FROM {migrations} ORDER BY version DESC LIMIT 1"
        )
        current = 0 if row is None else int(row[0])
        if current > LATEST_VERSION:
            raise SchemaVersionError(
                f"the th2etl tables in {self.describe()} are at schema version {current}, "
                f"written by th2etl {row[1]}; this th2etl ({th2etl_version()}) knows versions "
                f"up to {LATEST_VERSION}. Upgrade th2etl to {row[1]} or newer "
                f"(pip install --upgrade 'th2etl>={row[1]}'), or point it at another database"
            )
        migration: Migration
        for migration in load_migrations(self.backend):
            if migration.version <= current:
                continue
            run_script(migration.sql)
            db.run(
                "INSERT INTO {migrations} (version, name, th2etl_version, applied_at) "
                "VALUES (%s, %s, %s, %s)",
                (
                    migration.version,
                    migration.name,
                    th2etl_version(),
                    datetime.now(UTC).isoformat(),
                ),
            )
            current = migration.version
        return current

    # --- values -----------------------------------------------------------------------------

    def _now(self) -> datetime:
        return aware(self.clock.now(), "the storage clock's now()").astimezone(UTC)

    def _time_in_opt(self, value: datetime | None, what: str) -> Any:
        return None if value is None else self._time_in(aware(value, what))

    def _time_out_opt(self, value: Any) -> datetime | None:
        return None if value is None else self._time_out(value)


def aware(value: datetime, what: str) -> datetime:
    """``value`` if it is a timezone-aware datetime, else a ValidationError."""
    if not isinstance(value, datetime):
        raise ValidationError(f"{what} must be a datetime, got {value!r}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValidationError(
            f"{what} {value.isoformat()} has no timezone; pass an aware datetime, "
            "e.g. datetime.now(UTC)"
        )
    return value


def dump_json(value: Any, what: str) -> str:
    """``value`` as JSON text, or a ValidationError naming ``what``."""
    try:
        return json.dumps(value, allow_nan=False, ensure_ascii=False)
    except (TypeError, ValueError) as exc:
        raise ValidationError(
            f"{what} cannot be stored as JSON ({exc}); use strings, numbers, booleans, "
            "null, lists and objects with string keys"
        ) from None
