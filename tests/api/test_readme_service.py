"""The README's API Service, Usage, Logging and th2etl API Client examples work as written."""

from __future__ import annotations

import shlex
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.api.servers import uvicorn_server
from tests.readme import code_blocks, run_snippet
from th2etl.configs.logging import reset_logging
from th2etl.runner import build_parser


def test_api_service_snippet_runs(
    tmp_path: Path, clean_env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    clean_env.chdir(tmp_path)
    (snippet,) = code_blocks("API Service")
    run_snippet(snippet, tmp_path, "api_service")
    assert capsys.readouterr().out == "double\n"


def _command_lines(section: str) -> Iterator[list[str]]:
    for block in code_blocks(section, "bash"):
        for line in block.splitlines():
            words = shlex.split(line, comments=True)
            if words[:1] == ["th2etl"]:
                yield words[1:]
            elif words[:3] == ["python", "-m", "th2etl.runner"]:
                yield words[3:]


@pytest.mark.parametrize("section", ["API Service", "Usage", "Pipelines as code", "Operations"])
def test_every_documented_command_is_valid(section: str) -> None:
    commands = list(_command_lines(section))
    assert commands
    for args in commands:
        if "--help" in args:
            continue
        parsed = build_parser().parse_args(args)
        assert parsed.handler is not None


def test_logging_snippet_writes_the_module_files(
    tmp_path: Path, clean_env: pytest.MonkeyPatch
) -> None:
    clean_env.chdir(tmp_path)
    (snippet,) = code_blocks("Logging")
    try:
        run_snippet(snippet, tmp_path, "logging_example")
    finally:
        reset_logging()
    message = "written to logs/scheduler.log and logs/th2etl.log"
    assert message in (tmp_path / "logs" / "scheduler.log").read_text()
    assert message in (tmp_path / "logs" / "th2etl.log").read_text()
    assert message not in (tmp_path / "logs" / "api.log").read_text()


def test_th2etl_api_client_snippets_run_against_a_real_service(
    tmp_path: Path, clean_env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from th2etl.api import create_app
    from th2etl.storage import DatabaseStorage

    clean_env.chdir(tmp_path)
    (tmp_path / "data.csv").write_text("units\n2\n")
    first, second = code_blocks("th2etl API Client")
    with (
        DatabaseStorage(tmp_path / "th2etl.db") as storage,
        uvicorn_server(create_app(storage, start_scheduler=False, api_key="")) as url,
    ):
        clean_env.setenv("TH2ETL_API_URL", url)
        run_snippet(first, tmp_path, "client_seed")
        out = capsys.readouterr().out.splitlines()
        assert out[0] == "Service status: ok"
        assert out[1].startswith("Created bloc: {'name': 'my-new-bloc', 'bloc_type': 'csv_loader'")
        assert out[2] == "Found 0 pipelines."

        run_snippet(second, tmp_path, "client_more")
        out = capsys.readouterr().out.splitlines()
        assert out[0] == "graph TD"
        assert out[1] == "succeeded ['my-new-bloc', 'double']"
        assert out[2].startswith("404 pipeline 'no_such_pipeline' does not exist")
