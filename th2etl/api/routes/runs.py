"""``/runs``: the run history, one run with its blocs and log, and cancelling a run."""

from __future__ import annotations

import contextlib
import re
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from starlette.responses import Response

from th2etl.api.deps import json_response, state_of
from th2etl.api.schemas import RunLog
from th2etl.exceptions import ValidationError
from th2etl.pipelines.result import RunStatus
from th2etl.storage.records import RunRecord

__all__ = ["router"]

router = APIRouter(prefix="/runs", tags=["runs"])


# RFC 3339 (what OpenAPI's date-time means), the zone optional here so that its absence gets
# its own message; pydantic's datetime would also take a number of seconds (since=0).
_MOMENT = re.compile(
    r"\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})?", re.ASCII
)


def _moment(text: str | None, name: str) -> datetime | None:
    """``text`` as an aware datetime, or a ValidationError naming ``name`` and the fix."""
    if text is None:
        return None
    value = None
    if _MOMENT.fullmatch(text):
        with contextlib.suppress(ValueError):  # e.g. month 13
            value = datetime.fromisoformat(text.upper())
    if value is None:
        raise ValidationError(
            f"{name}={text!r} is not an ISO 8601 date and time; use e.g. "
            "2026-03-07T00:00:00Z or 2026-03-07T00:00:00+02:00"
        )
    if value.utcoffset() is None:
        raise ValidationError(
            f"{name}={text!r} has no timezone; add one, e.g. {text}Z or {text}+02:00"
        )
    return value


def _time_query(description: str) -> Any:
    return Query(description=description, json_schema_extra={"format": "date-time"})


@router.get("", summary="List runs", responses={200: {"model": list[RunRecord]}})
def list_runs(
    request: Request,
    pipeline: Annotated[str | None, Query(description="only runs of this pipeline")] = None,
    scheduler: Annotated[
        str | None, Query(description="only runs started by this scheduler")
    ] = None,
    status: Annotated[RunStatus | None, Query(description="only runs in this status")] = None,
    since: Annotated[str | None, _time_query("started at or after (ISO 8601, with a zone)")] = None,
    until: Annotated[str | None, _time_query("started before (ISO 8601, with a zone)")] = None,
    limit: Annotated[
        int, Query(ge=1, le=10000, description="at most this many, newest first")
    ] = 100,
) -> Response:
    runs = state_of(request).storage.list_runs(
        pipeline_name=pipeline,
        scheduler_name=scheduler,
        status=status,
        since=_moment(since, "since"),
        until=_moment(until, "until"),
        limit=limit,
    )
    return json_response(runs)


@router.get(
    "/{run_id}",
    summary="Read a run with its bloc runs and its log",
    responses={200: {"model": RunRecord}},
)
def get_run(run_id: str, request: Request) -> Response:
    return json_response(state_of(request).storage.get_run(run_id))


@router.get("/{run_id}/log", summary="A run's log", responses={200: {"model": RunLog}})
def get_run_log(run_id: str, request: Request) -> Response:
    run = state_of(request).storage.get_run(run_id)
    return json_response({"run_id": run.run_id, "status": run.status.value, "log": run.log or ""})


@router.post(
    "/{run_id}/cancel",
    status_code=202,
    summary="Cancel a running run",
    responses={
        202: {"model": RunRecord, "description": "The run, with cancel_requested"},
        409: {"description": "The run already ended: there is nothing to cancel"},
    },
)
def cancel_run(run_id: str, request: Request) -> Response:
    """Blocs not yet started never start; running blocs are awaited; the run ends
    ``cancelled``. A run of another th2etl process stops when that process sees the request."""
    state = state_of(request)
    run = state.storage.request_cancel(run_id, by="api")  # 409 naming the status if it ended
    local = state.runs.cancel(run_id)
    return json_response({**run.to_dict(), "cancel_requested": True, "cancelled_here": local}, 202)
