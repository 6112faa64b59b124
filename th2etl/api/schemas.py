"""Request bodies of the API: pydantic models that refuse unknown fields and wrong types.

Only the shape is checked here (types, required fields); the meaning (names, bloc configs,
stages, cron expressions) is checked by storage, whose message the API returns in ``detail``.
Strict mode: ``"5"`` is not a number and ``1`` is not a string, so nothing is silently coerced.

Clients of th2etl 0.0.x send ``null`` for every optional field they were not given: on create,
``null`` means the field's default (``description: null`` -> ``""``); on update, ``null`` (or
leaving the field out) keeps the stored value. They also send a bloc's ``dependencies``, which
is accepted and not stored (:data:`NOT_STORED`): in th2etl, pipeline stages order blocs and
``source_bloc`` names a bloc's inputs.
"""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from th2etl._names import MAX_NAME_LENGTH, NAME_PATTERN
from th2etl.pipelines.result import RunStatus

__all__ = [
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
    description="accepted from th2etl 0.0.x clients and not stored: pipeline stages order "
    "blocs, and a bloc's config names its inputs (source_bloc)",
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


class PipelineUpdate(Body):
    stages: list[list[str]] | None = None
    description: str | None = None


class TriggerCreate(_Create):
    name: str = _name("every_hour")
    pipeline_name: str = _name("daily_sales")
    cron_expression: str = Field(examples=["0 * * * *"])
    timezone: str | None = Field(default="UTC", examples=["Europe/Paris"])
    description: str | None = ""


class TriggerUpdate(Body):
    pipeline_name: str | None = None
    cron_expression: str | None = None
    timezone: str | None = None
    description: str | None = None


class SchedulerCreate(_Create):
    name: str = _name("daily_sales_hourly")
    pipeline_name: str = _name("daily_sales")
    trigger_name: str = _name("every_hour")
    enabled: bool | None = True
    description: str | None = ""


class SchedulerUpdate(Body):
    pipeline_name: str | None = None
    trigger_name: str | None = None
    enabled: bool | None = None
    description: str | None = None


class RunRequest(Body):
    variables: dict[str, Any] = Field(
        default_factory=dict,
        description="run variables, read by bloc configs as ${var:NAME}",
        examples=[{"day": "2026-11-25"}],
    )
    at: AwareDatetime | None = Field(
        default=None,
        description="the moment the run is for, read by bloc configs as ${run:scheduled_time}, "
        "${run:date}...; default: when it starts",
        examples=["2026-11-25T00:00:00+00:00"],
    )


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
