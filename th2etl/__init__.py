"""th2etl: blocs in parallel stages, a database-driven cron scheduler, and a REST API."""

from __future__ import annotations

import importlib.metadata as _metadata

from th2etl.blocs import (
    Bloc,
    ConfigField,
    ExporterBloc,
    LoaderBloc,
    TransformerBloc,
    create_bloc,
    register_bloc,
)
from th2etl.clock import Clock, FakeClock, SystemClock
from th2etl.exceptions import (
    AlreadyExistsError,
    BlocError,
    ConfigurationError,
    InUseError,
    NotFoundError,
    StorageError,
    Th2etlError,
    ValidationError,
)
from th2etl.pipelines import (
    CancelToken,
    Pipeline,
    RunContext,
    RunListener,
    RunResult,
    RunStatus,
    build_example_pipeline,
    run_pipeline,
)
from th2etl.scheduler import (
    CronScheduler,
    CronTrigger,
    MissedTickPolicy,
    OverlapPolicy,
    SchedulerManager,
    load_scheduler_manager,
    schedule_pipeline,
)
from th2etl.storage import DatabaseStorage
from th2etl.types import Row, Rows

try:
    __version__ = _metadata.version("th2etl")
except _metadata.PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.0.0"

__all__ = [
    "AlreadyExistsError",
    "Bloc",
    "BlocError",
    "CancelToken",
    "Clock",
    "ConfigField",
    "ConfigurationError",
    "CronScheduler",
    "CronTrigger",
    "DatabaseStorage",
    "ExporterBloc",
    "FakeClock",
    "InUseError",
    "LoaderBloc",
    "MissedTickPolicy",
    "NotFoundError",
    "OverlapPolicy",
    "Pipeline",
    "Row",
    "Rows",
    "RunContext",
    "RunListener",
    "RunResult",
    "RunStatus",
    "SchedulerManager",
    "StorageError",
    "SystemClock",
    "Th2etlError",
    "TransformerBloc",
    "ValidationError",
    "__version__",
    "build_example_pipeline",
    "create_bloc",
    "load_scheduler_manager",
    "register_bloc",
    "run_pipeline",
    "schedule_pipeline",
]
