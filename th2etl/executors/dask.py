"""Runs on a Dask cluster: ``TH2ETL_EXECUTOR=tcp://HOST:8786`` (extra ``th2etl[dask]``).

Semantics, in one place:

* **Where a run executes.** The owner (the service, a scheduler, ``th2etl run``) records the run,
  then submits it as one Dask task (key ``th2etl-run-<run id>``); it executes on one worker, and
  its blocs, batches and data stay there. The task runs it in a child process that it can kill:
  a running Dask task cannot be interrupted, and nanny workers are daemonic (no
  ``multiprocessing`` children), so each worker process starts one ``subprocess`` with th2etl
  preloaded that forks a child per run in milliseconds (:mod:`th2etl.executors._forker`).
* **What a worker needs.** Each worker process opens th2etl's database once, from its own
  environment (``DATABASE_URL`` or ``DATABASE_*``, and ``DATABASE_SCHEMA``), and records there
  the run's status, bloc results and log, with the same recorder as the other executors: the
  child forwards the run's events as they happen, and the worker writes them while the child
  goes on (no connection per run; the run does not wait for commits). The task carries the run
  id and the pickled pipeline, whose configs keep their ``${env:NAME}`` references: they
  resolve in the worker's environment, and no secret travels through Dask. Bloc types come from
  packages installed on the workers (or ``dask worker --preload MODULE``); a type missing there
  fails the run naming the type and the worker's address.
* **Exactly once.** The database is the single source of truth: the task executes the run only
  if it takes the run's execution fence, ``Coordination.claim_execution`` (one conditional
  update that records its worker on the run while none is recorded).
  When Dask runs the task again (its worker died, the scheduler lost track of it), the new
  attempt finds the run taken and does not execute it (it answers ``fenced``).
* **Worker death.** The child holds a socket whose other end only its worker process holds:
  when the worker dies, the child exits at once (an open transaction rolls back). The owner
  then records the run ``failed``, naming the worker (and the one Dask ran the task again on,
  which the fence stopped); an owner that died too leaves the run to any live th2etl process
  to mark ``abandoned``, and a run marked so stops on its worker. A run is not retried as a
  new attempt on its own: runs have no retry policy (blocs do); ``th2etl backfill
  --rerun-failed`` runs a failed or abandoned tick again as its next attempt.
* **Cancel and timeout.** A cancel is a flag in the database, which the task polls: it asks
  the child to stop (the engine cancels cooperatively), terminates it after ``grace`` seconds
  and kills it after ``grace`` more. The owner also cancels the Dask future, so a run still
  waiting for a worker never starts. A run past its pipeline-level ``timeout`` (counted from
  its start on the worker) is stopped the same way and recorded ``failed`` with the reason.
* **An unreachable cluster.** Connecting waits at most ``connect_timeout`` seconds; each run
  submitted meanwhile fails at once with the scheduler's address in the message, and
  :meth:`DaskExecutor.health` (the service's ``/health``) reports the executor ``down``.
* **Progress.** A run submitted with listeners (``th2etl run``'s progress lines) publishes its
  events from its worker on the Dask event topic ``th2etl-progress`` as they happen (rows so
  far included); its owner, subscribed once, hands them to the run's listeners, and with the
  answer whatever it missed, then the end. Other runs publish nothing. Its record in the
  database shows its blocs as they finish, and the rows so far of a streaming one.

Accepted addresses: ``tcp://HOST:PORT``, ``tls://HOST:PORT`` (certificates from Dask's own
configuration, e.g. ``DASK_DISTRIBUTED__COMM__TLS__...``) and ``scheduler-file:PATH`` (the JSON
file ``dask scheduler --scheduler-file PATH`` writes). In Python, a ``distributed.Client`` can
be given instead of an address.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import pickle
import re
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any, cast

from th2etl._extras import require_extra
from th2etl.exceptions import (
    ConfigurationError,
    ExecutorUnavailableError,
    MissingExtraError,
)
from th2etl.executors.base import DEFAULT_GRACE, Executor, RunHandle, RunJob
from th2etl.pipelines.listener import notify
from th2etl.pipelines.result import RunResult, RunStatus

if TYPE_CHECKING:
    from distributed import Client

    from th2etl.clock import Clock
    from th2etl.executors._dask_task import Answer
    from th2etl.pipelines.listener import RunListener
    from th2etl.pipelines.pipeline import Pipeline
    from th2etl.storage.coordination import Coordination

__all__ = [
    "ACCEPTED_ADDRESSES",
    "DaskCluster",
    "DaskExecutor",
    "ExecutorHealth",
    "check_dask_address",
    "is_dask_address",
    "require_distributed",
]

logger = logging.getLogger(__name__)

ACCEPTED_ADDRESSES = (
    "tcp://HOST:PORT (e.g. tcp://10.0.0.5:8786), tls://HOST:PORT, or scheduler-file:PATH "
    "(the file `dask scheduler --scheduler-file PATH` writes)"
)
SCHEDULER_FILE = "scheduler-file:"
_SCHEMES = ("tcp", "tls")
# HOST is a name, an IPv4 address or a bracketed IPv6 address; PORT is required.
_ADDRESS = re.compile(
    r"(?P<scheme>[a-z]+)://(?P<host>\[[0-9A-Fa-f:.]+\]|[^\s:/\[\]@]+):(?P<port>\d+)"
)


def require_distributed(feature: str = "running th2etl on a Dask cluster") -> ModuleType:
    """Import ``distributed``, or raise :class:`MissingExtraError` naming ``th2etl[dask]``."""
    require_extra("dask", "dask", feature)
    return require_extra("distributed", "dask", feature)


def is_dask_address(value: str) -> bool:
    """Whether ``value`` is meant as a Dask address (it has a scheme), valid or not."""
    return "://" in value or value.startswith(SCHEDULER_FILE)


def check_dask_address(value: str, where: str = "TH2ETL_EXECUTOR") -> str:
    """``value`` stripped if it is a Dask scheduler address th2etl accepts, else a
    :class:`ConfigurationError` naming ``where``, the value and the accepted forms; without
    the extra installed, :class:`MissingExtraError` (checked without importing it)."""
    if importlib.util.find_spec("distributed") is None:
        raise MissingExtraError(
            f"{where} {value!r} runs th2etl on a Dask cluster, which needs the 'distributed' "
            "package, which is not installed; install it with: pip install 'th2etl[dask]'"
        )
    text = value.strip()
    if text.startswith(SCHEDULER_FILE):
        if not text[len(SCHEDULER_FILE) :].strip():
            raise ConfigurationError(
                f"{where} {value!r} names no file; write scheduler-file:PATH, e.g. "
                "scheduler-file:/shared/scheduler.json"
            )
        return text
    match = _ADDRESS.fullmatch(text)
    problem = None
    if match is None:
        problem = "is not a Dask scheduler address"
    elif match["scheme"] not in _SCHEMES:
        problem = f"uses the scheme {match['scheme']!r}"
    elif not 1 <= int(match["port"]) <= 65535:
        problem = f"has the port {match['port']}, out of range 1-65535"
    if problem is not None:
        raise ConfigurationError(f"{where} {value!r} {problem}; use {ACCEPTED_ADDRESSES}")
    return text


@dataclass(frozen=True)
class ExecutorHealth:
    """One look at the cluster: ``up`` with its worker count, or ``down`` with the reason."""

    up: bool
    address: str
    workers: int = 0
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        body: dict[str, Any] = {"status": "up" if self.up else "down", "address": self.address}
        if self.up:
            body["workers"] = self.workers
        else:
            body["error"] = self.error
        return body


class DaskCluster:
    """The connection to one Dask scheduler, opened on first use and again after it is lost.

    ``DaskCluster("tcp://10.0.0.5:8786")`` or ``DaskCluster(client)`` with a
    ``distributed.Client`` you made (then its address is used, and it is not closed here).
    :meth:`client` connects within ``connect_timeout`` seconds or raises
    :class:`ExecutorUnavailableError` naming the address; one failed attempt is remembered for
    ``retry_after`` seconds, so a flood of runs against a dead cluster fails each at once.
    """

    def __init__(
        self,
        target: str | Client,
        *,
        connect_timeout: float = 5.0,
        retry_after: float = 1.0,
    ) -> None:
        distributed = require_distributed()
        self._client: Any = None  # a distributed.Client (untyped: its close() is not annotated)
        self._own_client = True
        if isinstance(target, distributed.Client):
            self._client = target
            self._own_client = False
            self.address: str = str(target.scheduler.address if target.scheduler else target)
        elif isinstance(target, str):
            self.address = check_dask_address(target)
        else:
            raise ConfigurationError(
                f"a Dask executor needs a scheduler address or a distributed.Client, got "
                f"{type(target).__name__}; use {ACCEPTED_ADDRESSES}"
            )
        self.connect_timeout = connect_timeout
        self.retry_after = retry_after
        self._lock = threading.Lock()
        self._failed: tuple[float, str] | None = None  # (monotonic time, reason)

    def __repr__(self) -> str:
        return f"DaskCluster({self.address!r})"

    def _unreachable(self, reason: str) -> ExecutorUnavailableError:
        return ExecutorUnavailableError(
            f"the Dask scheduler at {self.address} cannot be reached ({reason}); start it "
            "(`dask scheduler`, then `dask worker ADDRESS` on each worker host) or fix "
            "TH2ETL_EXECUTOR"
        )

    def client(self) -> Client:
        """The connected client; connects (again) when there is none or it was closed."""
        with self._lock:
            client = self._client
            if client is not None and client.status in ("running", "connecting"):
                return client  # type: ignore[no-any-return]
            if not self._own_client:
                raise self._unreachable(f"its client is {client.status if client else 'gone'}")
            failed = self._failed
            if failed is not None and time.monotonic() - failed[0] < self.retry_after:
                raise self._unreachable(failed[1])
            if client is not None:
                client.close()
                self._client = None
            try:
                self._client = self._connect()
            except Exception as exc:
                reason = f"{type(exc).__name__}: {exc}"
                self._failed = (time.monotonic(), reason)
                raise self._unreachable(reason) from exc
            self._failed = None
            logger.info("connected to the Dask scheduler at %s", self.address)
            return self._client  # type: ignore[no-any-return]

    def _connect(self) -> Client:
        client_class = require_distributed().Client  # untyped: called through the module
        if self.address.startswith(SCHEDULER_FILE):
            path = Path(self.address[len(SCHEDULER_FILE) :]).expanduser()
            if not path.is_file():
                raise FileNotFoundError(f"no scheduler file at {path}")
            return client_class(  # type: ignore[no-any-return]
                scheduler_file=str(path), timeout=self.connect_timeout, set_as_default=False
            )
        return client_class(  # type: ignore[no-any-return]
            self.address, timeout=self.connect_timeout, set_as_default=False
        )

    def health(self) -> ExecutorHealth:
        """Up (with its worker count) when connected, else down with the reason, at once: a
        connection that is not there is tried again in the background."""
        client = self._client
        if client is not None and client.status == "running":
            try:
                workers = len(client.scheduler_info(n_workers=-1).get("workers", {}))
            except Exception as exc:  # the connection broke during the question
                return ExecutorHealth(False, self.address, error=f"{type(exc).__name__}: {exc}")
            return ExecutorHealth(True, self.address, workers=workers)
        failed = self._failed
        if not self._lock.locked():
            threading.Thread(
                target=self._try_connect, name="th2etl-dask-connect", daemon=True
            ).start()
        reason = failed[1] if failed is not None else "connecting"
        return ExecutorHealth(False, self.address, error=str(self._unreachable(reason)))

    def _try_connect(self) -> None:
        with contextlib.suppress(ExecutorUnavailableError):
            self.client()

    def close(self) -> None:
        """Close the connection this object opened (never a client it was given)."""
        with self._lock:
            client, self._client = self._client, None
        if client is not None and self._own_client:
            client.close()


class _DaskHandle(RunHandle):
    """The owner's side of one run on the cluster: a thread waits for the Dask future."""

    out_of_process = True

    def __init__(
        self, job: RunJob, executor: DaskExecutor, listeners: Sequence[RunListener]
    ) -> None:

        super().__init__(job, storage=executor.storage, grace=executor.grace, clock=executor.clock)
        self.coordination = executor.coordination
        self.executor = executor
        self.future: Any = None
        self.listeners = listeners
        self.address = executor.cluster.address
        self._cancelled = threading.Event()
        self._context = job.context()
        self._live_lock = threading.Lock()
        self._live_over = False
        self._live_started = False
        self._live_finished: set[str] = set()

    def follow(self, future: Any) -> None:
        """Wait for ``future`` (the run's Dask task) in a thread of its own."""
        self.future = future
        threading.Thread(
            target=self._follow, name=f"th2etl-dask-{self.run_id[:12]}", daemon=True
        ).start()

    def live(self, event: str, args: tuple[Any, ...]) -> None:
        """An event the worker published while the run goes (see ``progress``)."""
        with self._live_lock:
            if self._live_over:
                return  # the answer came first and was replayed
            if event == "run_started":
                self._live_started = True
            elif event == "bloc_finished":
                self._live_finished.add(args[0].name)
        if event == "run_started":
            args = (self.job.pipeline,)
        elif event == "bloc_started":
            args = (self.job.pipeline.blocs[args[0]], args[1])
        self._tell(event, *args)

    def _tell(self, event: str, *args: Any) -> None:
        notify(self.listeners, self._context, event, *args)

    def cancel(self) -> None:
        self._stop(by=None)

    def abandon(self, reason: str) -> None:
        # The worker can only hear of it through the database: a cancel it reads as "abandon"
        # (its child is terminated at once, the run recorded abandoned with ``reason``). An
        # owner that cannot reach the database either leaves that to the other processes,
        # which mark the run abandoned once its heartbeats are stale; the worker then stops it.
        self.lost = self.lost or reason
        from th2etl.executors._dask_task import ABANDONED_BY

        self._stop(by=ABANDONED_BY + reason)

    def _stop(self, by: str | None) -> None:
        if self.done() or self._cancelled.is_set():
            return
        self._cancelled.set()
        try:  # the task on the worker polls this flag
            self.coordination.request_cancel(self.run_id, by=by)
        except Exception as exc:  # it ended meanwhile, or the database is away
            logger.info("run %s: the cancel was not recorded: %s", self.run_id, exc)
        if self.future is not None:
            self.future.cancel()  # a task still waiting for a worker never starts

    def _follow(self) -> None:
        try:
            self._await_answer()
        finally:
            self.executor._live.pop(self.run_id, None)

    def _await_answer(self) -> None:
        try:
            answer: Answer = self.future.result()
        except BaseException as exc:  # cancelled, KilledWorker, lost scheduler, ...
            if self._cancelled.is_set():
                self._settle_from_storage(
                    *(
                        (RunStatus.ABANDONED, f"abandoned: {self.lost}")
                        if self.lost
                        else (RunStatus.CANCELLED, "the run was cancelled")
                    ),
                    wait=2 * self.grace + 5,
                )
            else:
                self._settle_from_storage(
                    RunStatus.FAILED,
                    f"its Dask task on the cluster at {self.address} failed: "
                    f"{type(exc).__name__}: {exc}",
                    wait=self.grace,
                )
            return
        self.worker = answer.holder or answer.worker  # fenced: where the run was taken
        if answer.result is not None:
            self._replay(answer.result)
            self._settle(answer.result, answer.recorded)
        elif answer.outcome == "fenced":
            # Dask ran the task again (its first worker died): the first execution's outcome,
            # if it recorded one, stands; else the run died with that worker.
            holder = answer.holder or "that took it"
            self._settle_from_storage(
                RunStatus.FAILED,
                f"the Dask worker {holder} died (or lost the scheduler) before the run ended; "
                f"Dask ran its task again on {answer.worker}, which did not execute it: "
                f"{answer.reason}",
                wait=self.grace,
            )
        else:
            self._end_without_outcome(RunStatus.FAILED, answer.reason or "")

    def _replay(self, result: RunResult) -> None:
        """Tell the listeners what they have not heard live of the run, then its end."""
        with self._live_lock:
            self._live_over = True
            started, finished = self._live_started, set(self._live_finished)
        if not self.listeners:
            return
        if not started:
            self._tell("run_started", self.job.pipeline)
        for bloc in result.blocs.values():
            if bloc.name not in finished:
                self._tell("bloc_finished", bloc)
        self._tell("run_finished", result)

    def _settle_from_storage(self, status: RunStatus, reason: str, *, wait: float) -> None:
        """Keep the outcome the run recorded within ``wait`` seconds, else record ``status``.
        A run still ``queued`` was never claimed by a worker: nothing executes it, no wait."""
        if self.storage is not None:
            deadline = time.monotonic() + wait
            while True:
                try:
                    record = self.storage.get_run(self.run_id)
                except Exception:
                    logger.exception("run %s: cannot read its record", self.run_id)
                    break
                if record.status.finished:
                    result = RunResult(
                        run_id=record.run_id,
                        pipeline_name=record.pipeline_name,
                        status=record.status,
                        started_at=record.started_at,
                        finished_at=record.finished_at or record.started_at,
                        error=record.error,
                        scheduler_name=record.scheduler_name,
                        scheduled_time=record.scheduled_time,
                        variables=record.variables,
                    )
                    self._settle(result, True)
                    return
                if record.status is RunStatus.QUEUED or time.monotonic() >= deadline:
                    break
                time.sleep(0.2)
        self._end_without_outcome(status, reason)


class DaskExecutor(Executor):
    """Executes each run as a Dask task on the cluster at ``cluster`` (an address, a
    ``distributed.Client`` or a :class:`DaskCluster`); see the module docstring.

    >>> executor = DaskExecutor("tcp://10.0.0.5:8786", storage)  # doctest: +SKIP
    >>> executor.submit(RunJob(run_id, storage.build_pipeline("daily"))).wait()  # doctest: +SKIP
    """

    kind = "dask"

    def __init__(
        self,
        cluster: str | Client | DaskCluster,
        storage: Coordination | None,
        *,
        grace: float = DEFAULT_GRACE,
        clock: Clock | None = None,
        connect_timeout: float = 5.0,
    ) -> None:
        super().__init__(storage, grace=grace, clock=clock)
        if storage is None:
            raise ConfigurationError(
                "a Dask executor records every run in th2etl's database, which its workers "
                "open too; give it a storage (DatabaseStorage.from_settings())"
            )
        self.coordination: Coordination = storage
        if not isinstance(cluster, DaskCluster):
            cluster = DaskCluster(cluster, connect_timeout=connect_timeout)
        self.cluster = cluster
        self._live: dict[str, _DaskHandle] = {}  # run id -> handle, of runs with listeners
        self._live_lock = threading.Lock()
        self._subscribed: Any = None  # the client subscribed to the live events

    def __repr__(self) -> str:
        return f"DaskExecutor({self.cluster.address!r})"

    def check(self, pipeline: Pipeline) -> None:
        from th2etl.executors.process import check_importable

        check_importable(pipeline)  # each bloc class is imported from its module there too

    def submit(self, job: RunJob, *, listeners: Sequence[RunListener] = ()) -> RunHandle:
        from th2etl.executors._dask_task import run_job
        from th2etl.executors.process import pickled_job

        self.check(job.pipeline)
        payload = pickled_job(job, "a Dask worker", "")
        bloc_types = {
            bloc.bloc_type: f"{type(bloc).__module__}.{type(bloc).__qualname__}"
            for bloc in job.pipeline.blocs.values()
        }
        handle = _DaskHandle(job, self, listeners)
        progress = bool(listeners)
        try:
            client = self.cluster.client()
            if progress:
                self._hear_progress(client)
                self._live[job.run_id] = handle
            future = client.submit(
                run_job,
                job.run_id,
                payload,
                bloc_types,
                grace=self.grace,
                progress=progress,
                key=f"th2etl-run-{job.run_id}",
                pure=False,
            )
        except Exception as exc:  # fail fast: this run ends now, naming the address
            self._live.pop(job.run_id, None)
            reason = (
                str(exc)
                if isinstance(exc, ExecutorUnavailableError)
                else (
                    f"it could not be sent to the Dask scheduler at {self.cluster.address}: "
                    f"{type(exc).__name__}: {exc}"
                )
            )
            handle._end_without_outcome(RunStatus.FAILED, reason)
            return handle
        handle.follow(future)
        return handle

    def _hear_progress(self, client: Client) -> None:
        """Subscribe ``client`` (once) to the events the workers publish for runs submitted
        with listeners; each goes to its run's handle."""
        from th2etl.executors._dask_task import PROGRESS_TOPIC

        with self._live_lock:
            if self._subscribed is client:
                return
            self._subscribed = client
        cast(Any, client).subscribe_topic(PROGRESS_TOPIC, self._on_progress)

    def _on_progress(self, event: tuple[float, dict[str, Any]]) -> None:
        # Called in the client's event loop: the listeners must be quick (they print a line).
        message = event[1]
        handle = self._live.get(message.get("run", ""))
        if handle is None:
            return  # another owner's run, or one that has ended
        try:
            handle.live(message["event"], pickle.loads(message["args"]))
        except Exception:
            logger.exception("run %s: a live event could not be read", handle.run_id)

    def health(self) -> dict[str, Any]:
        return {**self.cluster.health().to_dict(), "kind": self.kind}

    def shutdown(self) -> None:
        self.cluster.close()
