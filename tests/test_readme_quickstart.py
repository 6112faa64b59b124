"""The README's Quickstart, step by step, as a new user runs it: shell, Python, then the CLI."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from tests.conftest import PostgresServer, subprocess_env
from tests.readme import code_blocks

pytestmark = pytest.mark.postgres


def test_quickstart_runs_as_written(
    postgres: PostgresServer, pg_schema: str, tmp_path: Path
) -> None:
    shell, run_now, start_service = code_blocks("Quickstart", "bash")
    [create] = code_blocks("Quickstart")
    # The user's own server in step 1 is ours here; everything else runs as written.
    env = subprocess_env(
        DATABASE_URL=postgres.url,
        DATABASE_SCHEMA=pg_schema,
        PGOPTIONS=f"-c search_path={pg_schema}",
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
                sql.Identifier(pg_schema, "processed_data")
            )
        ).fetchall()
        runs = conn.execute(
            sql.SQL("SELECT status FROM {}").format(sql.Identifier(pg_schema, "th2etl_runs"))
        ).fetchall()
    # csv_loader without `types` gives text; example_transformer doubles text that reads as
    # a number, so the exported columns are numbers.
    assert rows == [("2026-11-24", 6, 5.0), ("2026-11-25", 8, 3.0)]
    assert runs == [("succeeded",)]
    assert start_service.strip() == "th2etl"  # the scheduler loop itself: tests/api/test_cli.py
