"""The coordination role of storage: claims of scheduler ticks, instances, liveness, cancels.

Several th2etl processes (API services, schedulers, ``th2etl run``) may share one database.
They coordinate only through these methods: a tick is claimed by exactly one instance, each
instance says it is alive with :meth:`Coordination.heartbeat`, the runs of an instance that
stopped sending heartbeats are marked ``abandoned`` by any live one, and a cancel requested
anywhere is seen by the process running the run. A run counts as *active* while its status
is in :data:`~th2etl.pipelines.result.ACTIVE_STATUSES` (queued or running): overlap checks
count active runs. The guarantees shared by every role are in :mod:`th2etl.storage.base`.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from th2etl.storage.records import InstanceRecord, RunRecord
from th2etl.storage.run_history import RunHistory

__all__ = ["Coordination"]


class Coordination(RunHistory):
    """Claims, heartbeats, abandoned runs and cancel requests, across processes."""

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
    ) -> RunRecord | None:
        """Atomically take the tick (``scheduler_name``, ``scheduled_time``): insert a
        ``running`` run for it and return it, or return ``None`` when any instance already holds
        that tick (run or skipped). One insert guarded by a unique constraint, so of N
        instances claiming at once exactly one wins. Run the pipeline with the record's
        ``run_id`` and :meth:`recorder` adopts the row.

        **Idempotent per claim.** ``run_id`` names the claim (a new id when ``None``). Calling
        again with the same ``run_id`` while that run is still ``running`` returns the same
        row instead of ``None``: when the connection drops after COMMIT (the claim is made
        but its answer lost), retrying with the same id adopts the claim, so the tick runs
        exactly once and its row is not left ``running``. Any other claim of the tick -- a
        new id, even from the same instance -- gets ``None``, and so does a retry once the
        run has finished or been abandoned. A ``run_id`` that is another run's raises
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
    def latest_scheduled_time(self, scheduler_name: str) -> datetime | None:
        """The latest tick recorded for the scheduler (run or skipped), or ``None``."""

    @abstractmethod
    def active_runs(self, scheduler_name: str | None = None) -> list[RunRecord]:
        """Runs not finished yet (status in ``ACTIVE_STATUSES``: queued or running), of one
        scheduler when given, oldest first: what an overlap check counts."""

    @abstractmethod
    def heartbeat(
        self,
        instance_id: str,
        now: datetime,
        *,
        hostname: str | None = None,
        pid: int | None = None,
        info: Mapping[str, Any] | None = None,
    ) -> None:
        """Say that instance ``instance_id`` is alive at ``now`` (insert or update)."""

    @abstractmethod
    def list_instances(self, *, seen_since: datetime | None = None) -> list[InstanceRecord]:
        """Instances that sent a heartbeat (at or after ``seen_since`` when given)."""

    @abstractmethod
    def remove_instance(self, instance_id: str) -> None:
        """Forget an instance (on clean shutdown); unknown ids are ignored."""

    @abstractmethod
    def mark_abandoned_runs(self, now: datetime, stale_after: timedelta) -> list[str]:
        """Mark ``abandoned`` every running run whose instance's last heartbeat is older than
        ``now - stale_after`` (or that has no heartbeat row and started before then); return
        their run ids. Runs without an instance (manual runs) are left alone."""

    @abstractmethod
    def request_cancel(self, run_id: str) -> bool:
        """Ask a running run to stop; return True if it is running (the flag is set), False if
        it already finished. :class:`NotFoundError` for an unknown run."""

    @abstractmethod
    def cancel_requested(self, run_id: str) -> bool:
        """Whether :meth:`request_cancel` was called for the run."""
