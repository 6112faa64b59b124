"""Storage: definitions and run history in PostgreSQL, or in SQLite by default.

:class:`DatabaseStorage` opens the right backend; :class:`~th2etl.storage.base.Storage` is the
documented contract both keep.
"""

from __future__ import annotations

from th2etl.storage.base import Storage
from th2etl.storage.database import DatabaseStorage
from th2etl.storage.postgres import PostgresStorage
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
