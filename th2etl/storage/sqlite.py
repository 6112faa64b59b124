"""SQLite backend (standard library), th2etl's embedded default.

The contract is documented in :mod:`th2etl.storage.base`; only SQLite's hazards are noted here.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Self

from th2etl.clock import Clock
from th2etl.configs.settings import DEFAULT_POOL_SIZE, check_pool_size
from th2etl.exceptions import DatabaseUnavailableError, RunStatusError, StorageError
from th2etl.storage._core import TABLES, Conflict, Session
from th2etl.storage.database import DatabaseStorage
from th2etl.storage.migrations import sqlite_statements

__all__ = ["SQLiteStorage"]

MIN_SQLITE = (3, 38)
_decode_json = json.JSONDecoder().decode  # json.loads without its per-call checks
# The host's UTC time in the stored text form (isoformat with microseconds), so that it
# compares as text with stored timestamps. {} takes extra strftime modifiers.
_SQLITE_NOW = "strftime('%Y-%m-%dT%H:%M:%f000+00:00', 'now'{})"


class SQLiteStorage(DatabaseStorage):
    """th2etl's tables in a SQLite file (WAL mode, so readers never block the writer)."""

    backend = "sqlite"
    # Take the write lock when the transaction starts: a deferred transaction that reads and
    # then writes can fail with "database is locked" instead of waiting for its turn.
    _begin_write = "BEGIN IMMEDIATE"

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        schema: str | None = None,
        clock: Clock | None = None,
        connect_timeout: float = 5,
        connect: bool = True,
        pool_size: int = DEFAULT_POOL_SIZE,
        migrate: bool = True,
    ) -> None:
        """``schema`` is accepted for symmetry with PostgreSQL and ignored: the tables live
        in the file. ``connect_timeout`` is how long a write waits for another writer.
        ``pool_size`` is checked and ignored: an embedded file has one writer at a time, so
        SQLite storage keeps one connection, and its calls take turns on it."""
        super().__init__(clock=clock, migrate=migrate)
        check_pool_size(pool_size)
        text = os.fspath(path)
        if text.startswith("sqlite:///"):
            text = text.removeprefix("sqlite:///")
        self.path = Path(text).expanduser().absolute()
        self._timeout = connect_timeout
        if connect:
            self.check_connection()

    def reopen(self) -> Self:
        return type(self)(
            self.path,
            clock=self.clock,
            connect_timeout=self._timeout,
            connect=False,
            migrate=self._version is None,
        )

    def describe(self) -> str:
        return f"SQLite database at {self.path}"

    def address(self) -> tuple[str, str]:
        return str(self.path), "public"

    def _connect(self) -> Any:
        if sqlite3.sqlite_version_info < MIN_SQLITE:
            raise StorageError(
                f"th2etl needs SQLite {'.'.join(map(str, MIN_SQLITE))} or newer (RETURNING, "
                f"JSON functions); this Python uses SQLite {sqlite3.sqlite_version}. Use a newer "
                "Python build, or PostgreSQL (set DATABASE_URL)"
            )
        if self.path.is_dir():
            raise DatabaseUnavailableError(
                f"cannot open the SQLite database at {self.path}: it is a folder; set "
                f"TH2ETL_SQLITE_PATH to a file, e.g. {self.path / 'th2etl.db'}"
            )
        if not self.path.parent.is_dir():
            problem = (
                f"{self.path.parent} is a file, not a folder;"
                if self.path.parent.exists()
                else f"folder {self.path.parent} does not exist; create it, or"
            )
            raise DatabaseUnavailableError(
                f"cannot open the SQLite database at {self.path}: {problem} set "
                "TH2ETL_SQLITE_PATH to a file in an existing folder"
            )
        try:
            # isolation_level=None: the driver opens no transactions of its own; ours are
            # explicit BEGIN ... COMMIT. check_same_thread=False: the lock serialises use.
            conn = sqlite3.connect(
                self.path, timeout=self._timeout, isolation_level=None, check_same_thread=False
            )
            self._use_wal(conn)
            # WAL + NORMAL: a commit survives a crash of the process, not of the machine's
            # power, and costs no fsync.
            conn.execute("PRAGMA synchronous=NORMAL")
            # Off by default in SQLite, per connection.
            conn.execute("PRAGMA foreign_keys=ON")
        except sqlite3.Error as exc:
            raise DatabaseUnavailableError(
                f"cannot open the SQLite database at {self.path}: {exc}; check that the file "
                "is a SQLite database and that this user may write to it and its folder"
            ) from None
        return conn

    def _use_wal(self, conn: sqlite3.Connection) -> None:
        # Switching a file to WAL takes an exclusive lock that SQLite does not wait for with
        # the busy timeout: connections opening a fresh file together get "database is
        # locked". Retry until one of them made the switch (it is stored in the file).
        deadline = time.monotonic() + self._timeout
        while True:
            try:
                conn.execute("PRAGMA journal_mode=WAL")
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() > deadline:
                    raise
                time.sleep(0.01)

    def _compile_template(self, conn: Any, template: str) -> Any:
        names = {table: f'"th2etl_{table}"' for table in TABLES}
        # SQLite locks the whole database for a write transaction: no row locks to ask for.
        # The database's clock is this host's: one host shares a SQLite file.
        return template.format(
            **names,
            for_update="",
            for_share="",
            skip_locked="",
            in_list="IN (SELECT value FROM json_each(%s))",
            db_now=_SQLITE_NOW.format(""),
            db_ago=_SQLITE_NOW.format(", '-' || %s || ' seconds'"),
            db_later=_SQLITE_NOW.format(", '+' || %s || ' seconds'"),
        ).replace("%s", "?")

    def _connection_lost(self, conn: Any) -> bool:
        try:
            conn.total_changes  # noqa: B018 - raises once the connection is closed
        except sqlite3.ProgrammingError:
            return True
        return False

    def _translate(self, exc: BaseException, conn: Any = None) -> BaseException:
        if isinstance(exc, sqlite3.IntegrityError):
            name = getattr(exc, "sqlite_errorname", "")
            if name in ("SQLITE_CONSTRAINT_UNIQUE", "SQLITE_CONSTRAINT_PRIMARYKEY"):
                return Conflict("unique", str(exc))
            if name == "SQLITE_CONSTRAINT_FOREIGNKEY":
                return Conflict("foreign_key", str(exc))
            if "th2etl run status" in str(exc):
                return RunStatusError(
                    f"{self.describe()}: the run state machine refused the change: {exc}"
                )
        if isinstance(exc, sqlite3.OperationalError) and "locked" in str(exc):
            return StorageError(
                f"{self.describe()} stayed locked by another writer for more than "
                f"{self._timeout}s; retry, or use PostgreSQL for many concurrent writers"
            )
        if isinstance(exc, sqlite3.Error):
            return StorageError(f"{self.describe()}: {type(exc).__name__}: {exc}")
        return exc

    def _migrate(self, conn: Any) -> int:
        # A migration that rebuilds a table (SQLite cannot drop a constraint in place) runs with
        # foreign keys off, as SQLite's documented procedure says, and checks them before
        # COMMIT. The pragma is a no-op inside a transaction, hence here.
        conn.execute("PRAGMA foreign_keys=OFF")
        # BEGIN IMMEDIATE serialises two processes migrating a fresh file.
        conn.execute("BEGIN IMMEDIATE")
        try:
            session = Session(conn, lambda template: self._compile_template(conn, template))

            def run_script(script: str) -> None:
                # Not executescript(): it would COMMIT first, outside our transaction.
                for statement in sqlite_statements(script):
                    conn.execute(statement)

            version = self._apply_migrations(session, run_script)
            broken = conn.execute("PRAGMA foreign_key_check").fetchone()
            if broken is not None:
                raise StorageError(
                    f"the th2etl schema upgrade of {self.describe()} would break a reference "
                    f"(table {broken[0]}, row {broken[1]} -> {broken[2]}); nothing was changed"
                )
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        finally:
            conn.execute("PRAGMA foreign_keys=ON")
        return version

    def _list_param(self, values: Sequence[Any]) -> Any:
        return json.dumps(list(values))

    # Timestamps are text in UTC with microseconds, so that they compare correctly as text.
    def _time_in(self, value: datetime) -> Any:
        return value.astimezone(UTC).isoformat(timespec="microseconds")

    def _time_out(self, value: Any) -> datetime:
        return datetime.fromisoformat(value)

    def _json_out(self, value: Any) -> Any:
        return _decode_json(value)
