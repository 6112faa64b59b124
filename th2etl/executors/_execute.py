"""One job, executed where it is called: the part every executor shares (a thread executor
calls it in its run thread, a worker process in its main thread)."""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Executor as BlocExecutor
from concurrent.futures import Future
from pathlib import Path
from typing import TYPE_CHECKING, Any

from th2etl.clock import Clock, SystemClock
from th2etl.executors.base import RunJob, as_abandoned
from th2etl.pipelines.cancel import CancelToken
from th2etl.pipelines.engine import run_pipeline
from th2etl.pipelines.listener import RunListener
from th2etl.pipelines.result import RunResult, RunStatus
from th2etl.storage.coordination import Coordination

if TYPE_CHECKING:
    from th2etl.pipelines.context import RunContext
    from th2etl.storage.run_history import RunHistory

__all__ = ["INLINE", "InlineExecutor", "RunLogFilter", "execute", "note"]

logger = logging.getLogger("th2etl.executors")

LOG_FORMAT = "%(asctime)s %(levelname)-8s %(threadName)s %(name)s: %(message)s"


class RunLogFilter(logging.Filter):
    """Keeps the records of one run: its coordinating thread and its bloc threads."""

    def __init__(self, thread_id: int, prefix: str) -> None:
        super().__init__()
        self.thread_id = thread_id
        self.prefix = prefix

    def filter(self, record: logging.LogRecord) -> bool:
        return record.thread == self.thread_id or (record.threadName or "").startswith(self.prefix)


class InlineExecutor(BlocExecutor):
    """Runs each submitted call at once, in the caller's thread (fake-clock mode): a stage's
    blocs run one after another, deterministically; bloc timeouts cannot interrupt them."""

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        future: Future[Any] = Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except BaseException as exc:
            future.set_exception(exc)
        return future


INLINE = InlineExecutor()


def note(handler: logging.Handler, message: str) -> None:
    """Write a line to the run's log whatever the logging levels are."""
    record = logging.LogRecord(__name__, logging.INFO, __file__, 0, message, None, None)
    handler.handle(record)


class _Recorded(RunListener):
    """The storage recorder, noting whether the run's end reached the database, and silent
    once ``abandoned`` is set (the executor recorded the run's end itself). A run whose owner
    lost its lease (``lost()`` gives the reason) is recorded ``abandoned``, whatever it ended
    with."""

    def __init__(
        self, inner: RunListener, abandoned: threading.Event, lost: Callable[[], str | None]
    ) -> None:
        self.inner = inner
        self.abandoned = abandoned
        self.lost = lost
        self.recorded = False
        self.result: RunResult | None = None

    def run_started(self, context: RunContext, pipeline: Any) -> None:
        if not self.abandoned.is_set():
            self.inner.run_started(context, pipeline)

    def bloc_started(self, context: RunContext, bloc: Any, attempt: int) -> None:
        if not self.abandoned.is_set():
            self.inner.bloc_started(context, bloc, attempt)

    def bloc_progress(self, context: RunContext, result: Any) -> None:
        if not self.abandoned.is_set():
            self.inner.bloc_progress(context, result)

    def bloc_finished(self, context: RunContext, result: Any) -> None:
        if not self.abandoned.is_set():
            self.inner.bloc_finished(context, result)

    def run_finished(self, context: RunContext, result: RunResult) -> None:
        self.result = as_abandoned(result, self.lost())
        if not self.abandoned.is_set():
            self.inner.run_finished(context, self.result)
            self.recorded = True


def _start(storage: RunHistory, run_id: str, worker: str | None = None) -> RunStatus | None:
    """Mark the run ``running`` in ``worker`` (default here: ``host:pid``); its status instead
    when it ended meanwhile (cancelled while queued, abandoned), so that it is not executed."""
    if not isinstance(storage, Coordination):
        return None
    if storage.mark_running(run_id, worker=worker or f"{socket.gethostname()}:{os.getpid()}"):
        return None
    return storage.get_run(run_id).status


def _attach_log(path: Path, log_filter: logging.Filter | None) -> logging.Handler:
    handler = logging.FileHandler(path, encoding="utf-8", delay=False)
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    if log_filter is not None:
        handler.addFilter(log_filter)
    logging.getLogger().addHandler(handler)
    return handler


def _write_result(path: Path, result: RunResult) -> None:
    # The run is over and recorded: a result.json that cannot be written must not turn it
    # into a run that failed.
    summary = json.dumps(result.to_dict(), indent=2, default=str)
    try:
        path.write_text(summary + "\n", encoding="utf-8")
    except OSError as exc:
        logger.warning(
            "run %s %s, but its %s in %s could not be written: %s",
            result.run_id,
            result.status.value,
            path.name,
            path.parent,
            exc,
        )


def execute(
    job: RunJob,
    *,
    storage: RunHistory | None,
    listeners: Sequence[RunListener] = (),
    cancel_token: CancelToken | None = None,
    clock: Clock | None = None,
    inline: bool = False,
    whole_process: bool = False,
    abandoned: threading.Event | None = None,
    lost: Callable[[], str | None] = lambda: None,
) -> tuple[RunResult, bool]:
    """Run ``job`` in this thread, recorded in ``storage``; return its result and whether its
    end was recorded. ``inline`` runs the blocs one after another in this thread (fake
    clocks); ``whole_process`` sends every log record of this process to ``job.log_file``
    (a worker runs one job), not only those of this thread and the run's bloc threads. Once
    ``abandoned`` is set, nothing more is recorded (the executor recorded the run's end).
    The run keeps no rows in memory (``keep_outputs=False``), recorded or not."""
    ended = None if storage is None else _start(storage, job.run_id)
    if ended is not None:
        logger.warning("run %s is %s already: it is not executed", job.run_id, ended.value)
        now = (clock or SystemClock()).now()
        error = f"the run was {ended.value} before it started; it was not executed"
        return RunResult(job.run_id, job.pipeline.name, ended, now, now, error=error), True
    handler: logging.Handler | None = None
    prefix: str | None = None
    recorder: _Recorded | None = None
    try:
        if job.log_file is not None:
            prefix = f"th2etl-run-{job.run_id[:12]}"  # the engine's threads, for the log filter
            log_filter = None if whole_process else RunLogFilter(threading.get_ident(), prefix)
            handler = _attach_log(job.log_file, log_filter)
            if job.note:
                note(handler, job.note)
        every: list[RunListener] = []
        if storage is not None:
            recorder = _Recorded(
                storage.recorder(
                    run_id=job.run_id,
                    scheduler_name=job.scheduler_name,
                    trigger_name=job.trigger_name,
                    instance_id=job.instance_id,
                    clock=clock,
                ),
                abandoned or threading.Event(),
                lost,
            )
            every.append(recorder)
        every.extend(listeners)
        result = run_pipeline(
            job.pipeline,
            variables=job.variables,
            executor=INLINE if inline else None,
            listeners=every,
            cancel_token=cancel_token,
            run_id=job.run_id,
            scheduler_name=job.scheduler_name,
            trigger_name=job.trigger_name,
            scheduled_time=job.scheduled_time,
            output_dir=job.output_dir,
            clock=clock,
            logical_time=job.logical_time,
            keep_outputs=False,  # scheduled, API and CLI runs keep no rows in memory
            thread_name_prefix=prefix,
        )
        if recorder is not None and recorder.result is not None:
            result = recorder.result
        else:
            result = as_abandoned(result, lost())
        if handler is not None and job.log_file is not None:
            note(handler, result.summary())
            _write_result(job.log_file.parent / "result.json", result)
        return result, recorder is None or recorder.recorded
    finally:
        if handler is not None:
            logging.getLogger().removeHandler(handler)
            handler.close()
