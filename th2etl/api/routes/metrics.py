"""``/metrics``: the service's metrics in the Prometheus text format (see
:mod:`th2etl.metrics`); it needs the API key like every route but ``/health``."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from starlette.responses import Response

from th2etl.api.deps import state_of
from th2etl.exceptions import Th2etlError
from th2etl.metrics import exposition
from th2etl.pipelines.result import RunStatus

__all__ = ["router"]

router = APIRouter(tags=["service"])

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


@router.get(
    "/metrics",
    summary="Metrics in the Prometheus text format",
    response_class=Response,
    responses={
        200: {
            "description": "runs by pipeline and status, run durations, rows per bloc, "
            "scheduler lag, queued manual runs, the database's state",
            "content": {"text/plain": {"schema": {"type": "string"}}},
        }
    },
)
async def metrics(request: Request) -> Response:
    """Counters count this process's events since it started (retention never lowers them);
    gauges read the database now (``th2etl_database_up`` from the health probe)."""
    state = state_of(request)

    def gauges() -> dict[str, float]:
        probe = state.health.latest() or state.health.check_now()
        values = {
            "th2etl_database_up": 1.0 if probe.up else 0.0,
            "th2etl_manual_runs_active": float(state.runs.active),
        }
        if probe.up:
            try:
                queued = state.storage.count_active_runs(status=RunStatus.QUEUED, manual=True)
            except Th2etlError:
                values["th2etl_database_up"] = 0.0
            else:
                values["th2etl_queued_manual_runs"] = float(queued)
        return values

    body = await run_in_threadpool(exposition, gauges)
    return Response(body, media_type=CONTENT_TYPE)
