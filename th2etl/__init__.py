"""th2etl: blocs in parallel stages, a database-driven cron scheduler, and a REST API."""

from __future__ import annotations

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

__version__: str  # read from the installed metadata on first use, by __getattr__ below

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


def __getattr__(name: str) -> str:
    # importlib.metadata takes about 20 ms to import: only read the version when asked.
    if name != "__version__":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib.metadata

    try:
        version = importlib.metadata.version("th2etl")
    except importlib.metadata.PackageNotFoundError:  # a source tree that was not installed
        version = "0.0.0"
    globals()["__version__"] = version
    return version
