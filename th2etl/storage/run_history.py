"""The run-history role of storage: what ran, how each bloc fared, and the run's log.

A run row is written by its owner while it runs (see :mod:`th2etl.storage.coordination` for
who owns a run and how its status may change) and read by anyone: :meth:`RunHistory.get_run`
gives one run with its blocs and log, :meth:`RunHistory.list_runs` a filtered listing.
:meth:`RunHistory.recorder` is the engine listener that writes a run as it goes. Run history
outlives definitions: names in it are plain text. The guarantees shared by every role are in
:mod:`th2etl.storage.base`.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any

from th2etl.logical_time import LogicalTime
from th2etl.pipelines.result import BlocResult, RunStatus
from th2etl.storage.connection import StorageConnection
from th2etl.storage.records import RunRecord

if TYPE_CHECKING:
    from th2etl.clock import Clock
    from th2etl.pipelines.listener import RunListener
    from th2etl.storage.owner import RunOwner

__all__ = ["RunHistory"]


class RunHistory(StorageConnection):
    """Recorded runs: their status, blocs and log."""

    @abstractmethod
    def start_run(
        self,
        run_id: str,
        pipeline_name: str,
        *,
        started_at: datetime,
        scheduler_name: str | None = None,
        trigger_name: str | None = None,
        scheduled_time: datetime | None = None,
        variables: Mapping[str, Any] | None = None,
        instance_id: str | None = None,
        started_by: str | None = None,
        definition: Mapping[str, Any] | None = None,
        logical_time: LogicalTime | None = None,
    ) -> RunRecord:
        """Record that run ``run_id`` is running, owned by ``instance_id``. A queued or
        running row with that ``run_id`` already there (a claimed tick, a created run) is
        adopted: its start, variables and status are updated (its ``started_by`` and a data
        interval it was claimed with are kept). A run that has ended raises
        :class:`RunFinishedError`. Variables that are not JSON are stored as their ``str()``.
        ``logical_time`` is the moment and data interval the run is for
        (:mod:`th2etl.logical_time`), read back as ``RunRecord.logical_time``."""

    @abstractmethod
    def record_bloc_run(self, run_id: str, result: BlocResult, position: int = 0) -> None:
        """Store (or replace) one bloc's outcome in a run; ``position`` orders the blocs."""

    @abstractmethod
    def finish_run(
        self,
        run_id: str,
        status: RunStatus | str,
        *,
        finished_at: datetime,
        error: str | None,
        started_at: datetime | None = None,
    ) -> bool:
        """Set a run's final (terminal) status, end time and error (and its start, when
        given: the engine's clock may be a fake one); True when recorded. A run that has
        ended already keeps its status (e.g. it was marked ``abandoned``): nothing is
        written, a warning is logged, and the answer is False. A transition the state
        machine refuses (``queued`` -> ``succeeded``) raises :class:`RunStatusError`."""

    @abstractmethod
    def append_run_log(self, run_id: str, text: str) -> None:
        """Append ``text`` (add your own newline) to the run's readable log."""

    @abstractmethod
    def get_run(self, run_id: str) -> RunRecord:
        """The run with its blocs and its log."""

    @abstractmethod
    def list_runs(
        self,
        *,
        pipeline_name: str | None = None,
        scheduler_name: str | None = None,
        status: RunStatus | str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int = 100,
    ) -> list[RunRecord]:
        """Runs matching every filter given, newest start first, at most ``limit`` (1..10000).
        ``since <= started_at < until``. Records carry their blocs but not their log."""

    def recorder(
        self,
        run_id: str | None = None,
        scheduler_name: str | None = None,
        trigger_name: str | None = None,
        instance_id: str | None = None,
        clock: Clock | None = None,
        *,
        started_by: str | None = None,
        definition: Mapping[str, Any] | None = None,
        owner: RunOwner | None = None,
    ) -> RunListener:
        """A :class:`~th2etl.pipelines.RunListener` that records a run into this storage:
        the run row on start (adopting a claimed row with the same run id), each bloc when it
        finishes, readable log lines, and the final status. ``run_id``/``scheduler_name``/
        ``trigger_name`` fill in what the run's context does not say. The start and the log
        lines are stamped with ``clock`` (default: the system clock); pass the engine's.
        ``instance_id`` (the owner), ``started_by`` and ``definition`` go to
        :meth:`start_run`; with a :class:`~th2etl.storage.owner.RunOwner` (``owner``), the
        owner adjusts the outcome (a lost lease) and writes it later when the database is
        away."""
        from th2etl.storage.recorder import RunRecorder

        return RunRecorder(
            self,
            run_id,
            scheduler_name,
            trigger_name,
            instance_id,
            clock,
            started_by=started_by,
            definition=definition,
            owner=owner,
        )
