"""Request bodies of the API: pydantic models that refuse unknown fields and wrong types.

Only the shape is checked here (types, required fields); the meaning (names, bloc configs,
stages, cron expressions) is checked by storage, whose message the API returns in ``detail``.
Strict mode: ``"5"`` is not a number and ``1`` is not a string, so nothing is silently coerced.
"""

from __future__ import annotations

from typing import Any

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from th2etl._names import MAX_NAME_LENGTH, NAME_PATTERN

__all__ = [
    "BlocCreate",
    "BlocUpdate",
    "Error",
    "ErrorItem",
    "PipelineCreate",
    "PipelineUpdate",
    "RunRequest",
    "SchedulerCreate",
    "SchedulerUpdate",
    "TriggerCreate",
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


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class BlocCreate(_Body):
    name: str = _name("load_sales")
    bloc_type: str = Field(examples=["csv_loader"])
    config: dict[str, Any] = Field(default_factory=dict, examples=[{"file_path": "sales.csv"}])
    description: str = ""


class BlocUpdate(_Body):
    """The fields to change; the others keep their value."""

    bloc_type: str | None = None
    config: dict[str, Any] | None = None
    description: str | None = None


class PipelineCreate(_Body):
    name: str = _name("daily_sales")
    stages: list[list[str]] = Field(examples=[[["load_sales"], ["double", "triple"], ["export"]]])
    description: str = ""


class PipelineUpdate(_Body):
    stages: list[list[str]] | None = None
    description: str | None = None


class TriggerCreate(_Body):
    name: str = _name("every_hour")
    pipeline_name: str = _name("daily_sales")
    cron_expression: str = Field(examples=["0 * * * *"])
    timezone: str = Field(default="UTC", examples=["Europe/Paris"])
    description: str = ""


class TriggerUpdate(_Body):
    pipeline_name: str | None = None
    cron_expression: str | None = None
    timezone: str | None = None
    description: str | None = None


class SchedulerCreate(_Body):
    name: str = _name("daily_sales_hourly")
    pipeline_name: str = _name("daily_sales")
    trigger_name: str = _name("every_hour")
    enabled: bool = True
    description: str = ""


class SchedulerUpdate(_Body):
    pipeline_name: str | None = None
    trigger_name: str | None = None
    enabled: bool | None = None
    description: str | None = None


class RunRequest(_Body):
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
