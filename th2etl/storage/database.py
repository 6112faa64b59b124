"""DatabaseStorage: the SQL storage, and the factory that picks its backend."""

from __future__ import annotations

import logging
import os
import re
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from th2etl.clock import Clock
from th2etl.configs.settings import Settings, get_settings
from th2etl.exceptions import Th2etlError
from th2etl.storage._legacy import Legacy
from th2etl.storage._notifications import Notifications
from th2etl.storage._projects import Projects
from th2etl.storage._retention import Retention
from th2etl.storage._schedules import Schedules
from th2etl.storage._ticks import Ticks

if TYPE_CHECKING:
    from th2etl.storage.postgres import PostgresStorage
    from th2etl.storage.sqlite import SQLiteStorage

__all__ = ["DatabaseStorage"]

logger = logging.getLogger("th2etl.storage")
_announced: set[Path] = set()
_announce_lock = threading.Lock()


# A libpq "key=value" conninfo string, e.g. "host=db dbname=etl".
_CONNINFO = re.compile(r"\s*(host|hostaddr|port|dbname|user|service)\s*=")


def _is_postgres(target: str) -> bool:
    return target.startswith(("postgresql://", "postgres://")) or bool(_CONNINFO.match(target))


class DatabaseStorage(Schedules, Ticks, Projects, Retention, Notifications, Legacy):
    """th2etl's storage in PostgreSQL or SQLite; see :class:`~th2etl.storage.base.Storage`.

    ``DatabaseStorage("postgresql://user@host/db", schema="etl")`` opens PostgreSQL (a URL or
    ``key=value`` conninfo), anything else is a SQLite file path (``sqlite:///path`` too).
    ``DatabaseStorage.from_settings(get_settings())`` follows the environment. Opening connects
    and migrates the schema right away unless ``connect=False`` (then the first call does);
    ``migrate=False`` skips the migration check, for a process whose owner has opened the
    database already (a worker). ``pool_size`` (PostgreSQL; ``TH2ETL_POOL_SIZE`` for
    :meth:`from_settings`) bounds the connections callers borrow at once. Use it as a context
    manager to close it::

        with DatabaseStorage.from_settings(get_settings()) as storage:
            storage.create_bloc("load", "csv_loader", config={"file_path": "data.csv"})
    """

    def __new__(cls, target: str | os.PathLike[str], *args: Any, **kwargs: Any) -> DatabaseStorage:
        if cls is DatabaseStorage:
            cls = _backend_for(target)
        return super().__new__(cls)

    @classmethod
    def from_settings(
        cls, settings: Settings | None = None, *, clock: Clock | None = None, connect: bool = True
    ) -> DatabaseStorage:
        """The storage ``settings`` (default: :func:`get_settings`) describe.

        With no database configured this is the embedded SQLite file, and the first time a
        process opens it one log line says so.
        """
        settings = settings or get_settings()
        if settings.backend == "postgresql":
            from th2etl.storage.postgres import PostgresStorage

            storage = PostgresStorage(
                settings.postgres_conninfo(),
                schema=settings.database_schema,
                clock=clock,
                connect=connect,
                pool_size=settings.pool_size,
            )
            if connect:
                try:
                    storage.log_legacy_hint()
                except Th2etlError:  # a hint never keeps storage from opening
                    logger.debug("could not look for th2etl 0.0.x tables", exc_info=True)
            return storage
        from th2etl.storage.sqlite import SQLiteStorage

        if settings.embedded_default:
            with _announce_lock:
                first = settings.sqlite_path not in _announced
                _announced.add(settings.sqlite_path)
            if first:
                logger.info(
                    "no DATABASE_URL or DATABASE_* variables set: using the embedded SQLite "
                    "database at %s (set TH2ETL_SQLITE_PATH to move it, or DATABASE_URL to use "
                    "PostgreSQL)",
                    settings.sqlite_path,
                )
        return SQLiteStorage(settings.sqlite_path, clock=clock, connect=connect)

    def address(self) -> tuple[str, str]:
        """``(target, schema)``: what ``DatabaseStorage(target, schema=schema)`` takes to open
        this same database again, e.g. in a worker process (the target holds the password)."""
        raise NotImplementedError


def _backend_for(target: object) -> type[PostgresStorage] | type[SQLiteStorage]:
    from th2etl.storage.postgres import PostgresStorage
    from th2etl.storage.sqlite import SQLiteStorage

    if isinstance(target, str) and _is_postgres(target):
        return PostgresStorage
    return SQLiteStorage
