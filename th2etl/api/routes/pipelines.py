"""``/pipelines``: definitions, a run now, and the pipeline as a Mermaid graph."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from th2etl.api.contract import QUEUE_FULL
from th2etl.api.deps import json_response, state_of
from th2etl.api.graph import mermaid_graph
from th2etl.api.routes._crud import add_definition_routes
from th2etl.api.schemas import (
    PipelineCreate,
    PipelineGraph,
    PipelineUpdate,
    RunRequest,
    RunStarted,
)
from th2etl.storage.records import PipelineRecord

__all__ = ["router"]

router = APIRouter(prefix="/pipelines", tags=["pipelines"])

add_definition_routes(
    router,
    "pipeline",
    PipelineCreate,
    PipelineUpdate,
    PipelineRecord,
    create_doc="``stages`` is a list of stages, each a list of existing bloc names.",
    delete_doc="Its blocs and run history stay.",
    delete_conflict="A scheduler runs the pipeline",
)


@router.post(
    "/{name}/run",
    status_code=202,
    summary="Run a pipeline now",
    responses={202: {"model": RunStarted}, 429: QUEUE_FULL},
)
def run_pipeline(name: str, request: Request, body: RunRequest | None = None) -> Response:
    """Start a run and answer at once with its id; follow it with ``GET /runs/{run_id}``."""
    variables = body.variables if body is not None else {}
    at = body.at if body is not None else None
    run = state_of(request).runs.submit(name, variables, at=at)
    return json_response(
        {
            "run_id": run.run_id,
            "pipeline_name": name,
            "status": run.status.value,  # running, or queued when every worker is busy
            "url": f"/runs/{run.run_id}",
        },
        202,
    )


@router.get(
    "/{name}/graph",
    summary="The pipeline as a Mermaid flowchart",
    responses={200: {"model": PipelineGraph}},
)
def pipeline_graph(name: str, request: Request) -> Response:
    """``graph TD``: one subgraph per stage, an arrow for each flow of rows."""
    # One read: the pipeline and its blocs from the same transaction.
    record, blocs = state_of(request).storage.get_pipeline_definition(name)
    sources = {bloc.name: bloc.source_blocs for bloc in blocs}
    return json_response(
        {
            "pipeline": record.name,
            "stages": record.stages,
            "mermaid": mermaid_graph(record.stages, sources),
        }
    )
