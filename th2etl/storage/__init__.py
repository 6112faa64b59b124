"""Storage: definitions and run history in PostgreSQL, or in SQLite by default.

:class:`DatabaseStorage` opens the right backend; :class:`~th2etl.storage.base.Storage` is the
documented contract both keep.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from th2etl.storage.base import Storage
from th2etl.storage.database import DatabaseStorage
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
from th2etl.storage.sqlite import SQLiteStorage

if TYPE_CHECKING:
    from th2etl.storage.postgres import PostgresStorage

__all__ = [
    "BlocRecord",
    "BlocRunRecord",
    "DatabaseStorage",
    "InstanceRecord",
    "PipelineRecord",
    "PostgresStorage",
    "RunRecord",
    "RunRecorder",
    "SQLiteStorage",
    "SchedulerRecord",
    "Storage",
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
