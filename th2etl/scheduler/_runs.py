"""The runs a scheduler started, from its claim to its recorded end: where they execute
(:class:`ScheduledRuns`), their output folders, and what is owed when the database was away.

A run goes to a thread of the scheduler's pool (the manager's, lent to every scheduler, or one
of its own), which hands it to the run executor (:mod:`th2etl.executors`) and waits for its
end; on a fake clock it runs in the caller's thread. Its final status, when the database did
not take it, is kept (:class:`LostFinish`) and written again at the next heartbeat.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from concurrent.futures import Executor as Pool
from concurrent.futures import Future, ThreadPoolExecutor, wait
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from th2etl import executors
from th2etl.exceptions import ConfigurationError, NotFoundError, StorageError
from th2etl.pipelines.pipeline import Pipeline
from th2etl.pipelines.result import RunResult, RunStatus

if TYPE_CHECKING:
    from th2etl.storage.coordination import Coordination
    from th2etl.storage.owner import RunOwner

logger = logging.getLogger("th2etl.scheduler.scheduler")


FROM_SETTINGS: Any = object()
"""The default of a ``logs_dir`` argument: the ``pipelines_logs_dir`` setting."""


def default_logs_dir() -> Path | None:
    """The ``pipelines_logs_dir`` setting (env ``pipelines_logs_dir`` or ``PIPELINES_LOGS_DIR``)."""
    from th2etl.configs.settings import get_settings

    try:
        return get_settings().pipelines_logs_dir
    except ConfigurationError:  # a bad database variable is not this feature's problem
        env = os.environ
        value = env.get("pipelines_logs_dir") or env.get("PIPELINES_LOGS_DIR")
        return Path(value).expanduser() if value and value.strip() else None


def make_run_dir(logs_dir: Path, scheduler_name: str, scheduled_time: datetime) -> Path:
    """Create ``<logs_dir>/<scheduler>/<YYYYmmdd_HHMMSS>`` (``_2``, ``_3``... if taken)."""
    parent = logs_dir / scheduler_name
    parent.mkdir(parents=True, exist_ok=True)
    stamp = scheduled_time.astimezone(UTC).strftime("%Y%m%d_%H%M%S")
    for number in range(1, 10_000):
        path = parent / (stamp if number == 1 else f"{stamp}_{number}")
        try:
            path.mkdir()  # atomic: two runs (even in two processes) never share a folder
        except FileExistsError:
            continue
        return path
    raise StorageError(f"cannot create a run folder under {parent}: {stamp}_* are all taken")


def with_timeout(pipeline: Pipeline, timeout: float | None) -> Pipeline:
    """``pipeline`` with the schedule's ``timeout`` option, which overrides the pipeline's own
    (the run executor enforces it); ``pipeline`` itself when the option is unset."""
    if timeout is None or timeout == pipeline.timeout:
        return pipeline
    return Pipeline(
        pipeline.name, pipeline.stages, description=pipeline.description, timeout=timeout
    )


class LostFinish(NamedTuple):
    """A run's final status the database did not take (it was away); written again later."""

    run_id: str
    status: RunStatus
    finished_at: datetime
    error: str | None


class Going(executors.RunSlot):
    """A run a scheduler started: its tick and the pool future that waits for it."""

    def __init__(self, run_id: str, scheduled: datetime) -> None:
        super().__init__(run_id)
        self.scheduled = scheduled
        self.future: Future[Any] | None = None


class ScheduledRuns:
    """The runs one scheduler started and what it still owes for them (see the module
    docstring); the scheduler named ``name`` is their one owner."""

    def __init__(self, name: str, max_workers: int) -> None:
        self.name = name
        self.max_workers = max_workers
        self._lock = threading.Lock()
        self._running: dict[str, Going] = {}
        self._lost: list[LostFinish] = []
        self._pool: Pool | None = None
        self._own_pool = False
        self.owner: RunOwner | None = None
        """The manager's RunOwner: it answers for the runs going (a cancel from any process,
        a lapsed lease stop them)."""

    # -- the pool ----------------------------------------------------------------------------

    def use_pool(self, pool: Pool | None) -> None:
        """Wait for runs in ``pool``'s threads, which its giver owns and shuts down (``None``:
        a pool of their own is made when needed)."""
        self._pool = pool
        self._own_pool = False

    def _get_pool(self) -> Pool:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(
                max_workers=self.max_workers, thread_name_prefix=f"th2etl-sched-{self.name}"
            )
            self._own_pool = True
        return self._pool

    def shutdown_pool(self) -> None:
        """Shut down the pool if it is this scheduler's own."""
        if self._own_pool and self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None
            self._own_pool = False

    # -- one run -----------------------------------------------------------------------------

    def begin(self, going: Going, work: Callable[[], Any] | None = None) -> None:
        """Count ``going`` as started; with ``work``, run it in a pool thread (the lock is
        held until registered: the run's own clean-up waits for it)."""
        if self.owner is not None:
            self.owner.track(going.run_id, going)
        with self._lock:
            self._running[going.run_id] = going
            if work is not None:
                going.future = self._get_pool().submit(work)

    def end(self, run_id: str) -> None:
        """The run is over (its outcome recorded, or kept to be written again)."""
        with self._lock:
            self._running.pop(run_id, None)
        if self.owner is not None:
            self.owner.untrack(run_id)

    def execute(
        self,
        job: executors.RunJob,
        going: Going,
        executor: executors.Executor,
        storage: Coordination | None,
    ) -> RunResult:
        """Hand ``job`` to ``executor`` and wait for its end; keep its final status to write
        again when the database did not take it."""
        handle = executor.submit(job)
        going.attach(handle)
        result = handle.wait()
        assert result is not None
        if not handle.recorded and storage is not None:
            finish = LostFinish(result.run_id, result.status, result.finished_at, result.error)
            with self._lock:
                self._lost.append(finish)
        return result

    def record_failure(
        self, storage: Coordination | None, run_id: str, exc: Exception, now: datetime
    ) -> None:
        """The run could not start: record it ``failed`` (later, if the database is away)."""
        if storage is None:
            return
        finish = LostFinish(
            run_id,
            RunStatus.FAILED,
            now,
            f"the run could not start: {type(exc).__name__}: {exc}",
        )
        try:
            storage.finish_run(
                run_id, finish.status, finished_at=finish.finished_at, error=finish.error
            )
        except StorageError as error:
            logger.warning(
                "scheduler %r: cannot record that run %s failed (%s); retrying later",
                self.name,
                run_id,
                error,
            )
            with self._lock:
                self._lost.append(finish)

    def retry_lost_finishes(self, storage: Coordination | None) -> None:
        """Write the final statuses the database missed while it was away."""
        if not self._lost or storage is None:
            return
        with self._lock:
            pending, self._lost = self._lost, []
        for index, finish in enumerate(pending):
            try:
                storage.finish_run(
                    finish.run_id, finish.status, finished_at=finish.finished_at, error=finish.error
                )
            except NotFoundError:  # its row was deleted: nothing is left running
                logger.warning("scheduler %r: run %s is no longer stored", self.name, finish.run_id)
            except StorageError:
                with self._lock:
                    self._lost.extend(pending[index:])
                return

    # -- what is going -----------------------------------------------------------------------

    def busy(self) -> bool:
        with self._lock:
            return bool(self._running)

    def count(self) -> int:
        with self._lock:
            return len(self._running)

    def owes_work(self) -> bool:
        with self._lock:
            return bool(self._running or self._lost)

    def ids(self) -> set[str]:
        """Ids of the runs going and of those whose final status is not written yet."""
        with self._lock:
            return {*self._running, *(f.run_id for f in self._lost)}

    def running(self) -> list[tuple[str, datetime]]:
        with self._lock:
            return [(run_id, going.scheduled) for run_id, going in self._running.items()]

    def cancel(self, run_id: str) -> bool:
        with self._lock:
            going = self._running.get(run_id)
        if going is None:
            return False
        going.cancel()
        return True

    def wait(self, grace: float, executor_grace: float) -> None:
        """Wait ``grace`` seconds for the runs going, then cancel them and wait for the
        executor to stop those that ignore their cancel."""
        with self._lock:
            futures = [g.future for g in self._running.values() if g.future is not None]
        if not futures:
            return
        _, pending = wait(futures, timeout=grace)
        if pending:
            logger.warning(
                "scheduler %r: %d run(s) still going after %.0fs; cancelling them",
                self.name,
                len(pending),
                grace,
            )
            with self._lock:
                going = list(self._running.values())
            for run in going:
                run.cancel()
            # A run that ignores its cancel is stopped by its executor after the executor's
            # grace (a worker is terminated, a thread abandoned): wait that long too.
            wait(pending, timeout=max(grace, 1.0) + 2 * executor_grace)
