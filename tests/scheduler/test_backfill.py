"""Backfill on a real PostgreSQL: one run per fire time with its own logical time across a DST
change, exactly once with two backfills at once, skipped ticks filled, --rerun-failed as new
attempts, refusals with the count; and the CLI and API doors."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from th2etl.clock import FakeClock
from th2etl.exceptions import ValidationError
from th2etl.scheduler.backfill import Backfill, BackfillReport, plan_backfill
from th2etl.storage import PostgresStorage

pytestmark = pytest.mark.postgres

NOW = datetime(2026, 5, 15, 10, 0, tzinfo=UTC)
NEW_YORK_MIDNIGHTS = [
    "2026-03-06T00:00:00-05:00",
    "2026-03-07T00:00:00-05:00",
    "2026-03-08T00:00:00-05:00",
    "2026-03-09T00:00:00-04:00",  # the first midnight after the clocks went forward
    "2026-03-10T00:00:00-04:00",
]


def ny(day: str) -> datetime:
    from zoneinfo import ZoneInfo

    return datetime.fromisoformat(day).replace(tzinfo=ZoneInfo("America/New_York"))


@pytest.fixture
def storage(postgres: Any, schema: str, tmp_path: Path) -> Iterator[PostgresStorage]:
    """A daily load of "yesterday's orders" (a CSV per day) at midnight in New York."""
    with PostgresStorage(postgres.url, schema=schema, clock=FakeClock(NOW)) as opened:
        path = str(tmp_path / "orders_${run:date}.csv")
        opened.create_bloc("load", "csv_loader", {"file_path": path})
        opened.create_pipeline("orders", [["load"]])
        opened.create_trigger("midnight", cron_expression="0 0 * * *", timezone="America/New_York")
        opened.create_scheduler("daily", "orders", "midnight")
        yield opened


def orders_for(tmp_path: Path, *days: str) -> None:
    for day in days:
        (tmp_path / f"orders_{day}.csv").write_text(f"day\n{day}\n", encoding="utf-8")


def runs_by_time(storage: PostgresStorage) -> dict[str, list[tuple[int, str]]]:
    found: dict[str, list[tuple[int, str]]] = {}
    for run in storage.list_runs(scheduler_name="daily", limit=1000):
        assert run.scheduled_time is not None
        key = run.scheduled_time.astimezone(ny("2026-03-01").tzinfo).isoformat()
        found.setdefault(key, []).append((run.attempt, run.status.value))
    return {key: sorted(value) for key, value in sorted(found.items())}


def backfill(storage: PostgresStorage, start: str, end: str, **options: Any) -> BackfillReport:
    plan = plan_backfill(
        storage,
        "daily",
        ny(start),
        ny(end),
        now=NOW,
        rerun_failed=options.pop("rerun_failed", False),
    )
    return Backfill(storage, plan, clock=storage.clock, **options).run()


def test_one_run_per_fire_time_each_for_its_own_day_across_dst(
    storage: PostgresStorage, tmp_path: Path
) -> None:
    orders_for(tmp_path, "2026-03-05", "2026-03-06", "2026-03-08", "2026-03-09")  # not the 7th
    report = backfill(storage, "2026-03-06", "2026-03-10", max_active=2)
    assert (report.total, report.done, report.succeeded) == (5, 5, 4)
    [(fire_time, _, error)] = report.failed
    assert fire_time.isoformat() == "2026-03-08T00:00:00-05:00"
    assert error.startswith("bloc 'load' failed: ") and "orders_2026-03-07.csv" in error
    runs = storage.list_runs(scheduler_name="daily", limit=100)
    logical = {
        run.logical_time.interval_end.isoformat(): run.logical_time
        for run in runs
        if run.logical_time
    }
    assert sorted(logical) == NEW_YORK_MIDNIGHTS
    short_day = logical["2026-03-09T00:00:00-04:00"]
    assert short_day.interval_start.isoformat() == "2026-03-08T00:00:00-05:00"
    assert short_day.value("date") == "2026-03-08"
    assert {run.attempt for run in runs} == {1}
    assert {run.started_by for run in runs} == {"backfill:daily"}
    # Running it again runs nothing: every tick ran (the failed one is kept as it is).
    again = plan_backfill(storage, "daily", ny("2026-03-06"), ny("2026-03-10"), now=NOW)
    assert again.to_run == ()
    assert again.state(again.fire_times[2]).startswith("already failed (run ")
    # --rerun-failed runs it again as its second attempt; the first attempt's record stays.
    orders_for(tmp_path, "2026-03-07")
    rerun = backfill(storage, "2026-03-06", "2026-03-10", rerun_failed=True)
    assert (rerun.total, rerun.succeeded, rerun.failed) == (1, 1, [])
    assert runs_by_time(storage)["2026-03-08T00:00:00-05:00"] == [(1, "failed"), (2, "succeeded")]


def test_each_run_gets_its_folder_and_log_as_a_scheduled_run_does(
    storage: PostgresStorage, tmp_path: Path
) -> None:
    orders_for(tmp_path, "2026-03-05")  # the 7th's file is missing: that run fails
    logs = tmp_path / "logs"
    report = backfill(storage, "2026-03-06", "2026-03-07", logs_dir=logs)
    assert (report.total, report.succeeded) == (2, 1)
    orders_for(tmp_path, "2026-03-06")
    rerun = backfill(storage, "2026-03-06", "2026-03-07", logs_dir=logs, rerun_failed=True)
    assert (rerun.total, rerun.succeeded) == (1, 1)
    # <logs_dir>/<scheduler>/<fire time in UTC>, and _2 for the second attempt of a tick.
    folders = sorted(path.name for path in (logs / "daily").iterdir())
    assert folders == ["20260306_050000", "20260307_050000", "20260307_050000_2"]
    first_log = (logs / "daily" / "20260307_050000" / "run.log").read_text()
    assert "pipeline 'orders' failed" in first_log and "orders_2026-03-06.csv" in first_log
    second_log = (logs / "daily" / "20260307_050000_2" / "run.log").read_text()
    assert "pipeline 'orders' succeeded" in second_log


def test_skipped_ticks_count_as_not_run(storage: PostgresStorage, tmp_path: Path) -> None:
    orders_for(tmp_path, "2026-03-05", "2026-03-06")
    skipped = storage.record_skipped_run(
        "daily",
        ny("2026-03-06"),
        "missed: 2:00:00 late, policy 'skip'",
        pipeline_name="orders",
        trigger_name="midnight",
        instance_id=None,
        now=NOW,
    )
    assert skipped is not None
    report = backfill(storage, "2026-03-06", "2026-03-07")
    assert (report.total, report.succeeded) == (2, 2)
    assert runs_by_time(storage) == {
        "2026-03-06T00:00:00-05:00": [(1, "skipped"), (2, "succeeded")],
        "2026-03-07T00:00:00-05:00": [(1, "succeeded")],
    }


def test_two_backfills_at_once_run_every_tick_exactly_once(
    storage: PostgresStorage, postgres: Any, schema: str, tmp_path: Path
) -> None:
    days = [f"2026-02-{day:02d}" for day in range(1, 29)] + ["2026-03-01"]
    orders_for(tmp_path, *days)
    barrier = threading.Barrier(2)
    reports: list[BackfillReport] = []

    def one_process() -> None:
        with PostgresStorage(postgres.url, schema=schema) as own:
            plan = plan_backfill(own, "daily", ny("2026-02-02"), ny("2026-03-02"), now=NOW)
            barrier.wait()
            reports.append(Backfill(own, plan, max_active=2).run())

    threads = [threading.Thread(target=one_process) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    runs = runs_by_time(storage)
    assert len(runs) == 29 and all(ticks == [(1, "succeeded")] for ticks in runs.values())
    assert sum(r.succeeded for r in reports) == 29
    assert sorted(r.succeeded + r.taken for r in reports) == [29, 29]


def test_refusals_name_the_problem_and_the_count(storage: PostgresStorage) -> None:
    with pytest.raises(ValidationError, match=r"the range is reversed: --from 2026-03-10"):
        plan_backfill(storage, "daily", ny("2026-03-10"), ny("2026-03-01"), now=NOW)
    with pytest.raises(
        ValidationError,
        match=r"--to 2026-05-20T00:00:00-04:00 is in the future \(now 2026-05-15T10:00:00\+00:00\)"
        r": 5 fire time\(s\) would run before their time",
    ):
        plan_backfill(storage, "daily", ny("2026-05-01"), ny("2026-05-20"), now=NOW)
    storage.create_trigger("minutely", cron_expression="* * * * *")
    storage.update_scheduler("daily", trigger_name="minutely", enabled=False)
    # 8 days of minutes and one more, less the hour New York skips on 2026-03-08.
    with pytest.raises(
        ValidationError,
        match=r"11461 fire times between .* more than 10,000; narrow the range, or confirm "
        r"with --yes",
    ):
        plan_backfill(storage, "daily", ny("2026-03-01"), ny("2026-03-09"), now=NOW)
    plan = plan_backfill(storage, "daily", ny("2026-03-01"), ny("2026-03-09"), now=NOW, yes=True)
    assert len(plan.to_run) == 11461
    assert plan.notes == (
        "scheduler 'daily' is disabled: the backfill runs its ticks anyway, and its trigger "
        "stays quiet",
    )
    storage.create_bloc("upstream_load", "csv_loader", {"file_path": "up.csv"})
    storage.create_pipeline("upstream", [["upstream_load"]])
    storage.create_scheduler("after", "orders", after_pipelines=["upstream"])
    with pytest.raises(
        ValidationError,
        match=r"runs after pipeline\(s\) upstream succeed, so it has no fire times of its own; "
        r"backfill the schedulers of those pipelines",
    ):
        plan_backfill(storage, "after", ny("2026-03-01"), ny("2026-03-09"), now=NOW)


@pytest.mark.usefixtures("logging_restored")
def test_the_cli_lists_and_runs_with_progress(
    storage: PostgresStorage,
    tmp_path: Path,
    postgres: Any,
    schema: str,
    clean_env: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from th2etl.cli import main

    clean_env.setenv("DATABASE_URL", postgres.url)
    clean_env.setenv("DATABASE_SCHEMA", schema)
    orders_for(tmp_path, "2026-03-06")
    assert (
        main(["backfill", "daily", "--from", "2026-03-07", "--to", "2026-03-08", "--dry-run"]) == 0
    )
    out = capsys.readouterr().out
    assert out.splitlines() == [
        "backfill of scheduler 'daily' (pipeline 'orders', trigger 'midnight': '0 0 * * *' in "
        "America/New_York): 2 fire times from 2026-03-07T00:00:00-05:00 to "
        "2026-03-08T00:00:00-05:00; 2 to run",
        "  2026-03-07T00:00:00-05:00  run",
        "  2026-03-08T00:00:00-05:00  run",
    ]
    assert main(["backfill", "daily", "--from", "2026-03-07", "--to", "2026-03-08"]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert lines[1].startswith("[1/2] 2026-03-07T00:00:00-05:00 succeeded (run ")
    assert lines[2].startswith("[2/2] 2026-03-08T00:00:00-05:00 failed (run ")
    assert lines[2].endswith("[1 failed so far]")
    assert (
        lines[3] == "done: 2/2, 1 succeeded, 1 failed; run again with --rerun-failed to retry them"
    )
    # TH2ETL_EXECUTOR unset: the runs executed in worker processes, as the scheduler's do.
    for run in storage.list_runs(scheduler_name="daily"):
        assert run.executor == "process" and run.worker is not None
        assert not run.worker.endswith(f":{os.getpid()}")
    assert main(["backfill", "daily", "--from", "2026-03-08", "--to", "2026-03-07"]) == 1
    assert "the range is reversed" in capsys.readouterr().err


@pytest.mark.usefixtures("logging_restored")
def test_the_readme_daily_load_and_backfill_run_as_written(
    tmp_path: Path, clean_env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from tests.readme import code_blocks, run_snippet
    from th2etl.cli import main

    [snippet] = [block for block in code_blocks("Scheduler") if "${run:date}" in block]
    [console] = [
        block for block in code_blocks("Scheduler", "console") if "th2etl backfill" in block
    ]
    clean_env.chdir(tmp_path)
    clean_env.setenv("TH2ETL_SQLITE_PATH", str(tmp_path / "orders.db"))
    run_snippet(snippet, tmp_path, "daily_orders")
    orders_for(tmp_path, "2026-03-05", "2026-03-06", "2026-03-08")  # not the 7th
    command = console.splitlines()[0].removeprefix("$ th2etl ").split()
    assert main(command) == 1
    lines = capsys.readouterr().out.splitlines()
    expected = console.splitlines()[1:]
    assert lines[0] == expected[0] and lines[-1] == expected[-1]

    def outcomes(shown: list[str]) -> list[str]:  # with --max-active 2 they may end in any order
        return sorted(line.split("] ", 1)[1].split(" (run ")[0] for line in shown)

    assert outcomes(lines[1:-1]) == outcomes(expected[1:-1])
    assert (tmp_path / "loaded_20260308.csv").read_text().splitlines() == ["day", "2026-03-08"]
