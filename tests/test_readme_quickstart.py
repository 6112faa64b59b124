"""The README's Quickstart, step by step, as a new user runs it: shell, Python, then the CLI."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from tests.conftest import PostgresServer
from tests.readme import code_blocks

pytestmark = pytest.mark.postgres


@pytest.fixture
def quickstart_schema(postgres: PostgresServer) -> Iterator[str]:
    name = f"quickstart_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(postgres.url, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(name)))
        try:
            yield name
        finally:
            admin.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(name)))


def test_quickstart_runs_as_written(
    postgres: PostgresServer, quickstart_schema: str, tmp_path: Path
) -> None:
    shell, run_now, start_service = code_blocks("Quickstart", "bash")
    [create] = code_blocks("Quickstart")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_", "LOG_"))}
    # The user's own server in step 1 is ours here; everything else runs as written.
    env.update(
        DATABASE_URL=postgres.url,
        DATABASE_SCHEMA=quickstart_schema,
        PGOPTIONS=f"-c search_path={quickstart_schema}",
    )
    steps = [line for line in shell.splitlines() if not line.startswith("export DATABASE_")]
    subprocess.run(["bash", "-c", "\n".join(steps)], cwd=tmp_path, env=env, check=True)
    (tmp_path / "quickstart.py").write_text(create)
    subprocess.run([sys.executable, "quickstart.py"], cwd=tmp_path, env=env, check=True, timeout=60)

    assert run_now.strip() == "th2etl run example_pipeline"
    done = subprocess.run(
        [sys.executable, "-m", "th2etl.runner", "run", "example_pipeline"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "succeeded example_exporter" in done.stdout
    with psycopg.connect(postgres.url) as conn:
        rows = conn.execute(
            sql.SQL("SELECT day, units, price FROM {} ORDER BY day").format(
                sql.Identifier(quickstart_schema, "processed_data")
            )
        ).fetchall()
        runs = conn.execute(
            sql.SQL("SELECT status FROM {}").format(
                sql.Identifier(quickstart_schema, "th2etl_runs")
            )
        ).fetchall()
    # csv_loader without `types` gives text; example_transformer doubles text that reads as
    # a number, so the exported columns are numbers.
    assert rows == [("2026-11-24", 6, 5.0), ("2026-11-25", 8, 3.0)]
    assert runs == [("succeeded",)]
    assert start_service.strip() == "th2etl"  # the scheduler loop itself: tests/api/test_cli.py
