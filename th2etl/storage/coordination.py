"""The coordination role of storage: owners, the queue, tick claims, liveness and cancels.

Several th2etl processes (API services, schedulers, ``th2etl run``, Python scripts) may share
one database. They coordinate only through these methods.

**Owners.** Every run has an owner from the moment it is recorded: the instance
(``owner_id``) that heartbeats for it and answers for its outcome. ``started_by`` says what
started it (``scheduler:NAME``, ``backfill:NAME``, ``dependency:PIPELINE``, ``api:KEYLABEL``
or ``api``, ``cli``, ``python``); ``definition`` keeps the pipeline and bloc definitions it
executes, with ``${env:}`` references unresolved, so later edits never rewrite history.

**Status.** A run's status follows :data:`~th2etl.pipelines.result.TRANSITIONS`, enforced by
a trigger in the database whoever writes the row (and refused in Python first, with a
:class:`~th2etl.exceptions.RunStatusError` naming the run and both statuses): a run is
created ``queued`` or ``running``; a terminal status never changes. A run is *active* while
its status is in :data:`~th2etl.pipelines.result.ACTIVE_STATUSES` (queued or running):
limits and overlap checks count active runs.

**Queue.** A run created ``queued`` waits in one database-wide queue; any process takes the
oldest with :meth:`Coordination.claim_queued_run` (``FOR UPDATE SKIP LOCKED`` on PostgreSQL,
so processes claiming at once take different runs; a write transaction on SQLite) and starts
it with :meth:`Coordination.mark_running`. ``create_run(max_queued=N)`` refuses a run when N
are queued already (:class:`~th2etl.exceptions.QueueFullError`, counted under a lock so that
the bound holds across processes).

**Liveness, by one clock: the database's.** :meth:`Coordination.heartbeat` writes
``last_seen`` with the database server's ``now()`` (the host clock on SQLite, where every
process shares one host) and the end of the owner's own lease, ``lease_until`` = that
``now()`` + its lease (1.5 heartbeat intervals for a :class:`~th2etl.storage.owner.RunOwner`).
:meth:`Coordination.mark_abandoned_runs` compares with the same clock, in SQL: hosts whose
clocks differ change nothing. Each owner is judged by the lease *it* stored, never by the
sweeping process's settings, so processes with different heartbeat intervals share one
database: an owner heartbeating every 10 s keeps its runs while a process heartbeating every
second sweeps, and a dead owner with a 1.5 s lease is abandoned at the next sweep after
1.5 s, whoever sweeps. Any live th2etl process sweeps at each of its heartbeats and halfway
between them, so a dead owner's active runs end ``abandoned`` within its lease plus half a
heartbeat period after its last heartbeat (1.5 + 0.5 = 2 heartbeat intervals with the default
lease and one interval everywhere).
An instance row that records no lease (written before schema version 8, or by a caller of
:meth:`Coordination.heartbeat` that passes none) and a run whose owner has no row are judged
by the sweeping process's ``stale_after`` instead, as every owner was before. Both methods
take an explicit ``now`` instead for a fake clock (tests); then every caller must use that
clock.

**Cancel.** :meth:`Coordination.request_cancel` records who asked; a queued run is cancelled
at once (it never started), a running one is flagged, and its owner, which polls
:meth:`Coordination.runs_to_cancel` at each heartbeat, stops it. A run that has ended raises
:class:`~th2etl.exceptions.RunFinishedError` naming its status.

The guarantees shared by every role are in :mod:`th2etl.storage.base`.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Collection, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from th2etl.logical_time import LogicalTime
from th2etl.pipelines.result import RunStatus
from th2etl.storage.records import InstanceRecord, RunRecord
from th2etl.storage.run_history import RunHistory

__all__ = ["Coordination"]


class Coordination(RunHistory):
    """Owners, the queue, tick claims, heartbeats, abandoned runs and cancel requests."""

    @abstractmethod
    def create_run(
        self,
        run_id: str | None,
        pipeline_name: str,
        *,
        owner_id: str,
        started_by: str,
        status: RunStatus | str = RunStatus.QUEUED,
        variables: Mapping[str, Any] | None = None,
        scheduler_name: str | None = None,
        trigger_name: str | None = None,
        scheduled_time: datetime | None = None,
        definition: Mapping[str, Any] | None = None,
        timeout: float | None = None,
        executor: str | None = None,
        max_queued: int | None = None,
        logical_time: LogicalTime | None = None,
    ) -> RunRecord:
        """Record a new run owned by ``owner_id`` (a new id when ``run_id`` is None), either
        ``queued`` in the shared queue (not claimed yet) or already ``running`` (its owner
        starts it now). ``definition`` is the snapshot it executes (see
        :meth:`~th2etl.storage.definition_store.DefinitionStore.definition_snapshot`),
        ``timeout`` its pipeline-level limit in seconds, ``executor`` where it executes.
        With ``max_queued``, a queued run is refused with :class:`QueueFullError` when that
        many runs are queued already. A taken ``run_id`` raises :class:`ValidationError`.
        ``logical_time`` is the moment and data interval the run is for
        (:mod:`th2etl.logical_time`), read back as ``RunRecord.logical_time``."""

    @abstractmethod
    def claim_queued_run(self, owner_id: str) -> RunRecord | None:
        """Take the oldest queued run nobody has claimed: it becomes ``owner_id``'s (still
        ``queued``, with ``claimed_at`` set), returned with its ``definition``; ``None`` when
        the queue is empty. Two processes
        claiming at once never get the same run. Start it with :meth:`mark_running`."""

    @abstractmethod
    def mark_running(self, run_id: str, *, worker: str | None = None) -> bool:
        """``queued`` -> ``running`` (``started_at`` becomes now), recording ``worker`` (where
        it executes: ``host:pid`` or a Dask worker address) when given and none is recorded
        yet (the Dask worker that took the run stays its worker, not the process it forked);
        a run already running only gets its worker. False when the run has ended meanwhile
        (cancelled or abandoned while queued): do not execute it. :class:`NotFoundError` for
        an unknown run."""

    @abstractmethod
    def claim_execution(self, run_id: str, worker: str) -> bool:
        """The execution fence, for executors whose tasks may run again (a Dask task after its
        worker died): mark the run ``running`` on ``worker`` and return True, only when no
        worker has taken it yet; False when one has, or the run has ended: do not execute it.
        Of several callers at once, exactly one gets True. :class:`NotFoundError` for an
        unknown run."""

    @abstractmethod
    def claim_run(
        self,
        scheduler_name: str,
        scheduled_time: datetime,
        *,
        pipeline_name: str,
        trigger_name: str | None,
        instance_id: str | None,
        now: datetime,
        variables: Mapping[str, Any] | None = None,
        run_id: str | None = None,
        logical_time: LogicalTime | None = None,
        executor: str | None = None,
    ) -> RunRecord | None:
        """Atomically take the tick (``scheduler_name``, ``scheduled_time``): insert a
        ``queued`` run for it (its first attempt, with the data interval of
        ``logical_time``), owned by ``instance_id`` and started by ``scheduler:NAME``
        (claimed at once, so not in the shared queue), and return it; or return ``None``
        when any instance already holds that tick (run or skipped; :meth:`claim_tick` takes
        later attempts). One insert guarded by a unique (scheduler, time, attempt)
        constraint, so of N instances claiming at once exactly one wins. Run the
        pipeline with the record's ``run_id`` and :meth:`recorder` adopts the row.
        ``executor`` is where the run will execute (``thread``, ``process``, ``dask``).

        **Idempotent per claim.** ``run_id`` names the claim (a new id when ``None``). Calling
        again with the same ``run_id`` while that run is still active returns the same row
        instead of ``None``: when the connection drops after COMMIT (the claim is made but
        its answer lost), retrying with the same id adopts the claim, so the tick runs
        exactly once and its row is not left active. Any other claim of the tick -- a new
        id, even from the same instance -- gets ``None``, and so does a retry once the run
        has finished or been abandoned. A ``run_id`` that is another run's raises
        :class:`ValidationError`."""

    @abstractmethod
    def record_skipped_run(
        self,
        scheduler_name: str,
        scheduled_time: datetime,
        reason: str,
        *,
        pipeline_name: str,
        trigger_name: str | None,
        instance_id: str | None,
        now: datetime,
    ) -> RunRecord | None:
        """Record the tick as ``skipped`` with ``reason`` as its error, under the same
        uniqueness as :meth:`claim_run`; ``None`` when the tick is already held."""

    @abstractmethod
    def claim_tick(
        self,
        scheduler_name: str,
        scheduled_time: datetime,
        *,
        pipeline_name: str,
        trigger_name: str | None,
        instance_id: str | None,
        now: datetime,
        rerun: Collection[RunStatus] = (RunStatus.SKIPPED,),
        variables: Mapping[str, Any] | None = None,
        logical_time: LogicalTime | None = None,
        started_by: str | None = None,
        definition: Mapping[str, Any] | None = None,
        executor: str | None = None,
    ) -> RunRecord | None:
        """Take the next attempt of a tick, for a backfill (``started_by`` ``backfill:NAME``)
        or a dependency (``dependency:PIPELINE``), recorded like :meth:`claim_run`: attempt 1
        when the tick has no record, the next attempt when its latest attempt's status is in
        ``rerun`` (by default ``skipped``: a tick skipped as missed or overlapping counts as
        not run), and ``None`` otherwise (it ran, is active, or another process took this
        attempt first). Earlier attempts' records stay. Of N processes claiming at once
        exactly one gets each attempt: the same unique (scheduler, time, attempt) as
        :meth:`claim_run`. ``definition`` is the snapshot the run executes and ``executor``
        where, as for :meth:`create_run`."""

    @abstractmethod
    def tick_records(
        self, scheduler_name: str, start: datetime, end: datetime
    ) -> dict[datetime, RunRecord]:
        """The latest attempt of every recorded tick of the scheduler with
        ``start <= scheduled_time <= end``, by scheduled time (without blocs or log)."""

    @abstractmethod
    def succeeded_ticks(
        self, pipeline_names: Sequence[str], *, finished_since: datetime
    ) -> list[RunRecord]:
        """Succeeded runs of those pipelines that are for a scheduled time (of any scheduler)
        and finished at or after ``finished_since``, by scheduled time: what a dependency
        (``after_pipelines``) waits for."""

    @abstractmethod
    def succeeded_at(
        self, pipeline_names: Sequence[str], scheduled_time: datetime
    ) -> dict[str, RunRecord]:
        """A succeeded run of each of those pipelines for ``scheduled_time``, by pipeline
        (pipelines without one are absent)."""

    @abstractmethod
    def latest_scheduled_time(self, scheduler_name: str) -> datetime | None:
        """The latest tick recorded for the scheduler (run or skipped), or ``None``."""

    @abstractmethod
    def active_runs(self, scheduler_name: str | None = None) -> list[RunRecord]:
        """Runs not finished yet (status in ``ACTIVE_STATUSES``: queued or running), of one
        scheduler when given, oldest first: what an overlap check counts."""

    @abstractmethod
    def count_active_runs(
        self,
        *,
        pipeline_name: str | None = None,
        status: RunStatus | str | None = None,
        manual: bool | None = None,
    ) -> int:
        """How many runs are active (of ``pipeline_name`` when given; only ``queued`` or only
        ``running`` when ``status`` says so; only runs of no scheduler, or only scheduled ones,
        when ``manual`` is True or False): one query, for limits and the queue depth."""

    @abstractmethod
    def database_now(self) -> datetime:
        """The database's clock now (the server's ``now()`` on PostgreSQL): the one clock of
        liveness."""

    @abstractmethod
    def heartbeat(
        self,
        instance_id: str,
        now: datetime | None = None,
        *,
        hostname: str | None = None,
        pid: int | None = None,
        info: Mapping[str, Any] | None = None,
        lease: timedelta | None = None,
    ) -> None:
        """Say that instance ``instance_id`` is alive (insert or update), at the database's
        clock (or at ``now`` when given: a fake clock), holding its runs for ``lease`` from
        then (``lease_until``): other processes count them abandoned once it has passed
        without another heartbeat. Without a ``lease`` the row records none, and each sweeping
        process judges it by its own ``stale_after``. A ``lease`` that is not a positive
        timedelta raises :class:`ValidationError`."""

    @abstractmethod
    def list_instances(self, *, seen_since: datetime | None = None) -> list[InstanceRecord]:
        """Instances that sent a heartbeat (at or after ``seen_since`` when given)."""

    @abstractmethod
    def remove_instance(self, instance_id: str) -> None:
        """Forget an instance (on clean shutdown); unknown ids are ignored."""

    @abstractmethod
    def mark_abandoned_runs(self, now: datetime | None, stale_after: timedelta) -> list[str]:
        """Mark ``abandoned`` every active run whose owner's lease has ended: its stored
        ``lease_until`` is before the database's clock (or before ``now`` when given). An
        owner whose row records no lease is judged by ``stale_after`` instead (its last
        heartbeat older than that), and so is a run whose owner has no heartbeat row (queued
        or started more than ``stale_after`` ago). Each run's error names the lease it was
        judged by. Return their run ids, sorted. Runs without an owner (recorded before schema
        version 4) are left alone. A ``stale_after`` that is not a positive timedelta raises
        :class:`ValidationError`."""

    @abstractmethod
    def request_cancel(self, run_id: str, *, by: str | None = None) -> RunRecord:
        """Ask a run to stop, recording ``by`` (in ``started_by``'s words) as ``cancelled_by``:
        a queued run is ``cancelled`` at once; a running one is flagged for its owner
        (:meth:`runs_to_cancel`). Returns the run. :class:`RunFinishedError` naming the
        status when it has ended; :class:`NotFoundError` for an unknown run."""

    @abstractmethod
    def cancel_requested(self, run_id: str) -> bool:
        """Whether :meth:`request_cancel` was called for the run."""

    @abstractmethod
    def runs_to_cancel(self, owner_id: str) -> list[str]:
        """Ids of the active runs of ``owner_id`` asked to stop: what an owner polls at each
        heartbeat."""
