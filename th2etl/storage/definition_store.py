"""The definitions role of storage: blocs, pipelines, triggers and schedulers.

Definitions are validated before they are written (names, bloc types and configs through the
bloc registry, stages, cron expressions, references); a refusal raises
:class:`~th2etl.exceptions.ValidationError` naming the thing, the value and the fix. Every
definition write bumps :meth:`DefinitionStore.revision` in its own transaction, so a reader
(the scheduler, the API's listing cache) notices changes made by any process with one read.
The guarantees shared by every role are in :mod:`th2etl.storage.base`.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from th2etl.storage.connection import StorageConnection
from th2etl.storage.records import BlocRecord, PipelineRecord, SchedulerRecord, TriggerRecord

if TYPE_CHECKING:
    from th2etl.pipelines.pipeline import Pipeline
    from th2etl.scheduler.options import ScheduleDefaults

__all__ = ["DefinitionStore"]


class DefinitionStore(StorageConnection):
    """Blocs, pipelines, triggers and schedulers, stored verbatim and validated first."""

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
        self,
        name: str,
        stages: Sequence[Sequence[str]],
        description: str = "",
        timeout: float | None = None,
    ) -> PipelineRecord:
        """Store a pipeline. ``stages`` is a list of stages, each a list of bloc names; each
        bloc must exist, appear once, and read ``source_bloc`` only from earlier stages.
        ``timeout``: the seconds a whole run may take (None or 0: no limit; see
        :mod:`th2etl.executors`)."""

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
        timeout: float | None = None,
    ) -> PipelineRecord:
        """Change the stages, description and/or timeout (0 removes it), validated like a new
        pipeline; None leaves a field as it is."""

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
        pipeline_name: str | None = None,
        cron_expression: str | None = None,
        timezone: str = "UTC",
        description: str = "",
    ) -> TriggerRecord:
        """Store a reusable cron trigger: ``create_trigger("nightly", cron_expression="0 2 * *
        *")``. The expression is required and must parse (the parser's reason is in the
        message); ``timezone`` must be an IANA name. ``pipeline_name`` is an optional label (a
        valid name that need not exist: the seed's ``create_trigger(name, pipeline_name,
        cron)`` and quickstart, which creates the trigger first, keep working); nothing reads
        it, and any scheduler may use the trigger."""

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
        trigger_name: str | None = None,
        enabled: bool = True,
        description: str = "",
        *,
        after_pipelines: Sequence[str] = (),
        variables: Mapping[str, Any] | None = None,
        missed: str | None = None,
        overlap: str | None = None,
        max_active_runs: int | None = None,
        timeout: float | None = None,
        start_date: datetime | None = None,
        end_date: datetime | None = None,
    ) -> SchedulerRecord:
        """Store a scheduler of ``pipeline_name`` (which must exist), fired by
        ``trigger_name`` (an existing trigger) or, instead, by the success of every pipeline in
        ``after_pipelines`` (existing ones) for the same logical time: exactly one of the two.
        A dependency that would close a cycle of pipelines is refused, naming the cycle. The
        options (``variables`` ... ``end_date``; ``None``: unset) are described and
        range-checked by :mod:`th2etl.scheduler.options`."""

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
        after_pipelines: Sequence[str] | None = None,
        variables: Mapping[str, Any] | None = None,
        missed: str | None = None,
        overlap: str | None = None,
        max_active_runs: int | None = None,
        timeout: float | None = None,
        start_date: datetime | None = None,
        end_date: datetime | None = None,
        reset: Sequence[str] = (),
    ) -> SchedulerRecord:
        """Change what is given (``None`` keeps the stored value), checked like a new
        scheduler. A ``trigger_name`` replaces ``after_pipelines`` and the other way round.
        ``reset`` names options to unset (back to the defaults), e.g. ``["timeout"]``."""

    @abstractmethod
    def get_schedule_defaults(self) -> ScheduleDefaults:
        """The database-wide defaults of the options a scheduler leaves unset (``None``:
        not set here either; see :mod:`th2etl.scheduler.options` for which value wins)."""

    @abstractmethod
    def set_schedule_defaults(
        self,
        *,
        missed: str | None = None,
        overlap: str | None = None,
        max_active_runs: int | None = None,
        timeout: float | None = None,
    ) -> ScheduleDefaults:
        """Replace the database-wide defaults (an option not given becomes unset); checked
        like a scheduler's options. Running schedulers use them from their next tick."""

    @abstractmethod
    def delete_scheduler(self, name: str) -> None:
        """Delete a scheduler (its run history stays)."""

    def definition_snapshot(self, name: str) -> dict[str, Any]:
        """What a run of pipeline ``name`` executes, as stored now, JSON-ready:
        ``{"pipeline": {name, stages, description, timeout}, "blocs": [{name, bloc_type, config,
        description}, ...]}`` with configs verbatim (``${env:}`` references unresolved), for
        the run's record."""
        pipeline, blocs = self.get_pipeline_definition(name)
        return {
            "pipeline": {
                "name": pipeline.name,
                "stages": pipeline.stages,
                "description": pipeline.description,
                "timeout": pipeline.timeout,
            },
            "blocs": [
                {
                    "name": bloc.name,
                    "bloc_type": bloc.bloc_type,
                    "config": bloc.config,
                    "description": bloc.description,
                }
                for bloc in blocs
            ],
        }

    def build_pipeline(self, name: str) -> Pipeline:
        """A runnable :class:`~th2etl.pipelines.Pipeline` from the stored definitions."""
        from th2etl.storage.recorder import build_pipeline

        return build_pipeline(self, name)
