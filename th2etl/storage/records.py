"""What storage returns: immutable records that convert to JSON-ready dicts."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, fields
from datetime import datetime
from enum import Enum
from operator import attrgetter
from typing import Any, NamedTuple

from th2etl.blocs.base import source_blocs_of
from th2etl.logical_time import LogicalTime
from th2etl.pipelines.result import BlocStatus, RunStatus
from th2etl.scheduler.options import ScheduleOptions
from th2etl.scheduler.policies import MissedTickPolicy, OverlapPolicy
from th2etl.types import JSON

__all__ = [
    "BlocRecord",
    "BlocRunRecord",
    "InstanceRecord",
    "PipelineRecord",
    "RunRecord",
    "SchedulerRecord",
    "TriggerRecord",
    "json_default",
]


# Values JSON takes as they are (a dict is a config or variables: JSON already).
_PLAIN = frozenset({str, int, float, bool, type(None), dict})


def _json_ready(value: Any) -> Any:
    if type(value) in _PLAIN:  # most values: the API renders hundreds per listing
        return value
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, list):
        return [_json_ready(item) for item in value]
    if isinstance(value, Record | LogicalTime):
        return value.to_dict()
    return value


class _Shape(NamedTuple):
    names: tuple[str, ...]
    values: Callable[[Any], tuple[Any, ...]]
    """All the field values of a record at once."""
    times: tuple[int, ...]
    """The positions of the fields that hold datetimes (or None)."""


_SHAPES: dict[type, _Shape] = {}


def _shape(kind: type) -> _Shape:
    """The fields of record class ``kind``, read once."""
    shape = _SHAPES.get(kind)
    if shape is None:
        found = fields(kind)
        names = tuple(field.name for field in found)
        getter = attrgetter(*names)
        times = tuple(i for i, f in enumerate(found) if "datetime" in str(f.type))
        values = getter if len(names) > 1 else lambda record: (getter(record),)
        shape = _SHAPES[kind] = _Shape(names, values, times)
    return shape


class Record:
    """Base of the records: ``to_dict()`` gives every field, JSON-ready (ISO timestamps)."""

    __slots__ = ()

    def to_dict(self) -> JSON:
        names, values, _ = _shape(type(self))
        return {name: _json_ready(value) for name, value in zip(names, values(self), strict=True)}

    def json_fields(self) -> dict[str, Any]:
        """What :meth:`to_dict` holds, with records and enums left as they are:
        :func:`json_default` renders them as :meth:`to_dict` does, for ``json.dumps``."""
        names, get, times = _shape(type(self))
        values = list(get(self))
        for position in times:  # here rather than one json_default call each
            if (value := values[position]) is not None:
                values[position] = value.isoformat()
        return dict(zip(names, values, strict=True))


def json_default(value: Any) -> Any:
    """``json.dumps(records, default=json_default)`` is ``json.dumps`` of their ``to_dict()``
    (statuses and policies are StrEnums, which JSON writes as strings), in about half the time:
    the API's listings render hundreds of records."""
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Record):
        return value.json_fields()
    if isinstance(value, LogicalTime):
        return value.to_dict()
    if isinstance(value, Enum):
        return value.value
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


@dataclass(frozen=True, slots=True)
class BlocRecord(Record):
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
        return source_blocs_of(self.config)


@dataclass(frozen=True, slots=True)
class PipelineRecord(Record):
    """A stored pipeline: its stages as lists of bloc names; ``timeout``: the seconds a whole
    run may take (None: no limit)."""

    name: str
    stages: list[list[str]]
    description: str
    created_at: datetime
    updated_at: datetime
    timeout: float | None = None

    @property
    def bloc_names(self) -> list[str]:
        """Every bloc the stages name, in stage order."""
        return [bloc for stage in self.stages for bloc in stage]


@dataclass(frozen=True, slots=True)
class TriggerRecord(Record):
    """A stored cron trigger, read as wall-clock time in ``timezone``: reusable by any number
    of schedulers. ``pipeline_name`` is a label (the pipeline it was made for, or ``None``):
    nothing checks or reads it; what runs is each scheduler's pipeline."""

    name: str
    pipeline_name: str | None
    cron_expression: str
    timezone: str
    description: str
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class SchedulerRecord(Record):
    """A stored scheduler: runs ``pipeline_name`` whenever ``trigger_name`` fires, or, with
    ``after_pipelines`` instead, when those pipelines have all succeeded for the same logical
    time; if enabled. Its options (``variables`` ... ``end_date``, ``None`` when unset) are
    described in :mod:`th2etl.scheduler.options`."""

    name: str
    pipeline_name: str
    trigger_name: str | None
    enabled: bool
    description: str
    created_at: datetime
    updated_at: datetime
    variables: dict[str, Any] = field(default_factory=dict)
    missed: MissedTickPolicy | None = None
    overlap: OverlapPolicy | None = None
    max_active_runs: int | None = None
    timeout: float | None = None
    start_date: datetime | None = None
    end_date: datetime | None = None
    after_pipelines: list[str] = field(default_factory=list)

    @property
    def options(self) -> ScheduleOptions:
        """The options this scheduler sets (unset ones ``None``)."""
        return ScheduleOptions(
            missed=self.missed,
            overlap=self.overlap,
            max_active_runs=self.max_active_runs,
            timeout=self.timeout,
            variables=self.variables,
            start_date=self.start_date,
            end_date=self.end_date,
        )


@dataclass(frozen=True, slots=True)
class BlocRunRecord(Record):
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


@dataclass(frozen=True, slots=True)
class RunRecord(Record):
    """A stored pipeline run (or a skipped scheduler tick), with its blocs in stage order.

    ``owner_id`` is the instance that owns the run (it heartbeats for it; see
    :mod:`th2etl.storage.coordination`); ``started_by`` says what started it
    (``scheduler:NAME``, ``backfill:NAME``, ``dependency:PIPELINE``, ``api:KEYLABEL`` or
    ``api``, ``cli``, ``python``) and ``cancelled_by`` who asked it to stop, in the same words.
    ``definition`` is the snapshot of the pipeline and bloc definitions it executed, with
    ``${env:}`` references unresolved. ``started_at`` is when it started running (for a run
    still ``queued``: when it was queued). ``log`` is the run's readable log;
    :meth:`~th2etl.storage.run_history.RunHistory.get_run` fills it, listings leave it
    ``None`` (and ``definition`` ``None``) to stay light.
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
    owner_id: str | None = None
    cancel_requested: bool = False
    started_by: str | None = None
    cancelled_by: str | None = None
    cancel_requested_at: datetime | None = None
    queued_at: datetime | None = None
    claimed_at: datetime | None = None
    timeout: float | None = None
    executor: str | None = None
    worker: str | None = None
    definition: dict[str, Any] | None = None
    blocs: list[BlocRunRecord] = field(default_factory=list)
    log: str | None = None
    attempt: int = 1
    """Which attempt of its tick (a backfill reruns a tick as the next attempt)."""
    logical_time: LogicalTime | None = None
    """The moment and data interval the run is for (see :mod:`th2etl.logical_time`)."""

    @property
    def instance_id(self) -> str | None:
        """The owner's id (the name of ``owner_id`` before th2etl's schema version 4)."""
        return self.owner_id

    @property
    def duration(self) -> float | None:
        """Seconds from start to end, or ``None`` while running."""
        if self.finished_at is None:
            return None
        return (self.finished_at - self.started_at).total_seconds()

    def to_dict(self) -> JSON:
        # instance_id: what clients written for schema version 1 read.
        return {**Record.to_dict(self), "instance_id": self.owner_id, "duration": self.duration}

    def json_fields(self) -> dict[str, Any]:
        answer = Record.json_fields(self)
        # A listing holds a hundred bloc runs: converted here, not one json_default call each.
        answer["blocs"] = [bloc.json_fields() for bloc in self.blocs]
        answer["instance_id"] = self.owner_id
        answer["duration"] = self.duration
        return answer


@dataclass(frozen=True, slots=True)
class InstanceRecord(Record):
    """A th2etl process that sends heartbeats (an owner of runs: a service, a scheduler,
    ``th2etl run``...). ``lease_until`` is when its lease ends unless it heartbeats again, by
    the clock of its heartbeats (the database's); ``None`` for a row that records no lease
    (written before schema version 8): other processes then judge it by their own
    ``stale_after``."""

    instance_id: str
    started_at: datetime
    last_seen: datetime
    hostname: str | None = None
    pid: int | None = None
    info: dict[str, Any] = field(default_factory=dict)
    lease_until: datetime | None = None
