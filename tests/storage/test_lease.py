"""Leases end to end: a service's runs (the API's owner) when its PostgreSQL goes away, in a
thread and in a worker process.

The service reaches PostgreSQL through a TCP proxy the test cuts; the test itself, like any
other th2etl process, sees the database directly. An outage shorter than the lease changes
nothing: the run finishes and its outcome is written once the database is back. A longer one:
the owner stops its run before its lease ends, and the run ends ``abandoned`` on every side; at
the moment another process first counts it abandoned, it is no longer executing.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from th2etl.api.service import RunExecutor
from th2etl.executors import make_executor
from th2etl.pipelines.result import RunStatus
from th2etl.storage import PostgresStorage

from ..conftest import PostgresServer, process_alive, wait_until
from ..tcp_proxy import TcpProxy
from . import lease_blocs

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

assert lease_blocs  # registers test_lease_hold


@pytest.fixture
def direct(postgres: PostgresServer, pg_schema: str) -> Iterator[PostgresStorage]:
    """What any other th2etl process sees: the database, directly."""
    with PostgresStorage(postgres.url, schema=pg_schema) as storage:
        yield storage


@pytest.fixture
def proxied(postgres: PostgresServer, direct: PostgresStorage) -> Iterator[tuple[TcpProxy, str]]:
    """A proxy to PostgreSQL the test can cut, and the URL through it."""
    with TcpProxy(postgres.host, postgres.port) as proxy:
        yield proxy, f"postgresql://{postgres.user}@127.0.0.1:{proxy.port}/{postgres.dbname}"


def _hold(direct: PostgresStorage, tmp_path: Path) -> dict[str, Path]:
    files = {name: tmp_path / name for name in ("pid_file", "release_file", "stopped_file")}
    direct.create_bloc("hold", "test_lease_hold", config={k: str(v) for k, v in files.items()})
    direct.create_pipeline("held", stages=[["hold"]])
    return files


@pytest.mark.parametrize("kind", ["thread", "process"])
def test_an_outage_shorter_than_the_lease_lets_the_run_finish_recorded_once(
    proxied: tuple[TcpProxy, str], direct: PostgresStorage, tmp_path: Path, kind: str
) -> None:
    proxy, url = proxied
    files = _hold(direct, tmp_path)
    with PostgresStorage(url, schema=direct.schema, connect_timeout=1) as storage:
        # A lease of 9 s (heartbeats every 6 s); the outage lasts while the run ends.
        service = RunExecutor(
            storage,  # type: ignore[arg-type]
            executor=make_executor(kind, storage, grace=1),
            heartbeat_interval=6,
        )
        service.start()
        try:
            run = service.submit("held", {})
            wait_until(lambda: files["pid_file"].exists(), timeout=30, what="the bloc to start")
            proxy.stop()
            files["release_file"].touch()
            wait_until(lambda: service.active == 0, timeout=30, what="the run to end")
            assert direct.get_run(run.run_id).status is RunStatus.RUNNING  # its end was lost
            proxy.start()
            wait_until(
                lambda: direct.get_run(run.run_id).status.finished,
                timeout=60,
                what="the outcome written once the database is back",
            )
        finally:
            service.shutdown(grace=5)
    record = direct.get_run(run.run_id)
    assert (record.status, record.error) == (RunStatus.SUCCEEDED, None)
    assert not files["stopped_file"].exists()
    assert direct.mark_abandoned_runs(None, timedelta(seconds=9)) == []


@pytest.mark.parametrize("kind", ["thread", "process"])
def test_an_outage_longer_than_the_lease_stops_the_run_before_others_abandon_it(
    proxied: tuple[TcpProxy, str], direct: PostgresStorage, tmp_path: Path, kind: str
) -> None:
    proxy, url = proxied
    files = _hold(direct, tmp_path)
    heartbeat = 2.0
    stale = timedelta(seconds=1.5 * heartbeat)  # what every process with these settings uses
    with PostgresStorage(url, schema=direct.schema, connect_timeout=1) as storage:
        service = RunExecutor(
            storage,  # type: ignore[arg-type]
            executor=make_executor(kind, storage, grace=1),
            heartbeat_interval=heartbeat,
        )
        service.start()
        try:
            run = service.submit("held", {})
            wait_until(lambda: files["pid_file"].exists(), timeout=30, what="the bloc to start")
            pid = int(files["pid_file"].read_text())
            proxy.stop()
            # Another process counts the run abandoned once the owner's heartbeats are stale;
            # by then the run no longer executes.
            executing_when_abandoned: list[bool] = []

            def abandoned_elsewhere() -> bool:
                if direct.mark_abandoned_runs(None, stale) != [run.run_id]:
                    return False
                if kind == "process":
                    executing_when_abandoned.append(process_alive(pid))
                else:
                    executing_when_abandoned.append(not files["stopped_file"].exists())
                return True

            wait_until(abandoned_elsewhere, timeout=60, what="another process to abandon it")
            assert executing_when_abandoned == [False]
            wait_until(lambda: service.active == 0, timeout=30, what="the run to end")
            proxy.start()
            # The owner's own record of it, once the database is back, changes nothing.
            wait_until(lambda: not service.owner._pending, timeout=60, what="the owner's outcome")
        finally:
            service.shutdown(grace=5)
    record = direct.get_run(run.run_id)
    assert record.status is RunStatus.ABANDONED
    assert record.error is not None and "its owner sent no heartbeat for 3s" in record.error
    assert not files["release_file"].exists()
    if kind == "process":
        assert not process_alive(pid)
    assert os.path.exists(files["stopped_file"]) is (kind == "thread")


@pytest.mark.parametrize("kind", ["thread", "process"])
def test_a_run_whose_owner_lost_its_lease_is_recorded_abandoned_where_it_ran(
    proxied: tuple[TcpProxy, str], direct: PostgresStorage, tmp_path: Path, kind: str
) -> None:
    """Only the owner is cut off: the run's own connection (a worker's, or the run thread's)
    still reaches the database, and records the run ``abandoned`` with the owner's reason, not
    ``cancelled``."""
    proxy, url = proxied
    files = _hold(direct, tmp_path)
    with PostgresStorage(url, schema=direct.schema, connect_timeout=1) as storage:
        service = RunExecutor(
            storage,  # type: ignore[arg-type]
            executor=make_executor(kind, direct, grace=1),
            heartbeat_interval=1,
        )
        service.start()
        try:
            run = service.submit("held", {})
            wait_until(lambda: files["pid_file"].exists(), timeout=30, what="the bloc to start")
            proxy.stop()
            wait_until(
                lambda: direct.get_run(run.run_id).status.finished,
                timeout=60,
                what="the run to be stopped and recorded",
            )
        finally:
            proxy.start()
            service.shutdown(grace=5)
    record = direct.get_run(run.run_id)
    assert record.status is RunStatus.ABANDONED
    owner = service.owner.instance_id
    assert record.error is not None
    assert record.error.startswith(
        f"abandoned: its owner {owner} could not renew its lease of 1.5s (the database was "
        "unreachable) and stopped it"
    )
    assert files["stopped_file"].exists() is (kind == "thread")  # a worker is terminated
