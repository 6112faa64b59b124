"""Storage: definitions and run history in PostgreSQL, or in SQLite by default.

:class:`DatabaseStorage` opens the right backend; :class:`~th2etl.storage.base.Storage` is the
documented contract both keep, made of roles (:class:`DefinitionStore`, :class:`RunHistory`,
:class:`Coordination`) that callers ask for separately.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from th2etl.storage.base import Storage
from th2etl.storage.connection import StorageConnection
from th2etl.storage.coordination import Coordination
from th2etl.storage.database import DatabaseStorage
from th2etl.storage.definition_store import DefinitionStore
from th2etl.storage.recorder import RunRecorder, build_pipeline
from th2etl.storage.records import (
    BlocRecord,
    BlocRunRecord,
    InstanceRecord,
    PipelineRecord,
    RunRecord,
    SchedulerRecord,
    TriggerRecord,
)
from th2etl.storage.run_history import RunHistory
from th2etl.storage.sqlite import SQLiteStorage

if TYPE_CHECKING:
    from th2etl.storage.postgres import PostgresStorage

__all__ = [
    "BlocRecord",
    "BlocRunRecord",
    "Coordination",
    "DatabaseStorage",
    "DefinitionStore",
    "InstanceRecord",
    "PipelineRecord",
    "PostgresStorage",
    "RunHistory",
    "RunRecord",
    "RunRecorder",
    "SQLiteStorage",
    "SchedulerRecord",
    "Storage",
    "StorageConnection",
    "TriggerRecord",
    "build_pipeline",
]


def __getattr__(name: str) -> object:
    # psycopg takes about 60 ms to import: load it when PostgreSQL is used, not on
    # `import th2etl` (DatabaseStorage imports the backend it opens).
    if name == "PostgresStorage":
        from th2etl.storage.postgres import PostgresStorage

        return PostgresStorage
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
