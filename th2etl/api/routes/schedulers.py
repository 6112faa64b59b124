"""``/schedulers``: which pipeline runs on which trigger, and whether it is enabled."""

from __future__ import annotations

from fastapi import APIRouter

from th2etl.api.routes._crud import add_definition_routes
from th2etl.api.schemas import SchedulerCreate, SchedulerUpdate
from th2etl.storage.records import SchedulerRecord

__all__ = ["router"]

router = APIRouter(prefix="/schedulers", tags=["schedulers"])

add_definition_routes(
    router,
    "scheduler",
    SchedulerCreate,
    SchedulerUpdate,
    SchedulerRecord,
    create_doc="Its pipeline and trigger must exist; the running scheduler picks it up by itself.",
)
