"""ProcessExecutor: each run in a worker process of its own (``TH2ETL_EXECUTOR=process``).

A run that eats memory, hangs or crashes takes only its worker down: the service or scheduler
that owns it records the outcome and keeps running. Workers start from a *forkserver* that has
th2etl, the storage backends and the built-in blocs imported already (a worker starts in about
15 ms, against about 250 ms to spawn a fresh interpreter), and never by forking the threaded
owner itself, which is unsafe. The executor keeps one worker started ahead of the next job (a
*spare*, idle until its job comes; :meth:`ProcessExecutor.shutdown` ends it, and so does its
owner's exit), started while the previous run goes: a run does not wait for a fork.

A worker receives its job pickled, with the owner's environment and working directory (so
``${env:...}`` and relative paths resolve as in the owner): each bloc's class is imported from
its module there, so a class defined in ``__main__`` (the script being run) cannot be used and
is refused by :meth:`ProcessExecutor.check`. It runs the engine and sends the run's events
and its log records to the owner. The owner records the run from those events with the storage
recorder, on its own pooled connections and on a thread of the run's own (so a slow database
never delays the run's supervision): it marks the run running in the worker before the worker
executes anything, and records every event the worker sent before the run's end. A worker
thus opens no database connection (a connection per run cost a server backend, its cold
caches and a round trip per statement); should its owner die, the worker, whose run that
cancels, records the run's end itself on a connection of its own. The owner's handlers write
the log records (one writer per log file, so rotation stays safe); the run's own ``run.log``,
when the job has one, the worker writes itself. The contract is in
:mod:`th2etl.executors.base`.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import multiprocessing
import os
import pickle
import queue
import signal
import socket
import sys
import threading
import time
import weakref
from collections.abc import Iterator, Sequence
from multiprocessing.connection import Connection, wait
from typing import TYPE_CHECKING, Any

from th2etl.exceptions import ExecutorError
from th2etl.executors import _worker
from th2etl.executors._execute import _Recorded, _start
from th2etl.executors._forker import PRELOAD
from th2etl.executors.base import DEFAULT_GRACE, Executor, RunHandle, RunJob
from th2etl.pipelines.listener import notify
from th2etl.pipelines.result import RunResult, RunStatus

if TYPE_CHECKING:
    from th2etl.clock import Clock
    from th2etl.pipelines.listener import RunListener
    from th2etl.pipelines.pipeline import Pipeline
    from th2etl.storage.run_history import RunHistory

__all__ = ["ProcessExecutor"]

logger = logging.getLogger("th2etl.executors")


def _log_levels() -> dict[str, int]:
    levels = {"": logging.getLogger().level}
    for name, item in logging.Logger.manager.loggerDict.items():
        if isinstance(item, logging.Logger) and item.level != logging.NOTSET:
            levels[name] = item.level
    return levels


def _exit_reason(exitcode: int | None) -> str:
    if exitcode is not None and exitcode < 0:
        try:
            name = signal.Signals(-exitcode).name
        except ValueError:
            name = f"signal {-exitcode}"
        hint = " (out of memory, or killed from outside)" if name == "SIGKILL" else ""
        return f"was killed by {name}{hint}"
    return f"exited with code {exitcode}"


class _ProcessHandle(RunHandle):
    out_of_process = True

    def __init__(
        self,
        job: RunJob,
        executor: ProcessExecutor,
        process: Any,
        conn: Connection,
        listeners: Sequence[RunListener],
        *,
        records: bool = False,
    ) -> None:
        super().__init__(job, storage=executor.storage, grace=executor.grace, clock=executor.clock)
        self.process = process
        self.conn = conn
        self.worker = f"{socket.gethostname()}:{process.pid}"
        self.recorder: _Recorded | None = None
        """With ``records``: the storage recorder this process records the run with, from
        the events its worker forwards (the worker opens no connection)."""
        if records and executor.storage is not None:
            self.recorder = _Recorded(
                executor.storage.recorder(
                    run_id=job.run_id,
                    scheduler_name=job.scheduler_name,
                    trigger_name=job.trigger_name,
                    instance_id=job.instance_id,
                ),
                threading.Event(),
                lambda: self.lost,
            )
            listeners = [self.recorder, *listeners]
        self.listeners = listeners
        self._context = job.context()
        self._wake_r, self._wake_w = multiprocessing.Pipe(duplex=False)
        self._send_lock = threading.Lock()
        self._cancel_at: float | None = None
        self._outcome: tuple[RunResult, bool] | None = None
        self._error: str | None = None
        self._not_executed: RunResult | None = None
        # The events go to the listeners in order on a thread of their own: a slow database
        # never delays the supervision (timeouts, cancels) of the run.
        self._events: queue.SimpleQueue[tuple[str, Any] | None] = queue.SimpleQueue()
        self._recording = threading.Thread(
            target=self._record, name=f"th2etl-record-{job.run_id[:12]}", daemon=True
        )
        self._recording.start()
        self._monitor = threading.Thread(
            target=self._supervise, name=f"th2etl-supervise-{job.run_id[:12]}", daemon=True
        )
        self._monitor.start()

    def _send(self, message: tuple[Any, ...]) -> None:
        with self._send_lock, contextlib.suppress(OSError):  # the worker has ended
            self.conn.send(message)

    def cancel(self) -> None:
        with self._send_lock:
            if self._cancel_at is not None or self.done():
                return
            self._cancel_at = time.monotonic()
            with contextlib.suppress(OSError):  # the worker, or its supervisor, has ended
                self.conn.send(("cancel",))
                self._wake_w.send(None)

    def abandon(self, reason: str) -> None:
        # No grace: the worker is terminated at once, so that the run is not executing when
        # other processes count it abandoned.
        with self._send_lock:
            if self.lost is not None or self.done():
                return
            self.lost = reason
            with contextlib.suppress(OSError):
                self._wake_w.send(None)

    # -- supervision, in the monitor thread ----------------------------------------------------

    def _supervise(self) -> None:
        stopping: tuple[RunStatus, str] | None = None
        kill_at: float | None = None
        exited = False
        watched: list[Any] = [self.conn, self.process.sentinel, self._wake_r]
        try:
            while not exited:
                now = time.monotonic()
                if stopping is None:
                    stopping = self._why_stop(now)
                    if stopping is not None:
                        logger.warning("run %s: %s", self.run_id, stopping[1])
                        self.process.terminate()
                        kill_at = now + (min(self.grace, 1.0) if self.lost else self.grace)
                elif kill_at is not None and now >= kill_at:
                    logger.warning("run %s: worker %s is killed", self.run_id, self.worker)
                    self.process.kill()
                    kill_at = None
                ready = wait(watched, self._next_wake(kill_at))
                if self._wake_r in ready:
                    self._wake_r.recv()
                if self.conn in ready and not self._drain():
                    watched.remove(self.conn)  # closed: the worker is exiting
                exited = self.process.sentinel in ready
            _join(self.process)
            self._drain()
        finally:
            self._conclude(stopping)

    def _why_stop(self, now: float) -> tuple[RunStatus, str] | None:
        if self.lost is not None:
            return RunStatus.ABANDONED, f"its worker {self.worker} is terminated"
        deadline = self.deadline
        if deadline is not None and now >= deadline and self._outcome is None:
            how = f"its worker {self.worker} is terminated"
            return RunStatus.FAILED, self._timeout_reason(how)
        if self._cancel_at is not None and now >= self._cancel_at + self.grace:
            return RunStatus.CANCELLED, (
                f"the run did not stop within {self.grace:g}s of its cancel; its worker "
                f"{self.worker} is terminated"
            )
        return None

    def _next_wake(self, kill_at: float | None) -> float | None:
        moments = [m for m in (self.deadline, kill_at) if m is not None]
        if self._cancel_at is not None:
            moments.append(self._cancel_at + self.grace)
        if not moments:
            return None
        return max(0.0, min(moments) - time.monotonic())

    def _drain(self) -> bool:
        """Handle the messages waiting in the pipe; False once the worker closed it."""
        try:
            while self.conn.poll():
                self._receive(self.conn.recv())
        except (EOFError, OSError):
            return False
        return True

    def _receive(self, message: tuple[Any, ...]) -> None:
        kind = message[0]
        if kind == "log":
            record: logging.LogRecord = message[1]
            record.processName = f"worker {self.worker}"
            logging.getLogger(record.name).handle(record)
        elif kind == "event":
            self._events.put((message[1], message[2]))
        elif kind == "result":
            self._outcome = (message[1], message[2])
        elif kind == "error":
            self._error = message[1]

    def _count(self, result: RunResult) -> None:
        if self.recorder is None:
            super()._count(result)
        elif self.recorder.result is None:  # its recorder here counted all but its end
            from th2etl.metrics import METRICS

            METRICS.run_finished(result)

    def _record(self) -> None:
        """The recording thread: mark the run running (when this process records it), then
        hand the worker's events to the listeners, in order, until the run is over."""
        if self.recorder is not None:
            self._send(("go",) if self._mark_running() else ("skip",))
        while (item := self._events.get()) is not None:
            self._replay(*item)

    def _mark_running(self) -> bool:
        """Mark the run running in its worker; False (and the worker is told to skip it)
        when it ended meanwhile (cancelled while queued) or cannot be marked."""
        assert self.storage is not None
        try:
            ended = _start(self.storage, self.run_id, self.worker)
        except Exception as exc:
            self._error = f"{type(exc).__name__}: {exc}"
            return False
        if ended is None:
            return True
        logger.warning("run %s is %s already: it is not executed", self.run_id, ended.value)
        now = self.clock.now()
        error = f"the run was {ended.value} before it started; it was not executed"
        self._not_executed = RunResult(
            self.run_id, self.job.pipeline.name, ended, now, now, error=error
        )
        return False

    def _replay(self, event: str, payload: Any) -> None:
        pipeline = self.job.pipeline
        if event == "run_started":
            if payload is not None:  # the logical time the engine gave the run
                self._context.logical_time = payload
            args: tuple[Any, ...] = (pipeline,)
        elif event == "bloc_started":
            name, attempt = payload
            args = (pipeline.blocs[name], attempt)
        else:
            args = (payload,)
        notify(self.listeners, self._context, event, *args)

    def _conclude(self, stopping: tuple[RunStatus, str] | None) -> None:
        # Every event the worker sent is recorded before the run's end.
        self._events.put(None)
        self._recording.join()
        for conn in (self.conn, self._wake_r, self._wake_w):
            conn.close()
        exitcode = self.process.exitcode
        self.process.close()
        recorder = self.recorder
        if self._not_executed is not None:
            self._settle(self._not_executed, True)
        elif self._outcome is not None:
            result, recorded = self._outcome
            if recorder is not None:  # what this process recorded (abandoned, if it lost it)
                result, recorded = recorder.result or result, recorder.recorded
            self._settle(result, recorded)
        elif stopping is not None:
            self._end_without_outcome(*stopping)
        elif self._error is not None:
            self._end_without_outcome(
                RunStatus.FAILED, f"its worker {self.worker} could not execute it: {self._error}"
            )
        else:
            self._end_without_outcome(
                RunStatus.FAILED,
                f"its worker process {self.worker} {_exit_reason(exitcode)} before the run ended",
            )


def check_importable(pipeline: Pipeline) -> None:
    """Raise :class:`~th2etl.exceptions.ExecutorError` naming the fix when a bloc class of
    ``pipeline`` cannot be imported by another process (defined in ``__main__`` or a function):
    worker processes and Dask workers import each bloc type from its module."""
    for bloc in pipeline.blocs.values():
        cls = type(bloc)
        if cls.__module__ == "__main__" or "<locals>" in cls.__qualname__:
            where = "__main__ (the script being run)"
            if cls.__module__ != "__main__":
                where = f"a function ({cls.__module__}.{cls.__qualname__})"
            raise ExecutorError(
                f"bloc {bloc.name!r} of pipeline {pipeline.name!r} is of bloc type "
                f"{bloc.bloc_type!r}, whose class {cls.__name__} is defined in {where}; a "
                "worker process imports each bloc type from its module and cannot import "
                f"that one. Move {cls.__name__} into a module of its own (e.g. my_blocs.py, "
                "imported by your script) or register it through the 'th2etl.blocs' entry "
                "point; or run in this process with TH2ETL_EXECUTOR=thread"
            )


def pickled_job(job: RunJob, to: str, fix: str) -> bytes:
    """``job`` pickled for ``to`` (e.g. a worker process), or an ExecutorError that ends with
    ``fix``."""
    try:
        return pickle.dumps(job)
    except Exception as exc:
        raise ExecutorError(
            f"pipeline {job.pipeline.name!r} cannot be sent to {to}: {type(exc).__name__}: "
            f"{exc}; keep bloc objects free of open connections, locks or lambdas{fix}"
        ) from exc


class ProcessExecutor(Executor):
    """Runs each job in a worker process started from a forkserver (see the module docstring).

    >>> executor = ProcessExecutor(storage)  # doctest: +SKIP
    >>> handle = executor.submit(RunJob(run_id, storage.build_pipeline("daily")))  # doctest: +SKIP
    >>> handle.wait().status  # doctest: +SKIP
    <RunStatus.SUCCEEDED: 'succeeded'>
    """

    kind = "process"

    def __init__(
        self,
        storage: RunHistory | None,
        *,
        grace: float = DEFAULT_GRACE,
        clock: Clock | None = None,
    ) -> None:
        super().__init__(storage, grace=grace, clock=clock)
        self._context = _forkserver()
        self._address = None if storage is None else _address(storage)
        self._spare: list[_Worker] = []  # at most one, started ahead of the next job
        self._spare_lock = threading.Lock()
        self._closed = False
        _executors.add(self)
        # A spare of an executor nobody shut down ends with the executor, or at exit.
        weakref.finalize(self, _dismiss, self._spare)

    def check(self, pipeline: Pipeline) -> None:
        check_importable(pipeline)

    def submit(self, job: RunJob, *, listeners: Sequence[RunListener] = ()) -> RunHandle:
        self.check(job.pipeline)
        payload = pickled_job(
            job, "a worker process", ", or run in this process with TH2ETL_EXECUTOR=thread"
        )
        records = self.storage is not None
        spec = _worker.WorkerSpec(
            job=payload,
            storage=self._address,
            environ=dict(os.environ),
            log_levels=_log_levels(),
            forward_events=bool(listeners) or records,
            grace=self.grace,
            cwd=_cwd(),
            sys_path=tuple(sys.path),
            owner_records=records,
        )
        process, conn = self._take_spare()
        try:
            conn.send(spec)
        except OSError:  # the spare died meanwhile (killed from outside): start one now
            _dismiss([(process, conn)])
            process, conn = self._start_worker()
            conn.send(spec)
        handle = _ProcessHandle(job, self, process, conn, listeners, records=records)
        self._prepare_spare()  # while this run goes: the next one does not wait for a fork
        return handle

    def shutdown(self) -> None:
        """Stop the spare worker; runs going are the owner's to cancel or wait for first."""
        self._closed = True
        _dismiss(self._spare)

    def _take_spare(self) -> _Worker:
        with self._spare_lock:
            spare = self._spare.pop() if self._spare else None
        if spare is not None and _alive(spare[0]):
            return spare
        if spare is not None:
            _dismiss([spare])
        return self._start_worker()

    def _start_worker(self) -> _Worker:
        parent_conn, child_conn = self._context.Pipe()
        process = self._context.Process(
            target=_worker.serve, args=(child_conn,), name="th2etl-worker"
        )
        with _main_hidden():
            process.start()
        child_conn.close()  # the worker holds its end: its exit closes the pipe
        return process, parent_conn

    def _prepare_spare(self) -> None:
        if self._closed:
            return
        try:
            spare = self._start_worker()
        except Exception as exc:  # the next run starts its worker itself, and says why not
            logger.warning("cannot start a spare worker process: %s", exc)
            return
        with self._spare_lock:
            self._spare.append(spare)
            extra = self._spare[:-1]
            del self._spare[:-1]
        if extra or self._closed:
            _dismiss(extra if not self._closed else self._spare)


_Worker = tuple[Any, Connection]
"""A worker process and the parent's end of its pipe."""

_executors: weakref.WeakSet[ProcessExecutor] = weakref.WeakSet()


def _dismiss(workers: list[_Worker]) -> None:
    """End spare workers: their pipe closing ends them (they have no job yet)."""
    while workers:
        process, conn = workers.pop()
        conn.close()
        if not wait([process.sentinel], 1.0):
            process.kill()
            wait([process.sentinel], 1.0)
        if not _alive(process):
            _join(process)
            process.close()


def _alive(process: Any) -> bool:
    with _forkserver_lock:  # see _join
        return bool(process.is_alive())


def _join(process: Any) -> None:
    """Join a worker that ended. multiprocessing reads a forkserver child's exit status from
    its sentinel once, and Process.start() polls every child started (and not closed) in this
    process: a join in another thread at that moment reads it too, and the second reader
    waits forever. So both happen under _forkserver_lock (a Dask child is no such process)."""
    if isinstance(process, multiprocessing.process.BaseProcess):
        with _forkserver_lock:
            process.join()
    else:
        process.join()


@atexit.register
def _dismiss_spares() -> None:
    # Registered after multiprocessing's own exit function (imported above), so it runs
    # first: that one joins every child, and a spare ends only once its pipe is closed.
    for executor in list(_executors):
        _dismiss(executor._spare)


_forkserver_lock = threading.Lock()
"""Held while a worker starts, and while one is polled or joined (see _join)."""


def _forkserver() -> Any:
    """The forkserver context, its server started with th2etl preloaded (once per process)."""
    from multiprocessing import forkserver

    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(list(PRELOAD))
    with _main_hidden():
        forkserver.ensure_running()
    return context


@contextlib.contextmanager
def _main_hidden() -> Iterator[None]:
    """Hide the path of the script being run from multiprocessing, which would otherwise import
    it again in the forkserver and in every worker (a script without an ``if __name__ ==
    "__main__"`` guard would run again there). Workers need nothing from it: their job says
    what to import."""
    main = sys.modules["__main__"]
    with _forkserver_lock:
        path = main.__dict__.pop("__file__", None) if main.__spec__ is None else None
        try:
            yield
        finally:
            if path is not None:
                main.__file__ = path


def _cwd() -> str | None:
    try:
        return os.getcwd()
    except OSError:  # the directory was removed
        return None


def _address(storage: RunHistory) -> tuple[str, str]:
    address = getattr(storage, "address", None)
    if address is None:
        raise ExecutorError(
            f"{type(storage).__name__} cannot be opened again by a worker process (it has no "
            "address()); use DatabaseStorage, or TH2ETL_EXECUTOR=thread"
        )
    result: tuple[str, str] = address()
    return result
