"""Per-schedule options in the database-driven manager: stored options win over the process's,
the stored defaults apply to every process, dates bound the ticks, max_active_runs counts
every run of the schedule; all through hot reload, on a real PostgreSQL and a FakeClock."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from tests.conftest import wait_until
from th2etl.clock import FakeClock
from th2etl.pipelines import RunStatus
from th2etl.scheduler import load_scheduler_manager
from th2etl.storage import PostgresStorage

from .helpers import statuses

pytestmark = [pytest.mark.postgres, pytest.mark.usefixtures("stored_bloc_types")]


def at(hhmm: str) -> datetime:
    hour, minute = hhmm.split(":")
    return datetime(2026, 5, 15, int(hour), int(minute), tzinfo=UTC)


@pytest.fixture
def storage(postgres: Any, schema: str, clock: FakeClock) -> Iterator[PostgresStorage]:
    with PostgresStorage(postgres.url, schema=schema, clock=clock) as opened:
        opened.create_bloc("quick_noop", "scheduler_test_noop")
        opened.create_pipeline("quick", stages=[["quick_noop"]])
        opened.create_trigger("every5", cron_expression="*/5 * * * *")
        yield opened


def by_scheduler(results: list[Any]) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for result, status in zip(results, statuses(results), strict=True):
        found.setdefault(result.scheduler_name, []).append(status)
    return found


def test_stored_options_win_over_the_process_and_stored_defaults_apply_everywhere(
    storage: PostgresStorage, clock: FakeClock
) -> None:
    storage.create_scheduler("own", "quick", "every5", variables={"region": "stored"}, missed="all")
    storage.create_scheduler("plain", "quick", "every5")
    process = {"missed": "skip", "variables": {"region": "process", "team": "data"}}
    first = load_scheduler_manager(storage, clock=clock, logs_dir=None, **process)
    first.start()
    clock.advance(until=at("10:05"))
    first.stop()
    clock.advance(until=at("10:17"))  # every instance down from 10:05 to 10:17
    second = load_scheduler_manager(storage, clock=clock, logs_dir=None, **process)
    second.start()
    assert by_scheduler(clock.advance(1)) == {
        "own": ["10:10 started", "10:15 started"],  # its own missed="all"
        "plain": ["10:10 skipped(missed)", "10:15 skipped(missed)"],  # the process's "skip"
    }
    variables = {r.scheduler_name: r.variables for r in storage.list_runs(status="succeeded")}
    assert variables == {
        "own": {"region": "stored", "team": "data"},
        "plain": {"region": "process", "team": "data"},
    }
    second.stop()
    # A default stored in the database beats every process's option, once hot-reloaded.
    storage.set_schedule_defaults(missed="latest")
    clock.advance(until=at("10:32"))
    third = load_scheduler_manager(storage, clock=clock, logs_dir=None, **process)
    third.start()
    found = by_scheduler(clock.advance(1))
    assert found["plain"][-1] == "10:30 started"
    assert found["own"] == ["10:20 started", "10:25 started", "10:30 started"]
    # An option changed while running applies from the next tick, through hot reload.
    storage.update_scheduler("plain", variables={"region": "edited"})
    clock.advance(until=at("10:35"))
    third.stop()
    latest = storage.list_runs(scheduler_name="plain", limit=1)[0]
    assert (f"{latest.scheduled_time:%H:%M}", latest.variables) == (
        "10:35",
        {"region": "edited", "team": "data"},
    )


def test_start_and_end_dates_bound_the_ticks(storage: PostgresStorage, clock: FakeClock) -> None:
    storage.create_scheduler(
        "bounded", "quick", "every5", start_date=at("10:20"), end_date=at("10:30")
    )
    manager = load_scheduler_manager(storage, clock=clock, logs_dir=None, reload_interval=5)
    manager.start()
    results = clock.advance(until=at("11:00"))
    assert statuses(results) == ["10:20 started", "10:25 started", "10:30 started"]
    assert manager.next_due_time() != at("11:05")  # nothing more is due for this scheduler
    storage.update_scheduler("bounded", end_date=at("11:10"))
    assert statuses(clock.advance(until=at("11:10"))) == ["11:05 started", "11:10 started"]
    manager.stop()
    assert {r.status for r in storage.list_runs(scheduler_name="bounded")} == {RunStatus.SUCCEEDED}


def test_max_active_runs_counts_every_run_of_the_schedule(
    storage: PostgresStorage, clock: FakeClock
) -> None:
    storage.create_scheduler("capped", "quick", "every5", overlap="allow", max_active_runs=1)
    manager = load_scheduler_manager(storage, clock=clock, logs_dir=None)
    manager.start()
    # A run of the schedule started by hand (or by a backfill) is still going.
    storage.start_run("by-hand", "quick", started_at=clock.now(), scheduler_name="capped")
    [skipped] = clock.advance(until=at("10:05"))
    assert statuses([skipped]) == ["10:05 skipped(max_active_runs)"]
    assert skipped.detail == (
        "1 run(s) of this schedule are queued or running, its max_active_runs is 1"
    )
    storage.finish_run("by-hand", RunStatus.SUCCEEDED, finished_at=clock.now(), error=None)
    assert statuses(clock.advance(until=at("10:10"))) == ["10:10 started"]
    manager.stop()


def test_the_schedule_timeout_overrides_the_pipeline_and_stops_the_run(
    storage: PostgresStorage, clock: FakeClock
) -> None:
    from ..executors import blocs  # registers test_sleeper

    assert blocs
    storage.create_bloc("nap", "test_sleeper", {"seconds": 5})
    storage.create_pipeline("napping", stages=[["nap"]])
    storage.create_scheduler("short", "napping", "every5", timeout=0.2)
    # Not inline: the run goes to the run executor, which enforces timeouts.
    manager = load_scheduler_manager(storage, clock=clock, logs_dir=None, inline=False)
    manager.start()
    clock.advance(until=at("10:05"))
    # Stopping the manager cancels what still runs: wait for the timeout to end the run first.
    wait_until(
        lambda: [r.status.finished for r in storage.list_runs(scheduler_name="short")] == [True],
        timeout=30,
        what="the timed-out run to end",
    )
    manager.stop()
    [run] = storage.list_runs(scheduler_name="short")
    assert run.status is RunStatus.FAILED
    assert run.error is not None
    assert "the pipeline timeout of 0.2s of pipeline 'napping'" in run.error


@pytest.mark.usefixtures("logging_restored")
def test_the_cli_shows_and_changes_options_and_defaults(
    tmp_path: Any, clean_env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from th2etl.cli import main
    from th2etl.storage import DatabaseStorage

    clean_env.setenv("TH2ETL_SQLITE_PATH", str(tmp_path / "th2etl.db"))
    with DatabaseStorage(tmp_path / "th2etl.db") as storage:
        storage.create_bloc("quick_noop", "scheduler_test_noop")
        storage.create_pipeline("quick", stages=[["quick_noop"]])
        storage.create_trigger("every5", cron_expression="*/5 * * * *")
        storage.create_scheduler("job", "quick", "every5", timeout=60)
    command = ["schedule", "job", "--missed", "all", "--var", "region=north", "--reset", "timeout"]
    assert main([*command, "--start-date", "2026-06-01"]) == 0
    shown = capsys.readouterr().out.splitlines()
    assert "missed           all" in shown and "timeout          (unset)" in shown
    assert "start_date       2026-06-01T00:00:00+00:00" in shown
    assert "variables        {'region': 'north'}" in shown
    assert main(["schedule", "job", "--max-active-runs", "0"]) == 1
    assert (
        "max_active_runs must be a whole number from 1 to 10000, got 0" in capsys.readouterr().err
    )
    assert main(["schedule-defaults", "--overlap", "allow", "--json"]) == 0
    assert '"overlap": "allow"' in capsys.readouterr().out
    with DatabaseStorage(tmp_path / "th2etl.db") as storage:
        assert storage.get_scheduler("job").max_active_runs is None
        assert storage.get_schedule_defaults().overlap == "allow"
        storage.create_pipeline("report", stages=[["quick_noop"]])
        storage.create_scheduler("report_after", "report", after_pipelines=["quick"])
    assert main(["next", "report_after"]) == 1
    assert "has no fire times of its own: it runs once quick succeeded" in capsys.readouterr().err
