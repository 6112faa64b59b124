"""Where whole runs execute: in a thread of this process, or in worker processes.

The contract every executor keeps is in :mod:`th2etl.executors.base`; ``TH2ETL_EXECUTOR``
chooses one (:func:`make_executor`): ``process`` is the default of the services (``th2etl``,
``th2etl --serve-api``) and of ``th2etl backfill``, ``thread`` of ``th2etl run`` (already a
process of its own) and of embedded use (``Pipeline.run()``, ``load_scheduler_manager()`` or
``Backfill`` in a script).
:mod:`th2etl.executors.dask` sends each run to a Dask cluster.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from th2etl.configs.settings import check_executor
from th2etl.exceptions import ConfigurationError
from th2etl.executors.base import DEFAULT_GRACE, Executor, RunHandle, RunJob, RunSlot
from th2etl.executors.thread import ThreadExecutor

if TYPE_CHECKING:
    from th2etl.clock import Clock
    from th2etl.storage.run_history import RunHistory

__all__ = [
    "DEFAULT_GRACE",
    "Executor",
    "RunHandle",
    "RunJob",
    "RunSlot",
    "ThreadExecutor",
    "make_executor",
]


def make_executor(
    kind: str | Any,
    storage: RunHistory | None,
    *,
    grace: float = DEFAULT_GRACE,
    clock: Clock | None = None,
) -> Executor:
    """The executor ``kind`` names (a ``TH2ETL_EXECUTOR`` value: ``thread``, ``process`` or a
    Dask scheduler address; or a ``distributed.Client``), recording runs in ``storage``.
    Raises ConfigurationError, listing the kinds, for another."""
    if isinstance(kind, str):
        kind = check_executor(kind)
        if kind == "process":
            from th2etl.executors.process import ProcessExecutor

            return ProcessExecutor(storage, grace=grace, clock=clock)
        if kind == "thread":
            return ThreadExecutor(storage, grace=grace, clock=clock)
    from th2etl.executors.dask import DaskExecutor
    from th2etl.storage.coordination import Coordination

    if storage is not None and not isinstance(storage, Coordination):
        raise ConfigurationError(
            f"a Dask executor needs a storage that coordinates runs across processes "
            f"(DatabaseStorage), got {type(storage).__name__}"
        )
    return DaskExecutor(kind, storage, grace=grace, clock=clock)
