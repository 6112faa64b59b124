"""The th2etl REST API (extra ``api``: FastAPI and uvicorn).

:func:`create_app` builds the FastAPI application; :func:`th2etl.api.server.serve` runs it with
uvicorn (what ``th2etl --serve-api`` does). The scheduler manager runs in the same process, in
a background thread started by the application's lifespan.
"""

from __future__ import annotations

from th2etl._extras import require_extra

# Before any submodule imports fastapi: a missing extra is named, not a bare ImportError.
require_extra("fastapi", "api", "the th2etl REST API")

from th2etl.api.app import create_app  # noqa: E402

__all__ = ["create_app"]
