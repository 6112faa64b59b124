"""The storage contract, documented once: every backend (PostgreSQL, SQLite) keeps it.

Guarantees that hold for every method unless it says otherwise:

* **Thread-safe.** One storage object may be shared by the scheduler's and the engine's
  threads; calls are serialised on its connection.
* **One transaction per write.** A write that raises has changed nothing.
* **Validation first.** Definitions are checked (names, bloc types and configs through the bloc
  registry, stages, cron expressions, references) before anything is written; a refusal raises
  :class:`~th2etl.exceptions.ValidationError` naming the thing, the value and the fix.
* **Errors.** Unknown names raise :class:`~th2etl.exceptions.NotFoundError`; a taken name
  :class:`~th2etl.exceptions.AlreadyExistsError` (also when two processes create it at the same
  moment: the database's unique constraint decides); deleting something still used raises
  :class:`~th2etl.exceptions.InUseError` listing the users. When the database cannot be
  reached a call raises :class:`~th2etl.exceptions.DatabaseUnavailableError` naming host, port
  and database (never the password) within the connect timeout, and the *next* call connects
  again by itself. Other database failures raise :class:`~th2etl.exceptions.StorageError`.
* **Verbatim.** Names, descriptions, configs and variables are stored as given and returned
  equal; they are always passed as parameters, never spliced into SQL.
* **Time.** Timestamps are timezone-aware (UTC when read back). Methods that decide something
  from the time take ``now=``; definition timestamps come from the storage's clock.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

from th2etl.pipelines.result import BlocResult, RunStatus
from th2etl.storage.records import (
    BlocRecord,
    BlocRunRecord,
    InstanceRecord,
    PipelineRecord,
    RunRecord,
    SchedulerRecord,
    TriggerRecord,
)

if TYPE_CHECKING:
    from th2etl.clock import Clock
    from th2etl.pipelines.engine import RunListener
    from th2etl.pipelines.pipeline import Pipeline
    from th2etl.pipelines.result import RunResult

__all__ = [
    "BlocRecord",
    "BlocRunRecord",
    "InstanceRecord",
    "PipelineRecord",
    "RunRecord",
    "SchedulerRecord",
    "Storage",
    "TriggerRecord",
]


class Storage(ABC):
    """Definitions (blocs, pipelines, triggers, schedulers) and run history in one database."""

    # --- lifecycle ------------------------------------------------------------------------

    @abstractmethod
    def describe(self) -> str:
        """Where the data lives, for people and error messages (never the password)."""

    @abstractmethod
    def check_connection(self) -> None:
        """Run a trivial query; raise :class:`DatabaseUnavailableError` when it fails. A
        connection that died while idle is replaced once before failure is reported, so a
        health check right after a server restart says the truth."""

    @abstractmethod
    def schema_version(self) -> int:
        """The migration version the database is at (migrations run when storage opens)."""

    @abstractmethod
    def close(self) -> None:
        """Close the connection; idempotent. A later call would connect again."""

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # --- definitions ----------------------------------------------------------------------

    @abstractmethod
    def revision(self) -> int:
        """A counter bumped by every definition write, in the same transaction; one cheap read.

        A scheduler remembers it and reloads definitions only when it changed.
        """

    @abstractmethod
    def create_bloc(
        self,
        name: str,
        bloc_type: str,
        config: Mapping[str, Any] | None = None,
        description: str = "",
    ) -> BlocRecord:
        """Store a bloc. ``bloc_type`` must be registered and ``config`` valid for it and
        JSON-serialisable; the config is stored as given, without defaults filled in."""

    @abstractmethod
    def get_bloc(self, name: str) -> BlocRecord:
        """The bloc called ``name``."""

    @abstractmethod
    def list_blocs(self, *, bloc_type: str | None = None) -> list[BlocRecord]:
        """Every bloc (of ``bloc_type`` when given), sorted by name."""

    @abstractmethod
    def update_bloc(
        self,
        name: str,
        *,
        bloc_type: str | None = None,
        config: Mapping[str, Any] | None = None,
        description: str | None = None,
    ) -> BlocRecord:
        """Change what is given (``None`` keeps the stored value); ``config`` replaces the whole
        config. The result is validated like a new bloc, and every pipeline using the bloc must
        still be valid with it (its ``source_bloc`` order)."""

    @abstractmethod
    def delete_bloc(self, name: str) -> None:
        """Delete a bloc; :class:`InUseError` while a pipeline names it."""

    @abstractmethod
    def create_pipeline(
        self, name: str, stages: Sequence[Sequence[str]], description: str = ""
    ) -> PipelineRecord:
        """Store a pipeline. ``stages`` is a list of stages, each a list of bloc names; each
        bloc must exist, appear once, and read ``source_bloc`` only from earlier stages."""

    @abstractmethod
    def get_pipeline(self, name: str) -> PipelineRecord:
        """The pipeline called ``name``."""

    @abstractmethod
    def list_pipelines(self) -> list[PipelineRecord]:
        """Every pipeline, sorted by name, in one query."""

    @abstractmethod
    def update_pipeline(
        self,
        name: str,
        *,
        stages: Sequence[Sequence[str]] | None = None,
        description: str | None = None,
    ) -> PipelineRecord:
        """Change the stages and/or description, validated like a new pipeline."""

    @abstractmethod
    def delete_pipeline(self, name: str) -> None:
        """Delete a pipeline (not its blocs, not its run history); :class:`InUseError` while a
        scheduler runs it."""

    @abstractmethod
    def get_pipeline_definition(self, name: str) -> tuple[PipelineRecord, list[BlocRecord]]:
        """The pipeline and the blocs it names (in stage order), read together: what
        :meth:`build_pipeline` needs."""

    def get_pipeline_blocs(self, name: str) -> list[BlocRecord]:
        """The blocs the pipeline names, in stage order."""
        return self.get_pipeline_definition(name)[1]

    @abstractmethod
    def create_trigger(
        self,
        name: str,
        pipeline_name: str,
        cron_expression: str,
        timezone: str = "UTC",
        description: str = "",
    ) -> TriggerRecord:
        """Store a cron trigger. The expression must parse (the parser's reason is in the
        message) and ``timezone`` be an IANA name. ``pipeline_name`` must be a valid name but
        need not exist yet (the seed's quickstart creates the trigger first); what runs is the
        scheduler's pipeline."""

    @abstractmethod
    def get_trigger(self, name: str) -> TriggerRecord:
        """The trigger called ``name``."""

    @abstractmethod
    def list_triggers(self, *, pipeline_name: str | None = None) -> list[TriggerRecord]:
        """Every trigger (for ``pipeline_name`` when given), sorted by name."""

    @abstractmethod
    def update_trigger(
        self,
        name: str,
        *,
        pipeline_name: str | None = None,
        cron_expression: str | None = None,
        timezone: str | None = None,
        description: str | None = None,
    ) -> TriggerRecord:
        """Change what is given, validated like a new trigger."""

    @abstractmethod
    def delete_trigger(self, name: str) -> None:
        """Delete a trigger; :class:`InUseError` while a scheduler uses it."""

    @abstractmethod
    def create_scheduler(
        self,
        name: str,
        pipeline_name: str,
        trigger_name: str,
        enabled: bool = True,
        description: str = "",
    ) -> SchedulerRecord:
        """Store a scheduler; its pipeline and trigger must exist."""

    @abstractmethod
    def get_scheduler(self, name: str) -> SchedulerRecord:
        """The scheduler called ``name``."""

    @abstractmethod
    def list_schedulers(
        self, *, enabled: bool | None = None, pipeline_name: str | None = None
    ) -> list[SchedulerRecord]:
        """Every scheduler (filtered when asked), sorted by name."""

    @abstractmethod
    def update_scheduler(
        self,
        name: str,
        *,
        pipeline_name: str | None = None,
        trigger_name: str | None = None,
        enabled: bool | None = None,
        description: str | None = None,
    ) -> SchedulerRecord:
        """Change what is given; a new pipeline or trigger must exist."""

    @abstractmethod
    def delete_scheduler(self, name: str) -> None:
        """Delete a scheduler (its run history stays)."""

    # --- run history ----------------------------------------------------------------------

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
    ) -> RunRecord:
        """Record that run ``run_id`` is running. A row with that ``run_id`` already there (a
        claimed tick, see :meth:`claim_run`) is adopted: its start, variables and status are
        updated. Variables that are not JSON are stored as their ``str()``."""

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
    ) -> None:
        """Set a run's final status, end time and error (and its start, when given: the
        engine's clock may be a fake one)."""

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

    # --- scheduler coordination -----------------------------------------------------------

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
    def running_runs(self, scheduler_name: str | None = None) -> list[RunRecord]:
        """Runs still ``running`` (of one scheduler when given), oldest first."""

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

    # --- built on the above ---------------------------------------------------------------

    def build_pipeline(self, name: str) -> Pipeline:
        """A runnable :class:`~th2etl.pipelines.Pipeline` from the stored definitions."""
        from th2etl.storage.recorder import build_pipeline

        return build_pipeline(self, name)

    def recorder(
        self,
        run_id: str | None = None,
        scheduler_name: str | None = None,
        trigger_name: str | None = None,
        instance_id: str | None = None,
        clock: Clock | None = None,
    ) -> RunListener:
        """A :class:`~th2etl.pipelines.RunListener` that records a run into this storage:
        the run row on start (adopting a claimed row with the same run id), each bloc when it
        finishes, readable log lines, and the final status. ``run_id``/``scheduler_name``/
        ``trigger_name`` fill in what the run's context does not say. The start and the log
        lines are stamped with ``clock`` (default: the system clock); pass the engine's."""
        from th2etl.storage.recorder import RunRecorder

        return RunRecorder(self, run_id, scheduler_name, trigger_name, instance_id, clock)

    def run_pipeline(
        self, name: str, variables: Mapping[str, Any] | None = None, **options: Any
    ) -> RunResult:
        """Build the stored pipeline ``name``, run it now with :meth:`recorder` attached, and
        return the result; ``options`` go to :func:`th2etl.pipelines.run_pipeline` (its
        ``clock`` stamps the record too)."""
        from th2etl.pipelines.engine import run_pipeline

        listener = self.recorder(
            run_id=options.get("run_id"),
            scheduler_name=options.get("scheduler_name"),
            trigger_name=options.get("trigger_name"),
            instance_id=options.pop("instance_id", None),
            clock=options.get("clock"),
        )
        listeners = [*options.pop("listeners", ()), listener]
        return run_pipeline(
            self.build_pipeline(name), variables=variables, listeners=listeners, **options
        )
