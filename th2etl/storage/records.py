"""What storage returns: immutable records that convert to JSON-ready dicts."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from th2etl.pipelines.result import BlocStatus, RunStatus
from th2etl.types import JSON

__all__ = [
    "BlocRecord",
    "BlocRunRecord",
    "InstanceRecord",
    "PipelineRecord",
    "RunRecord",
    "SchedulerRecord",
    "TriggerRecord",
]


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


@dataclass(frozen=True, slots=True)
class BlocRecord:
    """A stored bloc: its type and its config exactly as given (defaults are not filled in)."""

    name: str
    bloc_type: str
    config: dict[str, Any]
    description: str
    created_at: datetime
    updated_at: datetime

    @property
    def source_blocs(self) -> tuple[str, ...]:
        """The ``source_bloc`` names in the config, or ``()``."""
        source = self.config.get("source_bloc")
        if source is None:
            return ()
        return (source,) if isinstance(source, str) else tuple(source)

    def to_dict(self) -> JSON:
        return {
            "name": self.name,
            "bloc_type": self.bloc_type,
            "config": self.config,
            "description": self.description,
            "created_at": _iso(self.created_at),
            "updated_at": _iso(self.updated_at),
        }


@dataclass(frozen=True, slots=True)
class PipelineRecord:
    """A stored pipeline: its stages as lists of bloc names."""

    name: str
    stages: list[list[str]]
    description: str
    created_at: datetime
    updated_at: datetime

    @property
    def bloc_names(self) -> list[str]:
        """Every bloc the stages name, in stage order."""
        return [bloc for stage in self.stages for bloc in stage]

    def to_dict(self) -> JSON:
        return {
            "name": self.name,
            "stages": self.stages,
            "description": self.description,
            "created_at": _iso(self.created_at),
            "updated_at": _iso(self.updated_at),
        }


@dataclass(frozen=True, slots=True)
class TriggerRecord:
    """A stored cron trigger, read as wall-clock time in ``timezone``."""

    name: str
    pipeline_name: str
    cron_expression: str
    timezone: str
    description: str
    created_at: datetime
    updated_at: datetime

    def to_dict(self) -> JSON:
        return {
            "name": self.name,
            "pipeline_name": self.pipeline_name,
            "cron_expression": self.cron_expression,
            "timezone": self.timezone,
            "description": self.description,
            "created_at": _iso(self.created_at),
            "updated_at": _iso(self.updated_at),
        }


@dataclass(frozen=True, slots=True)
class SchedulerRecord:
    """A stored scheduler: runs ``pipeline_name`` whenever ``trigger_name`` fires, if enabled."""

    name: str
    pipeline_name: str
    trigger_name: str
    enabled: bool
    description: str
    created_at: datetime
    updated_at: datetime

    def to_dict(self) -> JSON:
        return {
            "name": self.name,
            "pipeline_name": self.pipeline_name,
            "trigger_name": self.trigger_name,
            "enabled": self.enabled,
            "description": self.description,
            "created_at": _iso(self.created_at),
            "updated_at": _iso(self.updated_at),
        }


@dataclass(frozen=True, slots=True)
class BlocRunRecord:
    """How one bloc fared in a stored run."""

    run_id: str
    bloc_name: str
    bloc_type: str
    stage: int
    status: BlocStatus
    attempts: int
    rows_in: int
    rows_out: int
    duration: float
    started_at: datetime | None
    finished_at: datetime | None
    error_type: str | None
    error_message: str | None
    error_traceback: str | None

    def to_dict(self) -> JSON:
        return {
            "run_id": self.run_id,
            "bloc_name": self.bloc_name,
            "bloc_type": self.bloc_type,
            "stage": self.stage,
            "status": self.status.value,
            "attempts": self.attempts,
            "rows_in": self.rows_in,
            "rows_out": self.rows_out,
            "duration": self.duration,
            "started_at": _iso(self.started_at),
            "finished_at": _iso(self.finished_at),
            "error_type": self.error_type,
            "error_message": self.error_message,
            "error_traceback": self.error_traceback,
        }


@dataclass(frozen=True, slots=True)
class RunRecord:
    """A stored pipeline run (or a skipped scheduler tick), with its blocs in stage order.

    ``log`` is the run's readable log; :meth:`~th2etl.storage.base.Storage.get_run` fills it,
    listings leave it ``None`` to stay light.
    """

    run_id: str
    pipeline_name: str
    status: RunStatus
    started_at: datetime
    finished_at: datetime | None
    scheduler_name: str | None = None
    trigger_name: str | None = None
    scheduled_time: datetime | None = None
    variables: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    instance_id: str | None = None
    cancel_requested: bool = False
    blocs: list[BlocRunRecord] = field(default_factory=list)
    log: str | None = None

    @property
    def duration(self) -> float | None:
        """Seconds from start to end, or ``None`` while running."""
        if self.finished_at is None:
            return None
        return (self.finished_at - self.started_at).total_seconds()

    def to_dict(self) -> JSON:
        return {
            "run_id": self.run_id,
            "pipeline_name": self.pipeline_name,
            "scheduler_name": self.scheduler_name,
            "trigger_name": self.trigger_name,
            "scheduled_time": _iso(self.scheduled_time),
            "status": self.status.value,
            "started_at": _iso(self.started_at),
            "finished_at": _iso(self.finished_at),
            "duration": self.duration,
            "variables": self.variables,
            "error": self.error,
            "instance_id": self.instance_id,
            "cancel_requested": self.cancel_requested,
            "blocs": [bloc.to_dict() for bloc in self.blocs],
            "log": self.log,
        }


@dataclass(frozen=True, slots=True)
class InstanceRecord:
    """A th2etl process that sends heartbeats (a scheduler instance)."""

    instance_id: str
    started_at: datetime
    last_seen: datetime
    hostname: str | None = None
    pid: int | None = None
    info: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> JSON:
        return {
            "instance_id": self.instance_id,
            "started_at": _iso(self.started_at),
            "last_seen": _iso(self.last_seen),
            "hostname": self.hostname,
            "pid": self.pid,
            "info": self.info,
        }
