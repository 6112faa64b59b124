"""create_app: the FastAPI application, with the scheduler started by its lifespan."""

from __future__ import annotations

import logging
import threading
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import Depends, FastAPI
from starlette.responses import RedirectResponse
from starlette.staticfiles import StaticFiles

from th2etl.api.contract import install_contract
from th2etl.api.deps import ApiState, ListingCache, require_api_key
from th2etl.api.errors import BodySizeLimit, install_error_handlers
from th2etl.api.routes import (
    blocs,
    docs,
    legacy,
    meta,
    metrics,
    pipelines,
    runs,
    schedulers,
    triggers,
)
from th2etl.api.security import BrowserGuard, HostPolicy, allowed_hosts_from_env
from th2etl.api.server import service_api_key
from th2etl.api.service import HealthProbe, RunExecutor, SchedulerThread
from th2etl.api.ui import pages as ui_pages
from th2etl.clock import Clock, SystemClock
from th2etl.configs.settings import Settings, get_settings
from th2etl.executors import Executor, make_executor
from th2etl.storage.base import Storage

__all__ = ["DEFAULT_MAX_BODY_BYTES", "create_app"]

logger = logging.getLogger("th2etl.api")

UI_STATIC = Path(__file__).parent / "ui" / "static"
"""The assets of /docs, /redoc and /ui, shipped in the wheel."""

DEFAULT_MAX_BODY_BYTES = 1_000_000
"""Request bodies above this many bytes are refused with 413."""

DESCRIPTION = """\
Manage th2etl's blocs, pipelines, triggers and schedulers, run pipelines and read their runs.

When the service has an API key (`TH2ETL_API_KEY`), every endpoint except `/health` needs the
header `Authorization: Bearer <key>` (use the *Authorize* button here).

Every error answer is `{"detail": "<what, the value, the fix>"}` (request validation errors add
`errors`). Requests that change state are refused (403) when they come from another web origin,
and bodies must be JSON (415); the `Host` header must name this service (400).
"""


def _to_dashboard() -> RedirectResponse:
    return RedirectResponse("/ui", status_code=307)


def _default_scheduler(executor: Executor, drain_grace: float) -> Callable[[Storage], Any]:
    def load(storage: Storage) -> Any:
        from th2etl.scheduler import load_scheduler_manager

        return load_scheduler_manager(storage, executor=executor, stop_grace=drain_grace)

    return load


def create_app(
    storage: Storage | None = None,
    settings: Settings | None = None,
    start_scheduler: bool = True,
    api_key: str | None = None,
    *,
    clock: Clock | None = None,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    run_workers: int = 4,
    scheduler_factory: Callable[[Storage], Any] | None = None,
    health_interval: float = 1.0,
    listing_ttl: float = 0.1,
    bound_host: str = "127.0.0.1",
    allowed_hosts: Sequence[str] | None = None,
    executor: str | Executor | None = None,
    drain_grace: float | None = None,
) -> FastAPI:
    """Build the API application.

    ``storage``: the storage to serve (default: ``DatabaseStorage.from_settings(settings)``,
    with ``settings`` defaulting to :func:`get_settings`; storage created here is closed at
    shutdown). ``start_scheduler``: run the scheduler manager (``load_scheduler_manager``, or
    ``scheduler_factory(storage)``) in a background thread while the application runs.
    ``api_key``: the Bearer key required everywhere except ``/health``; ``None`` reads
    ``TH2ETL_API_KEY`` (or th2etl 0.0.x's ``API_KEY``), and an empty string means no key.
    ``health_interval``: seconds between two database checks of the health probe.
    ``listing_ttl``: how long a listing may serve its cached JSON before reading the storage
    revision again (writes through this API refresh it at once). ``bound_host``: the address
    the server listens on, and ``allowed_hosts`` (default ``TH2ETL_ALLOWED_HOSTS``): the names
    the ``Host`` header may carry besides IP addresses and loopback names (see
    :mod:`th2etl.api.security`). ``executor``: where whole runs (manual and scheduled) execute, an
    :class:`~th2etl.executors.Executor` or a ``TH2ETL_EXECUTOR`` value (default: that
    setting, else ``thread``; ``th2etl --serve-api`` defaults to ``process``).
    ``drain_grace``: at shutdown, the seconds runs going get to end before they are cancelled
    (default: ``TH2ETL_DRAIN_GRACE``, else 30); runs waiting for a worker never start.

    Serve it with uvicorn, e.g. ``th2etl --serve-api`` or
    ``uvicorn --factory th2etl.api.app:create_app``.
    """
    owns_storage = storage is None
    settings = settings or get_settings()  # a bad setting stops the start, naming it
    if storage is None:
        from th2etl.storage import DatabaseStorage

        storage = DatabaseStorage.from_settings(settings, connect=False)
    key = service_api_key() if api_key is None else api_key
    clock = clock or SystemClock()
    if not isinstance(executor, Executor):
        kind = executor or settings.executor or "thread"
        executor = make_executor(kind, storage, grace=settings.cancel_grace, clock=clock)
    drain = settings.drain_grace if drain_grace is None else drain_grace
    state = ApiState(
        storage=storage,
        runs=RunExecutor(
            storage,
            max_workers=run_workers,
            clock=clock,
            max_queued=settings.max_queued_runs,
            heartbeat_interval=settings.heartbeat_interval,
            executor=executor,
        ),
        clock=clock,
        api_key=key or None,
        health=HealthProbe(storage, interval=health_interval),
        lists=ListingCache(storage, ttl=listing_ttl),
    )
    factory = scheduler_factory or _default_scheduler(executor, drain)
    served = storage

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        state.health.start()
        state.runs.start()
        if start_scheduler:
            state.scheduler = SchedulerThread(lambda: factory(served))
            state.scheduler.start()
        logger.info(
            "th2etl API ready on %s (%s)",
            served.describe(),
            "API key required" if state.api_key else "no API key",
        )
        try:
            yield
        finally:
            # Drain the scheduled runs and the manual ones side by side, each within ``drain``
            # seconds (plus the executor's grace for those that ignore their cancel).
            stopping = None
            if state.scheduler is not None:
                stopping = threading.Thread(
                    target=state.scheduler.stop,
                    args=(drain + 3 * state.runs.executor.grace + 5,),
                    name="th2etl-stop-scheduler",
                )
                stopping.start()
            state.backfills.stop()
            state.runs.shutdown(drain)
            if stopping is not None:
                stopping.join()
            state.runs.executor.shutdown()
            state.health.stop()
            if owns_storage:
                served.close()
            logger.info("th2etl API stopped")

    from th2etl import __version__

    app = FastAPI(
        title="th2etl",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
        docs_url=None,  # served from the wheel's assets by routes/docs.py
        redoc_url=None,
    )
    app.state.th2etl = state
    install_error_handlers(app)
    install_contract(app, skip_prefixes=("/ui",))
    app.add_middleware(BodySizeLimit, limit=max_body_bytes)
    # Added last, so it runs first: a refused request reaches nothing else.
    hosts = allowed_hosts_from_env() if allowed_hosts is None else allowed_hosts
    app.add_middleware(BrowserGuard, policy=HostPolicy(bound_host, hosts))
    app.include_router(meta.health_router)
    app.include_router(docs.router)
    app.include_router(ui_pages.router)
    app.add_api_route("/", _to_dashboard, include_in_schema=False)
    app.mount(docs.STATIC_URL, StaticFiles(directory=UI_STATIC), name="static")
    secured = [Depends(require_api_key)]
    for module in (blocs, pipelines, triggers, schedulers, runs, legacy, metrics):
        app.include_router(module.router, dependencies=secured)
    app.include_router(meta.router, dependencies=secured)
    return app
