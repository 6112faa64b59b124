"""The scheduler manager's runs are owned by a RunOwner: heartbeats on a thread and a connection
of their own (a blocked tick thread never delays them), by the database's clock, and a lease
whose lapse stops the manager's runs, which end ``abandoned``. Real PostgreSQL."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

from tests.conftest import wait_until
from tests.tcp_proxy import TcpProxy
from th2etl.clock import SystemClock
from th2etl.executors import make_executor
from th2etl.pipelines import RunStatus
from th2etl.scheduler import load_scheduler_manager
from th2etl.storage import PostgresStorage

from ..storage import lease_blocs

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

assert lease_blocs  # registers test_lease_hold


@pytest.fixture
def direct(postgres: Any, schema: str) -> Iterator[PostgresStorage]:
    with PostgresStorage(postgres.url, schema=schema) as storage:
        yield storage


def _blocked_on_revision(admin: psycopg.Connection[Any], schema: str) -> bool:
    """Whether a session waits for a lock in a statement that reads th2etl_revision."""
    row = admin.execute(
        "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE %s",
        (f"%{schema}%th2etl_revision%",),
    ).fetchone()
    return bool(row and row[0])


def test_heartbeats_go_on_while_the_tick_thread_is_blocked(
    postgres: Any, schema: str, direct: PostgresStorage
) -> None:
    manager = load_scheduler_manager(
        direct, instance_id="blocked", logs_dir=None, heartbeat_interval=1, reload_interval=0.1
    )
    thread = threading.Thread(target=manager.start, name="test-manager-ticks")
    with (
        psycopg.connect(postgres.url, autocommit=True) as admin,
        psycopg.connect(postgres.url) as locker,
    ):
        thread.start()
        try:
            wait_until(
                lambda: [i.instance_id for i in direct.list_instances()] == ["blocked"],
                timeout=30,
                what="the first heartbeat",
            )
            # The tick thread reads th2etl_revision at every reload: hold it there.
            locker.execute(
                sql.SQL("LOCK TABLE {} IN ACCESS EXCLUSIVE MODE").format(
                    sql.Identifier(schema, "th2etl_revision")
                )
            )
            wait_until(
                lambda: _blocked_on_revision(admin, schema),
                timeout=30,
                what="the tick thread to wait for the lock",
            )
            seen: set[datetime] = set()

            def beats() -> bool:
                seen.update(i.last_seen for i in direct.list_instances())
                return len(seen) >= 4

            wait_until(beats, timeout=60, what="heartbeats while the ticks are blocked")
            assert _blocked_on_revision(admin, schema)  # still blocked all along
            assert direct.mark_abandoned_runs(None, timedelta(seconds=1.5)) == []
        finally:
            locker.rollback()
            manager.stop()
            thread.join(timeout=60)
    assert not thread.is_alive()
    assert direct.list_instances() == []  # the owner unregistered on stop


class _SoonClock(SystemClock):
    """The system clock, read ``offset`` ahead, so that a minute boundary comes in seconds."""

    def __init__(self, offset: timedelta) -> None:
        self.offset = offset

    def now(self) -> datetime:
        return super().now() + self.offset


def test_a_scheduled_run_is_stopped_and_abandoned_when_the_managers_lease_lapses(
    postgres: Any, schema: str, direct: PostgresStorage, tmp_path: Path
) -> None:
    """Only the manager is cut off from the database (the run's worker still reaches it):
    the manager stops its run, which is recorded ``abandoned`` with the owner's reason."""
    files = {name: tmp_path / name for name in ("pid_file", "release_file", "stopped_file")}
    direct.create_bloc("hold", "test_lease_hold", config={k: str(v) for k, v in files.items()})
    direct.create_pipeline("held", stages=[["hold"]])
    direct.create_trigger("minutely", cron_expression="* * * * *")
    direct.create_scheduler("held_minutely", "held", "minutely")
    now = SystemClock().now()
    # The next minute boundary two seconds from now, on the manager's clock.
    offset = (now.replace(second=0, microsecond=0) + timedelta(minutes=1) - now) - timedelta(
        seconds=2
    )
    executor = make_executor("process", direct, grace=1)
    with (
        TcpProxy(postgres.host, postgres.port) as proxy,
        PostgresStorage(
            f"postgresql://{postgres.user}@127.0.0.1:{proxy.port}/{postgres.dbname}",
            schema=schema,
            connect_timeout=1,
        ) as proxied,
    ):
        manager = load_scheduler_manager(
            proxied,  # type: ignore[arg-type]
            clock=_SoonClock(offset),
            instance_id="cut-off",
            logs_dir=None,
            heartbeat_interval=2,
            executor=executor,
        )
        thread = threading.Thread(target=manager.start, name="test-manager-ticks")
        thread.start()
        try:
            wait_until(lambda: files["pid_file"].exists(), timeout=60, what="the run to start")
            [run] = direct.list_runs(scheduler_name="held_minutely")
            assert (run.owner_id, run.executor) == ("cut-off", "process")
            proxy.stop()
            wait_until(
                lambda: direct.get_run(run.run_id).status.finished,
                timeout=60,
                what="the run to be stopped and recorded",
            )
        finally:
            proxy.start()
            manager.stop(grace=5)
            thread.join(timeout=60)
            executor.shutdown()
    record = direct.get_run(run.run_id)
    assert record.status is RunStatus.ABANDONED
    assert record.error is not None
    assert record.error.startswith(
        "abandoned: its owner cut-off could not renew its lease of 3s (the database was "
        "unreachable) and stopped it; its worker"
    )
    assert not files["stopped_file"].exists()  # its worker was terminated, not asked
