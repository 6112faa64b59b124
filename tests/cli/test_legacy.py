# ruff: noqa: E501 (the old tables' SQL reads better on one line)
"""th2etl import-legacy from tables made as th2etl 0.0.8-0.0.15 made them (their columns, in
the configured schema), on PostgreSQL."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest

from tests.cli.conftest import Cli
from th2etl.legacy import legacy_cron_notes

ON_POSTGRES = pytest.mark.parametrize(
    "cli", [pytest.param("postgresql", marks=pytest.mark.postgres)], indirect=True
)

OLD_TABLES = """
CREATE TABLE etl_blocs (id SERIAL PRIMARY KEY, name TEXT NOT NULL UNIQUE, bloc_type TEXT NOT NULL,
    dependencies JSONB NOT NULL, config JSONB NOT NULL, description TEXT,
    created_at TIMESTAMPTZ NOT NULL, updated_at TIMESTAMPTZ NOT NULL);
CREATE TABLE etl_pipelines (id SERIAL PRIMARY KEY, name TEXT NOT NULL UNIQUE, stages JSONB NOT NULL,
    description TEXT, created_at TIMESTAMPTZ NOT NULL, updated_at TIMESTAMPTZ NOT NULL);
CREATE TABLE etl_triggers (id SERIAL PRIMARY KEY, name TEXT NOT NULL UNIQUE,
    pipeline_id INTEGER NOT NULL REFERENCES etl_pipelines(id) ON DELETE CASCADE,
    cron_expression TEXT NOT NULL, description TEXT,
    created_at TIMESTAMPTZ NOT NULL, updated_at TIMESTAMPTZ NOT NULL);
CREATE TABLE etl_schedulers (id SERIAL PRIMARY KEY, name TEXT NOT NULL UNIQUE,
    pipeline_id INTEGER NOT NULL REFERENCES etl_pipelines(id) ON DELETE CASCADE,
    trigger_id INTEGER NOT NULL REFERENCES etl_triggers(id) ON DELETE CASCADE, description TEXT,
    variables JSONB NOT NULL DEFAULT '{}', active BOOLEAN NOT NULL DEFAULT TRUE,
    created_at TIMESTAMPTZ NOT NULL, updated_at TIMESTAMPTZ NOT NULL);
CREATE TABLE etl_pipeline_runs (id SERIAL PRIMARY KEY, pipeline_name TEXT NOT NULL,
    status TEXT NOT NULL, variables JSONB NOT NULL, result JSONB, error TEXT, scheduler_name TEXT,
    created_at TIMESTAMPTZ NOT NULL, updated_at TIMESTAMPTZ NOT NULL, started_at TIMESTAMPTZ,
    finished_at TIMESTAMPTZ);
CREATE TABLE etl_pipeline_run_logs (id SERIAL PRIMARY KEY, run_id INTEGER NOT NULL,
    ts TIMESTAMPTZ NOT NULL, level TEXT NOT NULL, event TEXT NOT NULL, message TEXT,
    fields JSONB NOT NULL DEFAULT '{}');
"""

T = "2026-05-01T10:00:00+00"


@pytest.fixture
def old_database(cli: Cli, postgres: Any) -> Iterator[Any]:
    """The old tables, with data, in the test's schema; a connection to them."""
    with postgres.connect(autocommit=True) as conn:
        _fill(conn, cli.storage.schema)
        yield conn


def _fill(conn: Any, schema: str) -> None:
    conn.execute(f"SET search_path TO {schema}")
    conn.execute(OLD_TABLES)
    bloc = "INSERT INTO etl_blocs (name, bloc_type, dependencies, config, description, created_at, updated_at) VALUES (%s, %s, %s, %s, %s, %s, %s)"
    conn.execute(
        bloc, ("load", "csv_loader", "[]", json.dumps({"file_path": "in.csv"}), None, T, T)
    )
    conn.execute(bloc, ("double", "example_transformer", '["load"]', '{"factor": 2}', "x2", T, T))
    conn.execute(bloc, ("early", "example_transformer", '["double"]', "{}", None, T, T))
    conn.execute(
        "INSERT INTO etl_pipelines (name, stages, description, created_at, updated_at) VALUES "
        "('sales', %s, 'daily', %s, %s)",
        (json.dumps([["load", "early"], ["double"]]), T, T),
    )
    trigger = "INSERT INTO etl_triggers (name, pipeline_id, cron_expression, created_at, updated_at) VALUES (%s, 1, %s, %s, %s)"
    conn.execute(trigger, ("mondays", "0 2 * * 0", T, T))
    conn.execute(trigger, ("friday_13", "0 9 13 * 4", T, T))
    conn.execute(trigger, ("hourly", "0 * * * *", T, T))
    conn.execute(
        "INSERT INTO etl_schedulers (name, pipeline_id, trigger_id, variables, active, created_at, updated_at) "
        "VALUES ('weekly', 1, 1, '{\"region\": \"north\"}', false, %s, %s), ('hourly', 1, 3, '{}', true, %s, %s)",
        (T, T, T, T),
    )
    run = "INSERT INTO etl_pipeline_runs (pipeline_name, status, variables, error, scheduler_name, created_at, updated_at, started_at, finished_at) VALUES ('sales', %s, '{}', %s, %s, %s, %s, %s, %s)"
    conn.execute(run, ("success", None, "hourly", T, T, T, "2026-05-01T10:01:00+00"))
    conn.execute(run, ("pending", None, None, T, T, None, None))
    conn.execute(
        "INSERT INTO etl_pipeline_run_logs (run_id, ts, level, event, message) VALUES "
        "(1, %s, 'INFO', 'run_started', 'go'), (1, %s, 'INFO', 'run_finished', NULL)",
        (T, "2026-05-01T10:01:00+00"),
    )


def _snapshot(conn: Any) -> list[Any]:
    return [
        conn.execute(f"SELECT row_to_json(t)::text FROM etl_{table} t ORDER BY id").fetchall()
        for table in (
            "blocs",
            "pipelines",
            "triggers",
            "schedulers",
            "pipeline_runs",
            "pipeline_run_logs",
        )
    ]


@ON_POSTGRES
def test_import_brings_definitions_and_runs_once_and_leaves_the_old_tables(
    cli: Cli, old_database: Any
) -> None:
    conn = old_database
    before = _snapshot(conn)
    code, out, _ = cli("import-legacy", "--dry-run", "--timezone", "Europe/Paris")
    assert code == 0 and out.endswith("dry run: nothing was imported\n")
    assert cli.storage.list_blocs() == []

    code, out, _ = cli("import-legacy", "--with-runs", "--timezone", "Europe/Paris")
    assert code == 0, out
    assert "  + bloc double\n" in out and "  + scheduler weekly\n" in out
    assert (
        "trigger mondays '0 2 * * 0': day-of-week '0': th2etl 0.0.x ran on Monday (Monday = 0); "
        "cron and this th2etl run on Sunday (Sunday = 0)"
    ) in out
    assert "day-of-month '13' and day-of-week '4': th2etl 0.0.x ran on days matching both" in out
    assert (
        "pipeline sales: bloc 'early' depends on 'double' (0.0.x dependencies), which is not in an earlier stage"
        in out
    )
    weekly = cli.storage.get_scheduler("weekly")
    assert weekly.enabled is False and cli.storage.get_scheduler("hourly").enabled is True
    assert weekly.variables == {"region": "north"}
    mondays = cli.storage.get_trigger("mondays")
    assert (mondays.cron_expression, mondays.timezone) == ("0 2 * * 0", "Europe/Paris")
    assert cli.storage.get_bloc("double").description == "x2"
    assert cli.storage.get_pipeline("sales").stages == [["load", "early"], ["double"]]
    done = cli.storage.get_run("legacy-1")
    assert (done.status.value, done.scheduler_name) == ("succeeded", "hourly")
    assert "run_started: go" in (done.log or "")
    pending = cli.storage.get_run("legacy-2")
    assert pending.status.value == "abandoned" and "imported from th2etl 0.0.x as 'pending'" in (
        pending.error or ""
    )

    code, out, _ = cli("import-legacy", "--with-runs")
    assert code == 0 and "imported 0 item(s); 11 already there" in out
    assert _snapshot(conn) == before


@ON_POSTGRES
def test_keep_legacy_weekdays_rewrites_the_day_of_week(cli: Cli, old_database: Any) -> None:
    code, out, _ = cli("import-legacy", "--keep-legacy-weekdays", "--timezone", "UTC")
    assert code == 0
    assert (
        "rewritten to '0 2 * * 1' to keep the old days" in out or "rewritten to '0 2 * * 1'" in out
    )
    assert cli.storage.get_trigger("mondays").cron_expression == "0 2 * * 1"
    assert cli.storage.get_trigger("friday_13").cron_expression == "0 9 13 * 5"


@ON_POSTGRES
def test_a_database_with_only_old_tables_says_how_to_import(
    cli: Cli, old_database: Any, caplog: pytest.LogCaptureFixture
) -> None:
    from th2etl.configs.settings import get_settings
    from th2etl.storage import DatabaseStorage, _legacy

    _legacy._hinted.clear()
    with caplog.at_level(logging.WARNING, logger="th2etl.storage"):
        DatabaseStorage.from_settings(get_settings()).close()
    assert (
        "has th2etl 0.0.x definitions (etl_pipelines, etl_blocs, ...) and none of this th2etl's: import them with 'th2etl import-legacy --dry-run'"
        in caplog.text
    )
    code, _, err = cli("run", "sales")
    assert code == 1
    assert (
        "this database has th2etl 0.0.x tables (etl_pipelines): import them with 'th2etl import-legacy'"
        in err
    )


@pytest.mark.parametrize("cli", ["sqlite"], indirect=True)
def test_sqlite_is_refused_with_the_fix(cli: Cli) -> None:
    code, _, err = cli("import-legacy")
    assert code == 1 and "th2etl 0.0.x kept its tables in PostgreSQL: point DATABASE_URL" in err


def test_cron_notes_name_both_meanings() -> None:
    notes, rewrite = legacy_cron_notes("30 6 * * 0-4")
    assert notes == [
        "day-of-week '0-4': th2etl 0.0.x ran on Monday, Tuesday, Wednesday, Thursday, Friday "
        "(Monday = 0); cron and this th2etl run on Sunday, Monday, Tuesday, Wednesday, Thursday "
        "(Sunday = 0)"
    ]
    assert rewrite == "30 6 * * 1-5"
    assert legacy_cron_notes("0 * * * 5-6")[1] == "0 * * * 6-7"
    assert legacy_cron_notes("0 * * * */2")[1] == "0 * * * 1,3,5,7"
    assert legacy_cron_notes("0 * 1 * *") == ([], None)
