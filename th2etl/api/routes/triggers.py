"""``/triggers``: cron trigger definitions and a preview of their next fire times."""

from __future__ import annotations

from datetime import UTC
from typing import Annotated

from fastapi import APIRouter, Query, Request
from starlette.responses import Response

from th2etl.api.deps import json_response, state_of
from th2etl.api.schemas import TriggerCreate, TriggerUpdate
from th2etl.scheduler.triggers import CronTrigger

__all__ = ["router"]

router = APIRouter(prefix="/triggers", tags=["triggers"])


@router.post("", status_code=201, summary="Create a trigger")
def create_trigger(body: TriggerCreate, request: Request) -> Response:
    state = state_of(request)
    record = state.storage.create_trigger(
        body.name,
        body.pipeline_name,
        body.cron_expression,
        timezone=body.timezone,
        description=body.description,
    )
    state.definitions_changed()
    return json_response(record.to_dict(), 201)


@router.get("", summary="List triggers")
async def list_triggers(request: Request) -> Response:
    state = state_of(request)
    return await state.lists.response("triggers", state.storage.list_triggers)


@router.get("/{name}", summary="Read a trigger")
def get_trigger(name: str, request: Request) -> Response:
    return json_response(state_of(request).storage.get_trigger(name).to_dict())


@router.put("/{name}", summary="Update a trigger")
def update_trigger(name: str, body: TriggerUpdate, request: Request) -> Response:
    state = state_of(request)
    record = state.storage.update_trigger(
        name,
        pipeline_name=body.pipeline_name,
        cron_expression=body.cron_expression,
        timezone=body.timezone,
        description=body.description,
    )
    state.definitions_changed()
    return json_response(record.to_dict())


@router.delete("/{name}", status_code=204, summary="Delete a trigger")
def delete_trigger(name: str, request: Request) -> Response:
    """409 while a scheduler uses the trigger."""
    state = state_of(request)
    state.storage.delete_trigger(name)
    state.definitions_changed()
    return Response(status_code=204)


@router.get("/{name}/preview", summary="Next fire times of a trigger")
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
