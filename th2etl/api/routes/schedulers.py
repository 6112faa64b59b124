"""``/schedulers``: which pipeline runs on which trigger, and whether it is enabled."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from th2etl.api.deps import json_response, state_of
from th2etl.api.schemas import SchedulerCreate, SchedulerUpdate

__all__ = ["router"]

router = APIRouter(prefix="/schedulers", tags=["schedulers"])


@router.post("", status_code=201, summary="Create a scheduler")
def create_scheduler(body: SchedulerCreate, request: Request) -> Response:
    """Its pipeline and trigger must exist; the running scheduler picks it up by itself."""
    state = state_of(request)
    record = state.storage.create_scheduler(
        body.name,
        body.pipeline_name,
        body.trigger_name,
        enabled=body.enabled,
        description=body.description,
    )
    state.definitions_changed()
    return json_response(record.to_dict(), 201)


@router.get("", summary="List schedulers")
async def list_schedulers(request: Request) -> Response:
    state = state_of(request)
    return await state.lists.response("schedulers", state.storage.list_schedulers)


@router.get("/{name}", summary="Read a scheduler")
def get_scheduler(name: str, request: Request) -> Response:
    return json_response(state_of(request).storage.get_scheduler(name).to_dict())


@router.put("/{name}", summary="Update a scheduler")
def update_scheduler(name: str, body: SchedulerUpdate, request: Request) -> Response:
    state = state_of(request)
    record = state.storage.update_scheduler(
        name,
        pipeline_name=body.pipeline_name,
        trigger_name=body.trigger_name,
        enabled=body.enabled,
        description=body.description,
    )
    state.definitions_changed()
    return json_response(record.to_dict())


@router.delete("/{name}", status_code=204, summary="Delete a scheduler")
def delete_scheduler(name: str, request: Request) -> Response:
    state = state_of(request)
    state.storage.delete_scheduler(name)
    state.definitions_changed()
    return Response(status_code=204)
