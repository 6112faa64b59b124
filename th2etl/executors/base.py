"""Where a whole run executes: the :class:`Executor` contract, shared by every executor.

An executor runs one *recorded* run from start to end, somewhere: in a thread of this process
(:class:`~th2etl.executors.thread.ThreadExecutor`), in a worker process
(:class:`~th2etl.executors.process.ProcessExecutor`), or elsewhere. It is not the engine's
per-bloc ``executor=`` (the :class:`concurrent.futures.Executor` a stage's blocs are submitted
to), which keeps its meaning wherever the run executes. ``TH2ETL_EXECUTOR`` picks one; see
:func:`th2etl.executors.make_executor`.

Semantics, in one place:

* **Submit.** The caller (the owner: the scheduler manager, the API service, ``th2etl run``)
  records the run first, then calls :meth:`Executor.submit` with a :class:`RunJob`, which
  returns a :class:`RunHandle` at once. A job that cannot execute there (a bloc type a worker
  cannot import) is refused by ``submit`` with :class:`~th2etl.exceptions.ExecutorError`,
  before anything runs.
* **Same records everywhere.** Where it executes, the run is first marked ``running`` with
  its ``worker`` (``host:pid``); a run that ended meanwhile (cancelled while queued) is not
  executed. It executes with the storage recorder, so its status, bloc
  results and log lines reach the database exactly as in thread mode; with
  :attr:`RunJob.log_file` the run's log also goes to that file, and the blocs see
  :attr:`RunJob.output_dir`. The caller's ``listeners`` receive the run's events in the
  caller's process (a worker forwards them).
* **Cancel.** :meth:`RunHandle.cancel` asks the run to stop, as a
  :class:`~th2etl.pipelines.CancelToken` does (the run ends ``cancelled``). A run still going
  ``grace`` seconds later is stopped for good: a worker process is terminated (SIGTERM), then
  killed (SIGKILL) ``grace`` seconds after that; a thread cannot be stopped, so it is left to
  finish on its own, its outcome ignored. The run is recorded ``cancelled``, saying so.
* **Abandon.** :meth:`RunHandle.abandon` stops a run whose owner lost its lease (it could not
  renew it in time: see :mod:`th2etl.storage.owner`), so that it is not executing when other
  processes count it abandoned: a worker process is terminated at once (killed a second
  later); a thread is cancelled (it cannot be killed: a bloc that ignores its cancel goes on).
  Whatever the run ends with, it is recorded ``abandoned`` with the owner's reason, the status
  every other process gives it.
* **Timeout.** A run going longer than its pipeline's ``timeout`` (seconds, optional) is
  stopped the same way at once and recorded ``failed``, the message naming the timeout.
* **Crash.** A worker that ends without reporting an outcome (killed, out of memory, crashed)
  leaves its run ``failed`` with the reason (exit code or signal). The caller's process keeps
  running.
* **Outcome.** :meth:`RunHandle.wait` returns the :class:`~th2etl.pipelines.RunResult` (for a
  run stopped or crashed as above, one made by the executor, without bloc results);
  :attr:`RunHandle.recorded` says whether its end reached the storage (False when the database
  was away: the caller writes it again later). The run keeps no rows in memory
  (``keep_outputs=False``): its result counts each bloc's rows and batches, and its rows are
  what its exporters wrote.
"""

from __future__ import annotations

import logging
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from th2etl.clock import Clock, SystemClock
from th2etl.pipelines.cancel import CancelToken
from th2etl.pipelines.context import RunContext
from th2etl.pipelines.result import RunResult, RunStatus

if TYPE_CHECKING:
    from th2etl.logical_time import LogicalTime
    from th2etl.pipelines.listener import RunListener
    from th2etl.pipelines.pipeline import Pipeline
    from th2etl.storage.run_history import RunHistory

__all__ = ["DEFAULT_GRACE", "Executor", "RunHandle", "RunJob", "RunSlot", "as_abandoned"]

logger = logging.getLogger("th2etl.executors")

DEFAULT_GRACE = 10.0
"""Seconds a cancelled run gets to stop, and a terminated worker to exit, before the next step."""


def as_abandoned(result: RunResult, reason: str | None) -> RunResult:
    """``result`` recorded as ``abandoned`` with ``reason`` (its owner lost its lease while it
    went), whatever it ended with; ``result`` itself when ``reason`` is None."""
    if reason is None or result.status is RunStatus.ABANDONED:
        return result
    return replace(result, status=RunStatus.ABANDONED, error=reason)


@dataclass(frozen=True)
class RunJob:
    """One recorded run to execute: everything an executor needs, picklable.

    ``pipeline`` is built from the definitions the run records; ``instance_id`` is its owner;
    ``logical_time`` what ``${run:...}`` reads (default: the run's start). ``note`` is a first
    line for ``log_file``.
    """

    run_id: str
    pipeline: Pipeline
    variables: Mapping[str, Any] = field(default_factory=dict)
    scheduler_name: str | None = None
    trigger_name: str | None = None
    scheduled_time: datetime | None = None
    instance_id: str | None = None
    output_dir: Path | None = None
    log_file: Path | None = None
    note: str | None = None
    logical_time: LogicalTime | None = None

    def context(self) -> RunContext:
        """A context of this run, as its owner's listeners are told it."""
        return RunContext(
            self.pipeline.name,
            run_id=self.run_id,
            scheduler_name=self.scheduler_name,
            trigger_name=self.trigger_name,
            scheduled_time=self.scheduled_time,
            variables=self.variables,
            output_dir=self.output_dir,
            logical_time=self.logical_time,
        )


class RunHandle(ABC):
    """A run submitted to an executor: cancel it, wait for it (see the module docstring)."""

    out_of_process: ClassVar[bool] = False
    """True when the run executes in another process, whose metrics this process counts."""

    def __init__(self, job: RunJob, *, storage: RunHistory | None, grace: float, clock: Clock):
        self.job = job
        self.run_id = job.run_id
        self.storage = storage
        self.grace = grace
        self.clock = clock
        self.worker: str | None = None
        """Where the run executes: ``host:pid`` of a worker process, or a thread's name."""
        self.recorded = False
        self.stopped = False
        """True when the run did not report its own outcome: the executor stopped it (timeout,
        cancel grace) or its worker died. A thread stopped so may still be running."""
        self.lost: str | None = None
        """Why the run is abandoned, once :meth:`abandon` was called."""
        self._result: RunResult | None = None
        self._done = threading.Event()
        self._end_lock = threading.Lock()
        self._started = time.monotonic()

    @abstractmethod
    def cancel(self) -> None:
        """Ask the run to stop; after ``grace`` seconds it is stopped for good. Idempotent."""

    def abandon(self, reason: str) -> None:
        """Stop the run at once, its owner having lost its lease: it ends ``abandoned`` with
        ``reason`` (see the module docstring). By default, a cancel whose outcome is recorded
        as abandoned; an executor that can stop a run at once does so."""
        self.lost = self.lost or reason
        self.cancel()

    def wait(self, timeout: float | None = None) -> RunResult | None:
        """The run's result once it ended; None if it is still going after ``timeout`` s."""
        if not self._done.wait(timeout):
            return None
        return self._result

    def done(self) -> bool:
        return self._done.is_set()

    @property
    def deadline(self) -> float | None:
        """``time.monotonic()`` at which the run is past its pipeline timeout, or None."""
        timeout = self.job.pipeline.timeout
        return None if timeout is None else self._started + timeout

    def _settle(self, result: RunResult, recorded: bool) -> bool:
        """Keep the run's outcome, once: False (and nothing kept) if it already has one."""
        with self._end_lock:
            if self._done.is_set():
                return False
            self._result, self.recorded = result, recorded
            self._done.set()
        self._count(result)
        return True

    def _count(self, result: RunResult) -> None:
        """Count the ended run in this process's metrics, when its recorder did not."""
        if self.out_of_process:
            from th2etl.metrics import METRICS

            METRICS.run_ended_elsewhere(result)  # the worker's own counters die with it

    def _end_without_outcome(self, status: RunStatus, reason: str) -> None:
        """The run was stopped (or its worker died) before it reported an outcome: record
        ``status`` with ``reason`` and keep a result saying so (``abandoned`` with the owner's
        reason first, once the run is abandoned)."""
        if self.lost is not None:
            status, reason = RunStatus.ABANDONED, f"{self.lost}; {reason}"
        now = self.clock.now()
        job = self.job
        result = RunResult(
            run_id=job.run_id,
            pipeline_name=job.pipeline.name,
            status=status,
            started_at=now,
            finished_at=now,
            error=reason,
            scheduler_name=job.scheduler_name,
            scheduled_time=job.scheduled_time,
            variables=dict(job.variables),
        )
        with self._end_lock:
            if self._done.is_set():
                return
        (logger.error if status is RunStatus.FAILED else logger.warning)(
            "run %s of pipeline %r %s: %s", job.run_id, job.pipeline.name, status.value, reason
        )
        recorded = self._record_end(status, reason, now)
        if self._settle(result, recorded):
            self.stopped = True

    def _record_end(self, status: RunStatus, reason: str, now: datetime) -> bool:
        if self.storage is None:
            return True
        try:
            self.storage.append_run_log(self.run_id, f"{now.isoformat()} run {status}: {reason}\n")
            self.storage.finish_run(self.run_id, status, finished_at=now, error=reason)
        except Exception:
            logger.exception("could not record the end of run %s", self.run_id)
            return False
        return True

    def _timeout_reason(self, how: str) -> str:
        pipeline = self.job.pipeline
        return (
            f"the run went on longer than the pipeline timeout of {pipeline.timeout:g}s of "
            f"pipeline {pipeline.name!r}; {how}"
        )


class RunSlot(CancelToken):
    """The cancel token of a run an owner is about to submit, or has submitted: a cancel that
    comes before its handle is passed on when the handle comes (owners submit from a pool
    thread), one that comes after goes to the handle. A :class:`RunOwner
    <th2etl.storage.owner.RunOwner>` tracks it like any token."""

    def __init__(self, run_id: str) -> None:
        super().__init__()
        self.run_id = run_id
        self.handle: RunHandle | None = None
        self.lost: str | None = None
        """Why the run is abandoned (its owner lost its lease), once :meth:`abandon` was called."""
        self._handle_lock = threading.Lock()

    def cancel(self) -> None:
        super().cancel()
        with self._handle_lock:
            handle = self.handle
        if handle is not None:
            handle.cancel()

    def abandon(self, reason: str) -> None:
        """Stop the run at once and have it end ``abandoned`` (:meth:`RunHandle.abandon`)."""
        with self._handle_lock:
            self.lost = self.lost or reason
            handle = self.handle
        super().cancel()
        if handle is not None:
            handle.abandon(reason)

    def attach(self, handle: RunHandle) -> None:
        with self._handle_lock:
            self.handle = handle
            lost = self.lost
        if lost is not None:
            handle.abandon(lost)
        elif self.cancelled:
            handle.cancel()


class Executor(ABC):
    """Executes whole runs; see the module docstring for the contract every executor keeps.

    ``storage`` records the runs (None: not recorded, e.g. ``Pipeline.run()``); ``grace`` is
    the seconds given to a cancelled run, then to a terminated worker.
    """

    kind: ClassVar[str]
    """The ``TH2ETL_EXECUTOR`` value that selects this executor."""

    def __init__(
        self,
        storage: RunHistory | None,
        *,
        grace: float = DEFAULT_GRACE,
        clock: Clock | None = None,
    ) -> None:
        self.storage = storage
        self.grace = grace
        self.clock: Clock = clock if clock is not None else SystemClock()

    @abstractmethod
    def submit(self, job: RunJob, *, listeners: Sequence[RunListener] = ()) -> RunHandle:
        """Start executing ``job`` and return its handle at once (see the module docstring).

        Raises :class:`~th2etl.exceptions.ExecutorError` when the job cannot execute here.
        """

    def check(self, pipeline: Pipeline) -> None:
        """Raise :class:`~th2etl.exceptions.ExecutorError` if ``pipeline`` cannot execute here
        (before its run is recorded). Every pipeline can execute in a thread."""

    def shutdown(self) -> None:
        """Release what the executor holds (worker processes, threads). Runs still going are
        the owner's to cancel or wait for first."""

    def health(self) -> dict[str, Any]:
        """This executor's part of the service's ``/health``, answered at once: ``status``
        ``up``, or ``down`` with an ``error`` when runs cannot be submitted (an executor on a
        remote cluster)."""
        return {"status": "up", "kind": self.kind}

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"
