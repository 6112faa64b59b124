"""``/schedulers``: which pipeline runs on which trigger (or after which pipelines), with its
options; ``/schedule-defaults``: the options of the schedulers that set none."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from th2etl.api.deps import json_response, state_of
from th2etl.api.routes._crud import add_definition_routes
from th2etl.api.schemas import (
    BackfillPlanned,
    BackfillRequest,
    ScheduleDefaults,
    SchedulerCreate,
    SchedulerUpdate,
)
from th2etl.scheduler.backfill import Backfill, plan_backfill
from th2etl.storage.records import SchedulerRecord

__all__ = ["router"]

router = APIRouter(tags=["schedulers"])
schedulers = APIRouter(prefix="/schedulers")

add_definition_routes(
    schedulers,
    "scheduler",
    SchedulerCreate,
    SchedulerUpdate,
    SchedulerRecord,
    create_doc="Its pipeline and trigger (or ``after_pipelines``) must exist and its options be "
    "in range (422 otherwise, naming the option and its range; a dependency cycle is named); "
    "the running scheduler picks it up by itself.",
    update_doc="Given fields change (null keeps the value); ``reset`` unsets options. Running "
    "schedulers use the change from their next tick.",
)


@schedulers.post(
    "/{name}/backfill",
    summary="Backfill a scheduler's past ticks",
    status_code=202,
    responses={
        200: {
            "model": BackfillPlanned,
            "description": "dry_run: the fire times and what would happen to each",
        },
        202: {"model": BackfillPlanned, "description": "the backfill started in the service"},
        404: {"description": "no such scheduler"},
        422: {
            "description": "the range is reversed, in the future, or over 10,000 fire times "
            "without yes (the message gives the count); the scheduler runs after other "
            "pipelines; or the service's executor cannot execute its pipeline"
        },
    },
)
def backfill_scheduler(name: str, body: BackfillRequest, request: Request) -> Response:
    """Run every fire time of the scheduler from ``from`` to ``to`` (inclusive) that has not
    run, each for its own logical time, ``max_active`` at once, in the service (202 at once;
    follow the runs with ``GET /runs?scheduler=NAME``). Ticks that already ran are not run
    again (across processes), ``skipped`` ones are; ``rerun_failed`` reruns failed,
    abandoned and cancelled ones as new attempts. A disabled scheduler is backfilled too
    (``notes`` says so). Semantics: th2etl.scheduler.backfill."""
    state = state_of(request)
    plan = plan_backfill(
        state.storage,
        name,
        body.start,
        body.end,
        now=state.clock.now(),
        rerun_failed=body.rerun_failed,
        yes=body.yes,
    )
    answer = plan.to_dict()
    if body.dry_run:
        return json_response(answer)
    # The runs execute on the service's executor, as its scheduled and manual runs do; a
    # pipeline it cannot execute is refused now (422), not in the background.
    state.runs.executor.check(state.storage.build_pipeline(plan.scheduler.pipeline_name))
    backfill = Backfill(
        state.storage,
        plan,
        max_active=body.max_active,
        clock=state.clock,
        executor=state.runs.executor,
    )
    state.backfills.start(backfill)
    del answer["ticks"]
    return json_response({**answer, "url": f"/runs?scheduler={name}"}, 202)


router.include_router(schedulers)


@router.get(
    "/schedule-defaults",
    summary="Read the schedule defaults",
    responses={200: {"model": ScheduleDefaults}},
)
def get_schedule_defaults(request: Request) -> Response:
    """The options used by schedulers that set none (null: not set in the database; then a
    process's own options, then the built-in ones apply)."""
    return json_response(state_of(request).storage.get_schedule_defaults().to_dict())


@router.put(
    "/schedule-defaults",
    summary="Replace the schedule defaults",
    responses={
        200: {"model": ScheduleDefaults},
        422: {"description": "an option out of range, named with its range"},
    },
)
def set_schedule_defaults(body: ScheduleDefaults, request: Request) -> Response:
    """Every process's schedulers use them from their next tick; an option left out is unset."""
    state = state_of(request)
    defaults = state.storage.set_schedule_defaults(**body.model_dump())
    state.definitions_changed()
    return json_response(defaults.to_dict())
