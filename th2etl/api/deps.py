"""What routes share: the service state, JSON answers, and the API key check."""

from __future__ import annotations

import hmac
import json
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from fastapi import HTTPException, Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.responses import Response

from th2etl.api.service import RunExecutor, SchedulerThread
from th2etl.clock import Clock
from th2etl.storage.base import Storage

__all__ = ["ApiState", "json_response", "require_api_key", "state_of"]


@dataclass
class ApiState:
    """Everything the routes of one application use."""

    storage: Storage
    runs: RunExecutor
    clock: Clock
    api_key: str | None
    scheduler: SchedulerThread | None = None
    _lists: dict[str, tuple[int, bytes]] = field(default_factory=dict)
    _lists_lock: threading.Lock = field(default_factory=threading.Lock)

    def cached_list(self, kind: str, load: Callable[[], list[Any]]) -> Response:
        """The JSON of a definition listing, rendered once per storage revision.

        ``revision()`` is one cheap read bumped by every definition write (from any process),
        so a listing is never staler than the database.
        """
        revision = self.storage.revision()
        cached = self._lists.get(kind)
        if cached is not None and cached[0] == revision:
            return Response(cached[1], media_type="application/json")
        body = render([record.to_dict() for record in load()])
        with self._lists_lock:
            self._lists[kind] = (revision, body)
        return Response(body, media_type="application/json")


def render(content: Any) -> bytes:
    return json.dumps(content, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode()


def json_response(content: Any, status_code: int = 200) -> Response:
    """A JSON answer, rendered directly (the routes' dicts are JSON-ready already)."""
    return Response(render(content), status_code=status_code, media_type="application/json")


def state_of(request: Request) -> ApiState:
    state: ApiState = request.app.state.th2etl
    return state


_bearer = HTTPBearer(
    auto_error=False,
    description="The service's TH2ETL_API_KEY, as 'Authorization: Bearer <key>'.",
)


async def require_api_key(
    request: Request,
    credentials: HTTPAuthorizationCredentials | None = Security(_bearer),  # noqa: B008
) -> None:
    """When the service has an API key, the request must carry it as a Bearer token."""
    key = state_of(request).api_key
    if key is None:
        return
    given = credentials.credentials if credentials is not None else ""
    if not hmac.compare_digest(given.encode(), key.encode()):
        reason = "no API key was sent" if credentials is None else "the API key is wrong"
        raise HTTPException(
            status_code=401,
            detail=f"{reason}; send the header 'Authorization: Bearer <key>' with the "
            "service's TH2ETL_API_KEY",
            headers={"WWW-Authenticate": "Bearer"},
        )
