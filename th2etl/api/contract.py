"""The OpenAPI document tells the truth: every status a route can answer, with its body schema.

FastAPI documents a route's success answer and a 422 shaped as its own validation error (an
array ``detail``), which is not what th2etl answers. :func:`install_contract` replaces the
application's ``openapi()`` with one that, for every operation, documents the answers the
service's shared machinery gives, all with the one error shape :class:`~th2etl.api.schemas.Error`
(``{"detail": "<what, the value, the fix>"}``, plus ``errors`` on request validation):

=====  ===========================================================  ==========================
code   when                                                         documented on
=====  ===========================================================  ==========================
400    the Host header is not the service's (:mod:`.security`), or  every operation
       the body is not valid JSON
401    the API key is missing or wrong                              operations needing the key
403    a cross-origin write (:mod:`.security`)                      POST, PUT, PATCH, DELETE
404    the named thing does not exist                               operations with a path
                                                                    parameter
413    the body is over the size limit                              operations with a body
415    the body is not JSON                                         operations with a body
422    a parameter or body is invalid (shape, name rule, meaning)   operations with parameters
                                                                    or a body
503    the database is unreachable                                  every operation
=====  ===========================================================  ==========================

A route documents any other answer it gives with FastAPI's ``responses=``, e.g.
``responses={409: {"description": "the run already ended"}}``; the description is enough, the
error body schema is added here (a route that answers an error with another body names its
``model``). Success answers are documented the same way, with the ``model`` they return:
a stored record class (``responses={200: {"model": RunRecord}}``) or an answer model of
:mod:`th2etl.api.schemas`. Path parameters called ``name`` (definitions' names) get the
name rule of :mod:`th2etl._names` (pattern and length) in the schema; storage enforces it with
its own message. tests/api/test_contract.py runs schemathesis against the result.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from th2etl._names import MAX_NAME_LENGTH, NAME_PATTERN
from th2etl.api.schemas import Error

__all__ = ["ERROR_DESCRIPTIONS", "QUEUE_FULL", "install_contract"]

ERROR_DESCRIPTIONS: dict[int, str] = {
    400: "The Host header is not a name of this service, or the body is not valid JSON",
    401: "The API key is missing or wrong",
    403: "A cross-origin request (or a cookie-authenticated one without Origin) that would "
    "change state",
    404: "Not found",
    409: "Conflict with the stored state",
    413: "The request body is too large",
    415: "The request body is not JSON",
    422: "The request is invalid: a parameter or the body has the wrong shape, breaks a rule "
    "(e.g. the name rule) or makes no sense for the stored definitions",
    429: "Too many requests",
    503: "The database is unavailable; try again later",
}
QUEUE_FULL = {
    "description": "The run queue is full (TH2ETL_MAX_QUEUED_RUNS, named in the message); "
    "try again once runs have started"
}
"""``responses={429: QUEUE_FULL}`` for the routes that queue a run."""
_ERROR_REF = {"$ref": "#/components/schemas/Error"}
_UNSAFE = {"post", "put", "patch", "delete"}
_FASTAPI_VALIDATION = ("HTTPValidationError", "ValidationError")


def install_contract(app: FastAPI, *, skip_prefixes: tuple[str, ...] = ()) -> None:
    """Make ``app.openapi()`` document every answer (see the module docstring). Paths starting
    with ``skip_prefixes`` are left out of the document (the UI's HTML pages)."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(
                title=app.title,
                version=app.version,
                description=app.description,
                routes=app.routes,
            )
            schema["paths"] = {
                path: item
                for path, item in schema.get("paths", {}).items()
                if not path.startswith(skip_prefixes)
            }
            document_answers(schema)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def document_answers(schema: dict[str, Any]) -> None:
    """Add the shared error answers and the name rule to every operation of ``schema``."""
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    components.update(
        {
            name: definition
            for name, definition in Error.model_json_schema(
                ref_template="#/components/schemas/{model}"
            )
            .get("$defs", {})
            .items()
        }
    )
    error_schema = Error.model_json_schema(ref_template="#/components/schemas/{model}")
    error_schema.pop("$defs", None)
    components["Error"] = error_schema
    for name in _FASTAPI_VALIDATION:
        components.pop(name, None)
    for item in schema.get("paths", {}).values():
        for method, operation in item.items():
            if method not in _UNSAFE | {"get", "head", "options"}:
                continue
            _document_operation(method, operation)


def _document_operation(method: str, operation: dict[str, Any]) -> None:
    parameters = operation.get("parameters", [])
    for parameter in parameters:
        if parameter.get("in") == "path" and parameter.get("name") == "name":
            parameter["schema"] = {
                **parameter.get("schema", {}),
                "pattern": NAME_PATTERN,
                "minLength": 1,
                "maxLength": MAX_NAME_LENGTH,
            }
    has_body = "requestBody" in operation
    codes = {400, 503}
    if operation.get("security"):
        codes.add(401)
    if method in _UNSAFE:
        codes.add(403)
    if has_body:
        codes |= {413, 415}
    if any(parameter.get("in") == "path" for parameter in parameters):
        codes.add(404)
    if parameters or has_body:
        codes.add(422)
    responses: dict[str, Any] = operation.setdefault("responses", {})
    for number in codes:
        responses.setdefault(str(number), {"description": ERROR_DESCRIPTIONS[number]})
    for status, response in responses.items():
        if status.isdigit() and int(status) >= 400:
            schema = response.get("content", {}).get("application/json", {}).get("schema", {})
            if not schema or schema.get("$ref", "").endswith(_FASTAPI_VALIDATION):
                response["content"] = {"application/json": {"schema": _ERROR_REF}}
            if not response.get("description") or response["description"] in (
                "Validation Error",
                "Unprocessable Entity",
            ):
                response["description"] = ERROR_DESCRIPTIONS.get(int(status), "Error")
