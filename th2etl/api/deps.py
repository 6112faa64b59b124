"""What routes share: the service state, JSON answers, and the API key check."""

from __future__ import annotations

import hmac
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from fastapi import HTTPException, Request, Security
from fastapi.concurrency import run_in_threadpool
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.responses import Response

from th2etl.api.service import BackfillThreads, HealthProbe, RunExecutor, SchedulerThread
from th2etl.api.ui.session import has_session
from th2etl.clock import Clock
from th2etl.storage.base import Storage
from th2etl.storage.records import Record, json_default

__all__ = ["ApiState", "ListingCache", "json_response", "require_api_key", "state_of"]


class ListingCache:
    """Rendered JSON of the definition listings, keyed by the storage revision.

    ``storage.revision()`` is bumped by every definition write, from any process. It is read
    again (in the thread pool) when the cached copy was checked more than ``ttl`` seconds ago,
    or at once after a write through this API (:meth:`invalidate`). So a client always reads
    its own writes, and a write made by another process shows within ``ttl`` seconds; a busy
    listing costs one revision read per ``ttl`` instead of one per request.
    """

    def __init__(self, storage: Storage, ttl: float = 0.1) -> None:
        self.storage = storage
        self.ttl = ttl
        self._generation = 0
        self._lock = threading.Lock()
        # kind -> (revision, generation, checked at (monotonic), body)
        self._entries: dict[str, tuple[int, int, float, bytes]] = {}

    def invalidate(self) -> None:
        with self._lock:
            self._generation += 1

    async def response(self, kind: str, load: Callable[[], list[Any]]) -> Response:
        entry = self._entries.get(kind)
        if (
            entry is not None
            and entry[1] == self._generation
            and time.monotonic() - entry[2] < self.ttl
        ):
            return Response(entry[3], media_type="application/json")
        body = await run_in_threadpool(self._refresh, kind, load)
        return Response(body, media_type="application/json")

    def _refresh(self, kind: str, load: Callable[[], list[Any]]) -> bytes:
        generation = self._generation
        checked = time.monotonic()
        revision = self.storage.revision()
        entry = self._entries.get(kind)
        body = entry[3] if entry is not None and entry[0] == revision else render(load())
        with self._lock:
            self._entries[kind] = (revision, generation, checked, body)
        return body


@dataclass
class ApiState:
    """Everything the routes of one application use."""

    storage: Storage
    runs: RunExecutor
    clock: Clock
    api_key: str | None
    health: HealthProbe
    lists: ListingCache
    scheduler: SchedulerThread | None = None
    backfills: BackfillThreads = field(default_factory=lambda: BackfillThreads())

    def definitions_changed(self) -> None:
        """A route wrote a definition: the next listing reads the revision again."""
        self.lists.invalidate()


def render(content: Any) -> bytes:
    """``content`` as JSON; storage records in it are rendered as their ``to_dict()``."""
    if type(content) is list:  # a listing: records converted here, not called back one by one
        content = [item.json_fields() if isinstance(item, Record) else item for item in content]
    return json.dumps(
        content, ensure_ascii=False, allow_nan=False, separators=(",", ":"), default=json_default
    ).encode()


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
    """When the service has an API key, the request must carry it as a Bearer token, or the
    dashboard's session cookie (th2etl/api/ui/session.py)."""
    key = state_of(request).api_key
    if key is None:
        return
    if credentials is None and has_session(request, key):
        return
    given = credentials.credentials if credentials is not None else ""
    if not hmac.compare_digest(given.encode(), key.encode()):
        if credentials is not None:
            reason = "the API key is wrong"
        elif request.headers.get("Authorization"):
            reason = "the Authorization header does not start with 'Bearer '"
        else:
            reason = "no API key was sent"
        raise HTTPException(
            status_code=401,
            detail=f"{reason}; send the header 'Authorization: Bearer <key>' with the "
            "service's TH2ETL_API_KEY",
            headers={"WWW-Authenticate": "Bearer"},
        )
