"""Every error th2etl raises on purpose.

The tree::

    Th2etlError
    ├── ConfigurationError (ValueError)      settings, environment, logging configuration
    ├── ValidationError (ValueError)         a definition or input refused before it is used
    │   ├── CronError                        a cron expression or timezone that cannot be used
    │   ├── ProjectFileError                 a definitions file (th2etl apply) that cannot be used
    │   └── ExecutorError                    a run that cannot execute where TH2ETL_EXECUTOR says
    ├── NotFoundError (LookupError)          a named bloc, pipeline, trigger, ... is unknown
    ├── AlreadyExistsError                   a name is taken
    ├── InUseError                           something still referenced by others cannot be deleted
    ├── RunStatusError                       a run's status does not allow the change asked for
    │   └── RunFinishedError                 the run has already ended (its status is terminal)
    ├── QueueFullError                       the database-wide queue of runs is at its limit
    ├── StorageError                         the storage backend failed
    │   ├── DatabaseUnavailableError         the database cannot be reached
    │   └── SchemaVersionError               the database schema is newer than this th2etl
    ├── ExecutorUnavailableError             the run-level executor (a Dask cluster) cannot
    │   (ConnectionError)                    be reached
    ├── BlocError                            a bloc failed while it ran
    │   ├── BlocTimeoutError (TimeoutError)  an attempt ran past the bloc's ``timeout``
    │   └── HttpBlocError                    an HTTP bloc got a bad answer or none
    └── MissingExtraError (ImportError)      an optional feature's packages are not installed

A message names the thing, the offending value, and what to do about it.
"""

from __future__ import annotations

__all__ = [
    "AlreadyExistsError",
    "BlocError",
    "BlocTimeoutError",
    "ConfigurationError",
    "CronError",
    "DatabaseUnavailableError",
    "ExecutorError",
    "ExecutorUnavailableError",
    "HttpBlocError",
    "InUseError",
    "MissingExtraError",
    "NotFoundError",
    "ProjectFileError",
    "QueueFullError",
    "RunFinishedError",
    "RunStatusError",
    "SchemaVersionError",
    "StorageError",
    "Th2etlError",
    "ValidationError",
]


class Th2etlError(Exception):
    """Base class of every error th2etl raises on purpose."""


class ConfigurationError(Th2etlError, ValueError):
    """Settings or environment variables that cannot be used."""


class ValidationError(Th2etlError, ValueError):
    """A definition or an input refused before anything was written or run."""


class CronError(ValidationError):
    """A cron expression or timezone that cannot be used."""


class ProjectFileError(ValidationError):
    """A definitions file that cannot be applied: ``file``, ``line`` (when known) and ``key``
    say where; nothing was applied."""

    def __init__(self, message: str, *, file: str, line: int | None, key: str | None) -> None:
        super().__init__(message)
        self.file = file
        self.line = line
        self.key = key


class ExecutorError(ValidationError):
    """A run refused by its executor before it starts (e.g. a bloc class a worker process
    cannot import)."""


class NotFoundError(Th2etlError, LookupError):
    """A named object does not exist."""


class AlreadyExistsError(Th2etlError):
    """The name is already taken."""


class InUseError(Th2etlError):
    """The object is still used by others and cannot be deleted."""


class RunStatusError(Th2etlError):
    """A run's status does not allow the change asked for (the run state machine refused it)."""


class RunFinishedError(RunStatusError):
    """The run has already ended; ``status`` is its final status."""

    def __init__(self, message: str, status: str) -> None:
        super().__init__(message)
        self.status = status


class QueueFullError(Th2etlError):
    """The database-wide queue of runs waiting for a slot holds ``limit`` runs already."""

    def __init__(self, message: str, limit: int) -> None:
        super().__init__(message)
        self.limit = limit


class StorageError(Th2etlError):
    """The storage backend failed."""


class DatabaseUnavailableError(StorageError, ConnectionError):
    """The database cannot be reached."""


class SchemaVersionError(StorageError):
    """The database was migrated by a newer th2etl than this one."""


class ExecutorUnavailableError(Th2etlError, ConnectionError):
    """The run-level executor cannot take runs: its Dask scheduler does not answer."""


class BlocError(Th2etlError):
    """A bloc failed while it ran."""


class BlocTimeoutError(BlocError, TimeoutError):
    """A bloc attempt ran longer than its ``timeout``."""


class HttpBlocError(BlocError):
    """An HTTP bloc got an error answer, or no answer."""


class MissingExtraError(Th2etlError, ImportError):
    """An optional feature was used without its packages installed."""
