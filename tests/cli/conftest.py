"""Fixtures for the command-line tests: the ``th2etl`` command run in this process against a
real database (SQLite, then PostgreSQL) named by the environment, as a user's shell would."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.api.conftest import postgres_settings_env
from th2etl.configs.logging import reset_logging
from th2etl.configs.settings import get_settings


@dataclass
class Cli:
    """``cli("runs", "--json")`` runs the command; ``storage`` is the same database."""

    storage: Any
    capsys: pytest.CaptureFixture[str]

    def __call__(self, *args: str) -> tuple[int, str, str]:
        from th2etl.runner import main

        self.capsys.readouterr()
        try:
            code = main(list(args))
        finally:
            reset_logging()
        out, err = self.capsys.readouterr()
        return code, out, err


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def cli(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    clean_env: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> Iterator[Cli]:
    """The command and its database, configured through environment variables."""
    from th2etl.storage import DatabaseStorage

    if request.param == "sqlite":
        env = {"TH2ETL_SQLITE_PATH": str(tmp_path / "th2etl.db")}
    else:
        env = postgres_settings_env(
            request.getfixturevalue("postgres"), request.getfixturevalue("pg_schema")
        )
    for key, value in env.items():
        clean_env.setenv(key, value)
    clean_env.chdir(tmp_path)
    storage = DatabaseStorage.from_settings(get_settings(env))
    try:
        yield Cli(storage, capsys)
    finally:
        storage.close()
