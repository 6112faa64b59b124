"""``/health`` (no key needed) and ``/bloc-types``."""

from __future__ import annotations

import logging

from fastapi import APIRouter, Request
from starlette.responses import Response

from th2etl.api.deps import json_response, state_of
from th2etl.blocs.registry import bloc_types
from th2etl.exceptions import Th2etlError

__all__ = ["health_router", "router"]

logger = logging.getLogger("th2etl.api")

health_router = APIRouter(tags=["service"])
router = APIRouter(tags=["service"])


@health_router.get(
    "/health",
    summary="Is the service healthy?",
    responses={503: {"description": "a component (database, scheduler) is down"}},
)
def health(request: Request) -> Response:
    """200 when the database answers and the scheduler runs; 503 naming what is down."""
    from th2etl import __version__

    state = state_of(request)
    down: list[str] = []
    try:
        state.storage.check_connection()
        database = {"status": "up"}
    except Th2etlError as exc:
        logger.warning("health check: the database is down: %s", exc)
        database = {"status": "down", "error": type(exc).__name__}
        down.append("database")
    if state.scheduler is None:
        scheduler = {"status": "disabled"}
    else:
        running = state.scheduler.state
        scheduler = {"status": "up" if running == "running" else "down", "state": running}
        if running != "running":
            down.append("scheduler")
    body = {
        "status": "ok" if not down else "unavailable",
        "version": __version__,
        "components": {"database": database, "scheduler": scheduler},
        "down": down,
        "manual_runs": state.runs.active,
    }
    if down:
        body["detail"] = f"{' and '.join(down)} {'is' if len(down) == 1 else 'are'} down"
    return json_response(body, 503 if down else 200)


@router.get("/bloc-types", summary="Every registered bloc type and its config schema")
def list_bloc_types() -> Response:
    return json_response([cls.schema() for cls in bloc_types().values()])
