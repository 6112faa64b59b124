"""The worker process's side of :class:`~th2etl.executors.process.ProcessExecutor`.

A worker executes one job and exits. It talks to its parent over one pipe:

* parent -> worker: ``("go",)`` or ``("skip",)`` when the parent records the run (see
  :attr:`WorkerSpec.owner_records`), ``("cancel",)``; the pipe closing means the parent is
  gone, which cancels the run too (and ends the worker ``grace`` seconds later if the run does
  not stop);
* worker -> parent: ``("log", LogRecord)`` for every log record (the parent's handlers write
  them, so log files have one writer and rotate safely), ``("event", name, payload)`` for the
  parent's listeners (its recorder among them), then ``("result", RunResult, recorded)`` or
  ``("error", text)``.

This module is preloaded into the forkserver, with what it imports, so a worker starts
without importing th2etl again.
"""

from __future__ import annotations

import contextlib
import logging
import os
import pickle
import signal
import sys
import threading
import traceback
from dataclasses import dataclass
from logging.handlers import QueueHandler
from multiprocessing.connection import Connection
from typing import TYPE_CHECKING, Any

from th2etl.executors._execute import execute
from th2etl.pipelines.cancel import CancelToken
from th2etl.pipelines.listener import RunListener
from th2etl.storage.database import DatabaseStorage

if TYPE_CHECKING:
    from th2etl.blocs.base import Bloc
    from th2etl.executors.base import RunJob
    from th2etl.pipelines.context import RunContext
    from th2etl.pipelines.pipeline import Pipeline
    from th2etl.pipelines.result import BlocResult, RunResult

__all__ = ["WorkerSpec", "main", "serve"]

PARENT_GONE_EXIT = 70


@dataclass(frozen=True)
class WorkerSpec:
    """What a worker gets besides its pipe: the pickled job and its parent's surroundings."""

    job: bytes
    storage: tuple[str, str] | None
    """``DatabaseStorage.address()`` of the parent's storage (None: the run is not recorded)."""
    environ: dict[str, str]
    """The parent's environment when it submitted the job: ``${env:...}`` resolves the same."""
    log_levels: dict[str, int]
    """Logger name (``""`` for the root) -> level, as set in the parent."""
    forward_events: bool
    grace: float
    cwd: str | None = None
    """The parent's working directory when it submitted the job: relative paths in configs
    resolve the same (the forkserver keeps the directory it was started in)."""
    sys_path: tuple[str, ...] | None = None
    """The parent's ``sys.path`` when it submitted the job, where the job's bloc modules are
    imported from (a worker started ahead of its job got the one of that moment)."""
    owner_records: bool = False
    """The parent records the run from the events the worker forwards, on its own
    connections: it marks the run running (as this worker) and answers ``("go",)``, or
    ``("skip",)`` when the run ended meanwhile; the worker opens no connection of its own and
    executes nothing before that answer. Should the parent be gone when the run ends, the
    worker records the run's end itself through ``storage`` (a cancel, since the parent's
    going cancels the run), as a worker with a connection of its own would."""


class _Sender:
    """The worker's end of the pipe, shared by its threads."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self._lock = threading.Lock()
        self.gone = threading.Event()
        """Set once the parent is gone (its end of the pipe closed)."""

    def send(self, message: tuple[Any, ...]) -> None:
        with self._lock:
            try:
                self.conn.send(message)
            except OSError:
                self.gone.set()
                raise


class _PipeQueue:
    """What a :class:`logging.handlers.QueueHandler` puts records into: the parent's pipe."""

    def __init__(self, sender: _Sender) -> None:
        self.sender = sender

    def put_nowait(self, record: logging.LogRecord) -> None:
        # The parent is gone, or the record carries something unpicklable: drop it.
        with contextlib.suppress(OSError, pickle.PicklingError, TypeError, AttributeError):
            self.sender.send(("log", record))


class _Forwarder(RunListener):
    """Sends the run's events to the parent, which replays them to its listeners."""

    def __init__(self, sender: _Sender) -> None:
        self.sender = sender

    def _send(self, *message: Any) -> None:
        with contextlib.suppress(OSError):  # the parent is gone (the sender notes it)
            self.sender.send(("event", *message))

    def run_started(self, context: RunContext, pipeline: Pipeline) -> None:
        self._send("run_started", context.logical_time)

    def bloc_started(self, context: RunContext, bloc: Bloc, attempt: int) -> None:
        self._send("bloc_started", (bloc.name, attempt))

    def bloc_progress(self, context: RunContext, result: BlocResult) -> None:
        self._send("bloc_progress", result)

    def bloc_finished(self, context: RunContext, result: BlocResult) -> None:
        self._send("bloc_finished", result)

    def run_finished(self, context: RunContext, result: RunResult) -> None:
        self._send("run_finished", result)  # execute() keeps no rows


def _configure_logging(sender: _Sender, levels: dict[str, int]) -> None:
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    root.addHandler(QueueHandler(_PipeQueue(sender)))  # type: ignore[arg-type]
    for name, level in levels.items():
        logging.getLogger(name or None).setLevel(level)


class _Answer:
    """The parent's answer to a worker whose run it records: go, skip, or gone."""

    def __init__(self) -> None:
        self.go = False
        self.given = threading.Event()


def _listen(
    conn: Connection, sender: _Sender, token: CancelToken, answer: _Answer, grace: float
) -> None:
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):
            break
        if message == ("cancel",):
            token.cancel()
        elif message == ("go",) or message == ("skip",):
            answer.go = message == ("go",)
            answer.given.set()
    # The parent is gone: nobody supervises this run any more.
    sender.gone.set()
    answer.given.set()
    token.cancel()
    timer = threading.Timer(grace, os._exit, (PARENT_GONE_EXIT,))
    timer.daemon = True
    timer.start()


def serve(conn: Connection) -> None:
    """A worker started ahead of its job: wait for its :class:`WorkerSpec` on ``conn``, then
    execute it (:func:`main`); the parent closing the pipe first (it shut down or died) ends
    the worker."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        spec = conn.recv()
    except (EOFError, OSError):
        _exit(0)
    main(conn, spec)


def main(conn: Connection, spec: WorkerSpec) -> None:
    """Execute ``spec``'s job, report its outcome to the parent, and exit."""
    # Ctrl-C in a terminal reaches the whole process group: the parent decides what happens.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    os.environ.clear()
    os.environ.update(spec.environ)
    if spec.sys_path is not None:
        sys.path[:] = spec.sys_path
    if spec.cwd is not None:
        with contextlib.suppress(OSError):  # gone since: the run's relative paths fail, named
            os.chdir(spec.cwd)
    sender = _Sender(conn)
    _configure_logging(sender, spec.log_levels)
    token = CancelToken()
    answer = _Answer()
    threading.Thread(
        target=_listen,
        args=(conn, sender, token, answer, spec.grace),
        name="th2etl-worker-pipe",
        daemon=True,
    ).start()
    storage: DatabaseStorage | None = None
    code = 0
    try:
        job: RunJob = pickle.loads(spec.job)
        if spec.owner_records:
            answer.given.wait()
            if not answer.go:  # the run ended meanwhile, or the parent is gone: not executed
                _exit(0 if not sender.gone.is_set() else PARENT_GONE_EXIT)
            result, _ = execute(
                job,
                storage=None,
                listeners=[_Forwarder(sender)],
                cancel_token=token,
                whole_process=True,
            )
            with contextlib.suppress(OSError):
                sender.send(("result", result, False))  # the parent knows what it recorded
            if sender.gone.is_set() and spec.storage is not None:
                _record_end_alone(spec.storage, job, result)
            _exit(0)
        if spec.storage is not None:
            target, schema = spec.storage
            # DatabaseStorage(...) picks the backend class in __new__.
            # One connection: a run records from few threads, and a pool's threads and its
            # first connection would add to every worker's start. The owner migrated the
            # schema already: no migration check (its round trips and its lock) either.
            storage = DatabaseStorage(  # type: ignore[abstract]
                target, schema=schema, connect=False, pool_size=1, migrate=False
            )
        listeners = [_Forwarder(sender)] if spec.forward_events else []
        result, recorded = execute(
            job,
            storage=storage,
            listeners=listeners,
            cancel_token=token,
            whole_process=True,
        )
        sender.send(("result", result, recorded))  # no rows: execute() keeps none
    except Exception as exc:
        logging.getLogger("th2etl.executors").error(
            "the worker could not execute its run:\n%s", traceback.format_exc()
        )
        sender.send(("error", f"{type(exc).__name__}: {exc}"))
        code = 1
    finally:
        if storage is not None:
            storage.close()
    _exit(code)


def _exit(code: int) -> None:
    # Not a normal exit: that would wait for the threads of timed-out bloc attempts, which
    # the engine abandons and which may never end.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def _record_end_alone(address: tuple[str, str], job: RunJob, result: RunResult) -> None:
    """The parent that recorded the run is gone: record its end on a connection of our own
    (the parent's going cancelled the run). A run whose end the parent recorded keeps it."""
    target, schema = address
    try:
        storage = DatabaseStorage(  # type: ignore[abstract]
            target, schema=schema, connect=False, pool_size=1, migrate=False
        )
        with storage:
            storage.recorder(
                run_id=job.run_id,
                scheduler_name=job.scheduler_name,
                trigger_name=job.trigger_name,
                instance_id=job.instance_id,
            ).run_finished(job.context(), result)
    except Exception:
        logging.getLogger("th2etl.executors").exception(
            "run %s: its owner is gone, and its end could not be recorded", job.run_id
        )
