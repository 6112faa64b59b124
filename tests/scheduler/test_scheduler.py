"""CronScheduler and SchedulerManager in one process, driven by a FakeClock."""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.conftest import wait_until
from th2etl import FakeClock as TopLevelFakeClock
from th2etl.blocs import TransformerBloc
from th2etl.exceptions import CronError, NotFoundError, ValidationError
from th2etl.pipelines import Pipeline, RunContext, RunStatus
from th2etl.scheduler import (
    CronScheduler,
    CronTrigger,
    FakeClock,
    MissedTickPolicy,
    OverlapPolicy,
    SchedulerManager,
    SkipReason,
    TickAction,
    load_scheduler_manager,
    schedule_pipeline,
)
from th2etl.scheduler._runs import make_run_dir
from th2etl.types import Rows

from .helpers import GATES, gate_pipeline, noop_pipeline, statuses, write_pipeline

ROOT = Path(__file__).resolve().parents[2]


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


# -- FakeClock ----------------------------------------------------------------------------------


def test_fake_clock_moves_only_when_told() -> None:
    assert TopLevelFakeClock is FakeClock
    clock = FakeClock(at("2026-05-15 10:00"))
    assert clock.now() == at("2026-05-15 10:00")
    assert clock.advance(90) == []
    assert clock.now() == at("2026-05-15 10:01:30")
    clock.sleep(30)
    assert clock.now() == at("2026-05-15 10:02")
    clock.advance(until=at("2026-05-15 11:00"))
    assert clock.now() == at("2026-05-15 11:00")
    assert FakeClock().now() == at("2026-01-01 00:00")


def test_fake_clock_refusals() -> None:
    with pytest.raises(ValidationError, match="FakeClock start must be a timezone-aware datetime"):
        FakeClock(datetime(2026, 1, 1))
    clock = FakeClock(at("2026-05-15 10:00"))
    with pytest.raises(ValidationError, match="cannot go back in time: it is 2026-05-15T10:00"):
        clock.advance(until=at("2026-05-15 09:00"))
    with pytest.raises(ValidationError, match="needs exactly one of delta"):
        clock.advance()
    with pytest.raises(ValidationError, match="needs exactly one of delta"):
        clock.advance(5, until=at("2026-05-15 11:00"))
    with pytest.raises(ValidationError, match=r"advance\(until=...\) needs a timezone-aware"):
        clock.advance(until=datetime(2026, 5, 15, 11))
    assert clock.now() == at("2026-05-15 10:00")


# -- a year, exactly -------------------------------------------------------------------------


def test_a_year_of_five_minutes_next_to_a_daily_job() -> None:
    clock = FakeClock(
        datetime(2026, 1, 1, tzinfo=CronTrigger("* * * * *", "Europe/Paris").timezone)
    )
    every5 = CronScheduler(
        noop_pipeline("every5"),
        CronTrigger("*/5 * * * *", "Europe/Paris"),
        name="every5",
        logs_dir=None,
        clock=clock,
    )
    daily = CronScheduler(
        noop_pipeline("daily"),
        CronTrigger("30 2 * * *", "Europe/Paris"),
        name="daily",
        logs_dir=None,
        clock=clock,
    )
    manager = SchedulerManager([every5, daily])
    manager.start()
    end = datetime(2027, 1, 1, tzinfo=every5.trigger.timezone)
    results = clock.advance(until=end)
    manager.stop()
    by_scheduler = Counter(r.scheduler_name for r in results)
    # 365 days of 24 real hours (one 23-hour and one 25-hour day): 8760 hours x 12
    assert by_scheduler == {"every5": 8760 * 12, "daily": 365}
    assert {r.action for r in results} == {TickAction.STARTED}
    assert {r.result.status for r in results if r.result} == {RunStatus.SUCCEEDED}
    five = [r.scheduled_time for r in results if r.scheduler_name == "every5"]
    assert five[0] == at("2025-12-31 23:05") and five[-1] == at("2026-12-31 23:00")
    assert {b - a for a, b in itertools.pairwise(five)} == {timedelta(minutes=5)}
    days = [r.scheduled_time.astimezone(UTC) for r in results if r.scheduler_name == "daily"]
    assert days[0] == at("2026-01-01 01:30")
    assert at("2026-03-29 01:00") in days  # 02:30 does not exist: run at 03:00 CEST
    assert at("2026-10-25 00:30") in days and at("2026-10-25 01:30") not in days  # once
    assert len({d.astimezone(every5.trigger.timezone).date() for d in days}) == 365
    assert clock.now() == end


# -- policies ------------------------------------------------------------------------------------


def make(policy: MissedTickPolicy, clock: FakeClock, **options: object) -> CronScheduler:
    scheduler = CronScheduler(
        noop_pipeline(),
        "*/5 * * * *",
        name="five",
        clock=clock,
        missed=policy,
        logs_dir=None,
        **options,  # type: ignore[arg-type]
    )
    scheduler.reset(at("2026-05-15 10:00"))
    return scheduler


@pytest.mark.parametrize(
    ("policy", "options", "expected"),
    [
        # noticed 2 minutes late: every tick is missed
        (
            MissedTickPolicy.SKIP,
            {},
            ["10:05 skipped(missed)", "10:10 skipped(missed)", "10:15 skipped(missed)"],
        ),
        (
            MissedTickPolicy.LATEST,
            {},
            ["10:05 skipped(missed)", "10:10 skipped(missed)", "10:15 started"],
        ),
        (MissedTickPolicy.ALL, {}, ["10:05 started", "10:10 started", "10:15 started"]),
        (
            MissedTickPolicy.ALL,
            {"max_catch_up": 2},
            ["10:05 skipped(missed)", "10:10 started", "10:15 started"],
        ),
        (
            MissedTickPolicy.LATEST,
            {"grace": 60},
            ["10:05 skipped(missed)", "10:10 skipped(missed)", "10:15 skipped(missed)"],
        ),
        (
            MissedTickPolicy.ALL,
            {"grace": timedelta(minutes=8)},
            ["10:05 skipped(missed)", "10:10 started", "10:15 started"],
        ),
    ],
)
def test_missed_tick_policies(
    policy: MissedTickPolicy, options: dict[str, object], expected: list[str]
) -> None:
    clock = FakeClock(at("2026-05-15 10:17"))
    scheduler = make(policy, clock, **options)
    results = scheduler.tick(clock.now())
    assert statuses(results) == expected
    missed = [r for r in results if r.reason is SkipReason.MISSED]
    assert all("late, policy" in (r.detail or "") for r in missed)
    assert scheduler.tick(clock.now()) == []  # handled once
    assert scheduler.next_due_time() == at("2026-05-15 10:20")


@pytest.mark.parametrize("policy", list(MissedTickPolicy))
def test_an_on_time_tick_runs_under_every_policy(policy: MissedTickPolicy) -> None:
    clock = FakeClock(at("2026-05-15 10:15:30"))  # 30 s late: within the tolerance
    results = make(policy, clock).tick(clock.now())
    assert statuses(results)[-1] == "10:15 started"
    skipped = statuses(results)[:-1]
    if policy is MissedTickPolicy.ALL:
        assert skipped == ["10:05 started", "10:10 started"]
    else:
        assert skipped == ["10:05 skipped(missed)", "10:10 skipped(missed)"]


def test_overlap_skip_and_allow() -> None:
    GATES["overlap"] = threading.Event()
    clock = FakeClock(at("2026-05-15 10:00"))
    skip = CronScheduler(
        gate_pipeline("overlap", "skip_p"),
        "*/5 * * * *",
        name="skip",
        clock=clock,
        inline=False,
        logs_dir=None,
    )
    allow = CronScheduler(
        gate_pipeline("overlap", "allow_p"),
        "*/5 * * * *",
        name="allow",
        clock=clock,
        inline=False,
        logs_dir=None,
        overlap=OverlapPolicy.ALLOW,
    )
    for scheduler in (skip, allow):
        scheduler.start()
    try:
        results = clock.advance(timedelta(minutes=10))
        assert sorted(
            f"{r.scheduler_name} {s}" for r, s in zip(results, statuses(results), strict=True)
        ) == [
            "allow 10:05 started",
            "allow 10:10 started",
            "skip 10:05 started",
            "skip 10:10 skipped(overlap)",
        ]
        overlap = next(r for r in results if r.reason is SkipReason.OVERLAP)
        assert overlap.detail == "the previous run is still going (here)"
        assert len(allow.running_runs()) == 2 and len(skip.running_runs()) == 1
    finally:
        GATES["overlap"].set()
        for scheduler in (skip, allow):
            scheduler.stop(grace=30)
    assert skip.running_runs() == [] and allow.running_runs() == []
    # once the run is over, the next tick runs again
    GATES["overlap"].clear()
    skip.start()
    try:
        assert statuses(clock.advance(timedelta(minutes=5))) == ["10:15 started"]
    finally:
        GATES["overlap"].set()
        skip.stop(grace=30)


def test_stop_gives_running_pipelines_a_grace_period_then_cancels_them() -> None:
    clock = FakeClock(at("2026-05-15 10:00"))
    results: dict[str, object] = {}
    for gate, grace in (("graceful", 30.0), ("cancelled", 0.0)):
        GATES[gate] = threading.Event()
        scheduler = CronScheduler(
            gate_pipeline(gate), "*/5 * * * *", name=gate, clock=clock, inline=False, logs_dir=None
        )
        finished: list[RunStatus] = []
        original = scheduler._execute

        def execute(*args: object, original=original, finished=finished) -> object:  # type: ignore[no-untyped-def]
            result = original(*args)  # type: ignore[arg-type]
            finished.append(result.status)  # type: ignore[union-attr]
            return result

        scheduler._execute = execute  # type: ignore[method-assign]
        scheduler.start()
        assert statuses(clock.advance(timedelta(minutes=5))) == [f"{(clock.now()):%H:%M} started"]
        if grace:
            releaser = threading.Timer(0.05, GATES[gate].set)
            releaser.start()
        scheduler.stop(grace=grace)
        results[gate] = finished
        if grace:
            releaser.join()
    assert results == {"graceful": [RunStatus.SUCCEEDED], "cancelled": [RunStatus.CANCELLED]}


# -- output folders ------------------------------------------------------------------------------


def test_output_folder_log_and_summary(tmp_path: Path, clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("PIPELINES_LOGS_DIR", str(tmp_path / "runs"))
    clock = FakeClock(at("2026-05-15 10:29"))
    scheduler = schedule_pipeline(write_pipeline(), "30 10 * * *", name="daily_writer", clock=clock)
    scheduler.start()
    [result] = clock.advance(timedelta(minutes=1))
    scheduler.stop()
    folder = tmp_path / "runs" / "daily_writer" / "20260515_103000"
    assert result.result is not None and result.result.status is RunStatus.SUCCEEDED
    write = result.result.blocs["write"]
    assert (write.rows_out, write.batches_out) == (1, 1)
    with pytest.raises(KeyError, match="bloc 'write' passed on 1 rows, but this run kept none"):
        result.result.outputs["write"]  # a scheduled run keeps no rows, only what blocs wrote
    assert (folder / "marker.txt").read_text() == result.run_id
    log = (folder / "run.log").read_text()
    assert f"run {result.run_id} of scheduler 'daily_writer'" in log
    assert "writes its marker" in log and "succeeded" in log
    summary = json.loads((folder / "result.json").read_text())
    assert summary["run_id"] == result.run_id and summary["status"] == "succeeded"
    assert summary["scheduled_time"] == "2026-05-15T10:30:00+00:00"


def test_lowercase_setting_and_unique_folders(
    tmp_path: Path, clean_env: pytest.MonkeyPatch
) -> None:
    clean_env.setenv("pipelines_logs_dir", str(tmp_path))
    clock = FakeClock(at("2026-05-15 10:00"))
    scheduler = schedule_pipeline(write_pipeline(), "*/5 * * * *", name="w", clock=clock)
    assert scheduler.logs_dir == tmp_path
    when = at("2026-05-15 10:05")
    names = [make_run_dir(tmp_path, "same", when).name for _ in range(3)]
    assert names == ["20260515_100500", "20260515_100500_2", "20260515_100500_3"]


def test_concurrent_runs_keep_their_own_logs(tmp_path: Path) -> None:
    clock = FakeClock(at("2026-05-15 10:00"))
    GATES["logs"] = threading.Event()
    pipeline = gate_pipeline("logs", "logged")
    scheduler = CronScheduler(
        pipeline,
        "* * * * *",
        name="logged",
        clock=clock,
        inline=False,
        logs_dir=tmp_path,
        overlap="allow",
    )
    scheduler.start()
    started = clock.advance(timedelta(minutes=2))
    GATES["logs"].set()
    scheduler.stop(grace=30)
    assert statuses(started) == ["10:01 started", "10:02 started"]
    for result in started:
        folder = tmp_path / "logged" / f"{result.scheduled_time:%Y%m%d_%H%M%S}"
        log = (folder / "run.log").read_text()
        other = next(r.run_id for r in started if r is not result)
        assert result.run_id in log and other not in log
        assert json.loads((folder / "result.json").read_text())["status"] == "succeeded"


# -- seed API and refusals -----------------------------------------------------------------------


def test_schedule_pipeline_defaults_and_preview() -> None:
    clock = FakeClock(at("2026-05-15 10:20"))
    scheduler = schedule_pipeline(noop_pipeline("hourly"), "0 * * * *", clock=clock, logs_dir=None)
    assert scheduler.name == "hourly" and scheduler.trigger == CronTrigger("0 * * * *")
    assert scheduler.next_fire_times(2) == [at("2026-05-15 11:00"), at("2026-05-15 12:00")]
    scheduler.start()
    assert len(clock.advance(timedelta(days=1))) == 24
    scheduler.stop()
    assert clock.advance(timedelta(days=1)) == []  # detached


def test_refusals_change_nothing() -> None:
    with pytest.raises(ValidationError, match="CronScheduler needs a Pipeline"):
        CronScheduler("not a pipeline", "* * * * *")  # type: ignore[arg-type]
    with pytest.raises(CronError, match="has 6 field"):
        CronScheduler(noop_pipeline(), "0 * * * * *")
    with pytest.raises(
        ValidationError,
        match="missed-tick policy 'sometimes' is not one of 'skip', 'latest', 'all'",
    ):
        CronScheduler(noop_pipeline(), "* * * * *", missed="sometimes")
    with pytest.raises(
        ValidationError, match="overlap policy 'queue' is not one of 'skip', 'allow'"
    ):
        CronScheduler(noop_pipeline(), "* * * * *", overlap="queue")
    with pytest.raises(ValidationError, match="grace must be zero or more seconds, got -1"):
        CronScheduler(noop_pipeline(), "* * * * *", grace=-1)
    with pytest.raises(ValidationError, match="max_catch_up must be a whole number >= 1, got 0"):
        CronScheduler(noop_pipeline(), "* * * * *", max_catch_up=0)
    # a pool that cannot be made would otherwise fail at the first run, its tick claimed
    with pytest.raises(
        ValidationError, match=r"CronScheduler max_workers must be a whole number >= 1 .*got 0"
    ):
        CronScheduler(noop_pipeline(), "* * * * *", max_workers=0)
    with pytest.raises(ValidationError, match=r"SchedulerManager max_workers .* got '4'"):
        SchedulerManager(max_workers="4")  # type: ignore[arg-type]
    with pytest.raises(
        ValidationError, match="scheduler name 'noop' is used twice in this manager"
    ):
        SchedulerManager(
            [
                CronScheduler(noop_pipeline(), "* * * * *"),
                CronScheduler(noop_pipeline(), "0 * * * *"),
            ]
        )
    with pytest.raises(ValidationError, match="use different clocks"):
        SchedulerManager(
            [
                CronScheduler(noop_pipeline("a"), "* * * * *", clock=FakeClock()),
                CronScheduler(noop_pipeline("b"), "* * * * *", clock=FakeClock()),
            ]
        )
    with pytest.raises(ValidationError, match="SchedulerManager takes CronScheduler objects"):
        SchedulerManager(["x"])  # type: ignore[list-item]
    with pytest.raises(ValidationError, match="heartbeat_interval must be more than 0 seconds"):
        SchedulerManager(heartbeat_interval=0)
    manager = SchedulerManager([CronScheduler(noop_pipeline(), "* * * * *")])
    with pytest.raises(NotFoundError, match="this manager has no scheduler 'nope'; it has: noop"):
        manager.remove("nope")
    with pytest.raises(NotFoundError, match="no scheduler 'nope'"):
        manager["nope"]
    assert list(manager) == ["noop"] and len(manager) == 1 and "noop" in manager


def test_load_scheduler_manager_refuses_unknown_options_before_touching_storage() -> None:
    with pytest.raises(
        ValidationError, match="unknown option 'cron'; scheduler options are: grace"
    ):
        load_scheduler_manager(object(), cron="* * * * *")  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="missed-tick policy 'never'"):
        load_scheduler_manager(object(), missed="never")  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match=r"SchedulerManager max_workers .* got -1"):
        load_scheduler_manager(object(), max_workers=-1)  # type: ignore[arg-type]


# -- the real loop -------------------------------------------------------------------------------


def test_start_blocks_until_stop_from_another_thread() -> None:
    scheduler = schedule_pipeline(noop_pipeline(), "0 0 1 1 *", logs_dir=None)
    thread = threading.Thread(target=scheduler.start)
    thread.start()
    while not scheduler.running:
        time.sleep(0.001)
    scheduler.stop()
    thread.join(timeout=30)
    assert not thread.is_alive() and not scheduler.running


def test_stop_before_start_is_honoured() -> None:
    manager = SchedulerManager([schedule_pipeline(noop_pipeline(), "0 0 1 1 *", logs_dir=None)])
    manager.stop()
    manager.start()  # returns at once
    assert not manager.running


SIGNAL_SCRIPT = """
import signal, sys, threading, time
sys.path.insert(0, {root!r})
from th2etl.pipelines import build_example_pipeline
from th2etl.scheduler import CronScheduler, CronTrigger, SchedulerManager

manager = SchedulerManager([CronScheduler(build_example_pipeline(), CronTrigger("0 0 1 1 *"))])

def ready():
    while signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        time.sleep(0.001)
    print("ready", flush=True)

threading.Thread(target=ready, daemon=True).start()
manager.start()
print("stopped cleanly", flush=True)
"""


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_sigterm_and_sigint_stop_the_loop(tmp_path: Path, signum: int) -> None:
    process = subprocess.Popen(
        [sys.executable, "-c", SIGNAL_SCRIPT.format(root=str(ROOT))],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert process.stdout is not None
    assert process.stdout.readline().strip() == "ready"
    process.send_signal(signum)
    out, err = process.communicate(timeout=60)
    assert process.returncode == 0, err
    assert out.strip() == "stopped cleanly"


def test_public_names_and_docstring_examples() -> None:
    import doctest

    import th2etl
    import th2etl.clock
    import th2etl.scheduler
    import th2etl.scheduler.triggers

    for name in (
        "CronTrigger",
        "CronScheduler",
        "SchedulerManager",
        "load_scheduler_manager",
        "schedule_pipeline",
        "FakeClock",
    ):
        assert name in th2etl.scheduler.__all__ and hasattr(th2etl.scheduler, name)
    assert th2etl.scheduler.__all__ == sorted(
        th2etl.scheduler.__all__, key=lambda n: (n[0].islower(), n)
    )
    assert "FakeClock" in th2etl.__all__
    for module in (th2etl.clock, th2etl.scheduler.triggers):
        failed, attempted = doctest.testmod(module)
        assert attempted and not failed


class _TakesResultJson(TransformerBloc):
    """Leaves a folder where the scheduler wants to write result.json."""

    bloc_type = "scheduler_test_takes_result_json"

    def run(self, context: RunContext, rows: Rows) -> Rows:
        assert context.output_dir is not None
        (context.output_dir / "result.json").mkdir()
        return []


def test_a_result_json_that_cannot_be_written_leaves_the_run_succeeded(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    clock = FakeClock(at("2026-05-15 10:29"))
    pipeline = Pipeline("blocked", [[_TakesResultJson("take")]])
    scheduler = schedule_pipeline(pipeline, "30 10 * * *", clock=clock, logs_dir=tmp_path)
    scheduler.start()
    [tick] = clock.advance(timedelta(minutes=1))
    scheduler.stop()
    assert tick.action is TickAction.STARTED
    assert tick.result is not None and tick.result.status is RunStatus.SUCCEEDED
    assert f"run {tick.run_id} succeeded, but its result.json in" in caplog.text


def test_start_says_when_the_next_run_is_due(caplog: pytest.LogCaptureFixture) -> None:
    from th2etl.pipelines import build_example_pipeline
    from th2etl.scheduler import schedule_pipeline

    caplog.set_level("INFO", logger="th2etl.scheduler")
    scheduler = schedule_pipeline(build_example_pipeline(), "0 0 1 1 *", name="new_year")
    thread = threading.Thread(target=scheduler.start, kwargs={"handle_signals": False})
    thread.start()
    try:
        wait_until(lambda: "started; next run due" in caplog.text, timeout=10, what="the log")
    finally:
        scheduler.stop()
        thread.join(10)
    assert not thread.is_alive()
    year = scheduler.trigger.next_fire_time(datetime.now(UTC)).year
    assert f"CronScheduler started; next run due {year}-01-01T00:00:00+00:00" in caplog.text
