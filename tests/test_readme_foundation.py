"""The README's opening commands and its engine and bloc snippets run as written."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import subprocess_env
from tests.readme import README, code_blocks, run_snippet, section


def test_the_readme_opens_with_the_demo_and_the_test_command() -> None:
    text = README.read_text()
    commands = [line for line in text.splitlines() if line.startswith("python3 -m venv")]
    assert commands[0].endswith("demo-env/bin/th2etl demo")
    ci = (README.parent / ".ci" / "run").read_text().strip().splitlines()[-1]
    assert commands[1] == ci


def test_design_snippets_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    # The files the README tells a newcomer to make, made as it says.
    (make_sales,) = code_blocks("A pipeline in Python", "bash")
    subprocess.run(["bash", "-c", make_sales], cwd=tmp_path, check=True)
    assert "`cp sales.csv 2026-11-25.csv`" in section("Config values that stay out of the database")
    shutil.copy(tmp_path / "sales.csv", tmp_path / "2026-11-25.csv")
    first, streaming, second = code_blocks("Design")
    result = run_snippet(first, tmp_path, "pipeline")["result"]
    assert result.succeeded  # type: ignore[attr-defined]
    assert (tmp_path / "doubled.csv").read_text() == "day,units\n2026-11-24,6\n2026-11-25,8\n"
    (tmp_path / "doubled.csv").unlink()
    streamed = run_snippet(streaming, tmp_path, "streaming")["result"]
    assert streamed.blocs["load"].batches_out == 1  # type: ignore[attr-defined]
    assert streamed.blocs["export"].rows_in == 2  # type: ignore[attr-defined]
    assert (tmp_path / "doubled.csv").read_text() == "day,units\n2026-11-24,6\n2026-11-25,8\n"
    namespace = run_snippet(second, tmp_path, "references")
    assert namespace["result"].outputs["load"] == [  # type: ignore[attr-defined]
        {"day": "2026-11-24", "units": "3"},
        {"day": "2026-11-25", "units": "4"},
    ]


def test_custom_bloc_snippet_registers_a_working_type(tmp_path: Path) -> None:
    from th2etl import Pipeline, RunContext, create_bloc
    from th2etl.blocs import unregister_bloc

    (snippet,) = code_blocks("Your own bloc types")
    try:
        run_snippet(snippet, tmp_path, "custom")
        bloc = create_bloc("up", "uppercase", {"column": "name"})
        assert bloc.run(RunContext("p"), [{"name": "ada"}]) == [{"name": "ADA"}]
        assert Pipeline("p", [[bloc]]).stage_names == [["up"]]
    finally:
        unregister_bloc("uppercase")


def test_demo_command_runs_end_to_end(tmp_path: Path) -> None:
    import subprocess
    import sys

    def demo() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "th2etl.runner", "demo"],
            cwd=tmp_path,
            env=subprocess_env(),
            capture_output=True,
            text=True,
            timeout=120,
        )

    done = demo()
    assert done.returncode == 0, done.stderr
    assert "pipeline 'example_pipeline' succeeded" in done.stdout
    for bloc in ("example_loader", "transformer_a", "transformer_b", "example_exporter"):
        assert f"succeeded {bloc}" in done.stdout
    # on the embedded default: a SQLite file, with the run in its history
    assert f"storage: SQLite database at {tmp_path / 'th2etl.db'}" in done.stdout
    assert "example_pipeline has 1 run(s) in history" in done.stdout
    again = demo()
    assert "example_pipeline has 2 run(s) in history" in again.stdout, again.stderr
    assert (tmp_path / "th2etl_demo_output" / "example_output.csv").exists()
