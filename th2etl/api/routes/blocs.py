"""``/blocs``: create, list, read, update and delete bloc definitions."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from th2etl.api.deps import json_response, state_of
from th2etl.api.schemas import BlocCreate, BlocUpdate

__all__ = ["router"]

router = APIRouter(prefix="/blocs", tags=["blocs"])


@router.post("", status_code=201, summary="Create a bloc")
def create_bloc(body: BlocCreate, request: Request) -> Response:
    """Store a bloc; its config is checked against its type's schema (see ``/bloc-types``)."""
    state = state_of(request)
    record = state.storage.create_bloc(
        body.name, body.bloc_type, config=body.config, description=body.description
    )
    state.definitions_changed()
    return json_response(record.to_dict(), 201)


@router.get("", summary="List blocs")
async def list_blocs(request: Request) -> Response:
    state = state_of(request)
    return await state.lists.response("blocs", state.storage.list_blocs)


@router.get("/{name}", summary="Read a bloc")
def get_bloc(name: str, request: Request) -> Response:
    return json_response(state_of(request).storage.get_bloc(name).to_dict())


@router.put("/{name}", summary="Update a bloc")
def update_bloc(name: str, body: BlocUpdate, request: Request) -> Response:
    """Change the fields given; ``config`` replaces the whole config."""
    state = state_of(request)
    record = state.storage.update_bloc(
        name, bloc_type=body.bloc_type, config=body.config, description=body.description
    )
    state.definitions_changed()
    return json_response(record.to_dict())


@router.delete("/{name}", status_code=204, summary="Delete a bloc")
def delete_bloc(name: str, request: Request) -> Response:
    """409 while a pipeline uses the bloc."""
    state = state_of(request)
    state.storage.delete_bloc(name)
    state.definitions_changed()
    return Response(status_code=204)
