"""``/health`` (no key needed) and ``/bloc-types``."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from starlette.responses import Response

from th2etl import __version__
from th2etl.api.deps import json_response, state_of
from th2etl.api.schemas import Health
from th2etl.blocs.registry import bloc_types

__all__ = ["health_router", "router"]

health_router = APIRouter(tags=["service"])
router = APIRouter(tags=["service"])


@health_router.get(
    "/health",
    summary="Is the service healthy?",
    responses={
        200: {"model": Health},
        503: {
            "description": "a component (database, scheduler, executor) is down",
            "model": Health,
        },
    },
)
async def health(request: Request) -> Response:
    """200 when the database answers, the scheduler runs and runs can be submitted to the
    executor (a Dask cluster answers); 503 naming what is down.

    The database state comes from a probe that checks it every second (and from any request
    that just failed to reach it), so this answer never waits on an unreachable database; the
    executor answers at once too (a Dask cluster is reconnected to in the background).
    """
    state = state_of(request)
    probe = state.health.latest()
    if probe is None:  # no probe running (or it is stuck): check now, off the event loop
        probe = await run_in_threadpool(state.health.check_now)
    down: list[str] = []
    if probe.up:
        database: dict[str, Any] = {"status": "up"}
    else:
        database = {"status": "down", "error": probe.error}
        down.append("database")
    if state.scheduler is None:
        scheduler: dict[str, Any] = {"status": "disabled"}
    else:
        running = state.scheduler.state
        scheduler = {"status": "up" if running == "running" else "down", "state": running}
        if running != "running":
            down.append("scheduler")
    executor = await run_in_threadpool(state.runs.executor.health)
    if executor["status"] != "up":
        down.append("executor")
    body: dict[str, Any] = {
        "status": "ok" if not down else "unavailable",
        "version": __version__,
        "components": {"database": database, "scheduler": scheduler, "executor": executor},
        "down": down,
        "manual_runs": state.runs.active,
    }
    if down:
        body["detail"] = f"{' and '.join(down)} {'is' if len(down) == 1 else 'are'} down"
    return json_response(body, 503 if down else 200)


@router.get(
    "/bloc-types",
    summary="Every registered bloc type and its config schema",
    responses={200: {"model": list[dict[str, Any]]}},
)
def list_bloc_types() -> Response:
    return json_response([cls.schema() for cls in bloc_types().values()])
