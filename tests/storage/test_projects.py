"""Project marks on definitions (schema 2) and storage.transaction(), on both backends."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from th2etl import DatabaseStorage
from th2etl.exceptions import AlreadyExistsError, NotFoundError, StorageError, ValidationError
from th2etl.storage import SQLiteStorage
from th2etl.storage.migrations import load_migrations, sqlite_statements


def test_a_transaction_commits_everything_or_nothing(storage: DatabaseStorage) -> None:
    with storage.transaction():
        storage.create_bloc("a", "example_transformer")
        storage.create_pipeline("p", [["a"]])
        storage.set_definition_project("bloc", "a", "sales")
    assert [b.name for b in storage.list_blocs()] == ["a"]
    revision = storage.revision()
    with (
        pytest.raises(AlreadyExistsError, match="pipeline 'p' already exists"),
        storage.transaction(),
    ):
        storage.create_bloc("b", "example_transformer")
        storage.update_bloc("a", description="changed")
        storage.create_pipeline("p", [["b"]])
    assert [b.name for b in storage.list_blocs()] == ["a"]
    assert storage.get_bloc("a").description == ""
    assert storage.revision() == revision
    with (
        pytest.raises(StorageError, match=r"transaction\(\) is already open; they do not nest"),
        storage.transaction(),
        storage.transaction(),
    ):
        pass  # pragma: no cover


def test_definition_projects_are_read_and_set_per_kind(storage: DatabaseStorage) -> None:
    storage.create_bloc("a", "example_transformer")
    storage.create_bloc("b", "example_transformer")
    storage.set_definition_project("bloc", "b", "sales")
    assert storage.definition_projects("bloc") == {"a": None, "b": "sales"}
    storage.set_definition_project("bloc", "b", None)
    assert storage.definition_projects("bloc") == {"a": None, "b": None}
    with pytest.raises(NotFoundError, match="bloc 'c' does not exist; nothing to mark"):
        storage.set_definition_project("bloc", "c", "sales")
    with pytest.raises(ValidationError, match="unknown kind of definition 'blocs'; use one of"):
        storage.definition_projects("blocs")
    with pytest.raises(ValidationError, match="project name 'a b' has characters"):
        storage.set_definition_project("bloc", "a", "a b")


def test_a_schema_1_database_gets_project_columns_and_keeps_its_definitions(
    tmp_path: Path,
) -> None:
    path = tmp_path / "old.db"
    first = load_migrations("sqlite")[0]
    with sqlite3.connect(path) as conn:
        for statement in sqlite_statements(first.sql):
            conn.execute(statement)
        conn.execute(
            "CREATE TABLE th2etl_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, "
            "th2etl_version TEXT NOT NULL, applied_at TEXT NOT NULL)"
        )
        conn.execute("INSERT INTO th2etl_migrations VALUES (1, 'initial', '0.1.0', '2026-01-01')")
        conn.execute(
            "INSERT INTO th2etl_blocs VALUES ('old', 'example_transformer', '{}', '', "
            "'2026-01-01T00:00:00.000000+00:00', '2026-01-01T00:00:00.000000+00:00')"
        )
    conn.close()
    with SQLiteStorage(path) as storage:
        assert storage.schema_version() >= 2
        assert storage.definition_projects("bloc") == {"old": None}
        assert storage.get_bloc("old").bloc_type == "example_transformer"
