"""PostgreSQL backend (psycopg 3). The contract is documented in :mod:`th2etl.storage.base`."""

from __future__ import annotations

import contextlib
import logging
import os
import time
from datetime import datetime
from typing import Any, Self

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict

from th2etl.clock import Clock
from th2etl.configs.settings import check_schema
from th2etl.exceptions import DatabaseUnavailableError, RunStatusError, StorageError
from th2etl.storage._core import TABLES, Conflict, Session
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

    def __init__(
        self,
        conninfo: str,
        *,
        schema: str = "public",
        clock: Clock | None = None,
        connect_timeout: float = 5,
        connect: bool = True,
    ) -> None:
        super().__init__(clock=clock)
        self.schema = check_schema(schema, "schema")
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
        )

    def describe(self) -> str:
        return self._where

    def address(self) -> tuple[str, str]:
        return self._conninfo, self.schema

    def _scrub(self, exc: BaseException) -> str:
        text = str(exc).strip().replace("\n", " ")
        return text.replace(self._password, "***") if self._password else text

    def _connect(self) -> Any:
        try:
            conn = psycopg.connect(
                self._conninfo,
                autocommit=True,
                connect_timeout=self._connect_timeout,
                application_name="th2etl",
                # Notice a server that vanished without closing the socket in about a minute,
                # instead of the operating system's default of hours.
                keepalives=1,
                keepalives_idle=30,
                keepalives_interval=10,
                keepalives_count=3,
            )
            try:
                # Timestamps come back in UTC whatever the server's or role's default.
                conn.execute("SET TIME ZONE 'UTC'")
            except BaseException:
                conn.close()
                raise
        except psycopg.Error as exc:
            raise DatabaseUnavailableError(
                f"cannot connect to {self._where} (timeout {self._connect_timeout}s): "
                f"{self._scrub(exc)}; check that the server runs and that DATABASE_HOST, "
                "DATABASE_PORT, DATABASE_NAME and DATABASE_USER (or DATABASE_URL) are right"
            ) from None
        return conn

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

    def _translate(self, exc: BaseException) -> BaseException:
        if isinstance(exc, psycopg.errors.UniqueViolation):
            return Conflict("unique", str(exc))
        if isinstance(exc, psycopg.errors.ForeignKeyViolation):
            return Conflict("foreign_key", str(exc))
        if isinstance(exc, psycopg.errors.CheckViolation) and "th2etl run status" in str(exc):
            return RunStatusError(
                f"{self._where}: the run state machine refused the change: {self._scrub(exc)}"
            )
        if isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError) and (
            self._conn is None or self._conn.broken
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
