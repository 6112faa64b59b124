"""The engine: runs a pipeline's stages in order and the blocs of a stage in parallel.

Semantics, in one place:

* The blocs of a stage are submitted together to a :class:`concurrent.futures.Executor` (a
  thread pool sized to the widest stage unless one is given). The next stage starts only when
  every bloc of the current one succeeded.
* When a bloc fails for good, the other blocs of its stage still finish (with their retries),
  no later stage starts (their blocs are ``skipped``) and the run is ``failed``.
* ``retries``: a failed attempt is tried again after ``retry_delay`` seconds, doubling each time.
* ``timeout``: an attempt running longer fails with :class:`BlocTimeoutError`. Python cannot
  kill a thread: the attempt's thread is abandoned (its result ignored) and finishes on its own.
* Cancellation (:meth:`CancelToken.cancel`, from any thread): blocs and retries not yet started
  never start; running blocs see ``context.cancel_requested`` and are awaited; the run ends
  ``cancelled``.
* A bloc's input: the rows of its ``source_bloc`` (several concatenated in the order given), or
  else the rows of every bloc of the previous stage, concatenated in stage order.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
import traceback
from collections.abc import Mapping, Sequence
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import Any

from th2etl.blocs.base import Bloc
from th2etl.clock import Clock, SystemClock
from th2etl.exceptions import BlocError, BlocTimeoutError
from th2etl.logical_time import LogicalTime
from th2etl.pipelines.context import RunContext
from th2etl.pipelines.pipeline import Pipeline
from th2etl.pipelines.result import BlocResult, BlocStatus, RunResult, RunStatus
from th2etl.types import Rows

__all__ = ["CancelToken", "RunListener", "run_pipeline"]

logger = logging.getLogger(__name__)
_SYSTEM_CLOCK = SystemClock()


class CancelToken:
    """Cancels a run from another thread: ``token.cancel()``."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self._lock = threading.Lock()
        self._wakeups: list[queue.SimpleQueue[object]] = []

    def cancel(self) -> None:
        """Ask the run to stop; idempotent."""
        with self._lock:
            self._event.set()
            for wakeup in self._wakeups:
                wakeup.put(self)

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    def _subscribe(self, wakeup: queue.SimpleQueue[object]) -> None:
        with self._lock:
            self._wakeups.append(wakeup)
            if self._event.is_set():
                wakeup.put(self)

    def _unsubscribe(self, wakeup: queue.SimpleQueue[object]) -> None:
        with self._lock:
            self._wakeups.remove(wakeup)


class RunListener:
    """Receives a run's events, in the engine's coordinating thread; override what you need.

    Storage records runs through a listener; the CLI shows live progress through one. An
    exception raised by a listener is logged and does not change the run.
    """

    def run_started(self, context: RunContext, pipeline: Pipeline) -> None:
        """The run begins (before any bloc)."""

    def bloc_started(self, context: RunContext, bloc: Bloc, attempt: int) -> None:
        """An attempt of ``bloc`` was submitted."""

    def bloc_finished(self, context: RunContext, result: BlocResult) -> None:
        """A bloc reached its final status."""

    def run_finished(self, context: RunContext, result: RunResult) -> None:
        """The run ended; ``result`` is final."""


class _Slot:
    """One bloc's progress within its stage."""

    __slots__ = ("bloc", "deadline", "future", "inputs", "result", "retry_at", "t0")

    def __init__(self, bloc: Bloc, result: BlocResult, inputs: Rows) -> None:
        self.bloc = bloc
        self.result = result
        self.inputs = inputs
        self.future: Future[Rows] | None = None
        self.deadline: float | None = None
        self.retry_at: float | None = None
        self.t0 = time.perf_counter()


def _call_bloc(bloc: Bloc, context: RunContext, rows: Rows) -> Rows:
    output = bloc.run(context, rows)
    if not isinstance(output, list):
        raise BlocError(
            f"bloc {bloc.name!r} ({bloc.bloc_type}) returned {type(output).__name__}; "
            "run() must return a list of dicts (return [] for no rows)"
        )
    if output and not isinstance(output[0], dict):
        raise BlocError(
            f"bloc {bloc.name!r} ({bloc.bloc_type}) returned a list of "
            f"{type(output[0]).__name__}; run() must return a list of dicts"
        )
    return output


def _concat(parts: Sequence[Rows]) -> Rows:
    if len(parts) == 1:
        return parts[0]  # shared, not copied: blocs must not modify their input rows
    rows: Rows = []
    for part in parts:
        rows.extend(part)
    return rows


class _Run:
    def __init__(
        self,
        pipeline: Pipeline,
        context: RunContext,
        executor: Executor | None,
        listeners: Sequence[RunListener],
        cancel_token: CancelToken,
        clock: Clock,
    ) -> None:
        self.pipeline = pipeline
        self.context = context
        self.listeners = listeners
        self.cancel = cancel_token
        self.clock = clock
        self.own_executor = executor is None
        self.executor = executor or self._make_executor()
        self.results: dict[str, BlocResult] = {}
        self.wakeup: queue.SimpleQueue[object] = queue.SimpleQueue()

    def _make_executor(self) -> ThreadPoolExecutor:
        widest = max(len(stage) for stage in self.pipeline.stages)
        # Room for retries of timed-out attempts, whose threads may still be busy.
        spare = sum(b.retries for b in self.pipeline.blocs.values() if b.timeout is not None)
        return ThreadPoolExecutor(
            max_workers=min(widest + spare, 64),
            thread_name_prefix=f"th2etl-{self.pipeline.name}",
        )

    def notify(self, event: str, *args: Any) -> None:
        for listener in self.listeners:
            try:
                getattr(listener, event)(self.context, *args)
            except Exception:
                logger.exception("run listener %r failed on %s", listener, event)

    def execute(self) -> RunResult:
        started = self.clock.now()
        if self.context.logical_time is None:  # a manual run is for the moment it starts
            self.context.logical_time = LogicalTime.at(self.context.scheduled_time or started)
        self.notify("run_started", self.pipeline)
        status = RunStatus.SUCCEEDED
        error: str | None = None
        self.cancel._subscribe(self.wakeup)
        try:
            previous: list[str] = []
            for number, stage in enumerate(self.pipeline.stages, start=1):
                if status is not RunStatus.SUCCEEDED or self.cancel.cancelled:
                    if status is RunStatus.SUCCEEDED:
                        status, error = RunStatus.CANCELLED, "the run was cancelled"
                    final = (
                        BlocStatus.SKIPPED if status is RunStatus.FAILED else BlocStatus.CANCELLED
                    )
                    for bloc in stage:
                        self._finish(BlocResult(bloc.name, bloc.bloc_type, number, final))
                    continue
                failed = self._run_stage(number, stage, previous)
                if failed is not None:
                    status = RunStatus.FAILED
                    error = (
                        f"bloc {failed.name!r} failed: {failed.error_type}: {failed.error_message}"
                    )
                elif self.cancel.cancelled:
                    status, error = RunStatus.CANCELLED, "the run was cancelled"
                previous = [bloc.name for bloc in stage]
        finally:
            self.cancel._unsubscribe(self.wakeup)
            if self.own_executor:
                self.executor.shutdown(wait=False, cancel_futures=True)
        result = RunResult(
            run_id=self.context.run_id,
            pipeline_name=self.pipeline.name,
            status=status,
            started_at=started,
            finished_at=self.clock.now(),
            blocs=self.results,
            error=error,
            scheduler_name=self.context.scheduler_name,
            scheduled_time=self.context.scheduled_time,
            variables=self.context.variables,
            outputs=self.context.outputs,
        )
        level = logging.INFO if result.succeeded else logging.WARNING
        logger.log(
            level,
            "run %s of pipeline %r %s in %.3fs",
            result.run_id,
            result.pipeline_name,
            status.value,
            result.duration,
        )
        self.notify("run_finished", result)
        return result

    def _inputs(self, bloc: Bloc, previous: list[str]) -> Rows:
        names = bloc.source_blocs or previous
        return _concat([self.context.get_output(name) for name in names])

    def _run_stage(self, number: int, stage: list[Bloc], previous: list[str]) -> BlocResult | None:
        active: list[_Slot] = []
        for bloc in stage:
            result = BlocResult(bloc.name, bloc.bloc_type, number, BlocStatus.RUNNING)
            result.started_at = self.clock.now()
            try:
                slot = _Slot(
                    bloc.resolved(self.context.variables, self.context.logical_time), result, []
                )
                slot.inputs = self._inputs(bloc, previous)
            except Exception as exc:  # a missing ${env:...} fails this bloc, not the engine
                result.attempts = 1
                self._fail(_Slot(bloc, result, []), exc)
                continue
            result.rows_in = len(slot.inputs)
            self._submit(slot)
            active.append(slot)

        cancel_seen = False
        while active:
            wake = [s.deadline for s in active if s.deadline is not None and s.future]
            wake += [s.retry_at for s in active if s.retry_at is not None]
            timeout = max(0.0, min(wake) - time.perf_counter()) if wake else None
            # Attempts and the cancel token post to this queue when they are done.
            with contextlib.suppress(queue.Empty):
                self.wakeup.get(timeout=timeout)
            if not cancel_seen and self.cancel.cancelled:
                cancel_seen = True
                self.context._request_cancel()
            now = time.perf_counter()
            active = [slot for slot in active if self._advance(slot, now, cancel_seen)]
        failures = [
            self.results[b.name] for b in stage if self.results[b.name].status is BlocStatus.FAILED
        ]
        return failures[0] if failures else None

    def _advance(self, slot: _Slot, now: float, cancelled: bool) -> bool:
        """Move one slot forward; return True while it is not final."""
        future = slot.future
        if future is not None:
            if future.done():
                slot.future = None
                exc = future.exception() if not future.cancelled() else None
                if future.cancelled():
                    self._cancelled(slot)
                    return False
                if exc is None:
                    self._succeed(slot, future.result())
                    return False
                return self._failed_attempt(slot, exc, now, cancelled)
            if slot.deadline is not None and now >= slot.deadline:
                future.cancel()
                slot.future = None
                timeout = BlocTimeoutError(
                    f"bloc {slot.bloc.name!r} ({slot.bloc.bloc_type}) attempt "
                    f"{slot.result.attempts} ran longer than its timeout of {slot.bloc.timeout}s"
                )
                return self._failed_attempt(slot, timeout, now, cancelled)
            if cancelled and future.cancel():
                slot.future = None
                self._cancelled(slot)
                return False
            return True
        if slot.retry_at is not None:
            if cancelled:
                self._cancelled(slot)
                return False
            if now >= slot.retry_at:
                slot.retry_at = None
                self._submit(slot)
            return True
        return False

    def _submit(self, slot: _Slot) -> None:
        slot.result.attempts += 1
        slot.future = self.executor.submit(_call_bloc, slot.bloc, self.context, slot.inputs)
        slot.future.add_done_callback(self.wakeup.put)
        timeout = slot.bloc.timeout
        slot.deadline = time.perf_counter() + timeout if timeout is not None else None
        self.notify("bloc_started", slot.bloc, slot.result.attempts)

    def _failed_attempt(self, slot: _Slot, exc: BaseException, now: float, cancelled: bool) -> bool:
        bloc = slot.bloc
        if slot.result.attempts <= bloc.retries and cancelled:
            self._record_error(slot.result, exc)  # the retry it would have had never starts
            self._cancelled(slot)
            return False
        if slot.result.attempts <= bloc.retries:
            delay = bloc.retry_delay * 2 ** (slot.result.attempts - 1)
            logger.warning(
                "bloc %r attempt %d failed (%s: %s); retrying in %.3gs",
                bloc.name,
                slot.result.attempts,
                type(exc).__name__,
                exc,
                delay,
            )
            slot.retry_at = now + delay
            return True
        self._fail(slot, exc)
        return False

    def _fail(self, slot: _Slot, exc: BaseException) -> None:
        result = slot.result
        result.status = BlocStatus.FAILED
        self._record_error(result, exc)
        logger.error(
            "bloc %r of pipeline %r failed after %d attempt(s): %s: %s",
            slot.bloc.name,
            self.pipeline.name,
            result.attempts,
            result.error_type,
            exc,
        )
        self._finish(result, slot)

    @staticmethod
    def _record_error(result: BlocResult, exc: BaseException) -> None:
        result.error_type = type(exc).__name__
        result.error_message = str(exc)
        result.error_traceback = "".join(traceback.format_exception(exc))

    def _succeed(self, slot: _Slot, rows: Rows) -> None:
        self.context.set_output(slot.bloc.name, rows)
        slot.result.status = BlocStatus.SUCCEEDED
        slot.result.rows_out = len(rows)
        self._finish(slot.result, slot)

    def _cancelled(self, slot: _Slot) -> None:
        slot.result.status = BlocStatus.CANCELLED
        self._finish(slot.result, slot)

    def _finish(self, result: BlocResult, slot: _Slot | None = None) -> None:
        if slot is not None:
            result.finished_at = self.clock.now()
            result.duration = time.perf_counter() - slot.t0
        self.results[result.name] = result
        self.notify("bloc_finished", result)


def run_pipeline(
    pipeline: Pipeline,
    *,
    variables: Mapping[str, Any] | None = None,
    executor: Executor | None = None,
    listeners: Sequence[RunListener] = (),
    cancel_token: CancelToken | None = None,
    run_id: str | None = None,
    scheduler_name: str | None = None,
    trigger_name: str | None = None,
    scheduled_time: datetime | None = None,
    output_dir: str | Path | None = None,
    context: RunContext | None = None,
    clock: Clock | None = None,
    logical_time: LogicalTime | None = None,
) -> RunResult:
    """Run ``pipeline`` now, in this thread (its blocs on ``executor``), and return the result.

    A bloc that raises fails the run with its error recorded; this function itself raises only
    for programming errors. Pass ``listeners`` to observe progress (storage records runs that
    way), ``cancel_token`` to cancel from another thread, ``output_dir`` for a folder the blocs
    may write into, or a ready ``context``. ``logical_time`` is the moment and data interval the
    run is for (``${run:...}`` references); by default ``scheduled_time``, else the moment the
    run starts (see :mod:`th2etl.logical_time`).
    """
    if context is None:
        context = RunContext(
            pipeline.name,
            run_id=run_id,
            scheduler_name=scheduler_name,
            trigger_name=trigger_name,
            scheduled_time=scheduled_time,
            variables=variables,
            output_dir=output_dir,
            logical_time=logical_time,
        )
    run = _Run(
        pipeline,
        context,
        executor,
        listeners,
        cancel_token or CancelToken(),
        clock or _SYSTEM_CLOCK,
    )
    return run.execute()
