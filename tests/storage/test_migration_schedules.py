"""Migration 2 (schedules) carries a database made by schema version 1 forward without loss,
and on PostgreSQL takes its locks with a lock_timeout, giving way to busy tables."""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from typing import Any

import pytest
from psycopg import sql

from tests.conftest import PostgresServer
from tests.storage.conftest import Open, assert_migration_gives_way
from th2etl.pipelines.result import RunStatus
from th2etl.storage import DatabaseStorage, PostgresStorage, _core
from th2etl.storage.migrations import LATEST_VERSION, load_migrations

TICK = datetime(2026, 5, 1, 2, 0, tzinfo=UTC)


def at_version_1(monkeypatch: pytest.MonkeyPatch, open_database: Open) -> DatabaseStorage:
    """Storage whose schema was made by th2etl's version-1 migration only."""
    with monkeypatch.context() as patch:
        patch.setattr(_core, "load_migrations", lambda backend: load_migrations(backend)[:1])
        patch.setattr(_core, "LATEST_VERSION", 1)
        storage = open_database()
        assert storage.schema_version() == 1
    return storage


def raw(storage: DatabaseStorage, statement: str, params: tuple[Any, ...] = ()) -> list[Any]:
    """Run version-1 SQL through the storage's own connection and commit."""
    with storage._session() as db:
        if statement.lstrip().upper().startswith("SELECT"):
            return list(db.all(statement, params))
        db.run(statement, params)
        return []


def test_a_version_1_database_is_carried_forward_without_loss(
    monkeypatch: pytest.MonkeyPatch, database: Open
) -> None:
    old = at_version_1(monkeypatch, database)
    old.create_bloc("load", "example_transformer")
    t = old._time_in(TICK)
    raw(  # version-1 columns only (later versions add some)
        old,
        "INSERT INTO {pipelines} (name, stages, description, created_at, updated_at) "
        "VALUES ('daily', %s, '', %s, %s)",
        ('[["load"]]', t, t),
    )
    raw(
        old,
        "INSERT INTO {triggers} (name, pipeline_name, cron_expression, timezone, description, "
        "created_at, updated_at) VALUES ('nightly', 'daily', '0 2 * * *', 'UTC', 'kept', %s, %s)",
        (t, t),
    )
    raw(
        old,
        "INSERT INTO {schedulers} (name, pipeline_name, trigger_name, enabled, description, "
        "created_at, updated_at) VALUES ('daily_2am', 'daily', 'nightly', %s, '', %s, %s)",
        (True, t, t),
    )
    raw(
        old,
        "INSERT INTO {runs} (run_id, pipeline_name, scheduler_name, trigger_name, scheduled_time, "
        "status, started_at, finished_at, variables, error, log) VALUES ('r1', 'daily', "
        "'daily_2am', 'nightly', %s, 'failed', %s, %s, %s, 'boom', 'the log')",
        (t, t, t, '{"day": 1}'),
    )
    raw(
        old,
        "INSERT INTO {bloc_runs} (run_id, bloc_name, position, bloc_type, stage, status, "
        "attempts, rows_in, rows_out, duration) VALUES ('r1', 'load', 0, 'example_transformer', "
        "1, 'failed', 1, 0, 0, 0.5)",
    )
    revision = old.revision()
    old.close()

    new = database()
    assert new.schema_version() == LATEST_VERSION
    assert new.revision() == revision
    trigger = new.get_trigger("nightly")
    assert (trigger.pipeline_name, trigger.cron_expression, trigger.description) == (
        "daily",
        "0 2 * * *",
        "kept",
    )
    scheduler = new.get_scheduler("daily_2am")
    assert (scheduler.pipeline_name, scheduler.trigger_name, scheduler.enabled) == (
        "daily",
        "nightly",
        True,
    )
    assert (scheduler.variables, scheduler.missed, scheduler.after_pipelines) == ({}, None, [])
    run = new.get_run("r1")
    assert (run.status, run.error, run.variables, run.log, run.attempt) == (
        RunStatus.FAILED,
        "boom",
        {"day": 1},
        "the log",
        1,
    )
    assert run.scheduled_time == TICK and [b.duration for b in run.blocs] == [0.5]
    # The tick's uniqueness now includes the attempt: its first attempt is still held.
    common = {"pipeline_name": "daily", "trigger_name": "nightly", "instance_id": None}
    assert new.claim_run("daily_2am", TICK, now=TICK, **common) is None
    # References still hold: the pipeline and trigger are in use, bloc runs follow their run.
    new.create_trigger("spare", cron_expression="@daily")
    new.update_scheduler("daily_2am", trigger_name="spare")
    new.delete_trigger("nightly")
    assert [t.name for t in new.list_triggers()] == ["spare"]


@pytest.mark.postgres
@pytest.mark.parametrize("backend", ["postgresql"])
def test_busy_tables_make_the_migration_give_way_and_retry(
    monkeypatch: pytest.MonkeyPatch, database: Open, postgres: PostgresServer
) -> None:
    old = at_version_1(monkeypatch, database)
    old.close()
    assert_migration_gives_way(monkeypatch, database, postgres, old, "th2etl_runs")


@pytest.mark.postgres
@pytest.mark.parametrize("backend", ["postgresql"])
def test_a_lock_released_while_waiting_lets_the_retry_through(
    monkeypatch: pytest.MonkeyPatch, database: Open, postgres: PostgresServer
) -> None:
    old = at_version_1(monkeypatch, database)
    assert isinstance(old, PostgresStorage)
    old.close()
    monkeypatch.setattr(PostgresStorage, "migration_lock_timeout", 0.05)
    reader: Any = postgres.connect()
    reader.execute(
        sql.SQL("LOCK TABLE {} IN ACCESS SHARE MODE").format(
            sql.Identifier(old.schema, "th2etl_runs")
        )
    )
    released = threading.Event()

    def give_way(seconds: float) -> None:  # the first retry's pause: the long read ends
        reader.rollback()
        released.set()

    monkeypatch.setattr("th2etl.storage.postgres.time.sleep", give_way)
    try:
        assert database().schema_version() == LATEST_VERSION
        assert released.is_set()
    finally:
        reader.close()
