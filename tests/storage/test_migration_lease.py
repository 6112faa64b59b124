"""Migration 8 (each owner's lease) carries a version-7 database forward: instance rows written
before it store no lease and are judged by the sweeping process's ``stale_after``, until their
owner heartbeats with this th2etl; on PostgreSQL it takes its lock with a lock_timeout, giving
way to a busy table."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from th2etl.pipelines.result import RunStatus
from th2etl.storage import DatabaseStorage, _core
from th2etl.storage.migrations import LATEST_VERSION, load_migrations

from ..conftest import PostgresServer
from .conftest import Open, assert_migration_gives_way

T0 = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
PREVIOUS = 7


def at_version_7(
    monkeypatch: pytest.MonkeyPatch, open_database: Open, backend: str
) -> DatabaseStorage:
    """Storage whose schema was made by th2etl's migrations up to version 7."""
    assert load_migrations(backend)[PREVIOUS].name == "instance_lease"
    with monkeypatch.context() as patch:
        patch.setattr(_core, "load_migrations", lambda backend: load_migrations(backend)[:PREVIOUS])
        patch.setattr(_core, "LATEST_VERSION", PREVIOUS)
        storage = open_database()
        assert storage.schema_version() == PREVIOUS
    return storage


def test_instances_from_version_7_fall_back_to_the_sweepers_stale_after(
    monkeypatch: pytest.MonkeyPatch, database: Open, backend: str
) -> None:
    old = at_version_7(monkeypatch, database, backend)
    for owner in ("pre", "upgraded"):
        # A version-7 heartbeat: the columns of that version only.
        old._run(
            "INSERT INTO {instances} (instance_id, started_at, last_seen, hostname, pid, info) "
            "VALUES (%s, %s, %s, 'h', 1, %s)",
            (owner, old._time_in(T0), old._time_in(T0), "{}"),
        )
        old.create_run(f"{owner}-run", "p", owner_id=owner, started_by="cli", status="running")
    old.close()

    new = database()
    assert new.schema_version() == LATEST_VERSION
    assert {(i.instance_id, i.last_seen, i.lease_until) for i in new.list_instances()} == {
        ("pre", T0, None),
        ("upgraded", T0, None),
    }
    # The owner of "upgraded" heartbeats with this th2etl: from then on, its own lease counts.
    new.heartbeat("upgraded", T0 + timedelta(seconds=5), lease=timedelta(minutes=5))
    assert new.mark_abandoned_runs(T0 + timedelta(seconds=30), timedelta(seconds=30)) == []
    assert new.mark_abandoned_runs(T0 + timedelta(seconds=31), timedelta(seconds=30)) == ["pre-run"]
    error = new.get_run("pre-run").error or ""
    assert error.startswith(
        "abandoned: its owner sent no heartbeat for 30s (owner pre records no lease of its own"
    ), error
    assert new.get_run("upgraded-run").status is RunStatus.RUNNING
    assert new.mark_abandoned_runs(T0 + timedelta(minutes=6), timedelta(seconds=30)) == [
        "upgraded-run"
    ]


@pytest.mark.postgres
@pytest.mark.parametrize("backend", ["postgresql"])
def test_a_busy_instances_table_makes_migration_8_give_way_and_retry(
    monkeypatch: pytest.MonkeyPatch, database: Open, postgres: PostgresServer, backend: str
) -> None:
    old = at_version_7(monkeypatch, database, backend)
    old.close()
    # A long read of th2etl_instances: ALTER TABLE would queue every heartbeat behind it.
    assert_migration_gives_way(monkeypatch, database, postgres, old, "th2etl_instances")
