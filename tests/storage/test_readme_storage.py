"""The README's Persistent Storage snippets, run as written on SQLite and on PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from psycopg import sql

from tests.readme import code_blocks
from th2etl import DatabaseStorage
from th2etl.configs.settings import get_settings
from th2etl.storage import PostgresStorage, SQLiteStorage


@pytest.fixture
def configured(
    backend: str, request: pytest.FixtureRequest, clean_env: pytest.MonkeyPatch, tmp_path: Path
) -> Iterator[str]:
    """The environment the README describes: nothing set (SQLite), or DATABASE_* variables."""
    clean_env.chdir(tmp_path)
    if backend == "sqlite":
        yield backend
        return
    server = request.getfixturevalue("postgres")
    schema = f"{server.schema}_readme"
    for key, value in {
        "DATABASE_HOST": server.host,
        "DATABASE_PORT": str(server.port),
        "DATABASE_NAME": server.dbname,
        "DATABASE_USER": server.user,
        "DATABASE_SCHEMA": schema,
    }.items():
        clean_env.setenv(key, value)
    yield backend
    with server.connect(autocommit=True) as admin:
        admin.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


def _run(code: str) -> dict[str, Any]:
    namespace: dict[str, Any] = {"__name__": "__readme__"}
    exec(compile(code, "README.md", "exec"), namespace)
    return namespace


def test_persistent_storage_snippets_run_as_written(
    configured: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    definitions, history = code_blocks("Persistent Storage")
    _run(definitions)
    out = capsys.readouterr().out
    assert "PipelineRecord(name='example_pipeline', stages=[['example_loader']" in out
    assert "SchedulerRecord(name='example_scheduler', pipeline_name='example_pipeline'" in out

    _run(history)
    out = capsys.readouterr().out
    assert "succeeded [('sales', " in out
    assert "stage 2 bloc 'doubled' (example_transformer) succeeded" in out

    with DatabaseStorage.from_settings(get_settings()) as storage:
        expected = PostgresStorage if configured == "postgresql" else SQLiteStorage
        assert isinstance(storage, expected)
        assert storage.get_scheduler("example_scheduler").trigger_name == "every_hour"
        assert [r.pipeline_name for r in storage.list_runs()] == ["sales_report"]
    assert (tmp_path / "th2etl.db").exists() == (configured == "sqlite")
