"""The run lifecycle in storage: the state machine in SQL, owners, the queue, liveness by the
database's clock, cancels; and the migration that brought them, on both backends."""

from __future__ import annotations

import sqlite3
import threading
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

import th2etl.storage._core as core
from th2etl.exceptions import QueueFullError, RunStatusError, ValidationError
from th2etl.pipelines.result import TERMINAL_STATUSES, TRANSITIONS, RunStatus
from th2etl.storage import DatabaseStorage, PostgresStorage, SQLiteStorage
from th2etl.storage.migrations import LATEST_VERSION, load_migrations

from .conftest import OpenStorage

Raw = Callable[..., list[Any]]
T0 = datetime(2026, 5, 15, 10, 0, tzinfo=UTC)


@pytest.fixture
def raw(storage: DatabaseStorage) -> Iterator[Raw]:
    """SQL on the storage's database through a plain connection of its own: what any other
    program (or a bug) could write, bypassing th2etl's Python checks."""
    if isinstance(storage, PostgresStorage):
        import psycopg

        pg = psycopg.connect(
            storage._conninfo, autocommit=True, options=f"-c search_path={storage.schema}"
        )

        def run_pg(statement: str, *params: Any) -> list[Any]:
            cursor = pg.execute(statement.replace("?", "%s"), params)  # type: ignore[arg-type]
            return cursor.fetchall() if cursor.description else []

        yield run_pg
        pg.close()
    else:
        assert isinstance(storage, SQLiteStorage)
        lite = sqlite3.connect(storage.path, isolation_level=None)

        def run_lite(statement: str, *params: Any) -> list[Any]:
            return lite.execute(statement, params).fetchall()

        yield run_lite
        lite.close()


def _refused() -> tuple[type[Exception], ...]:
    import psycopg

    return (sqlite3.IntegrityError, psycopg.errors.CheckViolation)


# How to bring a new row to each status with legal steps only.
_PATHS = {
    RunStatus.QUEUED: ("queued", []),
    RunStatus.RUNNING: ("running", []),
    RunStatus.SKIPPED: ("skipped", []),
    **{
        final: ("running", [final.value])
        for final in (
            RunStatus.SUCCEEDED,
            RunStatus.FAILED,
            RunStatus.CANCELLED,
            RunStatus.ABANDONED,
        )
    },
}


def test_the_database_refuses_every_illegal_status_transition(
    storage: DatabaseStorage, raw: Raw
) -> None:
    insert = (
        "INSERT INTO th2etl_runs (run_id, pipeline_name, status, started_at, variables) "
        "VALUES (?, 'p', ?, '2026-05-15T10:00:00.000000+00:00', '{}')"
    )
    for status in RunStatus:
        if status in (RunStatus.QUEUED, RunStatus.RUNNING, RunStatus.SKIPPED):
            raw(insert, f"new-{status}", status.value)
        else:  # a run is never recorded already ended (but skipped)
            with pytest.raises(_refused(), match="th2etl run status"):
                raw(insert, f"new-{status}", status.value)
    checked = 0
    for current in RunStatus:
        for wanted in RunStatus:
            if wanted is current:
                continue
            run_id = uuid.uuid4().hex
            first, steps = _PATHS[current]
            raw(insert, run_id, first)
            for step in steps:
                raw("UPDATE th2etl_runs SET status = ? WHERE run_id = ?", step, run_id)
            change = "UPDATE th2etl_runs SET status = ? WHERE run_id = ?"
            if wanted in TRANSITIONS[current]:
                raw(change, wanted.value, run_id)
                expected = wanted
            else:
                with pytest.raises(_refused(), match="th2etl run status"):
                    raw(change, wanted.value, run_id)
                expected = current
            [(status,)] = raw("SELECT status FROM th2etl_runs WHERE run_id = ?", run_id)
            assert status == expected.value, (current, wanted)
            checked += 1
    assert checked == len(RunStatus) * (len(RunStatus) - 1)


def test_storage_refuses_illegal_changes_first_and_never_rewrites_an_ended_run(
    storage: DatabaseStorage,
) -> None:
    queued = storage.create_run("q1", "p", owner_id="me", started_by="python")
    assert queued.status is RunStatus.QUEUED and queued.queued_at is not None
    with pytest.raises(RunStatusError, match=r"run q1 is queued; it cannot become succeeded"):
        storage.finish_run("q1", RunStatus.SUCCEEDED, finished_at=T0, error=None)
    with pytest.raises(ValidationError, match=r"finish_run: 'running' is not a final status"):
        storage.finish_run("q1", RunStatus.RUNNING, finished_at=T0, error=None)
    assert storage.mark_running("q1", worker="host:1")
    assert storage.finish_run("q1", RunStatus.ABANDONED, finished_at=T0, error="owner died")
    # The owner comes back with an outcome: the abandoned status stays.
    assert not storage.finish_run("q1", RunStatus.SUCCEEDED, finished_at=T0, error=None)
    run = storage.get_run("q1")
    assert (run.status, run.error, run.worker) == (RunStatus.ABANDONED, "owner died", "host:1")
    with pytest.raises(RunStatusError, match=r"run q1 is abandoned; it cannot become running"):
        storage.start_run("q1", "p", started_at=T0)
    assert not storage.mark_running("q1")
    with pytest.raises(ValidationError, match=r"create_run: a run is created queued or running"):
        storage.create_run(None, "p", owner_id="me", started_by="cli", status="succeeded")
    with pytest.raises(ValidationError, match=r"create_run: owner_id must be a non-empty"):
        storage.create_run(None, "p", owner_id="", started_by="cli")


def test_a_run_records_its_owner_what_started_it_and_its_definition(
    storage: DatabaseStorage,
) -> None:
    definition = {"pipeline": {"name": "p"}, "blocs": [{"config": {"url": "${env:API}"}}]}
    run = storage.create_run(
        None,
        "p",
        owner_id="svc-1",
        started_by="api:ops",
        status=RunStatus.RUNNING,
        variables={"day": "2026-05-15"},
        definition=definition,
        timeout=30,
        executor="process",
    )
    stored = storage.get_run(run.run_id)
    assert (stored.owner_id, stored.instance_id, stored.started_by) == ("svc-1",) * 2 + ("api:ops",)
    assert stored.definition == definition and stored.timeout == 30
    assert stored.executor == "process" and stored.status is RunStatus.RUNNING
    assert storage.list_runs()[0].definition is None  # listings stay light
    assert stored.to_dict()["instance_id"] == "svc-1"  # what older clients read


def test_the_queue_is_claimed_oldest_first_once_and_bounded(open_storage: OpenStorage) -> None:
    storage = open_storage()
    ids = [
        storage.create_run(None, "p", owner_id="api-1", started_by="api", max_queued=3).run_id
        for _ in range(3)
    ]
    with pytest.raises(QueueFullError, match=r"3 runs are waiting .* TH2ETL_MAX_QUEUED_RUNS is 3"):
        storage.create_run(None, "p", owner_id="api-1", started_by="api", max_queued=3)
    assert storage.count_active_runs(status="queued") == 3
    assert storage.count_active_runs(pipeline_name="other") == 0
    # API runs have no scheduler: every queued one is manual.
    assert storage.count_active_runs(status="queued", manual=True) == 3
    assert storage.count_active_runs(manual=False) == 0
    # Three processes claim at once: each gets a different run, oldest first overall.
    others = [open_storage() for _ in range(3)]
    barrier = threading.Barrier(len(others))
    claimed: list[str] = []

    def claim(index: int) -> None:
        barrier.wait()
        record = others[index].claim_queued_run(f"svc-{index}")
        assert record is not None and record.owner_id == f"svc-{index}"
        claimed.append(record.run_id)

    threads = [threading.Thread(target=claim, args=(i,)) for i in range(len(others))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(claimed) == sorted(ids)
    assert storage.claim_queued_run("svc-9") is None
    assert all(storage.get_run(run_id).status is RunStatus.QUEUED for run_id in ids)
    assert storage.mark_running(ids[0]) and storage.get_run(ids[0]).status is RunStatus.RUNNING
    assert storage.count_active_runs() == 3 and storage.count_active_runs(status="running") == 1


def test_liveness_is_judged_by_the_database_clock(storage: DatabaseStorage, raw: Raw) -> None:
    """Heartbeats and the stale check both use the database's clock: the caller's clock plays
    no part (a host whose clock is minutes off abandons nothing and is not abandoned)."""
    storage.heartbeat("live")  # the database's now
    storage.heartbeat("silent")
    live = storage.create_run(None, "p", owner_id="live", started_by="cli", status="running")
    silent = storage.create_run(None, "p", owner_id="silent", started_by="cli", status="running")
    seen = {i.instance_id: i.last_seen for i in storage.list_instances()}
    assert abs(seen["live"] - storage.database_now()) < timedelta(minutes=1)
    assert storage.mark_abandoned_runs(None, timedelta(seconds=30)) == []
    # "silent" last spoke an hour ago by the database's clock.
    raw(
        "UPDATE th2etl_instances SET last_seen = ? WHERE instance_id = 'silent'",
        _stored(storage, storage.database_now() - timedelta(hours=1)),
    )
    assert storage.mark_abandoned_runs(None, timedelta(seconds=30)) == [silent.run_id]
    abandoned = storage.get_run(silent.run_id)
    assert abandoned.status is RunStatus.ABANDONED
    assert abandoned.error is not None and "by the database's clock" in abandoned.error
    assert storage.get_run(live.run_id).status is RunStatus.RUNNING


def _stored(storage: DatabaseStorage, moment: datetime) -> Any:
    return moment if isinstance(storage, PostgresStorage) else storage._time_in(moment)


def test_a_version_1_database_is_migrated_with_its_runs(
    backend: str, request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if backend == "postgresql":
        server = request.getfixturevalue("postgres")
        schema = request.getfixturevalue("pg_schema")

        def open_db() -> DatabaseStorage:
            return PostgresStorage(server.url, schema=schema)
    else:

        def open_db() -> DatabaseStorage:
            return SQLiteStorage(tmp_path / "v1.db")

    first = load_migrations(backend)[:1]
    with monkeypatch.context() as patch:
        patch.setattr(core, "load_migrations", lambda _backend: first)
        with open_db() as old:
            assert old.schema_version() == 1
            old._run(
                "INSERT INTO {runs} (run_id, pipeline_name, status, started_at, "
                "scheduler_name, scheduled_time, variables, instance_id) "
                "VALUES (%s, 'p', 'running', %s, %s, %s, %s, %s)",
                ("tick", old._time_in(T0), "hourly", old._time_in(T0), "{}", "sched-1"),
            )
            old._run(
                "INSERT INTO {runs} (run_id, pipeline_name, status, started_at, finished_at, "
                "variables) VALUES ('manual', 'p', 'succeeded', %s, %s, %s)",
                (old._time_in(T0), old._time_in(T0), "{}"),
            )
    with open_db() as new:
        assert new.schema_version() == LATEST_VERSION
        tick, manual = new.get_run("tick"), new.get_run("manual")
        assert (tick.owner_id, tick.started_by, tick.status) == (
            "sched-1",
            "scheduler:hourly",
            RunStatus.RUNNING,
        )
        assert (manual.owner_id, manual.started_by) == (None, "unknown")
        assert [run.run_id for run in new.active_runs("hourly")] == ["tick"]
        assert not new.finish_run("manual", RunStatus.FAILED, finished_at=T0, error=None)
        with pytest.raises(RunStatusError, match=r"run manual is succeeded; it cannot become"):
            new.start_run("manual", "p", started_at=T0)
        assert new.finish_run("tick", RunStatus.SUCCEEDED, finished_at=T0, error=None)


def test_terminal_and_transitions_agree() -> None:
    assert {status for status, nexts in TRANSITIONS.items() if not nexts} == TERMINAL_STATUSES


def test_the_statement_cache_does_not_grow_with_limits_or_lists(storage: DatabaseStorage) -> None:
    """Listing with 1,500 different limits (over runs that each have blocs) compiles the same
    statements as listing once: LIMIT and the list of run ids are parameters."""
    from th2etl.pipelines.result import BlocResult, BlocStatus

    for number in range(12):
        run = storage.create_run(f"r{number:02}", "p", owner_id="me", started_by="cli")
        storage.record_bloc_run(run.run_id, BlocResult("b", "t", 1, BlocStatus.SUCCEEDED))
    assert len(storage.list_runs(limit=1)[0].blocs) == 1
    cached = len(storage._compiled)
    for limit in range(1, 1501):
        assert len(storage.list_runs(limit=limit)) == min(limit, 12)
    assert len(storage._compiled) == cached


def test_the_readme_run_lifecycle_example_runs(
    tmp_path: Path, clean_env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from tests.readme import code_blocks, run_snippet

    clean_env.setenv("TH2ETL_SQLITE_PATH", str(tmp_path / "th2etl.db"))
    with SQLiteStorage(tmp_path / "th2etl.db") as storage:
        storage.create_run("waiting", "p", owner_id="api-1", started_by="api")
    [example] = code_blocks("Run lifecycle")
    run_snippet(example, tmp_path, "lifecycle")
    assert capsys.readouterr().out.splitlines() == [
        "waiting queued api-1 api",
        "1 runs wait for a worker",
    ]
