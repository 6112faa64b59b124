"""RunOwner: the instance that owns runs, heartbeating for them on a thread and a connection of
its own.

Every run has an owner from the moment it is recorded (see :mod:`th2etl.storage.coordination`):
the API service, ``th2etl run``, a Python ``storage.run_pipeline()`` caller (a scheduler
manager heartbeats in its own loop). The owner side of the contract, in one place:

* **Registered first.** :meth:`RunOwner.start` sends one heartbeat before it returns, so the
  runs it records always have a live instance row; then a daemon thread
  (``th2etl-owner``) heartbeats every ``heartbeat_interval`` seconds on a connection of its
  own (:meth:`~th2etl.storage.connection.StorageConnection.reopen`): load on the run's or the
  API's connections never delays it.
* **Each heartbeat** (:meth:`RunOwner.beat`): ``last_seen`` is written by the database's
  clock, with the end of this owner's lease (``lease_until``: that instant + ``stale_after``)
  and ``info`` listing the owner's ``runs`` and those ``stopping`` (cancelled, not ended yet);
  the active runs of owners whose own lease has ended are marked ``abandoned`` (any live
  th2etl process does this, each owner judged by the lease it stored, whatever the sweeping
  process's settings; an owner that stored none, from before schema version 8, is judged by
  this owner's ``stale_after``); each owner also sweeps halfway between its heartbeats, so a
  dead owner's runs end within its lease plus half a heartbeat period of the process that
  sweeps: two heartbeat periods at the default lease of 1.5 periods;
  runs of this owner asked to stop (:meth:`~th2etl.storage.coordination.Coordination.
  runs_to_cancel`, from any process) have their :class:`~th2etl.pipelines.CancelToken`
  cancelled; outcomes the database missed while it was away are written again, once each.
* **Lease.** Each successful heartbeat renews a lease of ``stale_after`` seconds (the time
  after which other processes count this owner's runs abandoned: it is stored with the
  heartbeat, by the database's clock), counted here on this host's monotonic clock from the
  moment the heartbeat was *sent*, before the database stamped it, so it never ends later than
  other processes' view of it. When a failing database keeps the owner from renewing it, the owner
  stops its runs while the lease still holds, ``(stale_after - heartbeat_interval) / 4``
  before it ends (a watchdog thread of its own does this, so a heartbeat stuck on a dead
  connection cannot delay it): a worker process is terminated at once, a thread cancelled
  (see :meth:`~th2etl.executors.RunHandle.abandon`). Whatever they end with, the runs are
  recorded ``abandoned`` once the database takes it (:meth:`RunOwner.outcome`), as every
  other process records them: a run is not executing while it is counted abandoned
  elsewhere (a thread whose bloc ignores its cancel is the exception: threads cannot be
  killed). An outage shorter than that changes nothing: the runs finish and their outcomes
  are recorded when the database is back, once each. Heartbeats are sent every
  ``heartbeat_interval`` from the last one *sent* (the time one takes never delays the
  next); a failed one is retried after 1 s at most, and at least twice before the runs are
  stopped (defaults 10 s and 15 s: a heartbeat due at 10 s that fails is retried at 11 s and
  12.875 s, the runs are stopped at 13.75 s); once the lease is lost, retries back off to
  one per heartbeat period.
* :meth:`RunOwner.stop` ends the thread and removes the instance row (its runs should be
  over: any that is not is abandoned by others once ``stale_after`` has passed).
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from types import TracebackType
from typing import TYPE_CHECKING, NamedTuple, Self

from th2etl.exceptions import NotFoundError, StorageError, ValidationError
from th2etl.pipelines.result import RunStatus

if TYPE_CHECKING:
    from th2etl.pipelines.cancel import CancelToken
    from th2etl.storage.coordination import Coordination

__all__ = ["RunOwner", "new_instance_id"]

logger = logging.getLogger("th2etl.storage.owner")


def new_instance_id(kind: str) -> str:
    """``<kind>-<host>-<pid>-<random>``: unique per owner, readable in the instances table."""
    return f"{kind}-{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


class _Outcome(NamedTuple):
    run_id: str
    status: RunStatus
    finished_at: datetime
    error: str | None


class RunOwner:
    """Owns runs in ``storage`` under ``instance_id`` (default: a new id for ``kind``:
    ``api``, ``cli``, ``python``...), heartbeating every ``heartbeat_interval`` seconds
    (default: the ``TH2ETL_HEARTBEAT_INTERVAL`` setting); see the module docstring. Use it as
    a context manager, or call :meth:`start` and :meth:`stop`."""

    def __init__(
        self,
        storage: Coordination,
        *,
        kind: str = "python",
        instance_id: str | None = None,
        heartbeat_interval: float | None = None,
        stale_after: float | None = None,
    ) -> None:
        if heartbeat_interval is None:
            from th2etl.configs.settings import get_settings

            heartbeat_interval = get_settings().heartbeat_interval
        if isinstance(heartbeat_interval, bool) or not (
            isinstance(heartbeat_interval, int | float) and heartbeat_interval > 0
        ):
            raise ValidationError(
                f"heartbeat_interval must be a number of seconds above 0, got "
                f"{heartbeat_interval!r}"
            )
        self.storage = storage
        self.instance_id = instance_id or new_instance_id(kind)
        self.heartbeat_interval = float(heartbeat_interval)
        self.stale_after = float(stale_after or self.heartbeat_interval * 1.5)
        if self.stale_after <= self.heartbeat_interval:
            raise ValidationError(
                f"stale_after ({self.stale_after:g}s) must be longer than the heartbeat "
                f"interval ({self.heartbeat_interval:g}s), or live owners count as dead"
            )
        self._lock = threading.Lock()
        self._runs: dict[str, CancelToken] = {}
        self._lost: dict[str, str] = {}  # run id -> why it is abandoned
        self._pending: list[_Outcome] = []
        self._renewed_at: float | None = None
        self._failures = 0
        self._stopping = threading.Event()
        self._renewed = threading.Event()  # wakes the watchdog to read the new lease
        self._thread: threading.Thread | None = None
        self._watchdog: threading.Thread | None = None
        self._beats: Coordination | None = None
        self.after_beat: Callable[[], None] | None = None
        """Called after each successful heartbeat of the thread (e.g. to claim queued runs)."""

    # --- lifecycle ----------------------------------------------------------------------------

    def start(self, *, require_database: bool = True) -> Self:
        """Register (one heartbeat, here: its error is raised unless ``require_database`` is
        False, then the thread keeps trying) and start heartbeating."""
        self._stopping.clear()
        self._beats = self.storage.reopen()
        try:
            self.beat()
        except StorageError as exc:
            if require_database:
                self._beats.close()
                raise
            logger.warning("owner %s: cannot register yet (%s)", self.instance_id, exc)
        self._thread = threading.Thread(target=self._loop, name="th2etl-owner", daemon=True)
        self._thread.start()
        self._watchdog = threading.Thread(target=self._watch, name="th2etl-lease", daemon=True)
        self._watchdog.start()
        return self

    def stop(self) -> None:
        """Stop heartbeating and forget this instance; idempotent."""
        self._stopping.set()
        self._renewed.set()
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join()
        watchdog, self._watchdog = self._watchdog, None
        if watchdog is not None:
            watchdog.join()
        beats, self._beats = self._beats, None
        if beats is not None:
            try:
                self._retry_outcomes(beats)
                beats.remove_instance(self.instance_id)
            except StorageError as exc:
                logger.warning("owner %s: cannot unregister (%s)", self.instance_id, exc)
            beats.close()

    @property
    def started(self) -> bool:
        """Whether the heartbeat thread runs (between :meth:`start` and :meth:`stop`)."""
        return self._thread is not None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # --- the runs -----------------------------------------------------------------------------

    def track(self, run_id: str, token: CancelToken) -> None:
        """Answer for run ``run_id``: a cancel request or a lost lease cancels ``token``."""
        with self._lock:
            self._runs[run_id] = token
            lost = self._lease_lost()
        if lost:
            self._lose(run_id, token)

    def untrack(self, run_id: str) -> None:
        """The run is over (its outcome recorded, or handed to :meth:`record_later`)."""
        with self._lock:
            self._runs.pop(run_id, None)
            self._lost.pop(run_id, None)

    def outcome(
        self, run_id: str, status: RunStatus, error: str | None
    ) -> tuple[RunStatus, str | None]:
        """What to record for a run that ended ``status``: ``abandoned`` (with the reason)
        when this owner lost its lease while the run went, else what it says."""
        with self._lock:
            reason = self._lost.get(run_id)
        return (RunStatus.ABANDONED, reason) if reason else (status, error)

    def record_later(
        self, run_id: str, status: RunStatus, finished_at: datetime, error: str | None
    ) -> None:
        """The database did not take the run's outcome: write it at the next heartbeats."""
        with self._lock:
            self._pending.append(_Outcome(run_id, status, finished_at, error))

    @property
    def runs(self) -> list[str]:
        """The runs this owner answers for now."""
        with self._lock:
            return sorted(self._runs)

    # --- one heartbeat ------------------------------------------------------------------------

    def beat(self, now: datetime | None = None) -> None:
        """One heartbeat (see the module docstring); raises StorageError when it fails.
        ``now`` stamps it instead of the database's clock (an owner on a fake clock, whose
        caller beats it: it has no thread, and no lease)."""
        storage = self._beats or self.storage
        sent = time.monotonic()
        with self._lock:
            stopping = sorted(run_id for run_id, token in self._runs.items() if token.cancelled)
        storage.heartbeat(
            self.instance_id,
            now,
            hostname=socket.gethostname(),
            pid=os.getpid(),
            info={"runs": self.runs, "stopping": stopping},
            lease=timedelta(seconds=self.stale_after),
        )
        with self._lock:
            self._renewed_at = sent
        self._renewed.set()
        # Other owners are judged by their own stored lease; stale_after only for rows that
        # store none (older th2etl).
        self.sweep(now, storage)
        for run_id in storage.runs_to_cancel(self.instance_id):
            with self._lock:
                token = self._runs.get(run_id)
            if token is not None and not token.cancelled:
                logger.info("run %s: cancel requested; stopping it", run_id)
                token.cancel()
        self._retry_outcomes(storage)

    def sweep(self, now: datetime | None = None, storage: Coordination | None = None) -> None:
        """Mark ``abandoned`` the active runs of every owner whose lease has ended (each judged
        by the lease it stored; :attr:`stale_after` only for owners that stored none)."""
        storage = storage or self._beats or self.storage
        for run_id in storage.mark_abandoned_runs(now, timedelta(seconds=self.stale_after)):
            logger.warning(
                "run %s was left by an owner that stopped sending heartbeats; marked abandoned",
                run_id,
            )

    def _retry_outcomes(self, storage: Coordination) -> None:
        with self._lock:
            pending, self._pending = self._pending, []
        for index, item in enumerate(pending):
            try:
                storage.finish_run(
                    item.run_id, item.status, finished_at=item.finished_at, error=item.error
                )
            except NotFoundError:
                logger.warning("run %s is no longer stored; its outcome is dropped", item.run_id)
            except StorageError:
                with self._lock:
                    self._pending.extend(pending[index:])
                raise

    def _loop(self) -> None:
        delay = self.heartbeat_interval
        while not self._stopping.wait(delay):
            try:
                self.beat()
            except StorageError as exc:
                self._failures += 1
                with self._lock:
                    lost = self._lease_lost()
                # Before the lease is lost: twice at least in the time left after a heartbeat
                # was due (default 3.75 s); after, once per heartbeat period.
                cap = (
                    self.heartbeat_interval
                    if lost
                    else (self._holds_for - self.heartbeat_interval) / 2
                )
                delay = min(2.0 ** (self._failures - 1), cap)
                log = logger.warning if self._failures == 1 else logger.info
                log(
                    "owner %s: heartbeat failed (%s); retrying in %.3gs",
                    self.instance_id,
                    exc,
                    delay,
                )
                continue
            if self._failures:
                logger.warning("owner %s: heartbeats are back", self.instance_id)
            self._failures = 0
            if self.after_beat is not None:
                try:
                    self.after_beat()
                except Exception:
                    logger.exception("owner %s: after its heartbeat", self.instance_id)
            # Every interval from the last heartbeat *sent*: the time a heartbeat and the work
            # after it take never adds up into heartbeats later than the lease allows.
            with self._lock:
                renewed = self._renewed_at
            assert renewed is not None
            # Halfway to the next heartbeat, one more sweep: a dead owner's runs then end
            # within its lease and half a period (two periods at the default lease).
            if self._stopping.wait(
                max(0.0, renewed + self.heartbeat_interval / 2 - time.monotonic())
            ):
                return
            try:
                self.sweep()
            except StorageError as exc:  # the next heartbeat reports the database, and retries
                logger.debug("owner %s: sweep failed (%s)", self.instance_id, exc)
            delay = max(0.0, renewed + self.heartbeat_interval - time.monotonic())

    def _lease_lost(self) -> bool:
        """Under the lock: whether the runs must be stopped (the lease ends within
        ``stop_margin``). An owner that never registered has no runs to lose, and one that
        was not started (its caller beats it) no lease."""
        if self._watchdog is None:
            return False
        renewed = self._renewed_at
        return renewed is not None and time.monotonic() - renewed >= self._holds_for

    @property
    def stop_margin(self) -> float:
        """Seconds before the lease ends at which the owner stops its runs, lacking renewal."""
        return (self.stale_after - self.heartbeat_interval) / 4

    @property
    def _holds_for(self) -> float:
        return self.stale_after - self.stop_margin

    def _watch(self) -> None:
        """The watchdog thread: stops the runs when the lease is about to end unrenewed."""
        while not self._stopping.is_set():
            with self._lock:
                renewed = self._renewed_at
            left = None if renewed is None else renewed + self._holds_for - time.monotonic()
            if left is None or left > 0:
                self._renewed.wait(left)
                self._renewed.clear()
                continue
            self._check_lease()
            self._renewed.wait()  # until the next renewal (or stop)
            self._renewed.clear()

    def _check_lease(self) -> None:
        with self._lock:
            if not self._lease_lost():
                return
            runs = [
                (run_id, token) for run_id, token in self._runs.items() if run_id not in self._lost
            ]
        for run_id, token in runs:
            self._lose(run_id, token)

    def _lose(self, run_id: str, token: CancelToken) -> None:
        reason = (
            f"abandoned: its owner {self.instance_id} could not renew its lease of "
            f"{self.stale_after:g}s (the database was unreachable) and stopped it"
        )
        with self._lock:
            self._lost[run_id] = reason
        logger.warning("run %s: %s", run_id, reason)
        abandon = getattr(token, "abandon", None)  # a RunSlot stops its run at once
        if callable(abandon):
            abandon(reason)
        else:
            token.cancel()

    def __repr__(self) -> str:
        return f"RunOwner({self.instance_id!r}, runs={self.runs})"
