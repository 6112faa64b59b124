"""The API's routes, one module per resource."""

from __future__ import annotations

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

__all__ = [
    "blocs",
    "docs",
    "legacy",
    "meta",
    "metrics",
    "pipelines",
    "runs",
    "schedulers",
    "triggers",
]
