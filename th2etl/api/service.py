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
from th2etl.logical_time import LogicalTime
from th2etl.pipelines.engine import CancelToken, run_pipeline
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
    ``max_workers`` at a time, each recorded in ``storage`` and owned by this service's
    :class:`~th2etl.storage.owner.RunOwner` (which heartbeats for them, and stops one when a
    cancel is asked from any process).

    A run that finds every worker busy waits ``queued`` in the database-wide queue (at most
    ``max_queued`` runs: beyond, :class:`~th2etl.exceptions.QueueFullError`, API 429). Whenever
    a worker frees up, and at each heartbeat, the executor claims the oldest queued run of any
    service on the database (:meth:`Coordination.claim_queued_run`) and runs the definitions
    recorded with it.
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
    ):
        self.storage = storage
        self.clock = clock or SystemClock()
        self.max_workers = max_workers
        self.max_queued = max_queued
        self.started_by = started_by
        self.owner = RunOwner(storage, kind="api", heartbeat_interval=heartbeat_interval)
        self.owner.after_beat = self.fill
        self._pool = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="th2etl-run")
        self._lock = threading.Lock()
        self._runs: dict[str, tuple[CancelToken, Future[RunResult]]] = {}
        self._closed = False

    def start(self) -> None:
        """Start heartbeating (a database that is down is waited for in the background)."""
        self.owner.start(require_database=False)

    def submit(
        self, pipeline_name: str, variables: Mapping[str, Any], *, at: datetime | None = None
    ) -> RunRecord:
        """Record the run now (so it can be read at once) with the definitions it executes,
        ``running`` on a free worker or else ``queued``, and return its record; ``at`` is the
        moment it is for (``${run:...}``, default: its start). Raises what building the
        pipeline raises (NotFound, Validation), and QueueFullError."""
        snapshot = self.storage.definition_snapshot(pipeline_name)
        pipeline = pipeline_from_snapshot(snapshot)
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
                if not self.storage.mark_running(record.run_id):
                    continue  # cancelled or abandoned while it waited
                try:
                    pipeline = pipeline_from_snapshot(record.definition or {})
                except Exception as exc:  # its bloc types are gone: it cannot run
                    message = f"the run could not start: {type(exc).__name__}: {exc}"
                    self.storage.finish_run(
                        record.run_id, RunStatus.FAILED, finished_at=self.clock.now(), error=message
                    )
                    continue
                self._start(record, pipeline)

    def _start(self, record: RunRecord, pipeline: Pipeline) -> None:
        """Under the lock: run ``record`` on a worker, for the logical time it was recorded
        with (its ``at``; none: the moment it starts)."""
        token = CancelToken()
        self.owner.track(record.run_id, token)
        recorder = self.storage.recorder(
            run_id=record.run_id,
            clock=self.clock,
            instance_id=self.owner.instance_id,
            started_by=record.started_by,
            owner=self.owner,
        )
        future = self._pool.submit(
            run_pipeline,
            pipeline,
            variables=record.variables,
            listeners=[recorder],
            cancel_token=token,
            run_id=record.run_id,
            clock=self.clock,
            logical_time=record.logical_time,
            keep_outputs=False,  # rows go to the exporters, not to the service's memory
        )
        self._runs[record.run_id] = (token, future)
        future.add_done_callback(lambda done: self._finished(record.run_id, done))

    def _finished(self, run_id: str, future: Future[RunResult]) -> None:
        with self._lock:
            self._runs.pop(run_id, None)
        self.owner.untrack(run_id)
        if future.cancelled():
            status, message = RunStatus.CANCELLED, "the service stopped before the run started"
        else:
            error = future.exception()
            if error is not None:
                # The engine raises only for programming errors; the run must not stay running.
                logger.error("run %s ended abnormally", run_id, exc_info=error)
                status, message = RunStatus.FAILED, f"{type(error).__name__}: {error}"
            else:
                status, message = RunStatus.SUCCEEDED, ""
        if message:
            try:
                self.storage.finish_run(run_id, status, finished_at=self.clock.now(), error=message)
            except Exception:
                logger.exception("could not record the end of run %s", run_id)
        try:
            self.fill()  # a worker is free: take the next queued run
        except Exception as exc:
            logger.warning("could not claim a queued run: %s", exc)

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

    def shutdown(self, timeout: float = 30.0) -> None:
        """Stop claiming, cancel the runs still going and the queued runs this service
        recorded (nobody claimed them), wait up to ``timeout`` seconds for the runs, close the
        pool, and stop heartbeating."""
        with self._lock:
            self._closed = True
            entries = list(self._runs.values())
        try:
            for run in self.storage.active_runs():
                if run.owner_id == self.owner.instance_id and run.status is RunStatus.QUEUED:
                    self.storage.request_cancel(run.run_id, by=f"{self.started_by} (stopping)")
        except Th2etlError as exc:  # the database is away: others abandon them later
            logger.warning("could not cancel the queued runs of this service: %s", exc)
        for token, _ in entries:
            token.cancel()
        _, pending = wait_futures([future for _, future in entries], timeout=timeout)
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
