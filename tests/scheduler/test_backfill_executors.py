"""Backfill and dependency runs execute on the run executors, as scheduled runs do: in worker
processes with ``process`` (isolated, killable), at most ``max_active`` at once, each recorded
with what started it and where it executed. Real PostgreSQL, real worker processes."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from th2etl.clock import FakeClock
from th2etl.executors import make_executor
from th2etl.pipelines.result import RunStatus
from th2etl.scheduler import load_scheduler_manager
from th2etl.scheduler.backfill import Backfill, BackfillReport, plan_backfill
from th2etl.storage import PostgresStorage

from ..conftest import ROOT, PostgresServer, subprocess_env, wait_until
from . import worker_blocs

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

assert worker_blocs  # registers scheduler_test_where_and_when


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


NOW = at("2026-05-15 10:00")


@pytest.fixture
def storage(postgres: Any, schema: str) -> Iterator[PostgresStorage]:
    with PostgresStorage(postgres.url, schema=schema, clock=FakeClock(NOW)) as opened:
        opened.create_trigger("hourly", cron_expression="0 * * * *")
        yield opened


def hourly_pipeline(storage: PostgresStorage, folder: Path, **config: Any) -> None:
    folder.mkdir(exist_ok=True)
    storage.create_bloc("where", "scheduler_test_where_and_when", {"folder": str(folder), **config})
    storage.create_pipeline("spans", [["where"]])
    storage.create_scheduler("hourly_spans", "spans", "hourly", enabled=False)


def spans(folder: Path) -> dict[str, dict[str, Any]]:
    """What each run's bloc wrote, by run id."""
    return {
        path.stem: json.loads(path.read_text(encoding="utf-8")) for path in folder.glob("*.json")
    }


def most_at_once(found: dict[str, dict[str, Any]]) -> int:
    events = sorted(
        [(span["started"], 1) for span in found.values()]
        + [(span["ended"], -1) for span in found.values()]
    )
    going = peak = 0
    for _, step in events:
        going += step
        peak = max(peak, going)
    return peak


@pytest.mark.parametrize("kind", ["thread", "process"])
def test_backfill_runs_execute_on_the_executor_at_most_max_active_at_once(
    storage: PostgresStorage, tmp_path: Path, kind: str
) -> None:
    folder = tmp_path / "spans"
    hourly_pipeline(storage, folder, seconds=0.3)
    plan = plan_backfill(
        storage, "hourly_spans", at("2026-05-14 00:00"), at("2026-05-14 05:00"), now=NOW
    )
    executor = make_executor(kind, storage)
    try:
        report = Backfill(storage, plan, max_active=2, executor=executor).run()
    finally:
        executor.shutdown()
    assert (report.total, report.succeeded, report.failed) == (6, 6, [])
    runs = storage.list_runs(scheduler_name="hourly_spans", limit=100)
    assert len(runs) == 6
    found = spans(folder)
    assert set(found) == {run.run_id for run in runs}
    for run in runs:
        assert run.status is RunStatus.SUCCEEDED
        assert (run.started_by, run.executor) == ("backfill:hourly_spans", kind)
        definition = storage.get_run(run.run_id).definition
        assert definition is not None and definition["pipeline"]["name"] == "spans"
        assert run.worker is not None
        pid = found[run.run_id]["pid"]
        if kind == "process":  # each run in a worker process of its own, which it records
            assert pid != os.getpid() and run.worker.endswith(f":{pid}")
        else:
            assert pid == os.getpid()
    if kind == "process":
        assert len({span["pid"] for span in found.values()}) == 6
    assert most_at_once(found) <= 2


def test_a_cancelled_backfill_run_is_stopped_in_its_worker(
    storage: PostgresStorage, tmp_path: Path
) -> None:
    folder = tmp_path / "spans"
    # A run that ignores its cancel: its worker is terminated after the grace.
    hourly_pipeline(storage, folder, seconds=120, stubborn=True)
    plan = plan_backfill(
        storage, "hourly_spans", at("2026-05-14 00:00"), at("2026-05-14 01:00"), now=NOW
    )
    executor = make_executor("process", storage, grace=0.5)
    backfill = Backfill(storage, plan, executor=executor, heartbeat_interval=0.1)
    reports: list[BackfillReport] = []
    thread = threading.Thread(target=lambda: reports.append(backfill.run()))
    thread.start()
    try:

        def started() -> list[Path]:
            return sorted(folder.glob("*.started"), key=lambda path: path.stat().st_mtime)

        wait_until(lambda: len(started()) == 1, timeout=60, what="the first run's bloc")
        first = started()[0].stem
        first_pid = int(started()[0].read_text())
        # As `th2etl cancel` and the API ask: the backfill passes it on at its next heartbeat.
        storage.request_cancel(first, by="test")
        wait_until(lambda: len(started()) == 2, timeout=60, what="the second run's bloc")
        cancelled = storage.get_run(first)
        assert cancelled.status is RunStatus.CANCELLED, cancelled
        assert cancelled.error is not None and "is terminated" in cancelled.error
        assert not Path(f"/proc/{first_pid}").exists() or _is_zombie(first_pid)
        # Stopping the backfill (Ctrl-C in th2etl backfill) cancels the run going.
        backfill.cancel()
        thread.join(60)
    finally:
        backfill.cancel()
        thread.join(60)
        executor.shutdown()
    [report] = reports
    assert report.cancelled and report.done == 2 and report.succeeded == 0
    errors = [error for _, _, error in report.failed]
    assert all(e.startswith("the run did not stop within 0.5s of its cancel") for e in errors)
    statuses = {run.status for run in storage.list_runs(scheduler_name="hourly_spans")}
    assert statuses == {RunStatus.CANCELLED}
    assert spans(folder) == {}  # no bloc ran to its end


def _is_zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


@pytest.mark.usefixtures("stored_bloc_types")
def test_scheduled_and_dependency_runs_execute_in_worker_processes(
    storage: PostgresStorage, tmp_path: Path
) -> None:
    clock = storage.clock
    assert isinstance(clock, FakeClock)
    folder = tmp_path / "spans"
    hourly_pipeline(storage, folder)
    storage.create_bloc("orders_noop", "scheduler_test_noop")
    storage.create_pipeline("orders", [["orders_noop"]])
    storage.create_scheduler("orders_hourly", "orders", "hourly")
    storage.create_scheduler("spans_after", "spans", after_pipelines=["orders"])
    executor = make_executor("process", storage)
    # Not inline: runs go to the executor, as in the service.
    manager = load_scheduler_manager(
        storage, clock=clock, logs_dir=None, inline=False, executor=executor
    )
    manager.start()
    try:
        clock.advance(until=at("2026-05-15 11:00"))

        def orders_done() -> bool:
            return [r.status for r in storage.list_runs(scheduler_name="orders_hourly")] == [
                RunStatus.SUCCEEDED
            ]

        wait_until(orders_done, timeout=60, what="the orders run")
        clock.advance(until=at("2026-05-15 11:01"))  # the dependent's next poll

        def follower_done() -> bool:
            runs = storage.list_runs(scheduler_name="spans_after")
            return [r.status for r in runs] == [RunStatus.SUCCEEDED]

        wait_until(follower_done, timeout=60, what="the dependent run")
    finally:
        manager.stop()
        executor.shutdown()
    [upstream] = storage.list_runs(scheduler_name="orders_hourly")
    [follower] = storage.list_runs(scheduler_name="spans_after")
    assert (upstream.started_by, upstream.executor) == ("scheduler:orders_hourly", "process")
    assert (follower.started_by, follower.executor) == ("dependency:orders", "process")
    assert follower.scheduled_time == at("2026-05-15 11:00")
    [span] = spans(folder).values()
    assert span["pid"] != os.getpid()
    assert follower.worker is not None and follower.worker.endswith(f":{span['pid']}")


def test_two_backfill_processes_at_once_run_every_tick_exactly_once(
    storage: PostgresStorage, postgres: PostgresServer, schema: str, tmp_path: Path
) -> None:
    folder = tmp_path / "spans"
    gate = tmp_path / "gate"
    hourly_pipeline(storage, folder, wait_for=str(gate))
    command = [
        sys.executable,
        "-c",
        "import sys; import tests.scheduler.worker_blocs; from th2etl.cli import main; "
        "sys.exit(main(sys.argv[1:]))",
        *("backfill", "hourly_spans", "--from", "2026-05-14T00:00Z", "--to", "2026-05-14T23:00Z"),
        *("--max-active", "2"),
    ]
    env = subprocess_env(DATABASE_URL=postgres.url, DATABASE_SCHEMA=schema)
    processes = [
        subprocess.Popen(command, env=env, cwd=ROOT, stdout=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    try:

        def owners() -> set[str | None]:
            return {run.owner_id for run in storage.active_runs("hourly_spans")}

        # Both processes hold runs at the same moment (their first ones wait for the gate).
        wait_until(lambda: len(owners()) == 2, timeout=120, what="runs of both backfills")
        gate.touch()
        outputs = [process.communicate(timeout=300)[0] for process in processes]
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()
    runs = storage.list_runs(scheduler_name="hourly_spans", limit=100)
    assert len(runs) == 24
    assert {(run.attempt, run.status) for run in runs} == {(1, RunStatus.SUCCEEDED)}
    assert len({run.scheduled_time for run in runs}) == 24
    assert len({run.owner_id for run in runs}) == 2
    assert len(spans(folder)) == 24  # each tick's bloc ran once
    succeeded = []
    for output in outputs:
        done = re.search(r"^done: (\d+)/(\d+), (\d+) succeeded, 0 failed", output, re.M)
        assert done is not None, output
        succeeded.append(int(done[3]))
    assert sum(succeeded) == 24 and all(succeeded)


def test_a_killed_backfill_leaves_its_run_to_rerun_failed(
    storage: PostgresStorage, postgres: PostgresServer, schema: str, tmp_path: Path
) -> None:
    folder = tmp_path / "spans"
    gate = tmp_path / "gate"
    hourly_pipeline(storage, folder, wait_for=str(gate))
    command = [
        sys.executable,
        "-c",
        "import sys; import tests.scheduler.worker_blocs; from th2etl.cli import main; "
        "sys.exit(main(sys.argv[1:]))",
        *("backfill", "hourly_spans", "--from", "2026-05-14T00:00Z", "--to", "2026-05-14T01:00Z"),
    ]
    env = subprocess_env(DATABASE_URL=postgres.url, DATABASE_SCHEMA=schema)
    process = subprocess.Popen(command, env=env, cwd=ROOT, stdout=subprocess.DEVNULL)
    try:
        wait_until(lambda: any(folder.glob("*.started")), timeout=120, what="the first run")
    finally:
        process.kill()  # SIGKILL: nothing of th2etl backfill gets to clean up
        process.wait()
    [first] = storage.list_runs(scheduler_name="hourly_spans")
    # Its worker, whose owner is gone, cancels the run; had it died too, a live instance would
    # mark the run abandoned once the backfill's heartbeats stopped.
    wait_until(
        lambda: storage.get_run(first.run_id).status is not RunStatus.RUNNING,
        timeout=60,
        what="the orphaned run to end",
    )
    # (Abandoned instead only if the worker were slower than the backfill's lease.)
    ended = storage.get_run(first.run_id).status
    assert ended in (RunStatus.CANCELLED, RunStatus.ABANDONED)
    gate.touch()
    again = plan_backfill(
        storage, "hourly_spans", at("2026-05-14 00:00"), at("2026-05-14 01:00"), now=NOW
    )
    assert [again.state(t) for t in again.fire_times] == [
        f"already {ended.value} (run {first.run_id})",
        "run",
    ]
    rerun = plan_backfill(
        storage,
        "hourly_spans",
        at("2026-05-14 00:00"),
        at("2026-05-14 01:00"),
        now=NOW,
        rerun_failed=True,
    )
    assert [rerun.state(t) for t in rerun.fire_times] == [
        f"rerun ({ended.value}, attempt 2)",
        "run",
    ]
    report = Backfill(storage, rerun).run()
    assert (report.total, report.succeeded) == (2, 2)
    attempts = sorted(
        (run.scheduled_time, run.attempt, run.status.value)
        for run in storage.list_runs(scheduler_name="hourly_spans")
    )
    assert [(a, s) for _, a, s in attempts] == [
        (1, ended.value),
        (2, "succeeded"),
        (1, "succeeded"),
    ]
