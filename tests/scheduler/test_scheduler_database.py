"""The database-driven manager against a real PostgreSQL: recording, hot reload, missed ticks,
overlap across instances, outages, and several real processes claiming the same ticks."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.conftest import wait_until
from tests.tcp_proxy import TcpProxy
from th2etl.blocs import register_bloc
from th2etl.blocs.registry import unregister_bloc
from th2etl.clock import FakeClock
from th2etl.pipelines import RunStatus
from th2etl.scheduler import SkipReason, TickAction, load_scheduler_manager
from th2etl.storage import PostgresStorage

from .helpers import (
    GATES,
    START,
    Gate,
    register_stored_bloc_types,
    statuses,
)

pytestmark = [pytest.mark.postgres, pytest.mark.usefixtures("stored_bloc_types")]

ROOT = Path(__file__).resolve().parents[2]


def at(hhmm: str, day: int = 15) -> datetime:
    hour, minute = hhmm.split(":")[:2]
    second = int(hhmm.split(":")[2]) if hhmm.count(":") == 2 else 0
    return datetime(2026, 5, day, int(hour), int(minute), second, tzinfo=UTC)


@pytest.fixture
def storage(postgres: Any, schema: str, clock: FakeClock) -> Iterator[PostgresStorage]:
    with PostgresStorage(postgres.url, schema=schema, clock=clock) as opened:
        yield opened


def define(
    storage: PostgresStorage,
    name: str,
    cron: str,
    *,
    pipeline: str = "quick",
    timezone: str = "UTC",
    enabled: bool = True,
) -> None:
    """A trigger and a scheduler ``name`` for ``pipeline`` (created on first use)."""
    if pipeline not in {p.name for p in storage.list_pipelines()}:
        if pipeline == "quick":
            storage.create_bloc("quick_noop", "scheduler_test_noop")
            storage.create_pipeline("quick", stages=[["quick_noop"]])
        elif pipeline == "slow":
            storage.create_bloc("slow_sleep", "scheduler_test_sleep", config={"seconds": 300})
            storage.create_pipeline("slow", stages=[["slow_sleep"]])
    storage.create_trigger(f"{name}_trigger", pipeline, cron, timezone)
    storage.create_scheduler(name, pipeline, f"{name}_trigger", enabled=enabled)


def ticks(storage: PostgresStorage, scheduler: str) -> list[tuple[str, str]]:
    runs = storage.list_runs(scheduler_name=scheduler, limit=10_000)
    assert all(run.scheduled_time is not None for run in runs)
    return sorted((f"{run.scheduled_time:%H:%M}", run.status.value) for run in runs)  # type: ignore[misc]


# -- one process -------------------------------------------------------------------------------


def test_stored_schedulers_run_on_their_cadence_and_are_recorded(
    storage: PostgresStorage, clock: FakeClock
) -> None:
    define(storage, "every5", "*/5 * * * *")
    define(storage, "hourly", "@hourly")
    manager = load_scheduler_manager(storage, clock=clock, logs_dir=None)
    assert [s.name for s in manager.schedulers] == ["every5", "hourly"]
    manager.start()
    results = clock.advance(until=at("11:00"))
    manager.stop()
    assert Counter((r.scheduler_name, r.action) for r in results) == {
        ("every5", TickAction.STARTED): 12,
        ("hourly", TickAction.STARTED): 1,
    }
    assert ticks(storage, "every5") == [
        (f"{h}:{m:02d}", "succeeded") for h, m in [(10, m) for m in range(5, 60, 5)] + [(11, 0)]
    ]
    run = storage.get_run(results[0].run_id or "")
    assert run.instance_id == manager.instance_id and run.trigger_name == "every5_trigger"
    assert run.blocs[0].bloc_name == "quick_noop"


def test_hot_reload_create_update_disable_delete(
    storage: PostgresStorage, clock: FakeClock
) -> None:
    define(storage, "a", "*/10 * * * *")
    manager = load_scheduler_manager(storage, clock=clock, reload_interval=5, logs_dir=None)
    manager.start()
    assert statuses(clock.advance(until=at("10:10"))) == ["10:10 started"]
    define(storage, "b", "*/10 * * * *")  # created while running: picked up within 5 s
    assert "b" not in manager
    clock.advance(5)
    assert "b" in manager
    results = clock.advance(until=at("10:20"))
    assert sorted(
        f"{r.scheduler_name} {s}" for r, s in zip(results, statuses(results), strict=True)
    ) == [
        "a 10:20 started",
        "b 10:20 started",
    ]
    storage.update_scheduler("b", enabled=False)
    clock.advance(5)
    assert "b" not in manager
    storage.update_scheduler("b", enabled=True)
    clock.advance(5)
    assert "b" in manager
    storage.delete_scheduler("a")
    clock.advance(5)
    assert list(manager) == ["b"]
    assert statuses(clock.advance(until=at("10:30"))) == ["10:30 started"]
    manager.stop()
    assert ticks(storage, "a") == [("10:10", "succeeded"), ("10:20", "succeeded")]
    # re-enabling did not count the disabled minutes as missed
    assert ticks(storage, "b") == [("10:20", "succeeded"), ("10:30", "succeeded")]


def test_editing_a_cron_never_fires_at_once_nor_backfills(
    storage: PostgresStorage, clock: FakeClock
) -> None:
    define(storage, "job", "@hourly")
    manager = load_scheduler_manager(storage, clock=clock, reload_interval=5, logs_dir=None)
    manager.start()
    clock.advance(until=at("10:31"))
    storage.update_trigger("job_trigger", cron_expression="*/10 * * * *")
    # 10:10, 10:20 and 10:30 are past under the new cron: none of them runs, now or later
    assert clock.advance(until=at("10:39:59")) == []
    assert statuses(clock.advance(until=at("10:50"))) == ["10:40 started", "10:50 started"]
    storage.update_trigger("job_trigger", timezone="Europe/Paris", cron_expression="0 13 * * *")
    assert statuses(clock.advance(until=at("11:00"))) == ["11:00 started"]  # 13:00 in Paris
    manager.stop()
    assert ticks(storage, "job") == [
        ("10:40", "succeeded"),
        ("10:50", "succeeded"),
        ("11:00", "succeeded"),
    ]


@pytest.mark.parametrize(
    ("policy", "expected_runs"),
    [("latest", ["10:55"]), ("skip", []), ("all", ["10:40", "10:45", "10:50", "10:55"])],
)
def test_ticks_missed_while_down_follow_the_policy_and_are_recorded(
    storage: PostgresStorage, clock: FakeClock, policy: str, expected_runs: list[str]
) -> None:
    define(storage, "every5", "*/5 * * * *")
    first = load_scheduler_manager(storage, clock=clock, logs_dir=None)
    first.start()
    clock.advance(until=at("10:30"))
    first.stop()
    clock.advance(until=at("10:57"))  # down from 10:30 to 10:57
    second = load_scheduler_manager(
        storage, clock=clock, logs_dir=None, missed=policy, max_catch_up=4
    )
    second.start()
    results = clock.advance(1)
    second.stop()
    ran = [f"{r.scheduled_time:%H:%M}" for r in results if r.action is TickAction.STARTED]
    assert ran == expected_runs
    missed = {f"{r.scheduled_time:%H:%M}" for r in results if r.reason is SkipReason.MISSED}
    assert missed | set(ran) == {"10:35", "10:40", "10:45", "10:50", "10:55"}
    recorded = storage.list_runs(scheduler_name="every5", status="skipped", limit=100)
    assert {f"{r.scheduled_time:%H:%M}" for r in recorded} == missed  # type: ignore[str-format]
    assert all(
        r.error and r.error.startswith("missed: ") and f"policy '{policy}'" in r.error
        for r in recorded
    )


def test_overlap_is_seen_across_instances(
    storage: PostgresStorage, clock: FakeClock, postgres: Any, schema: str
) -> None:
    register_bloc(Gate, replace=True)  # type: ignore[call-overload]
    GATES["db_overlap"] = threading.Event()
    storage.create_bloc("wait", "scheduler_test_gate", config={"gate": "db_overlap"})
    storage.create_pipeline("waiting", stages=[["wait"]])
    storage.create_trigger("every5_trigger", "waiting", "*/5 * * * *")
    storage.create_scheduler("every5", "waiting", "every5_trigger")
    other = PostgresStorage(postgres.url, schema=schema, clock=clock)
    one = load_scheduler_manager(storage, clock=clock, inline=False, logs_dir=None)
    two = load_scheduler_manager(other, clock=clock, inline=False, logs_dir=None)
    try:
        one.start()
        assert statuses(clock.advance(until=at("10:05"))) == ["10:05 started"]
        two.start()
        clock.detach(one)
        clock.attach(one)  # now the clock ticks two first: it sees one's run in the database
        overlap, taken = clock.advance(until=at("10:10"))
        assert (overlap.action, overlap.reason) == (TickAction.SKIPPED, SkipReason.OVERLAP)
        assert overlap.detail and "the previous run is still going (run " in overlap.detail
        assert taken.action is TickAction.TAKEN
        GATES["db_overlap"].set()
        one.stop(grace=60)
        assert statuses(clock.advance(until=at("10:15"))) == ["10:15 started"]
    finally:
        GATES["db_overlap"].set()
        one.stop(grace=60)
        two.stop(grace=60)
        other.close()
        unregister_bloc("scheduler_test_gate")
    assert ticks(storage, "every5") == [
        ("10:05", "succeeded"),
        ("10:10", "skipped"),
        ("10:15", "succeeded"),
    ]


def test_a_database_outage_defers_ticks_without_crash_or_duplicate(
    postgres: Any, schema: str, clock: FakeClock
) -> None:
    host = "127.0.0.1" if postgres.host.startswith("/") else postgres.host  # a socket dir
    proxy = TcpProxy(host, postgres.port)
    proxy.start()
    url = f"postgresql://{postgres.user}@127.0.0.1:{proxy.port}/{postgres.dbname}"
    try:
        with PostgresStorage(url, schema=schema, clock=clock, connect_timeout=2) as storage:
            define(storage, "every5", "*/5 * * * *")
            manager = load_scheduler_manager(storage, clock=clock, logs_dir=None)
            manager.start()
            assert statuses(clock.advance(until=at("10:05"))) == ["10:05 started"]
            proxy.stop()  # the database goes away
            during = clock.advance(until=at("10:22"))
            assert during and {r.action for r in during} == {TickAction.DEFERRED}
            assert {f"{r.scheduled_time:%H:%M}" for r in during} == {"10:10"}
            proxy.start()  # and comes back on the same port
            after = clock.advance(until=at("10:31"))
            manager.stop()
            assert statuses(after) == [
                "10:10 skipped(missed)",
                "10:15 skipped(missed)",
                "10:20 started",
                "10:25 started",
                "10:30 started",
            ]
            assert ticks(storage, "every5") == [
                ("10:05", "succeeded"),
                ("10:10", "skipped"),
                ("10:15", "skipped"),
                ("10:20", "succeeded"),
                ("10:25", "succeeded"),
                ("10:30", "succeeded"),
            ]
    finally:
        proxy.stop()


def test_terminated_backends_are_survived_without_losing_or_repeating_a_tick(
    postgres: Any, schema: str, clock: FakeClock
) -> None:
    host = "127.0.0.1" if postgres.host.startswith("/") else postgres.host
    proxy = TcpProxy(host, postgres.port)
    proxy.start()
    url = f"postgresql://{postgres.user}@127.0.0.1:{proxy.port}/{postgres.dbname}"
    try:
        with PostgresStorage(url, schema=schema, clock=clock) as storage:
            define(storage, "every5", "*/5 * * * *")
            manager = load_scheduler_manager(storage, clock=clock, logs_dir=None)
            manager.start()
            assert statuses(clock.advance(until=at("10:05"))) == ["10:05 started"]
            # kill exactly this manager's server connections (found through the proxy's ports)
            with psycopg.connect(postgres.url, autocommit=True) as admin:
                killed = admin.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE client_addr = '127.0.0.1' AND client_port = ANY(%s)",
                    (sorted(proxy.upstream_ports),),
                ).fetchall()
            assert killed and all(row[0] for row in killed)
            results = clock.advance(until=at("10:20"))
            manager.stop()
            assert "10:10 started" in statuses(results)
            assert ticks(storage, "every5") == [
                ("10:05", "succeeded"),
                ("10:10", "succeeded"),
                ("10:15", "succeeded"),
                ("10:20", "succeeded"),
            ]
    finally:
        proxy.stop()


# -- several real processes --------------------------------------------------------------------


class Instance:
    """One ``manager_process`` subprocess, driven instant by instant."""

    def __init__(self, postgres: Any, schema: str, instance_id: str) -> None:
        self.instance_id = instance_id
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.scheduler.manager_process",
                postgres.url,
                schema,
                instance_id,
                START.isoformat(),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
        ready = self.read()
        assert ready == {"ready": instance_id}, ready

    def send(self, instant: datetime) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(instant.isoformat() + "\n")
        self.process.stdin.flush()

    def read(self) -> dict[str, Any]:
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line:
            _, err = self.process.communicate(timeout=30)
            raise AssertionError(f"instance {self.instance_id} exited: {err}")
        return dict(json.loads(line))

    def finish(self) -> None:
        assert self.process.stdin and self.process.stdout and self.process.stderr
        self.process.stdin.close()
        self.process.stdout.read()
        err = self.process.stderr.read()
        assert self.process.wait(timeout=60) == 0, err
        self._close()

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=30)
        self._close()

    def _close(self) -> None:
        for stream in (self.process.stdin, self.process.stdout, self.process.stderr):
            if stream is not None and not stream.closed:
                stream.close()


def step(instances: list[Instance], instant: datetime) -> list[dict[str, Any]]:
    """Send ``instant`` to every instance at once, then collect every answer."""
    for instance in instances:
        instance.send(instant)
    return [result for instance in instances for result in instance.read()["results"]]


@pytest.mark.slow
def test_three_processes_run_every_tick_exactly_once_and_a_killed_run_is_abandoned(
    postgres: Any, schema: str, storage: PostgresStorage
) -> None:
    define(storage, "every_minute", "* * * * *")
    define(storage, "every2", "*/2 * * * *")
    define(storage, "slow_once", "30 10 15 5 *", pipeline="slow")  # once, at 10:30
    instances = [Instance(postgres, schema, f"instance-{n}") for n in range(3)]
    try:
        answers: list[dict[str, Any]] = []
        for minute in range(1, 30):  # phase 1: 10:01 .. 10:29, every instance races for each tick
            answers += step(instances, START + timedelta(minutes=minute))
        started = Counter(
            (a["scheduler_name"], a["scheduled_time"]) for a in answers if a["action"] == "started"
        )
        assert len(started) == 29 + 14 and set(started.values()) == {1}
        per_tick = Counter((a["scheduler_name"], a["scheduled_time"], a["action"]) for a in answers)
        # every tick was contended by all three instances: one started it, two found it taken
        assert {count for (_, _, action), count in per_tick.items() if action == "taken"} == {2}
        assert {a["action"] for a in answers} == {"started", "taken"}

        # 10:30: one instance claims slow_once and is still running it; kill that process
        for instance in instances:
            instance.send(at("10:30"))
        runner_id = None
        for _ in range(3000):
            running = storage.active_runs("slow_once")
            if running:
                runner_id = running[0].instance_id
                break
            time.sleep(0.01)
        assert runner_id is not None, "no instance started the slow run"
        runner = next(i for i in instances if i.instance_id == runner_id)
        survivors = [i for i in instances if i is not runner]
        answers = [r for i in survivors for r in i.read()["results"]]
        runner.kill()
        assert ("slow_once", "taken") in {(a["scheduler_name"], a["action"]) for a in answers}

        # phase 2: the survivors go on; the dead instance's run is abandoned within ~2 heartbeats
        abandoned_at = None
        for second in range(10, 600, 10):
            now = at("10:30") + timedelta(seconds=second)
            answers += step(survivors, now)
            if (
                abandoned_at is None
                and storage.get_run(running[0].run_id).status is RunStatus.ABANDONED
            ):
                abandoned_at = second
        assert abandoned_at is not None and abandoned_at <= 20  # two heartbeat periods
        for instance in survivors:
            instance.finish()
    finally:
        for instance in instances:
            if instance.process.poll() is None:
                instance.kill()
    for name, per_hour in (("every_minute", 1), ("every2", 2)):
        rows = storage.list_runs(scheduler_name=name, limit=10_000)
        times = Counter(run.scheduled_time for run in rows)
        assert set(times.values()) == {1}, f"{name}: a tick ran twice"
        expected = {START + timedelta(minutes=m) for m in range(per_hour, 40, per_hour)}
        assert set(times) == expected, name
        assert {run.status for run in rows} == {RunStatus.SUCCEEDED}
    [slow] = storage.list_runs(scheduler_name="slow_once", limit=10)
    assert slow.status is RunStatus.ABANDONED and slow.instance_id == runner_id


def test_a_pipeline_that_no_longer_builds_is_recorded_failed(
    storage: PostgresStorage, clock: FakeClock
) -> None:
    define(storage, "broken", "*/5 * * * *")
    manager = load_scheduler_manager(storage, clock=clock, logs_dir=None)
    manager.start()
    unregister_bloc("scheduler_test_noop")  # e.g. the plugin providing the bloc type is gone
    try:
        [result] = clock.advance(until=at("10:05"))
    finally:
        register_stored_bloc_types()
        manager.stop()
    assert result.action is TickAction.FAILED
    run = storage.get_run(result.run_id or "")
    assert run.status is RunStatus.FAILED
    assert run.error and run.error.startswith("the run could not start: ")
    assert "scheduler_test_noop" in run.error


def test_a_cancel_request_in_the_database_stops_the_run(
    storage: PostgresStorage, clock: FakeClock
) -> None:
    register_bloc(Gate, replace=True)  # type: ignore[call-overload]
    GATES["db_cancel"] = threading.Event()
    storage.create_bloc("wait", "scheduler_test_gate", config={"gate": "db_cancel"})
    storage.create_pipeline("waiting", stages=[["wait"]])
    storage.create_trigger("hourly_trigger", "waiting", "@hourly")
    storage.create_scheduler("hourly", "waiting", "hourly_trigger")
    manager = load_scheduler_manager(storage, clock=clock, inline=False, logs_dir=None)
    try:
        manager.start()
        clock.advance(until=at("10:59:55"))
        [started] = clock.advance(until=at("11:00"))
        assert storage.request_cancel(started.run_id or "")
        clock.advance(10)  # the next heartbeat reads the request
        wait_until(lambda: not manager["hourly"].running_runs(), timeout=60, what="the cancel")
        # ended by the request, the gate still shut
        assert not GATES["db_cancel"].is_set()
    finally:
        GATES["db_cancel"].set()
        manager.stop(grace=60)
        unregister_bloc("scheduler_test_gate")
    assert storage.get_run(started.run_id or "").status is RunStatus.CANCELLED


def test_the_real_loop_heartbeats_and_leaves_cleanly(
    postgres: Any, schema: str, storage: PostgresStorage
) -> None:
    """start() on the system clock: the instance appears, and stop() removes it."""
    define(storage, "yearly", "0 0 1 1 *")
    with PostgresStorage(postgres.url, schema=schema) as real:
        manager = load_scheduler_manager(real, instance_id="real-loop", logs_dir=None)
        thread = threading.Thread(target=manager.start)
        thread.start()
        try:
            wait_until(
                lambda: [i.instance_id for i in real.list_instances()] == ["real-loop"],
                timeout=30,
                what="the instance's first heartbeat",
            )
            assert list(manager) == ["yearly"] and manager.running
        finally:
            manager.stop()
            thread.join(timeout=60)
        assert not thread.is_alive()
        assert real.list_instances() == []


def test_a_fake_clock_run_is_recorded_in_fake_time(
    storage: PostgresStorage, clock: FakeClock
) -> None:
    register_bloc(Gate, replace=True)  # type: ignore[call-overload]
    GATES["db_fake_time"] = threading.Event()
    storage.create_bloc("wait", "scheduler_test_gate", config={"gate": "db_fake_time"})
    storage.create_pipeline("waiting", stages=[["wait"]])
    storage.create_trigger("every5_trigger", "waiting", "*/5 * * * *")
    storage.create_scheduler("every5", "waiting", "every5_trigger")
    manager = load_scheduler_manager(storage, clock=clock, inline=False, logs_dir=None)
    try:
        manager.start()
        [started] = clock.advance(until=at("10:05"))
        wait_until(  # until the recorder has adopted the claimed row
            lambda: bool(storage.get_run(started.run_id or "").log),
            timeout=60,
            what="the recorder to adopt the claimed run",
        )
        run = storage.get_run(started.run_id or "")
        assert run.status is RunStatus.RUNNING and run.started_at == at("10:05")
        assert run.log.startswith("2026-05-15T10:05:00.000+00:00 run ")
        GATES["db_fake_time"].set()
    finally:
        GATES["db_fake_time"].set()
        manager.stop(grace=60)
        unregister_bloc("scheduler_test_gate")
    run = storage.get_run(started.run_id or "")
    assert run.status is RunStatus.SUCCEEDED
    assert run.started_at == run.finished_at == at("10:05")
