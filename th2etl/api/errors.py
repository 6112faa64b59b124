"""Errors as HTTP answers: the Th2etlError tree mapped to status codes, never a traceback.

=============================  ======
NotFoundError                  404
AlreadyExistsError, InUseError 409
RunStatusError                 409 (e.g. cancelling a run that has ended: its status named)
QueueFullError                 429 (the queue's limit named)
ValidationError                422 (storage's message in ``detail``)
malformed JSON                 400
wrong types, unknown fields    422
body over the size limit       413
a method the path does not take 405 (``Allow`` lists every method the path takes)
DatabaseUnavailableError       503
any other error                500 (a short message; the traceback goes to the log only)
=============================  ======

Every error answer is ``{"detail": "<what, the value, the fix>"}``; request validation errors
also carry ``errors``: one ``{"loc", "msg", "type"}`` per problem.
"""

from __future__ import annotations

import logging
import re
import uuid
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from th2etl.exceptions import (
    AlreadyExistsError,
    DatabaseUnavailableError,
    InUseError,
    NotFoundError,
    QueueFullError,
    RunStatusError,
    Th2etlError,
    ValidationError,
)

__all__ = ["BodySizeLimit", "install_error_handlers", "status_for"]

logger = logging.getLogger("th2etl.api")

_STATUS: tuple[tuple[type[Exception], int], ...] = (
    (NotFoundError, 404),
    (AlreadyExistsError, 409),
    (InUseError, 409),
    (RunStatusError, 409),
    (QueueFullError, 429),
    (ValidationError, 422),
    (DatabaseUnavailableError, 503),
)


def status_for(exc: Th2etlError) -> int:
    """The HTTP status of a th2etl error."""
    for kind, status in _STATUS:
        if isinstance(exc, kind):
            return status
    return 500


def _location(loc: Any) -> str:
    parts = [str(part) for part in loc if part != "body"] if isinstance(loc, list | tuple) else []
    return ".".join(parts) or "body"


async def _th2etl_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, Th2etlError)
    status = status_for(exc)
    if status == 503:
        logger.warning("%s %s: %s", request.method, request.url.path, exc)
        state = getattr(request.app.state, "th2etl", None)
        if state is not None:
            state.health.report_down(exc)
        headers = {"Retry-After": "5"}
    elif status == 500:
        return await _unexpected(request, exc)
    else:
        headers = {}
    return JSONResponse({"detail": str(exc)}, status_code=status, headers=headers)


async def _request_invalid(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = exc.errors()
    for error in errors:
        if error.get("type") == "json_invalid":
            reason = (error.get("ctx") or {}).get("error", "invalid JSON")
            position = error.get("loc", ("body", "?"))[-1]
            return JSONResponse(
                {
                    "detail": f"the request body is not valid JSON: {reason} at character "
                    f"{position}; send a JSON object with Content-Type: application/json"
                },
                status_code=400,
            )
    cleaned = [
        {"loc": list(error.get("loc", ())), "msg": error.get("msg"), "type": error.get("type")}
        for error in errors
    ]
    text = "; ".join(f"{_location(e['loc'])}: {e['msg']}" for e in cleaned)
    if any(list(e["loc"]) == ["body"] for e in cleaned):
        text += "; send a JSON object with Content-Type: application/json"
    return JSONResponse({"detail": f"invalid request: {text}", "errors": cleaned}, status_code=422)


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    error_id = uuid.uuid4().hex[:12]
    logger.error(
        "%s %s failed (error id %s)", request.method, request.url.path, error_id, exc_info=exc
    )
    return JSONResponse(
        {
            "detail": f"internal error (id {error_id}): {type(exc).__name__}; the service log "
            "has the details"
        },
        status_code=500,
    )


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    headers = dict(exc.headers or {})
    detail = exc.detail
    if exc.status_code == 405:
        # Starlette names the methods of the first route matching the path only; a path served
        # by several routes (GET and PUT /blocs/{name}) takes all of theirs, as documented.
        methods = _documented_methods(request.app, request.url.path)
        if methods:
            allowed = ", ".join(sorted(methods))
            headers["Allow"] = allowed
            detail = f"{request.method} is not allowed on {request.url.path}; use {allowed}"
    return JSONResponse({"detail": detail}, status_code=exc.status_code, headers=headers)


def _documented_methods(app: FastAPI, path: str) -> set[str]:
    methods: set[str] = set()
    for template, item in app.openapi().get("paths", {}).items():
        pattern = re.sub(r"\\\{[^/]+?\\\}", "[^/]+", re.escape(template))
        if re.fullmatch(pattern, path):
            methods |= {method.upper() for method in item}
    if "GET" in methods:
        methods.add("HEAD")
    return methods


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Th2etlError, _th2etl_error)
    app.add_exception_handler(RequestValidationError, _request_invalid)
    app.add_exception_handler(Exception, _unexpected)


class BodySizeLimit:
    """ASGI middleware: a request body over ``limit`` bytes is answered 413 before any of it
    reaches a route (by its Content-Length, or while it streams in when chunked)."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "DELETE", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        for name, value in scope["headers"]:
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = 0
                if declared > self.limit:
                    await self._too_large(scope, send, declared)
                    return
        # Read the whole (bounded) body first, so a route never sees half of it.
        messages: list[Message] = []
        size = 0
        while True:
            message = await receive()
            messages.append(message)
            if message["type"] != "http.request":
                break
            size += len(message.get("body", b""))
            if size > self.limit:
                await self._too_large(scope, send, None)
                return
            if not message.get("more_body", False):
                break

        async def replay() -> Message:
            if messages:
                return messages.pop(0)
            return await receive()

        await self.app(scope, replay, send)

    async def _too_large(self, scope: Scope, send: Send, declared: int | None) -> None:
        size = f"{declared} bytes" if declared is not None else "more"
        response = JSONResponse(
            {
                "detail": f"the request body is too large ({size}); the limit is "
                f"{self.limit} bytes; send less (e.g. split the definition)"
            },
            status_code=413,
            headers={"Connection": "close"},
        )
        await response(scope, _no_receive, send)


async def _no_receive() -> Message:
    return {"type": "http.disconnect"}
