"""RunOwner: heartbeats on a connection of its own, cancels from any process, leases, and
liveness judged by the database's clock across processes whose clocks are skewed."""

from __future__ import annotations

import glob
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from th2etl.exceptions import StorageError
from th2etl.pipelines.engine import CancelToken
from th2etl.pipelines.result import RunStatus
from th2etl.storage import PostgresStorage
from th2etl.storage.coordination import Coordination
from th2etl.storage.owner import RunOwner

from ..conftest import PostgresServer, subprocess_env, wait_until
from ..tcp_proxy import TcpProxy
from .conftest import OpenStorage

HERE = Path(__file__).resolve().parent
HEARTBEAT = 2.0  # seconds; the owners' runs are stale 3 s after their last heartbeat
STALE = timedelta(seconds=1.5 * HEARTBEAT)


def test_an_owner_registers_first_and_stops_its_runs_on_a_cancel_from_anywhere(
    open_storage: OpenStorage,
) -> None:
    storage, elsewhere = open_storage(), open_storage()
    token = CancelToken()
    with RunOwner(storage, kind="api", heartbeat_interval=3600) as owner:
        assert owner.instance_id.startswith("api-")
        assert [i.instance_id for i in elsewhere.list_instances()] == [owner.instance_id]
        run = storage.create_run(
            None, "p", owner_id=owner.instance_id, started_by="api", status="running"
        )
        owner.track(run.run_id, token)
        owner.beat()
        assert not token.cancelled
        elsewhere.request_cancel(run.run_id, by="cli")
        owner.beat()  # the owner polls cancel requests at each heartbeat
        assert token.cancelled
        assert owner.outcome(run.run_id, RunStatus.CANCELLED, "x") == (RunStatus.CANCELLED, "x")
        owner.untrack(run.run_id)
        assert owner.runs == []
    assert elsewhere.list_instances() == []  # unregistered on stop


def test_an_owner_sweeps_at_each_heartbeat_and_halfway_between(open_storage: OpenStorage) -> None:
    # With a lease of 1.5 periods, the sweep halfway makes a dead owner's runs end within two
    # heartbeat periods of its last heartbeat, whichever live process sweeps.
    events: list[str] = []

    class Traced(RunOwner):
        def beat(self, now: datetime | None = None) -> None:
            events.append("beat")
            super().beat(now)

        def sweep(self, now: datetime | None = None, storage: Coordination | None = None) -> None:
            events.append("sweep")
            super().sweep(now, storage)

    with Traced(open_storage(), kind="api", heartbeat_interval=0.2):
        wait_until(lambda: events.count("beat") >= 4, timeout=60, what="four heartbeats")
    periods = " ".join(events).split("beat")[2:-1]  # whole periods, after start()'s own beat
    assert periods and all(period.split() == ["sweep", "sweep"] for period in periods), events


@pytest.fixture
def pg(postgres: PostgresServer, pg_schema: str) -> Iterator[PostgresStorage]:
    """PostgreSQL storage in a schema of this test's own."""
    with PostgresStorage(postgres.url, schema=pg_schema) as storage:
        yield storage


@pytest.fixture
def proxied(
    postgres: PostgresServer, pg: PostgresStorage
) -> Iterator[tuple[TcpProxy, PostgresStorage]]:
    """Storage on ``pg``'s schema that reaches PostgreSQL through a proxy the test can cut."""
    proxy = TcpProxy(postgres.host, postgres.port)
    proxy.start()
    url = f"postgresql://{postgres.user}@127.0.0.1:{proxy.port}/{postgres.dbname}"
    storage = PostgresStorage(url, schema=pg.schema, connect_timeout=1)
    yield proxy, storage
    storage.close()
    proxy.stop()


@pytest.mark.postgres
@pytest.mark.slow
def test_an_outage_shorter_than_the_lease_changes_nothing_and_a_longer_one_abandons(
    proxied: tuple[TcpProxy, PostgresStorage], pg: PostgresStorage
) -> None:
    proxy, storage = proxied
    direct = pg
    short, long = CancelToken(), CancelToken()
    owner = RunOwner(storage, kind="cli", heartbeat_interval=0.2, stale_after=30).start()
    try:
        runs = [
            storage.create_run(None, "p", owner_id=owner.instance_id, started_by="cli",
                               status="running").run_id
            for _ in range(2)
        ]  # fmt: skip
        owner.track(runs[0], short)
        proxy.stop()  # shorter than the lease: the run goes on
        with pytest.raises(StorageError):
            owner.beat()
        finished = storage.clock.now()
        owner.record_later(runs[0], RunStatus.SUCCEEDED, finished, None)  # its end was lost
        proxy.start()
        wait_until(
            lambda: direct.get_run(runs[0]).status is RunStatus.SUCCEEDED,
            timeout=30,
            what="the outcome written once the database is back",
        )
        assert not short.cancelled
        assert direct.get_run(runs[0]).finished_at == finished
        # Longer than the lease: the owner stops its run and records it abandoned.
        owner.stale_after = 0.5
        owner.track(runs[1], long)
        proxy.stop()
        wait_until(lambda: long.cancelled, timeout=30, what="the owner to stop its run")
        status, error = owner.outcome(runs[1], RunStatus.CANCELLED, None)
        assert status is RunStatus.ABANDONED
        assert error is not None and "could not renew its lease of 0.5s" in error
        owner.record_later(runs[1], status, storage.clock.now(), error)
        proxy.start()
        wait_until(
            lambda: direct.get_run(runs[1]).status is RunStatus.ABANDONED,
            timeout=30,
            what="the abandoned run recorded",
        )
    finally:
        owner.stop()


def _owner_process(
    postgres: PostgresServer, schema: str, run_id: str, skew: str
) -> subprocess.Popen[str]:
    command = [sys.executable, str(HERE / "owner_process.py"), postgres.url, schema, run_id,
               str(HEARTBEAT)]  # fmt: skip
    # libfaketime preloaded directly, without shared memory: the `faketime` wrapper creates a
    # semaphore named after its pid that a killed wrapper leaves behind, and a later wrapper
    # given the same pid then fails with "sem_open: File exists".
    env = subprocess_env(
        LD_PRELOAD=_libfaketime(),
        FAKETIME=skew,
        FAKETIME_DISABLE_SHM="1",
        FAKETIME_DONT_FAKE_MONOTONIC="1",
    )
    return subprocess.Popen(
        command,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def _libfaketime() -> str:
    """The libfaketime of Debian's faketime package; fails under CI=true when missing."""
    found = sorted(glob.glob("/usr/lib/*/faketime/libfaketime.so.1"))
    if not found:
        reason = "libfaketime is not installed (apt-get install faketime)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    return found[0]


@pytest.mark.postgres
@pytest.mark.slow
def test_skewed_clocks_abandon_nothing_and_a_dead_owner_is_abandoned(
    postgres: PostgresServer, pg: PostgresStorage
) -> None:
    storage = pg
    behind = _owner_process(postgres, pg.schema, "behind", "-10m")
    ahead = _owner_process(postgres, pg.schema, "ahead", "+10m")
    try:
        for process in (behind, ahead):
            assert process.stdout is not None
            line = process.stdout.readline()
            assert "ready" in json.loads(line or "{}"), process.stderr and process.stderr.read()
        # Each owner marks abandoned the runs of silent owners at every heartbeat; with
        # clocks 20 minutes apart, judging by host clocks would abandon the other at once.
        seen: set[object] = set()

        def beats() -> bool:
            seen.update((i.instance_id, i.last_seen) for i in storage.list_instances())
            return len(seen) >= 8  # about four heartbeats each

        wait_until(beats, timeout=60, what="four heartbeats of each owner")
        assert storage.mark_abandoned_runs(None, STALE) == []
        assert {storage.get_run(r).status for r in ("behind", "ahead")} == {RunStatus.RUNNING}
        instances = {i.hostname for i in storage.list_instances()}
        assert len(instances) == 1  # both on this host, 20 minutes apart by their clocks
        # A cancel made here reaches the process that owns the run within a heartbeat.
        storage.request_cancel("behind", by="api")
        assert behind.wait(timeout=60) == 0, behind.stderr and behind.stderr.read()
        cancelled = storage.get_run("behind")
        assert (cancelled.status, cancelled.cancelled_by) == (RunStatus.CANCELLED, "api")
        # A dead owner's run is abandoned by any live process, by the database's clock.
        os.killpg(ahead.pid, signal.SIGKILL)
        ahead.wait(timeout=30)
        wait_until(
            lambda: storage.mark_abandoned_runs(None, STALE) == ["ahead"],
            timeout=30,
            what="the killed owner's run to be abandoned",
        )
        assert storage.get_run("ahead").status is RunStatus.ABANDONED
    finally:
        for process in (behind, ahead):
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
            process.communicate(timeout=30)
