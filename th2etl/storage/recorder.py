"""From storage to the engine and back: build a stored pipeline, record its runs."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any

from th2etl.blocs.registry import create_bloc
from th2etl.clock import Clock, SystemClock
from th2etl.exceptions import StorageError
from th2etl.metrics import METRICS
from th2etl.pipelines.context import RunContext
from th2etl.pipelines.listener import RunListener
from th2etl.pipelines.pipeline import Pipeline
from th2etl.pipelines.result import BlocResult, BlocStatus, RunResult
from th2etl.storage.definition_store import DefinitionStore
from th2etl.storage.run_history import RunHistory

if TYPE_CHECKING:
    from th2etl.storage.owner import RunOwner

__all__ = ["RunRecorder", "build_pipeline", "pipeline_from_snapshot"]


def build_pipeline(storage: DefinitionStore, name: str) -> Pipeline:
    """A runnable pipeline from the stored definition of ``name`` and its blocs.

    Raises NotFoundError for an unknown pipeline and ValidationError when a stored bloc no
    longer validates (e.g. its bloc type's plugin was uninstalled).
    """
    return pipeline_from_snapshot(storage.definition_snapshot(name))


def pipeline_from_snapshot(snapshot: Mapping[str, Any]) -> Pipeline:
    """A runnable pipeline from a run's definition snapshot (see
    :meth:`DefinitionStore.definition_snapshot`): what a run executes, whatever the stored
    definitions say now."""
    pipeline = snapshot["pipeline"]
    instances = {
        bloc["name"]: create_bloc(
            bloc["name"], bloc["bloc_type"], bloc["config"], description=bloc["description"]
        )
        for bloc in snapshot["blocs"]
    }
    return Pipeline.from_names(
        pipeline["name"],
        pipeline["stages"],
        instances,
        description=pipeline["description"],
        timeout=pipeline.get("timeout"),  # snapshots made before pipelines had one lack it
    )


def _stamp(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds")


class RunRecorder(RunListener):
    """Records one run into ``storage``; see :meth:`RunHistory.recorder`. The run's start and its
    log lines are stamped with ``clock`` (the scheduler's, so fake-clock runs keep fake times).
    With an ``owner``, the outcome is the owner's to adjust (a lost lease makes it
    ``abandoned``) and, when the database does not take it, to write later."""

    def __init__(
        self,
        storage: RunHistory,
        run_id: str | None = None,
        scheduler_name: str | None = None,
        trigger_name: str | None = None,
        instance_id: str | None = None,
        clock: Clock | None = None,
        *,
        started_by: str | None = None,
        definition: Mapping[str, Any] | None = None,
        owner: RunOwner | None = None,
    ) -> None:
        self.storage = storage
        self.owner = owner
        self.clock: Clock = clock if clock is not None else SystemClock()
        self.run_id = run_id
        self.scheduler_name = scheduler_name
        self.trigger_name = trigger_name
        self.instance_id = instance_id
        self.started_by = started_by
        self.definition = definition
        self._positions: dict[str, int] = {}

    def run_started(self, context: RunContext, pipeline: Pipeline) -> None:
        self.run_id = self.run_id or context.run_id
        self._positions = {
            name: position
            for position, name in enumerate(n for stage in pipeline.stage_names for n in stage)
        }
        scheduler = context.scheduler_name or self.scheduler_name
        started_at = self.clock.now()
        lag = None
        if context.scheduled_time is not None:
            lag = (started_at - context.scheduled_time).total_seconds()
        METRICS.run_started(context, pipeline, lag)
        self.storage.start_run(
            self.run_id,
            pipeline.name,
            started_at=started_at,
            scheduler_name=scheduler,
            trigger_name=context.trigger_name or self.trigger_name,
            scheduled_time=context.scheduled_time,
            variables=context.variables,
            instance_id=self.instance_id,
            started_by=self.started_by,
            definition=self.definition,
            logical_time=context.logical_time,
        )
        by = f" by scheduler {scheduler!r}" if scheduler else ""
        tick = f" for {context.scheduled_time.isoformat()}" if context.scheduled_time else ""
        line = f"{_stamp(started_at)} run {self.run_id} of pipeline {pipeline.name!r} started"
        self.storage.append_run_log(self.run_id, f"{line}{by}{tick}\n")

    def bloc_progress(self, context: RunContext, result: BlocResult) -> None:
        """Rows so far of a streaming bloc (the engine sends this about once a second): the
        running run's record shows them, as its bloc still ``running``."""
        assert self.run_id is not None, "bloc_progress before run_started"
        self.storage.record_bloc_run(self.run_id, result, self._positions.get(result.name, 0))

    def bloc_finished(self, context: RunContext, result: BlocResult) -> None:
        assert self.run_id is not None, "bloc_finished before run_started"
        METRICS.bloc_finished(context, result)
        self.storage.record_bloc_run(self.run_id, result, self._positions.get(result.name, 0))
        line = f"{_stamp(result.finished_at or self.clock.now())} stage {result.stage} "
        line += f"bloc {result.name!r} ({result.bloc_type}) {result.status.value}"
        if result.status in (BlocStatus.SUCCEEDED, BlocStatus.FAILED):
            line += (
                f": rows in {result.rows_in}, out {result.rows_out}, {result.duration:.3f}s, "
                f"{result.attempts} attempt(s)"
            )
        if result.error_message:
            line += f"\n    {result.error_type}: {result.error_message}"
        self.storage.append_run_log(self.run_id, line + "\n")

    def run_finished(self, context: RunContext, result: RunResult) -> None:
        assert self.run_id is not None, "run_finished before run_started"
        METRICS.run_finished(result)
        status, error = result.status, result.error
        if self.owner is not None:
            status, error = self.owner.outcome(self.run_id, status, error)
        line = f"{_stamp(result.finished_at)} run {status.value} in {result.duration:.3f}s"
        if error:
            line += f": {error}"
        try:
            self.storage.append_run_log(self.run_id, line + "\n")
            self.storage.finish_run(
                self.run_id,
                status,
                finished_at=result.finished_at,
                started_at=result.started_at,
                error=error,
            )
        except StorageError:
            if self.owner is None:
                raise
            # The database is away: the owner writes the outcome when it is back.
            self.owner.record_later(self.run_id, status, result.finished_at, error)
        finally:
            if self.owner is not None:
                self.owner.untrack(self.run_id)
