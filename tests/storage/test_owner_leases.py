"""Each owner is judged by its own lease, stored with its heartbeat, whatever the settings of the
process that sweeps: a process heartbeating every 0.1 s never abandons the runs of a live owner
heartbeating every 2 s, and a process whose own lease is an hour abandons a dead owner's runs
once that owner's short lease has ended. Rows that store no lease fall back to the sweeper's
``stale_after``. On both backends, with a driven clock (``now=``), by the database's clock,
and with real owner processes."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from th2etl.exceptions import ValidationError
from th2etl.pipelines.result import RunStatus
from th2etl.storage import DatabaseStorage, PostgresStorage, SQLiteStorage
from th2etl.storage.owner import RunOwner

from ..conftest import subprocess_env, wait_until
from .conftest import OpenStorage

HERE = Path(__file__).resolve().parent
T0 = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
HOUR = timedelta(hours=1)
OwnerProcess = Callable[[str, float], tuple[subprocess.Popen[str], str]]
"""Starts an owner of run RUN_ID heartbeating every HEARTBEAT s; gives it and its instance id."""


def _seconds(value: float) -> timedelta:
    return timedelta(seconds=value)


def _owned(storage: DatabaseStorage, run_id: str, owner: str) -> None:
    storage.create_run(run_id, "p", owner_id=owner, started_by="cli", status="running")


def _instance(storage: DatabaseStorage, instance_id: str) -> tuple[datetime, datetime | None]:
    (found,) = [i for i in storage.list_instances() if i.instance_id == instance_id]
    return found.last_seen, found.lease_until


# --- a driven clock -------------------------------------------------------------------------


def test_each_owner_is_judged_by_its_own_lease_not_by_the_sweepers(
    storage: DatabaseStorage,
) -> None:
    storage.heartbeat("slow", T0, lease=_seconds(15))  # heartbeats every 10 s
    storage.heartbeat("fast", T0, lease=_seconds(1.5))  # heartbeats every second
    _owned(storage, "slow-run", "slow")
    _owned(storage, "fast-run", "fast")
    assert _instance(storage, "slow") == (T0, T0 + _seconds(15))
    assert _instance(storage, "fast") == (T0, T0 + _seconds(1.5))

    # A sweeper whose own lease is an hour: the fast owner's lease has ended.
    assert storage.mark_abandoned_runs(T0 + _seconds(2), HOUR) == ["fast-run"]
    error = storage.get_run("fast-run").error or ""
    ended = (T0 + _seconds(1.5)).isoformat()
    assert error.startswith(
        "abandoned: its owner sent no heartbeat for 1.5s (the lease of owner fast, renewed at "
        f"each heartbeat, ended at {ended}; by "
    ), error

    # A sweeper whose own stale_after is 1.5 s: the slow owner's lease of 15 s still holds.
    assert storage.mark_abandoned_runs(T0 + _seconds(10), _seconds(1.5)) == []
    storage.heartbeat("slow", T0 + _seconds(14), lease=_seconds(15))  # renewed until 29 s
    assert storage.mark_abandoned_runs(T0 + _seconds(29), _seconds(1.5)) == []
    assert storage.get_run("slow-run").status is RunStatus.RUNNING
    # Silent past its own lease, it is abandoned, whatever the sweeper's stale_after.
    assert storage.mark_abandoned_runs(T0 + _seconds(29.001), HOUR) == ["slow-run"]
    error = storage.get_run("slow-run").error or ""
    assert error.startswith(
        "abandoned: its owner sent no heartbeat for 15s (the lease of owner slow, "
    ), error


def test_a_row_without_a_lease_is_judged_by_the_sweepers_stale_after(
    storage: DatabaseStorage,
) -> None:
    storage.heartbeat("old", T0)  # what th2etl before schema version 8 wrote: no lease
    storage.heartbeat("dropped", T0, lease=HOUR)
    storage.heartbeat("dropped", T0)  # a heartbeat without a lease stores none
    _owned(storage, "old-run", "old")
    _owned(storage, "dropped-run", "dropped")
    assert [i.lease_until for i in storage.list_instances()] == [None, None]
    assert storage.mark_abandoned_runs(T0 + _seconds(30), _seconds(30)) == []
    assert storage.mark_abandoned_runs(T0 + _seconds(31), _seconds(30)) == [
        "dropped-run",
        "old-run",
    ]
    error = storage.get_run("old-run").error or ""
    assert error.startswith(
        "abandoned: its owner sent no heartbeat for 30s (owner old records no lease of its own, "
        "so the sweeping process's stale_after was used; by "
    ), error


@pytest.mark.parametrize("lease", [timedelta(0), _seconds(-1), 15, 15.0, "15s"])
def test_a_lease_that_is_not_a_positive_timedelta_is_refused(
    storage: DatabaseStorage, lease: object
) -> None:
    message = (
        "heartbeat: lease must be a positive timedelta (how long instance 'i' counts as alive "
        f"after this heartbeat) or None, got {lease!r}"
    )
    with pytest.raises(ValidationError, match=re.escape(message)):
        storage.heartbeat("i", T0, lease=lease)  # type: ignore[arg-type]
    assert storage.list_instances() == []


# --- the database's clock -------------------------------------------------------------------


def test_leases_are_kept_and_judged_by_the_database_clock(storage: DatabaseStorage) -> None:
    storage.heartbeat("long", lease=HOUR)
    storage.heartbeat("short", lease=_seconds(0.05))
    _owned(storage, "long-run", "long")
    _owned(storage, "short-run", "short")
    seen, until = _instance(storage, "long")
    assert until is not None and until - seen == HOUR  # one clock reading, plus the lease
    marked: list[str] = []

    def swept() -> bool:  # by a sweeper whose own stale_after is an hour
        marked.extend(storage.mark_abandoned_runs(None, HOUR))
        return "short-run" in marked

    wait_until(swept, timeout=60, what="the short lease to end by the database's clock")
    assert marked == ["short-run"]
    # Long past a sweeper's stale_after of 1 ms, the hour-long lease still holds.
    wait_until(
        lambda: storage.database_now() > seen + _seconds(0.5),
        timeout=60,
        what="the database's clock to pass the long owner's heartbeat",
    )
    assert storage.mark_abandoned_runs(None, _seconds(0.001)) == []
    assert storage.get_run("long-run").status is RunStatus.RUNNING


# --- real owner processes -------------------------------------------------------------------


@pytest.fixture
def owner_process(
    backend: str, request: pytest.FixtureRequest, storage: DatabaseStorage
) -> Iterator[OwnerProcess]:
    """Starts ``owner_process.py`` on this test's database; kills what is left at the end."""
    started: list[subprocess.Popen[str]] = []
    if isinstance(storage, PostgresStorage):
        url, schema = request.getfixturevalue("postgres").url, storage.schema
    else:
        assert isinstance(storage, SQLiteStorage)
        url, schema = str(storage.path), "-"

    def start(run_id: str, heartbeat: float) -> tuple[subprocess.Popen[str], str]:
        process = subprocess.Popen(
            [sys.executable, str(HERE / "owner_process.py"), url, schema, run_id, str(heartbeat)],
            env=subprocess_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        started.append(process)
        assert process.stdout is not None
        line = process.stdout.readline()
        ready = json.loads(line or "{}")
        assert "ready" in ready, process.stderr and process.stderr.read()
        return process, str(ready["ready"])

    yield start
    for process in started:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
        process.communicate(timeout=30)


def _heartbeats(storage: DatabaseStorage, instance_id: str, count: int) -> None:
    """Wait until ``instance_id`` has sent ``count`` more heartbeats."""
    seen: set[datetime] = set()

    def beaten() -> bool:
        seen.add(_instance(storage, instance_id)[0])
        return len(seen) > count

    wait_until(beaten, timeout=60, what=f"{count} heartbeats of {instance_id}")


@pytest.mark.slow
def test_a_live_owner_with_a_long_lease_outlives_a_sweeper_with_a_short_one(
    open_storage: OpenStorage, storage: DatabaseStorage, owner_process: OwnerProcess
) -> None:
    # The owner heartbeats every 2 s (lease 3 s); the sweeper every 0.1 s (stale_after 0.15 s).
    process, owner = owner_process("long", 2.0)
    with RunOwner(open_storage(), kind="python", heartbeat_interval=0.1) as sweeper:
        _heartbeats(storage, owner, 3)  # two whole silences of 2 s between them
        _heartbeats(storage, sweeper.instance_id, 20)  # each heartbeat of the sweeper sweeps
        assert storage.get_run("long").status is RunStatus.RUNNING
        assert process.poll() is None
        _, until = _instance(storage, owner)
        assert until is not None
        # Killed, the owner is abandoned by the sweeper once its own lease of 3 s has ended.
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=30)
        wait_until(
            lambda: storage.get_run("long").status is RunStatus.ABANDONED,
            timeout=60,
            what="the sweeper to abandon the killed owner's run",
        )
    error = storage.get_run("long").error or ""
    assert error.startswith(
        f"abandoned: its owner sent no heartbeat for 3s (the lease of owner {owner}, "
    ), error


@pytest.mark.slow
def test_a_dead_owner_with_a_short_lease_is_abandoned_by_a_sweeper_with_a_long_one(
    open_storage: OpenStorage, storage: DatabaseStorage, owner_process: OwnerProcess
) -> None:
    # The owner heartbeats every 0.2 s (lease 0.3 s); the sweeper's own stale_after is an hour:
    # only the owner's lease can end the run within this test's timeouts.
    process, owner = owner_process("short", 0.2)
    with RunOwner(
        open_storage(), kind="python", heartbeat_interval=0.5, stale_after=3600
    ) as sweeper:
        _heartbeats(storage, owner, 2)
        assert storage.get_run("short").status is RunStatus.RUNNING
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=30)
        wait_until(
            lambda: storage.get_run("short").status is RunStatus.ABANDONED,
            timeout=60,
            what="the sweeper to abandon the killed owner's run",
        )
        assert sweeper.started
    error = storage.get_run("short").error or ""
    assert error.startswith(
        f"abandoned: its owner sent no heartbeat for 0.3s (the lease of owner {owner}, "
    ), error
