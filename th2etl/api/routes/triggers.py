"""``/triggers``: cron trigger definitions and a preview of their next fire times."""

from __future__ import annotations

from datetime import UTC
from typing import Annotated

from fastapi import APIRouter, Query, Request
from starlette.responses import Response

from th2etl.api.deps import json_response, state_of
from th2etl.api.routes._crud import add_definition_routes
from th2etl.api.schemas import TriggerCreate, TriggerPreview, TriggerUpdate
from th2etl.scheduler.triggers import CronTrigger
from th2etl.storage.records import TriggerRecord

__all__ = ["router"]

router = APIRouter(prefix="/triggers", tags=["triggers"])

add_definition_routes(
    router,
    "trigger",
    TriggerCreate,
    TriggerUpdate,
    TriggerRecord,
    delete_conflict="A scheduler uses the trigger",
)


@router.get(
    "/{name}/preview",
    summary="Next fire times of a trigger",
    responses={200: {"model": TriggerPreview}},
)
def preview_trigger(
    name: str,
    request: Request,
    n: Annotated[int, Query(ge=1, le=1000, description="how many fire times")] = 10,
) -> Response:
    """The next ``n`` fire times after now, in the trigger's timezone and in UTC."""
    state = state_of(request)
    record = state.storage.get_trigger(name)
    trigger = CronTrigger(record.cron_expression, record.timezone)
    now = state.clock.now()
    times = trigger.next_fire_times(now, n)
    return json_response(
        {
            "trigger": record.name,
            "cron_expression": record.cron_expression,
            "timezone": record.timezone,
            "after": now.isoformat(),
            "fire_times": [
                {"local": t.isoformat(), "utc": t.astimezone(UTC).isoformat()} for t in times
            ],
        }
    )
