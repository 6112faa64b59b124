"""The five routes every stored definition has: create, list, read, update and delete.

Blocs, pipelines, triggers and schedulers are stored and answered the same way, so one function
adds their routes; a resource's own routes (a pipeline's run and graph, a trigger's preview)
stay in its module. The storage methods are found by name (``bloc`` -> ``create_bloc``,
``list_blocs``, ...), and a body's fields are named as that method's parameters, so the body is
passed on as keywords (tests/api/test_definition_routes.py holds them to that).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import Response

from th2etl.api.deps import json_response, state_of
from th2etl.api.schemas import Body
from th2etl.storage.records import Record

__all__ = ["add_definition_routes"]


def add_definition_routes(
    router: APIRouter,
    noun: str,
    create_body: type[Body],
    update_body: type[Body],
    record: type[Record],
    *,
    create_doc: str = "",
    update_doc: str = "",
    delete_doc: str = "",
    delete_conflict: str | None = None,
) -> None:
    """Add ``POST ""`` (201), ``GET ""``, ``GET /{name}``, ``PUT /{name}`` and ``DELETE /{name}``
    (204) for the definitions called ``noun``; a write makes the next listing read the storage
    again. ``record`` is the stored record the routes answer with (its fields document the
    answers in the OpenAPI document). ``delete_conflict`` documents when a delete is refused
    409. Each route is named as a hand-written one would be (``create_bloc``, summary "Create
    a bloc"), which keeps the OpenAPI operation ids; the docs become the routes' descriptions.
    """
    plural = f"{noun}s"

    def create(body: Body, request: Request) -> Response:
        state = state_of(request)
        record = getattr(state.storage, f"create_{noun}")(**body.storage_fields())
        state.definitions_changed()
        return json_response(record, 201)

    async def list_all(request: Request) -> Response:
        state = state_of(request)
        return await state.lists.response(plural, getattr(state.storage, f"list_{plural}"))

    def read(name: str, request: Request) -> Response:
        record = getattr(state_of(request).storage, f"get_{noun}")(name)
        return json_response(record)

    def update(name: str, body: Body, request: Request) -> Response:
        # The update bodies' fields default to None, which the storage reads as "keep it".
        state = state_of(request)
        record = getattr(state.storage, f"update_{noun}")(name, **body.storage_fields())
        state.definitions_changed()
        return json_response(record)

    def delete(name: str, request: Request) -> Response:
        state = state_of(request)
        getattr(state.storage, f"delete_{noun}")(name)
        state.definitions_changed()
        return Response(status_code=204)

    # FastAPI takes a body's model from the parameter's annotation, known only here.
    create.__annotations__["body"] = create_body
    update.__annotations__["body"] = update_body

    add = router.add_api_route
    add(
        "",
        create,
        methods=["POST"],
        status_code=201,
        name=f"create_{noun}",
        summary=f"Create a {noun}",
        description=create_doc,
        responses={
            201: {"model": record, "description": f"The stored {noun}"},
            409: {"description": f"A {noun} of that name exists"},
        },
    )
    listed: dict[int | str, dict[str, Any]] = {200: {"model": list[record]}}  # type: ignore[valid-type]
    add(
        "",
        list_all,
        methods=["GET"],
        name=f"list_{plural}",
        summary=f"List {plural}",
        responses=listed,
    )
    add(
        "/{name}",
        read,
        methods=["GET"],
        name=f"get_{noun}",
        summary=f"Read a {noun}",
        responses={200: {"model": record}},
    )
    add(
        "/{name}",
        update,
        methods=["PUT"],
        name=f"update_{noun}",
        summary=f"Update a {noun}",
        description=update_doc,
        responses={200: {"model": record}},
    )
    add(
        "/{name}",
        delete,
        methods=["DELETE"],
        status_code=204,
        name=f"delete_{noun}",
        summary=f"Delete a {noun}",
        description=delete_doc,
        responses={409: {"description": delete_conflict}} if delete_conflict else None,
    )
