"""The README's CSV-to-PostgreSQL snippet, run as written with DATABASE_URL set."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from tests.conftest import PostgresServer
from tests.readme import code_blocks, exec_snippet

pytestmark = pytest.mark.postgres


def test_csv_to_postgres_snippet_runs_as_written(
    postgres: PostgresServer,
    pg_schema: str,
    clean_env: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    [snippet] = code_blocks("PostgreSQL blocs")
    clean_env.setenv("DATABASE_URL", postgres.url)
    # libpq's own variable: the snippet's unqualified table lands in the test's schema.
    clean_env.setenv("PGOPTIONS", f"-c search_path={pg_schema}")
    clean_env.chdir(tmp_path)
    namespace = exec_snippet(snippet)

    result = namespace["result"]
    assert result.succeeded, result.summary()
    assert result.outputs["export_sales"] == [
        {"table": f"{pg_schema}.sales", "rows": 2, "if_exists": "replace"}
    ]
    assert result.outputs["read_sales"] == [
        {"id": 1, "amount": Decimal("12.50")},
        {"id": 2, "amount": None},
    ]
    assert "pipeline 'csv_to_postgres' succeeded" in capsys.readouterr().out
    with psycopg.connect(postgres.url) as conn:
        found = conn.execute(
            sql.SQL("SELECT region, sold_on::text FROM {} ORDER BY id").format(
                sql.Identifier(pg_schema, "sales")
            )
        ).fetchall()
    assert found == [("north", "2026-11-24"), ("south", "2026-11-25")]
