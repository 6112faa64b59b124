"""What the API process runs besides HTTP: the scheduler in a thread, and manual runs.

:class:`SchedulerThread` keeps the scheduler manager alive beside the API: when loading or
running the manager fails (the database is down at start-up, say) it logs why, reports
``down`` to ``/health`` and tries again with a growing delay, so the service recovers by
itself. :class:`RunExecutor` runs ``POST /pipelines/{name}/run`` in a thread pool, recorded in
storage, and cancels them on request or at shutdown.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_futures
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from th2etl.clock import Clock, SystemClock
from th2etl.exceptions import Th2etlError
from th2etl.executors import Executor, RunJob, RunSlot, ThreadExecutor
from th2etl.logical_time import LogicalTime
from th2etl.pipelines.pipeline import Pipeline
from th2etl.pipelines.result import RunResult, RunStatus
from th2etl.scheduler.backfill import Backfill
from th2etl.storage.base import Storage
from th2etl.storage.owner import RunOwner
from th2etl.storage.recorder import pipeline_from_snapshot
from th2etl.storage.records import RunRecord

__all__ = ["DatabaseHealth", "HealthProbe", "RunExecutor", "SchedulerThread"]

logger = logging.getLogger("th2etl.api.service")


@dataclass(frozen=True)
class DatabaseHealth:
    """The outcome of one database check."""

    up: bool
    error: str | None
    checked_at: float
    """``time.monotonic()`` when the check began."""


class HealthProbe:
    """Checks the database every ``interval`` seconds in a thread of its own.

    ``/health`` answers from the latest check, so it never waits on a database that does not
    answer (a dead PostgreSQL can take the whole connect timeout) and a flood of health checks
    never reaches the database. A request that finds the database unreachable reports it at
    once (:meth:`report_down`); a check older than ``max_age`` (the probe itself is stuck)
    counts as down.
    """

    def __init__(self, storage: Storage, *, interval: float = 1.0, max_age: float = 15.0):
        self.storage = storage
        self.interval = interval
        self.max_age = max_age
        self._latest: DatabaseHealth | None = None
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def check_now(self) -> DatabaseHealth:
        """Check the database in this thread and keep the result."""
        started = time.monotonic()
        try:
            self.storage.check_connection()
            result = DatabaseHealth(True, None, started)
        except Exception as exc:
            result = DatabaseHealth(False, type(exc).__name__, started)
            if self._latest is None or self._latest.up:
                logger.warning("health probe: the database is down: %s", exc)
        else:
            if self._latest is not None and not self._latest.up:
                logger.info("health probe: the database is back")
        self._keep(result)
        return result

    def _keep(self, result: DatabaseHealth) -> None:
        latest = self._latest
        if latest is None or result.checked_at >= latest.checked_at:
            self._latest = result

    def report_down(self, exc: BaseException) -> None:
        """A request could not reach the database: say so until the next successful check."""
        self._keep(DatabaseHealth(False, type(exc).__name__, time.monotonic()))

    def latest(self) -> DatabaseHealth | None:
        """The latest check, or None when there is none recent enough to trust."""
        latest = self._latest
        if latest is None or time.monotonic() - latest.checked_at > self.max_age:
            return None
        return latest

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="th2etl-health", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while True:
            self.check_now()
            if self._stopping.wait(self.interval):
                return

    def stop(self) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(self.max_age)


class _Manager(Protocol):
    def start(self) -> Any: ...
    def stop(self) -> Any: ...


class SchedulerThread:
    """Runs ``load()``'s scheduler manager in a daemon thread until :meth:`stop`."""

    def __init__(
        self,
        load: Callable[[], _Manager],
        *,
        retry_delay: float = 1.0,
        max_retry_delay: float = 30.0,
    ) -> None:
        self._load = load
        self._retry_delay = retry_delay
        self._max_retry_delay = max_retry_delay
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._manager: _Manager | None = None
        self._running = False
        self.last_error: str | None = None
        self._thread = threading.Thread(target=self._loop, name="th2etl-scheduler", daemon=True)

    def start(self) -> None:
        self._thread.start()

    @property
    def state(self) -> str:
        """``running``, ``starting`` (not up yet, or restarting after an error) or ``stopped``."""
        if not self._thread.is_alive():
            return "stopped"
        return "running" if self._running else "starting"

    def _loop(self) -> None:
        delay = self._retry_delay
        while not self._stopping.is_set():
            try:
                manager = self._load()
                with self._lock:
                    if self._stopping.is_set():
                        return
                    self._manager = manager
                self._running = True
                self.last_error = None
                delay = self._retry_delay
                logger.info("scheduler manager started in the API process")
                manager.start()
                if self._stopping.is_set():
                    return
                self.last_error = "the scheduler manager returned unexpectedly"
                logger.error("%s; starting it again", self.last_error)
            except Exception as exc:  # anything: the API must outlive a scheduler failure
                self.last_error = f"{type(exc).__name__}: {exc}"
                logger.error(
                    "the scheduler failed (%s); trying again in %.3gs", self.last_error, delay
                )
            finally:
                self._running = False
                with self._lock:
                    self._manager = None
            if self._stopping.wait(delay):
                return
            delay = min(delay * 2, self._max_retry_delay)

    def stop(self, timeout: float = 30.0) -> None:
        """Stop the manager and wait up to ``timeout`` seconds for its thread."""
        self._stopping.set()
        deadline = time.monotonic() + timeout
        # Asked again until the thread ends: a stop() that lands just before the manager's
        # start() has begun its loop would otherwise be forgotten.
        while self._thread.is_alive() and time.monotonic() < deadline:
            with self._lock:
                manager = self._manager
            if manager is not None:
                try:
                    manager.stop()
                except Exception:
                    logger.exception("stopping the scheduler manager failed")
            self._thread.join(0.2)
        if self._thread.is_alive():
            logger.warning("the scheduler thread did not stop within %.3gs", timeout)


class RunExecutor:
    """Runs stored pipelines on request (``POST /pipelines/{name}/run``), at most
    ``max_workers`` at a time, on ``executor`` (where whole runs execute; default: threads of
    this process), each recorded in ``storage`` and owned by this service's
    :class:`~th2etl.storage.owner.RunOwner` (which heartbeats for them, and stops one when a
    cancel is asked from any process).

    A run that finds every worker busy waits ``queued`` in the database-wide queue (at most
    ``max_queued`` runs: beyond, :class:`~th2etl.exceptions.QueueFullError`, API 429). Whenever
    a worker frees up, and at each heartbeat, the executor claims the oldest queued run of any
    service on the database (:meth:`Coordination.claim_queued_run`) and runs the definitions
    recorded with it. :meth:`shutdown` drains.
    """

    def __init__(
        self,
        storage: Storage,
        *,
        max_workers: int = 4,
        clock: Clock | None = None,
        max_queued: int = 1000,
        heartbeat_interval: float | None = None,
        started_by: str = "api",
        executor: Executor | None = None,
    ):
        self.storage = storage
        self.clock = clock or SystemClock()
        self.max_workers = max_workers
        self.max_queued = max_queued
        self.started_by = started_by
        self.executor = executor or ThreadExecutor(storage, clock=self.clock)
        self.owner = RunOwner(storage, kind="api", heartbeat_interval=heartbeat_interval)
        # After each heartbeat, queued runs are claimed on a thread of their own: the claim
        # waits for a pooled connection, and API load must never delay the next heartbeat.
        self._fill_wanted = threading.Event()
        self._filler = threading.Thread(target=self._fill_loop, name="th2etl-fill", daemon=True)
        self.owner.after_beat = self._fill_wanted.set
        self._pool = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="th2etl-run")
        self._lock = threading.Lock()
        self._runs: dict[str, tuple[RunSlot, Future[RunResult | None]]] = {}
        self._closed = False

    def start(self) -> None:
        """Start heartbeating (a database that is down is waited for in the background)."""
        self._filler.start()
        self.owner.start(require_database=False)

    def submit(
        self, pipeline_name: str, variables: Mapping[str, Any], *, at: datetime | None = None
    ) -> RunRecord:
        """Record the run now (so it can be read at once) with the definitions it executes,
        ``running`` on a free worker or else ``queued``, and return its record; ``at`` is the
        moment it is for (``${run:...}``, default: its start). Raises what building the
        pipeline raises (NotFound, Validation), ExecutorError when the executor cannot run it,
        and QueueFullError."""
        snapshot = self.storage.definition_snapshot(pipeline_name)
        pipeline = pipeline_from_snapshot(snapshot)
        self.executor.check(pipeline)
        with self._lock:
            free = not self._closed and len(self._runs) < self.max_workers
            record = self.storage.create_run(
                None,
                pipeline.name,
                owner_id=self.owner.instance_id,
                started_by=self.started_by,
                status=RunStatus.RUNNING if free else RunStatus.QUEUED,
                variables=variables,
                definition=snapshot,
                timeout=pipeline.timeout,
                executor=self.executor.kind,
                max_queued=self.max_queued,
                logical_time=None if at is None else LogicalTime.at(at),
            )
            if free:
                self._start(record, pipeline)
        return record

    def fill(self) -> None:
        """Claim queued runs (the oldest first, from any service) while workers are free."""
        while True:
            with self._lock:
                if self._closed or len(self._runs) >= self.max_workers:
                    return
                record = self.storage.claim_queued_run(self.owner.instance_id)
                if record is None:
                    return
                try:
                    pipeline = pipeline_from_snapshot(record.definition or {})
                    self.executor.check(pipeline)
                except Exception as exc:  # its bloc types are gone: it cannot run
                    message = f"the run could not start: {type(exc).__name__}: {exc}"
                    self.storage.finish_run(
                        record.run_id, RunStatus.FAILED, finished_at=self.clock.now(), error=message
                    )
                    continue
                self._start(record, pipeline)

    def _fill_loop(self) -> None:
        while True:
            self._fill_wanted.wait()
            self._fill_wanted.clear()
            if self._closed:
                return
            try:
                self.fill()
            except Exception as exc:
                logger.warning("could not claim a queued run: %s", exc)

    def _start(self, record: RunRecord, pipeline: Pipeline) -> None:
        """Under the lock: run ``record`` on a worker (the executor marks it running), for the
        logical time it was recorded with (its ``at``; none: the moment it starts)."""
        slot = RunSlot(record.run_id)
        self.owner.track(record.run_id, slot)
        job = RunJob(
            record.run_id,
            pipeline,
            variables=record.variables,
            instance_id=self.owner.instance_id,
            logical_time=record.logical_time,
        )
        future = self._pool.submit(self._execute, job, slot)
        self._runs[record.run_id] = (slot, future)
        future.add_done_callback(lambda done: self._finished(record.run_id, done))

    def _execute(self, job: RunJob, slot: RunSlot) -> RunResult | None:
        if slot.cancelled:  # cancelled, or the service stopped, while it waited for a worker
            self._record(job.run_id, RunStatus.CANCELLED, "cancelled before it started")
            return None
        handle = self.executor.submit(job)
        slot.attach(handle)
        result = handle.wait()
        if result is not None and not handle.recorded:
            # The database was away: the owner writes the outcome once it is back.
            status, error = self.owner.outcome(job.run_id, result.status, result.error)
            self.owner.record_later(job.run_id, status, result.finished_at, error)
        return result

    def _finished(self, run_id: str, future: Future[RunResult | None]) -> None:
        with self._lock:
            self._runs.pop(run_id, None)
        self.owner.untrack(run_id)
        if future.cancelled():
            self._record(run_id, RunStatus.CANCELLED, "the service stopped before the run started")
        elif (error := future.exception()) is not None:
            # The executor raises only for programming errors; the run must not stay running.
            logger.error("run %s ended abnormally", run_id, exc_info=error)
            self._record(run_id, RunStatus.FAILED, f"{type(error).__name__}: {error}")
        try:
            self.fill()  # a worker is free: take the next queued run
        except Exception as exc:
            logger.warning("could not claim a queued run: %s", exc)

    def _record(self, run_id: str, status: RunStatus, message: str) -> None:
        try:
            self.storage.finish_run(run_id, status, finished_at=self.clock.now(), error=message)
        except Exception:
            logger.exception("could not record the end of run %s", run_id)

    def cancel(self, run_id: str) -> bool:
        """Cancel a run of this process; False when it is not one (or has finished)."""
        with self._lock:
            entry = self._runs.get(run_id)
        if entry is None:
            return False
        entry[0].cancel()
        return True

    @property
    def active(self) -> int:
        with self._lock:
            return len(self._runs)

    def shutdown(self, grace: float = 30.0) -> None:
        """Drain: stop claiming; cancel the queued runs this service recorded (nobody claimed
        them) and the runs not started yet; give the runs going up to ``grace`` seconds to
        end, then cancel what still runs (the executor stops what ignores its cancel, and
        records it); close the pool, and stop heartbeating."""
        with self._lock:
            self._closed = True
            entries = list(self._runs.values())
        self._fill_wanted.set()  # its thread sees _closed and ends
        try:
            for run in self.storage.active_runs():
                if run.owner_id == self.owner.instance_id and run.status is RunStatus.QUEUED:
                    self.storage.request_cancel(run.run_id, by=f"{self.started_by} (stopping)")
        except Th2etlError as exc:  # the database is away: others abandon them later
            logger.warning("could not cancel the queued runs of this service: %s", exc)
        for slot, _ in entries:
            if slot.handle is None:
                slot.cancel()
        _, pending = wait_futures([future for _, future in entries], timeout=grace)
        if pending:
            logger.warning(
                "%d run(s) still going after %.3gs at shutdown; cancelling them",
                len(pending),
                grace,
            )
            for slot, _ in entries:
                slot.cancel()
            _, pending = wait_futures(pending, timeout=3 * self.executor.grace)
        if pending:
            logger.warning("%d run(s) still going at shutdown; abandoning them", len(pending))
        self._pool.shutdown(wait=not pending, cancel_futures=True)
        self.owner.stop()


class BackfillThreads:
    """Backfills started through the API, each in a thread of its own; cancelled when the
    service stops (their runs end ``cancelled``; the same request later goes on)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._going: dict[Backfill, threading.Thread] = {}

    def start(self, backfill: Backfill) -> None:
        def run() -> None:
            try:
                report = backfill.run()
                logger.info(
                    "backfill of scheduler %r done: %s",
                    backfill.plan.scheduler.name,
                    report.to_dict(),
                )
            except Exception:
                logger.exception("backfill of scheduler %r failed", backfill.plan.scheduler.name)
            finally:
                with self._lock:
                    self._going.pop(backfill, None)

        thread = threading.Thread(
            target=run, name=f"th2etl-backfill-{backfill.plan.scheduler.name}", daemon=True
        )
        with self._lock:
            self._going[backfill] = thread
        thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        with self._lock:
            going = list(self._going.items())
        for backfill, _ in going:
            backfill.cancel()
        for _, thread in going:
            thread.join(timeout)
