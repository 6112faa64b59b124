"""The Dask worker's side of :class:`~th2etl.executors.dask.DaskExecutor` (semantics there).

:func:`run_job` is the Dask task. It runs where the worker runs, in one of its threads, and:

1. opens th2etl's database from the worker's environment (once per worker process);
2. imports the job: a bloc type missing here fails the run naming the type and this worker;
3. fences: claims the run (``queued`` -> ``running``, ``worker`` = this worker's address); a
   run claimed already (Dask ran the task again) is not executed, the task answers ``fenced``;
4. executes it in a child process forked by this worker's forker (:mod:`._forker`, th2etl
   preloaded), running the worker code of
   :class:`~th2etl.executors.process.ProcessExecutor` (its log records come back over the
   socket and go to this worker's log; its events too, and this worker records them with the
   storage recorder on its own connection), supervised the same way: a cancel requested in the
   database, the run ending elsewhere (``abandoned`` once its owner died), or the pipeline
   timeout stops it (cancel, then terminate, then kill);
5. answers an :class:`Answer`: the run's result, or why it did not execute it.

The child holds one end of a socket pair whose other end only this worker process holds:
when the worker dies, the child's end closes and the child exits at once.
"""

from __future__ import annotations

import logging
import os
import pickle
import socket
import threading
from dataclasses import dataclass
from multiprocessing.connection import Connection
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any, Literal, cast

from th2etl.executors import _worker
from th2etl.executors._execute import _Recorded
from th2etl.executors._forker import forker
from th2etl.executors.base import RunJob
from th2etl.executors.process import _log_levels, _ProcessHandle
from th2etl.pipelines.listener import RunListener
from th2etl.pipelines.result import RunResult
from th2etl.storage.database import DatabaseStorage

if TYPE_CHECKING:
    from th2etl.blocs.base import Bloc
    from th2etl.pipelines.context import RunContext
    from th2etl.pipelines.pipeline import Pipeline
    from th2etl.pipelines.result import BlocResult

__all__ = ["ABANDONED_BY", "PROGRESS_TOPIC", "Answer", "run_job"]

logger = logging.getLogger("th2etl.executors")

ABANDONED_BY = "abandoned by its owner: "
"""How an owner that lost its lease marks its cancel (``cancelled_by``): the worker then stops
the run at once and records it ``abandoned`` with the reason that follows, not ``cancelled``."""


@dataclass(frozen=True)
class Answer:
    """What the task tells the run's owner: ``result`` (the run executed here, ``result`` and
    whether its end was ``recorded``), ``fenced`` (claimed already: not executed again) or
    ``error`` (not executed: ``reason``). ``worker`` is this worker's address; ``holder``, when
    fenced, the worker the run records (the one that took it)."""

    outcome: Literal["result", "fenced", "error"]
    worker: str
    result: RunResult | None = None
    recorded: bool = False
    reason: str | None = None
    holder: str | None = None


PROGRESS_TOPIC = "th2etl-progress"
"""The Dask event topic of the runs' live events: ``{"run": run id, "event": name,
"args": pickled arguments}`` (the run's end is in the task's answer)."""


class _Publisher(RunListener):
    """Publishes a run's events on :data:`PROGRESS_TOPIC`, for its owner's listeners."""

    def __init__(self, run_id: str, worker: Any) -> None:
        self.run_id = run_id
        self.worker = worker

    def _publish(self, event: str, *args: Any) -> None:
        message = {"run": self.run_id, "event": event, "args": pickle.dumps(args)}
        self.worker.log_event(PROGRESS_TOPIC, message)

    def run_started(self, context: RunContext, pipeline: Pipeline) -> None:
        self._publish("run_started")

    def bloc_started(self, context: RunContext, bloc: Bloc, attempt: int) -> None:
        self._publish("bloc_started", bloc.name, attempt)

    def bloc_progress(self, context: RunContext, result: BlocResult) -> None:
        self._publish("bloc_progress", result)

    def bloc_finished(self, context: RunContext, result: BlocResult) -> None:
        self._publish("bloc_finished", result)


_storage_lock = threading.Lock()
_storage: DatabaseStorage | None = None


def _worker_storage() -> DatabaseStorage:
    """th2etl's database as this worker process's environment describes it, opened once."""
    global _storage
    with _storage_lock:
        if _storage is None:
            _storage = DatabaseStorage.from_settings()
        return _storage


def _load(payload: bytes, bloc_types: dict[str, str], worker: str) -> RunJob | str:
    """The job, or why it cannot be imported on this worker (naming the bloc type)."""
    try:
        job: RunJob = pickle.loads(payload)
    except (ImportError, AttributeError) as exc:
        module = getattr(exc, "name", None) or ""
        for bloc_type, where in sorted(bloc_types.items()):
            if where == module or where.startswith(f"{module}.") or where in str(exc):
                return (
                    f"bloc type {bloc_type!r} ({where}) cannot be imported on the Dask worker "
                    f"{worker}: {type(exc).__name__}: {exc}; install the package that defines "
                    "it on every worker, or start the workers with `dask worker --preload "
                    "MODULE`"
                )
        return (
            f"the run cannot be imported on the Dask worker {worker}: {type(exc).__name__}: {exc}"
        )
    return job


def run_job(
    run_id: str,
    payload: bytes,
    bloc_types: dict[str, str],
    *,
    grace: float,
    poll: float = 0.5,
    progress: bool = False,
) -> Answer:
    """The Dask task: execute the pickled :class:`RunJob` ``payload`` (see the module
    docstring). ``bloc_types`` maps each of its bloc types to ``module.Class``; with
    ``progress``, the run's events are published on :data:`PROGRESS_TOPIC` as they happen."""
    from distributed import get_worker

    dask_worker = get_worker()
    worker = str(dask_worker.address)
    try:
        storage = _worker_storage()
    except Exception as exc:
        return Answer(
            "error",
            worker,
            reason=f"the Dask worker {worker} cannot open th2etl's database: "
            f"{type(exc).__name__}: {exc}; set DATABASE_URL in the workers' environment",
        )
    job = _load(payload, bloc_types, worker)
    if isinstance(job, str):
        return Answer("error", worker, reason=job)
    if not storage.claim_execution(run_id, worker):
        record = storage.get_run(run_id)
        where = f" on {record.worker}" if record.worker else ""
        return Answer(
            "fenced",
            worker,
            reason=f"the run is {record.status}{where} already",
            holder=record.worker,
        )
    # The child only computes: it forwards the run's events, and this worker records them on
    # its one connection while the child goes on (no connection per run, and the run does not
    # wait for the database's commits).
    recorder = _Recorded(
        storage.recorder(
            run_id=run_id,
            scheduler_name=job.scheduler_name,
            trigger_name=job.trigger_name,
            instance_id=job.instance_id,
        ),
        threading.Event(),
        lambda: None,  # its owner's lease: the owner judges it, from the answer
    )
    ours, theirs = socket.socketpair()
    with ours, theirs:
        child = forker().fork(theirs.fileno())
        conn = Connection(os.dup(ours.fileno()))
    spec = _worker.WorkerSpec(
        job=payload,
        storage=None,  # this worker records the run, from the events the child forwards
        environ=dict(os.environ),
        log_levels=_log_levels(),
        forward_events=True,
        grace=0.0,  # the worker died: stop at once, the owner records the run
    )
    conn.send(spec)
    supervisor = SimpleNamespace(storage=storage, grace=grace, clock=storage.clock)
    listeners: tuple[RunListener, ...] = (recorder,)
    if progress:
        listeners += (_Publisher(run_id, dask_worker),)
    handle = _ProcessHandle(job, cast(Any, supervisor), child, conn, listeners)
    handle.worker = f"{worker} (pid {child.pid})"
    polls = 0
    while handle.wait(poll) is None:
        polls += 1
        try:
            # A cancel, or a run that ended elsewhere (abandoned: its owner died), stops it.
            if storage.cancel_requested(run_id):
                by = storage.get_run(run_id).cancelled_by or ""
                if by.startswith(ABANDONED_BY):  # its owner lost its lease
                    handle.abandon(by.removeprefix(ABANDONED_BY))
                else:
                    handle.cancel()
            elif polls % 10 == 0 and storage.get_run(run_id).status.finished:
                handle.cancel()
        except Exception as exc:  # the database is away: the run goes on meanwhile
            logger.warning("run %s: cannot read its cancel flag: %s", run_id, exc)
    result = handle.wait()
    assert result is not None
    # A run stopped here was recorded by the handle; else by the recorder, from its events.
    recorded = handle.recorded if handle.stopped else recorder.recorded
    return Answer("result", worker, result, recorded)  # no rows: execute() keeps none
