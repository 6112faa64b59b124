"""The README's "Pipelines as code" and "Operations" commands run as written (against a
database, in this process; the lines that need a running service or PostgreSQL's old tables
are tested elsewhere)."""

from __future__ import annotations

import shlex
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.cli.conftest import Cli
from tests.readme import code_blocks


@pytest.mark.parametrize("cli", ["sqlite"], indirect=True)
def test_every_th2etl_line_runs(cli: Cli, tmp_path: Path) -> None:
    (example,) = code_blocks("Pipelines as code", "toml")
    (tmp_path / "sales.toml").write_text(example)
    finished = cli.storage.start_run("r-done", "daily_sales", started_at=datetime.now(UTC))
    cli.storage.finish_run(finished.run_id, "failed", finished_at=datetime.now(UTC), error="x")
    cli.storage.start_run("r-running", "daily_sales", started_at=datetime.now(UTC))
    ran = []
    for section in ("Pipelines as code", "Operations"):
        for block in code_blocks(section, "bash"):
            for line in block.splitlines():
                words = shlex.split(line, comments=True)
                if words[:1] != ["th2etl"] or "--api" in words or "import-legacy" in words:
                    continue
                run_id = "r-running" if words[1] == "cancel" else "r-done"
                args = [run_id if word == "RUN_ID" else word for word in words[1:]]
                code, out, err = cli(*args)
                expected = 1 if words[1:3] == ["logs", "RUN_ID"] and "--follow" in words else 0
                assert code == expected, (line, out, err)
                ran.append(words[1])
    assert {"apply", "export", "runs", "logs", "cancel", "list", "next", "prune", "notify"} <= set(
        ran
    )
