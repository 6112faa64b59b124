"""Request bodies of the API: pydantic models that refuse unknown fields and wrong types.

Only the shape is checked here (types, required fields); the meaning (names, bloc configs,
stages, cron expressions) is checked by storage, whose message the API returns in ``detail``.
Strict mode: ``"5"`` is not a number and ``1`` is not a string, so nothing is silently coerced.

Clients of th2etl 0.0.x send ``null`` for every optional field they were not given: on create,
``null`` means the field's default (``description: null`` -> ``""``); on update, ``null`` (or
leaving the field out) keeps the stored value. They also send a bloc's ``dependencies`` (the
blocs that had to finish first), which is accepted and not stored (``Body.not_stored``): in
th2etl that is "in an earlier stage" of the pipeline, since a bloc starts after every earlier
stage has ended (``th2etl import-legacy`` reads it the same way, th2etl/legacy.py).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, ClassVar

from pydantic import (
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
)

from th2etl._names import MAX_NAME_LENGTH, NAME_PATTERN
from th2etl.pipelines.result import RunStatus

__all__ = [
    "BackfillPlanned",
    "BackfillRequest",
    "BackfillTickState",
    "BlocCreate",
    "BlocUpdate",
    "Body",
    "Error",
    "ErrorItem",
    "FireTime",
    "Health",
    "LogEvent",
    "PipelineCreate",
    "PipelineGraph",
    "PipelineUpdate",
    "RunLog",
    "RunRequest",
    "RunStarted",
    "ScheduleDefaults",
    "SchedulerCreate",
    "SchedulerUpdate",
    "TriggerCreate",
    "TriggerPreview",
    "TriggerUpdate",
]


class ErrorItem(BaseModel):
    """One problem of an invalid request."""

    loc: list[str | int] = Field(description="where: e.g. ['body', 'name'] or ['query', 'limit']")
    msg: str = Field(description="what is wrong")
    type: str = Field(description="a machine-readable kind, e.g. 'missing'")


class Error(BaseModel):
    """Every error answer of the API."""

    detail: str = Field(description="what went wrong, the offending value and the fix")
    errors: list[ErrorItem] | None = Field(
        default=None, description="request validation errors (422 only): one per problem"
    )


def _iso_text(value: Any) -> Any:
    # Not strict (JSON has no date-time type, so text must be read as one), yet not a number
    # of seconds either: what the schema says, ISO 8601 text.
    if isinstance(value, str | datetime):
        return value
    raise ValueError("must be an ISO 8601 date-time with an offset, e.g. 2026-03-01T00:00:00Z")


Instant = Annotated[AwareDatetime, BeforeValidator(_iso_text), Field(strict=False)]
"""A date-time with an offset, given as ISO 8601 text."""


def _name(*examples: str) -> Any:
    """A name field: the name rule is documented here and enforced by storage (its message)."""
    return Field(
        examples=list(examples),
        json_schema_extra={"pattern": NAME_PATTERN, "minLength": 1, "maxLength": MAX_NAME_LENGTH},
    )


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    not_stored: ClassVar[frozenset[str]] = frozenset()
    """Fields accepted for older clients that storage does not take."""

    def storage_fields(self) -> dict[str, Any]:
        """The body as the storage method's keyword arguments."""
        return self.model_dump(exclude=set(self.not_stored))


class _Create(Body):
    """A create body: ``null`` for an optional field means its default."""

    @field_validator("*", mode="before")
    @classmethod
    def _null_means_default(cls, value: Any, info: ValidationInfo) -> Any:
        field = cls.model_fields[info.field_name or ""]
        if value is None and not field.is_required():
            return field.get_default(call_default_factory=True)
        return value


_DEPENDENCIES = Field(
    default=None,
    description="th2etl 0.0.x's blocs that must finish first: accepted and not stored; in "
    "th2etl a bloc starts after every earlier stage of its pipeline has ended, so put them in "
    "an earlier stage (a bloc's config names its inputs with source_bloc)",
    json_schema_extra={"deprecated": True},
)


class BlocCreate(_Create):
    not_stored = frozenset({"dependencies"})

    name: str = _name("load_sales")
    bloc_type: str = Field(examples=["csv_loader"])
    config: dict[str, Any] | None = Field(
        default_factory=dict, examples=[{"file_path": "sales.csv"}]
    )
    description: str | None = ""
    dependencies: list[str] | None = _DEPENDENCIES


class BlocUpdate(Body):
    """The fields to change; the others keep their value."""

    not_stored = frozenset({"dependencies"})

    bloc_type: str | None = None
    config: dict[str, Any] | None = None
    description: str | None = None
    dependencies: list[str] | None = _DEPENDENCIES


class PipelineCreate(_Create):
    name: str = _name("daily_sales")
    stages: list[list[str]] = Field(examples=[[["load_sales"], ["double", "triple"], ["export"]]])
    description: str | None = ""
    timeout: float | None = Field(
        default=None,
        examples=[3600],
        description="Seconds a whole run may take before it is stopped and recorded failed "
        "(null or 0: no limit).",
    )


class PipelineUpdate(Body):
    stages: list[list[str]] | None = None
    description: str | None = None
    timeout: float | None = Field(default=None, description="Seconds; 0 removes the timeout.")


class TriggerCreate(_Create):
    name: str = _name("every_hour")
    pipeline_name: str | None = Field(
        default=None,
        description="a label only (the pipeline the trigger was made for): nothing checks or "
        "reads it, and any scheduler may use the trigger",
        examples=["daily_sales"],
        json_schema_extra={"pattern": NAME_PATTERN, "minLength": 1, "maxLength": MAX_NAME_LENGTH},
    )
    cron_expression: str = Field(examples=["0 * * * *"])
    timezone: str | None = Field(default="UTC", examples=["Europe/Paris"])
    description: str | None = ""


class TriggerUpdate(Body):
    pipeline_name: str | None = None
    cron_expression: str | None = None
    timezone: str | None = None
    description: str | None = None


class _ScheduleOptions(Body):
    """A scheduler's options (th2etl.scheduler.options): null is unset on create, kept on
    update. Their ranges are checked by storage, whose message names the range."""

    after_pipelines: list[str] | None = Field(
        default=None,
        description="instead of trigger_name: run when these pipelines all succeeded for the "
        "same logical time (their logical time is passed on)",
        examples=[["load_orders"]],
    )
    variables: dict[str, Any] | None = Field(
        default=None, description="run variables (${var:NAME}); not for secrets (${env:NAME})"
    )
    missed: str | None = Field(default=None, description="skip, latest or all")
    overlap: str | None = Field(default=None, description="skip or allow")
    max_active_runs: int | None = Field(
        default=None, description="queued and running runs of the schedule at once: 1 to 10,000"
    )
    timeout: float | None = Field(
        default=None, description="seconds a whole run may take: more than 0, at most 7 days"
    )
    start_date: Instant | None = Field(default=None, description="no tick before it")
    end_date: Instant | None = Field(default=None, description="no tick after it")


class SchedulerCreate(_Create, _ScheduleOptions):
    name: str = _name("daily_sales_hourly")
    pipeline_name: str = _name("daily_sales")
    trigger_name: str | None = Field(default=None, examples=["every_hour"])
    enabled: bool | None = True
    description: str | None = ""


class SchedulerUpdate(_ScheduleOptions):
    pipeline_name: str | None = None
    trigger_name: str | None = None
    enabled: bool | None = None
    description: str | None = None
    reset: list[str] = Field(default_factory=list, description='options to unset, e.g. ["timeout"]')


class ScheduleDefaults(Body):
    """Options for the schedulers that set none (null: not set in the database)."""

    missed: str | None = Field(default=None, description="skip, latest or all")
    overlap: str | None = Field(default=None, description="skip or allow")
    max_active_runs: int | None = Field(default=None, description="1 to 10,000")
    timeout: float | None = Field(default=None, description="seconds: more than 0, at most 7 days")


class RunRequest(Body):
    variables: dict[str, Any] = Field(
        default_factory=dict,
        description="run variables, read by bloc configs as ${var:NAME}",
        examples=[{"day": "2026-11-25"}],
    )
    at: Instant | None = Field(
        default=None,
        description="the moment the run is for, read by bloc configs as ${run:scheduled_time}, "
        "${run:date}...; default: when it starts",
        examples=["2026-11-25T00:00:00+00:00"],
    )


class BackfillRequest(Body):
    # JSON has no date type: ISO 8601 text (with an offset) is read as a date-time.
    start: Instant = Field(
        alias="from",
        description="first fire time (inclusive), e.g. 2026-03-01T00:00:00+01:00",
    )
    end: Instant = Field(alias="to", description="last fire time (inclusive)")
    rerun_failed: bool = Field(
        default=False, description="rerun failed, abandoned and cancelled ticks as new attempts"
    )
    max_active: int = Field(default=1, description="runs at once, 1 to 1,000")
    dry_run: bool = Field(default=False, description="only list the fire times")
    yes: bool = Field(default=False, description="accept more than 10,000 fire times")


# -- answers (documentation of what routes return; the stored records document themselves) ------


class RunStarted(BaseModel):
    """A run was recorded and handed to the service's executor."""

    run_id: str
    pipeline_name: str
    status: RunStatus
    url: str = Field(description="where to follow it: GET this path")
    scheduler_name: str | None = None


class RunLog(BaseModel):
    run_id: str
    status: RunStatus
    log: str


class LogEvent(BaseModel):
    """One line of a run's log, as th2etl 0.0.15 answered ``GET /runs/{id}/logs``."""

    id: int
    run_id: str
    ts: str
    level: str
    event: str
    message: str
    fields: dict[str, Any]


class PipelineGraph(BaseModel):
    pipeline: str
    stages: list[list[str]]
    mermaid: str = Field(description="a Mermaid flowchart (graph TD)")


class FireTime(BaseModel):
    local: AwareDatetime
    utc: AwareDatetime


class TriggerPreview(BaseModel):
    trigger: str
    cron_expression: str
    timezone: str
    after: AwareDatetime
    fire_times: list[FireTime]


class Health(BaseModel):
    status: str = Field(description="'ok', or 'unavailable' (503) naming what is down")
    version: str
    components: dict[str, dict[str, Any]]
    down: list[str]
    manual_runs: int
    detail: str | None = None


class BackfillTickState(BaseModel):
    scheduled_time: AwareDatetime
    state: str = Field(description="run, rerun (failed, attempt 2), already succeeded (run ...)")


class BackfillPlanned(BaseModel):
    """What a backfill runs (202), or would run (dry_run, 200, with ``ticks``)."""

    scheduler: str
    pipeline: str
    from_: AwareDatetime = Field(alias="from")
    to: AwareDatetime
    fire_times: int = Field(description="how many fire times the range holds")
    to_run: int = Field(description="how many of them run (the others ran already)")
    rerun_failed: bool
    enabled: bool
    notes: list[str]
    summary: str
    ticks: list[BackfillTickState] | None = Field(default=None, description="dry_run only")
    url: str | None = Field(default=None, description="where to follow the runs (202)")
