"""PostgreSQL backend (psycopg 3). The contract is documented in :mod:`th2etl.storage.base`.

**Connections.** With ``pool_size`` above 1 (``TH2ETL_POOL_SIZE``, default 10) each call
borrows a connection from a :class:`psycopg_pool.ConnectionPool` of at most that many, and a
transaction keeps its connection until COMMIT: concurrent API requests, runs and the scheduler
do not wait for one another. The pool holds one connection when idle and grows while callers
wait. ``pool_size=1`` is one connection serialised by a lock and no pool threads: what a
heartbeat (:meth:`PostgresStorage.reopen`) and a worker process use.

* The pool is opened by the first call. It first connects once by hand, so that an unreachable
  server fails that call at once with its reason (a pool would only retry in the background
  until its timeout), and so that the first opening migrates the schema.
* A connection found lost (a server restart, a network cut) closes the whole pool, whose other
  connections are likely dead too: the next call opens a new one, or reports the server down.
* A call that finds every connection busy for :attr:`PostgresStorage.pool_wait` seconds raises
  :class:`~th2etl.exceptions.DatabaseUnavailableError` naming the pool size.
* :meth:`~PostgresStorage.close` closes the pool; connections still borrowed are closed when
  they are given back. A child made by ``os.fork()`` never uses its parent's connections (see
  :mod:`th2etl.storage._core`); worker processes open storage of their own.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from datetime import datetime
from typing import Any, Self

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict
from psycopg_pool import ConnectionPool, PoolClosed, PoolTimeout

from th2etl.clock import Clock
from th2etl.configs.settings import DEFAULT_POOL_SIZE, check_pool_size, check_schema
from th2etl.exceptions import DatabaseUnavailableError, RunStatusError, StorageError
from th2etl.storage._core import TABLES, Conflict, Session, keep_inherited
from th2etl.storage.database import DatabaseStorage

__all__ = ["PostgresStorage"]

logger = logging.getLogger(__name__)

# pg_advisory_lock(class, hashtext(schema)): one lock per schema, shared by every th2etl.
_LOCK_CLASS = 0x7432_6574
# pg_advisory_xact_lock(class, hashtext(schema)) while a run is queued: the queue bound holds.
_QUEUE_LOCK_CLASS = 0x7432_7175


class PostgresStorage(DatabaseStorage):
    """th2etl's tables in schema ``schema`` of a PostgreSQL database."""

    backend = "postgresql"
    # READ COMMITTED gives each statement a snapshot of its own, inside a transaction or not:
    # a read-only BEGIN ... COMMIT would only add round trips.
    _begin_read = None
    pool_wait = 30.0
    """Seconds a call waits for a pooled connection when all are busy."""

    def __init__(
        self,
        conninfo: str,
        *,
        schema: str = "public",
        clock: Clock | None = None,
        connect_timeout: float = 5,
        connect: bool = True,
        pool_size: int = DEFAULT_POOL_SIZE,
        migrate: bool = True,
    ) -> None:
        super().__init__(clock=clock, migrate=migrate)
        self.schema = check_schema(schema, "schema")
        self.pool_size = check_pool_size(pool_size)
        self._pool: ConnectionPool[psycopg.Connection[Any]] | None = None
        self._pool_stale = False  # a connection was lost: open a new pool
        self._pool_lock = threading.Lock()
        self._conninfo = conninfo
        try:
            params = conninfo_to_dict(conninfo)
        except psycopg.ProgrammingError:
            raise StorageError(
                "the PostgreSQL connection string is malformed; write it as "
                "postgresql://user:password@host:5432/dbname"
            ) from None
        self._password = str(params.get("password") or "")
        host = params.get("host") or os.environ.get("PGHOST") or "localhost"
        self._where = (
            f"PostgreSQL database {params.get('dbname') or '(default)'!r} on "
            f"{host}:{params.get('port') or 5432}, schema {self.schema!r}"
        )
        self._connect_timeout = max(1, round(connect_timeout))
        if connect:
            self.check_connection()

    def reopen(self) -> Self:
        return type(self)(
            self._conninfo,
            schema=self.schema,
            clock=self.clock,
            connect_timeout=self._connect_timeout,
            connect=False,
            pool_size=1,
            migrate=self._version is None,
        )

    def describe(self) -> str:
        return self._where

    def address(self) -> tuple[str, str]:
        return self._conninfo, self.schema

    def _scrub(self, exc: BaseException) -> str:
        text = str(exc).strip().replace("\n", " ")
        return text.replace(self._password, "***") if self._password else text

    def application_name(self) -> str:
        """What ``pg_stat_activity.application_name`` shows for this storage's connections."""
        return f"th2etl storage {self.schema}"[:63]

    def _connect_kwargs(self) -> dict[str, Any]:
        return {
            "autocommit": True,
            "connect_timeout": self._connect_timeout,
            "application_name": self.application_name(),
            # Notice a server that vanished without closing the socket in about a minute,
            # instead of the operating system's default of hours.
            "keepalives": 1,
            "keepalives_idle": 30,
            "keepalives_interval": 10,
            "keepalives_count": 3,
        }

    def _connect(self) -> Any:
        try:
            conn = psycopg.connect(self._conninfo, **self._connect_kwargs())
            try:
                _configure(conn)
            except BaseException:
                conn.close()
                raise
        except psycopg.Error as exc:
            raise self._cannot_connect(exc) from None
        return conn

    def _cannot_connect(self, exc: BaseException) -> DatabaseUnavailableError:
        return DatabaseUnavailableError(
            f"cannot connect to {self._where} (timeout {self._connect_timeout}s): "
            f"{self._scrub(exc)}; check that the server runs and that DATABASE_HOST, "
            "DATABASE_PORT, DATABASE_NAME and DATABASE_USER (or DATABASE_URL) are right"
        )

    # --- the pool (pool_size > 1; see the module docstring) -----------------------------------

    def _getconn(self) -> tuple[Any, Any]:
        if self.pool_size == 1:
            return super()._getconn()
        pool = self._pool
        if pool is None or self._pool_stale:
            pool = self._open_pool()
        try:
            return pool, pool.getconn(self.pool_wait)
        except PoolClosed:  # closed by close(), or replaced after a lost connection, meanwhile
            pool = self._open_pool()
            return pool, pool.getconn(self.pool_wait)
        except PoolTimeout:
            raise self._pool_timeout() from None

    def _putconn(self, source: Any, conn: Any) -> None:
        if source is None:
            super()._putconn(source, conn)
        else:
            source.putconn(conn)  # a closed pool closes it

    def _discard(self, conn: Any) -> None:
        if self.pool_size == 1:
            super()._discard(conn)
            return
        self._pool_stale = True
        with contextlib.suppress(Exception):  # it is broken already: closing is a courtesy
            conn.close()

    def _open_pool(self) -> ConnectionPool[psycopg.Connection[Any]]:
        with self._pool_lock:
            if self._pool is not None and not self._pool_stale:
                return self._pool
            old, self._pool = self._pool, None
            if old is not None:
                old.close()
            probe = self._connect()  # fails now, with the reason, when the server is away
            try:
                if self._version is None:
                    self._version = self._migrate(probe)
            except BaseException as exc:
                raise self._translate(exc, probe) from exc
            finally:
                probe.close()
            pool: ConnectionPool[psycopg.Connection[Any]] = ConnectionPool(
                self._conninfo,
                kwargs=self._connect_kwargs(),
                configure=_configure,
                min_size=1,
                max_size=self.pool_size,
                name=self.application_name(),
                timeout=self.pool_wait,
                num_workers=2,
                open=False,
            )
            try:
                # Its first connection ready before a caller waits: else the waiting caller
                # would make the pool grow by a second one at once.
                pool.open(wait=True, timeout=self.pool_wait)
            except PoolTimeout:  # the server went away since the probe
                pool.close()
                raise self._cannot_connect(
                    TimeoutError(f"no connection within {self.pool_wait:g}s")
                ) from None
            except BaseException:
                pool.close()
                raise
            self._pool, self._pool_stale = pool, False
            return pool

    def _pool_timeout(self) -> DatabaseUnavailableError:
        try:
            self._connect().close()
        except DatabaseUnavailableError as exc:  # the server went away meanwhile
            self._pool_stale = True
            return exc
        return DatabaseUnavailableError(
            f"all {self.pool_size} connections to {self._where} stayed busy for "
            f"{self.pool_wait:g}s; raise TH2ETL_POOL_SIZE (now {self.pool_size}), or look for "
            "long transactions in pg_stat_activity"
        )

    def _connected(self) -> bool:
        if self.pool_size == 1:
            return super()._connected()
        return self._pool is not None and not self._pool_stale

    def close(self) -> None:
        with self._pool_lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.close()
        super().close()

    def _after_fork(self) -> None:
        super()._after_fork()
        keep_inherited(self._pool)
        self._pool = None
        self._pool_lock = threading.Lock()

    def _compile_template(self, conn: Any, template: str) -> Any:
        # FOR KEY SHARE on the blocs a new pipeline names: the lock its foreign keys take
        # anyway, and it makes a concurrent update_bloc (FOR UPDATE) wait until the pipeline
        # is committed, so that it validates the pipeline too.
        names = {table: sql.Identifier(self.schema, f"th2etl_{table}") for table in TABLES}
        return (
            sql.SQL(template)
            .format(
                **names,
                for_update=sql.SQL(" FOR UPDATE"),
                for_share=sql.SQL(" FOR KEY SHARE"),
                # Processes that claim queued runs at once each take a different one.
                skip_locked=sql.SQL(" FOR UPDATE SKIP LOCKED"),
                # Liveness is judged by the server's clock, whatever the hosts' clocks say.
                db_now=sql.SQL("now()"),
                in_list=sql.SQL("= ANY(%s)"),
                db_ago=sql.SQL("(now() - %s * interval '1 second')"),
                db_later=sql.SQL("(now() + %s * interval '1 second')"),
            )
            .as_string(conn)
        )

    def _lock_queue(self, db: Session) -> None:
        db.one("SELECT pg_advisory_xact_lock(%s, hashtext(%s))", (_QUEUE_LOCK_CLASS, self.schema))

    def _batch(self, conn: Any) -> contextlib.AbstractContextManager[Any]:
        # Pipeline mode sends BEGIN with the first query and the writes with COMMIT: a
        # read-then-write transaction costs two round trips instead of one per statement.
        if psycopg.Pipeline.is_supported():
            return conn.pipeline()  # type: ignore[no-any-return]
        return contextlib.nullcontext()

    def _connection_lost(self, conn: Any) -> bool:
        return bool(conn.closed or conn.broken)

    def _translate(self, exc: BaseException, conn: Any = None) -> BaseException:
        if isinstance(exc, psycopg.errors.UniqueViolation):
            return Conflict("unique", str(exc))
        if isinstance(exc, psycopg.errors.ForeignKeyViolation):
            return Conflict("foreign_key", str(exc))
        if isinstance(exc, psycopg.errors.CheckViolation) and "th2etl run status" in str(exc):
            return RunStatusError(
                f"{self._where}: the run state machine refused the change: {self._scrub(exc)}"
            )
        if isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError) and (
            conn is None or conn.closed or conn.broken
        ):
            return DatabaseUnavailableError(
                f"lost the connection to {self._where}: {self._scrub(exc)}; the next call "
                "connects again"
            )
        if isinstance(exc, psycopg.Error):
            return StorageError(f"{self._where}: {type(exc).__name__}: {self._scrub(exc)}")
        return exc

    migration_lock_timeout = 5.0
    """Seconds a migration waits for each table lock before it gives the table back."""
    migration_attempts = 5
    """Tries of a migration that could not get its locks, 1 s, 2 s, 4 s... apart."""

    def _migrate(self, conn: Any) -> int:
        # Two processes opening a fresh database at once: the advisory lock (per schema) lets
        # one create the tables while the other waits, then finds them there.
        conn.execute("SELECT pg_advisory_lock(%s, hashtext(%s))", (_LOCK_CLASS, self.schema))
        try:
            for attempt in range(1, self.migration_attempts + 1):
                try:
                    return self._migrate_once(conn)
                except psycopg.errors.LockNotAvailable:
                    # A long query holds a table: waiting for it would queue every other
                    # session behind the migration's lock. Give way, then try again.
                    if attempt == self.migration_attempts:
                        raise StorageError(
                            f"the th2etl schema in {self.describe()} could not be upgraded: "
                            f"its tables stayed locked by other sessions through "
                            f"{attempt} tries of {self.migration_lock_timeout:g}s each; "
                            "nothing was changed. Find the long transactions in "
                            "pg_stat_activity, or start th2etl again when they end"
                        ) from None
                    logger.warning(
                        "th2etl schema upgrade in %s: tables busy, trying again (%d/%d)",
                        self.describe(),
                        attempt,
                        self.migration_attempts,
                    )
                    time.sleep(min(2.0 ** (attempt - 1), 30.0))
            raise AssertionError("unreachable")
        finally:
            if not conn.broken:
                conn.execute(
                    "SELECT pg_advisory_unlock(%s, hashtext(%s))", (_LOCK_CLASS, self.schema)
                )

    def _migrate_once(self, conn: Any) -> int:
        conn.execute("BEGIN")
        try:
            if (
                conn.execute(
                    "SELECT 1 FROM pg_namespace WHERE nspname = %s", (self.schema,)
                ).fetchone()
                is None
            ):
                conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(self.schema)))
            # Migrations name their tables without a schema; SET LOCAL ends with COMMIT.
            conn.execute(sql.SQL("SET LOCAL search_path TO {}").format(sql.Identifier(self.schema)))
            conn.execute(
                sql.SQL("SET LOCAL lock_timeout = {}").format(
                    sql.Literal(f"{round(self.migration_lock_timeout * 1000)}ms")
                )
            )
            session = Session(conn, lambda template: self._compile_template(conn, template))
            version = self._apply_migrations(session, conn.execute)
            conn.execute("COMMIT")
        except BaseException:
            if not conn.broken:
                conn.execute("ROLLBACK")
            raise
        return version

    def _time_in(self, value: datetime) -> Any:
        return value

    def _time_out(self, value: Any) -> datetime:
        return value  # type: ignore[no-any-return]

    def _json_out(self, value: Any) -> Any:
        return value  # psycopg parses json columns already


def _configure(conn: psycopg.Connection[Any]) -> None:
    # Timestamps come back in UTC whatever the server's or role's default.
    conn.execute("SET TIME ZONE 'UTC'")
