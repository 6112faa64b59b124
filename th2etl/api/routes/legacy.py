"""Routes th2etl 0.0.15 served, kept so its clients and scripts keep working.

* ``GET /runs/{run_id}/logs?limit=500``: the run's log as a list of events, oldest first
  (0.0.15's shape: ``id``, ``run_id``, ``ts``, ``level``, ``event``, ``message``, ``fields``),
  one per line of the log that ``GET /runs/{run_id}/log`` returns as text.
* ``POST /schedulers/{name}/run``: run a scheduler's pipeline now, with its stored
  ``variables`` and the body's over them; answers as ``POST /pipelines/{name}/run`` does.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from starlette.responses import Response

from th2etl.api.contract import QUEUE_FULL
from th2etl.api.deps import json_response, state_of
from th2etl.api.schemas import LogEvent, RunRequest, RunStarted

__all__ = ["router"]

router = APIRouter(tags=["compatibility"])


def log_events(run_id: str, log: str, limit: int) -> list[dict[str, Any]]:
    """``log``'s lines as 0.0.15's log events (the first ``limit``)."""
    events: list[dict[str, Any]] = []
    for number, line in enumerate((line for line in log.splitlines() if line.strip()), 1):
        if number > limit:
            break
        ts, _, message = line.partition(" ")
        if not ts[:4].isdigit():  # a line without its timestamp (a traceback's continuation)
            ts, message = "", line
        level = "ERROR" if " failed" in message or "Traceback" in message else "INFO"
        events.append(
            {
                "id": number,
                "run_id": run_id,
                "ts": ts,
                "level": level,
                "event": "log",
                "message": message,
                "fields": {},
            }
        )
    return events


@router.get(
    "/runs/{run_id}/logs",
    summary="A run's log as events (th2etl 0.0.15)",
    deprecated=True,
    responses={200: {"model": list[LogEvent]}},
    description="Use ``GET /runs/{run_id}/log``, which returns the log as text.",
)
def get_run_log_events(
    run_id: str,
    request: Request,
    limit: Annotated[int, Query(ge=1, le=10_000, description="at most this many events")] = 500,
) -> Response:
    run = state_of(request).storage.get_run(run_id)
    return json_response(log_events(run.run_id, run.log or "", limit))


@router.post(
    "/schedulers/{name}/run",
    status_code=202,
    summary="Run a scheduler's pipeline now",
    responses={202: {"model": RunStarted}, 429: QUEUE_FULL},
    description="As ``POST /pipelines/{pipeline}/run`` for the scheduler's pipeline.",
)
def run_scheduler_now(name: str, request: Request, body: RunRequest | None = None) -> Response:
    state = state_of(request)
    scheduler = state.storage.get_scheduler(name)
    pipeline = scheduler.pipeline_name
    # As 0.0.15 did: the scheduler's stored variables, with the body's over them.
    variables = {**scheduler.variables, **(body.variables if body is not None else {})}
    at = body.at if body is not None else None
    run_id = state.runs.submit(pipeline, variables, at=at).run_id
    return json_response(
        {
            "run_id": run_id,
            "pipeline_name": pipeline,
            "scheduler_name": name,
            "status": "running",
            "url": f"/runs/{run_id}",
        },
        202,
    )
