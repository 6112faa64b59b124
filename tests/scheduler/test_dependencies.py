"""after_pipelines: a scheduler fired by other pipelines' success for the same logical time, on
a real PostgreSQL and a FakeClock; backfilling upstream makes it follow."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from th2etl.clock import FakeClock
from th2etl.scheduler import load_scheduler_manager
from th2etl.scheduler.backfill import Backfill, plan_backfill
from th2etl.storage import PostgresStorage

pytestmark = [pytest.mark.postgres, pytest.mark.usefixtures("stored_bloc_types")]


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


@pytest.fixture
def storage(postgres: Any, schema: str) -> Iterator[PostgresStorage]:
    clock = FakeClock(at("2026-05-16 01:50"))
    with PostgresStorage(postgres.url, schema=schema, clock=clock) as opened:
        for name in ("orders", "customers", "report"):
            opened.create_bloc(f"{name}_noop", "scheduler_test_noop")
            opened.create_pipeline(name, stages=[[f"{name}_noop"]])
        opened.create_trigger("at_2", cron_expression="0 2 * * *")
        opened.create_trigger("at_2_30", cron_expression="30 2 * * *")
        opened.create_scheduler("orders_daily", "orders", "at_2")
        opened.create_scheduler("customers_daily", "customers", "at_2_30")
        yield opened


def runs_of(storage: PostgresStorage, scheduler: str) -> list[tuple[str, str, str]]:
    """(scheduled time, interval start, status) of a scheduler's runs, oldest first."""
    found = []
    for run in storage.list_runs(scheduler_name=scheduler, limit=100):
        assert run.scheduled_time is not None and run.logical_time is not None
        found.append(
            (
                f"{run.scheduled_time:%m-%d %H:%M}",
                f"{run.logical_time.interval_start:%m-%d %H:%M}",
                run.status.value,
            )
        )
    return sorted(found)


def test_a_dependent_runs_once_all_upstream_succeeded_for_the_same_logical_time(
    storage: PostgresStorage,
) -> None:
    clock = storage.clock
    assert isinstance(clock, FakeClock)
    storage.create_scheduler("report_after", "report", after_pipelines=["orders", "customers"])
    manager = load_scheduler_manager(storage, clock=clock, logs_dir=None)
    manager.start()
    clock.advance(until=at("2026-05-16 02:20"))
    assert runs_of(storage, "orders_daily") == [("05-16 02:00", "05-15 02:00", "succeeded")]
    assert runs_of(storage, "report_after") == []  # customers has not run for 02:00
    # customers runs for its own 02:30 tick: another logical time, so still nothing.
    clock.advance(until=at("2026-05-16 02:40"))
    assert runs_of(storage, "report_after") == []
    # Backfilling customers on the orders' cron gives it a success for 02:00 (and two more
    # days, of which orders has none yet): the report follows for 02:00 only.
    storage.update_scheduler("customers_daily", trigger_name="at_2")
    plan = plan_backfill(
        storage, "customers_daily", at("2026-05-14 00:00"), at("2026-05-16 02:00"), now=clock.now()
    )
    assert Backfill(storage, plan, clock=clock).run().succeeded == 3
    clock.advance(until=at("2026-05-16 02:42"))
    assert runs_of(storage, "report_after") == [("05-16 02:00", "05-15 02:00", "succeeded")]
    # Backfilling orders for the two earlier days makes the report follow for them, once each.
    plan = plan_backfill(
        storage, "orders_daily", at("2026-05-14 00:00"), at("2026-05-16 02:00"), now=clock.now()
    )
    assert Backfill(storage, plan, clock=clock).run().succeeded == 2
    results = clock.advance(until=at("2026-05-16 02:50"))
    manager.stop()
    assert [r.scheduler_name for r in results].count("report_after") == 2
    reports = storage.list_runs(scheduler_name="report_after")
    assert {run.started_by for run in reports} == {"dependency:orders,customers"}
    # Each report is for the orders' logical time, with its interval.
    assert runs_of(storage, "report_after") == [
        ("05-14 02:00", "05-13 02:00", "succeeded"),
        ("05-15 02:00", "05-14 02:00", "succeeded"),
        ("05-16 02:00", "05-15 02:00", "succeeded"),
    ]
