"""th2etl runs, logs [--follow] and cancel, on the database and through --api."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import pytest

from tests.api.servers import uvicorn_server
from tests.cli.conftest import Cli
from th2etl.cli import history
from th2etl.pipelines.result import RunStatus

T0 = datetime(2026, 11, 25, 6, 0, tzinfo=UTC)


def _history(cli: Cli) -> list[str]:
    """Three recorded runs of two pipelines; the newest is still running."""
    cli.storage.create_bloc("double", "example_transformer", config={"factor": 2})
    cli.storage.create_pipeline("sales", [["double"]])
    cli.storage.create_pipeline("stock", [["double"]])
    ids = []
    for i, (pipeline, status, error) in enumerate(
        [
            ("sales", "succeeded", None),
            ("stock", "failed", "boom: the source\nis gone"),
            ("sales", None, None),
        ]
    ):
        run_id = f"run-{i}"
        cli.storage.start_run(
            run_id,
            pipeline,
            started_at=T0 + timedelta(minutes=i),
            scheduler_name="nightly" if i == 0 else None,
        )
        cli.storage.append_run_log(run_id, f"log of {run_id}\n")
        if status:
            finished = T0 + timedelta(minutes=i, seconds=90)
            cli.storage.finish_run(run_id, status, finished_at=finished, error=error)
        ids.append(run_id)
    return ids


def test_runs_lists_newest_first_filtered_as_a_table_and_as_json(cli: Cli) -> None:
    _history(cli)
    code, out, _ = cli("runs")
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split() == [
        "RUN",
        "ID",
        "PIPELINE",
        "STATUS",
        "STARTED",
        "DURATION",
        "BY",
        "ERROR",
    ]
    assert [line.split()[0] for line in lines[1:]] == ["run-2", "run-1", "run-0"]
    rows = {line.split()[0]: line.split(maxsplit=7) for line in lines[1:]}
    assert rows["run-1"] == [
        "run-1",
        "stock",
        "failed",
        "2026-11-25",
        "06:01:00Z",
        "1m30s",
        "manual",
        "boom: the source",
    ]
    assert rows["run-0"][5:] == ["1m30s", "nightly"]
    assert rows["run-2"][2] == "running" and rows["run-2"][5] == "-"

    code, out, _ = cli("runs", "--pipeline", "sales", "--status", "succeeded", "--json")
    assert code == 0
    (run,) = json.loads(out)
    assert run["run_id"] == "run-0" and run["scheduler_name"] == "nightly"
    assert cli("runs", "--limit", "1", "--json")[1].count('"run_id"') == 1
    assert "no runs with pipeline 'nope' in " in cli("runs", "--pipeline", "nope")[1]


def test_bad_filters_are_refused_with_the_choices(cli: Cli) -> None:
    with pytest.raises(SystemExit):
        cli("runs", "--status", "done")
    err = cli.capsys.readouterr().err
    assert "invalid choice: 'done'" in err and "succeeded" in err
    with pytest.raises(SystemExit):
        cli("runs", "--limit", "many")
    assert "'many' is not a number of runs; use a whole number from 1 to 10000" in (
        cli.capsys.readouterr().err
    )


def test_logs_prints_the_log_and_follows_a_running_run_until_it_ends(
    cli: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    _history(cli)
    code, out, _ = cli("logs", "run-1")
    assert (code, out) == (0, "log of run-1\n")

    # The running run grows and fails while it is being followed: at the first poll's pause.
    def pause(seconds: float) -> None:
        if not cli.storage.get_run("run-2").status.finished:
            cli.storage.append_run_log("run-2", "stage 1 failed\n")
            cli.storage.finish_run(
                "run-2", "failed", finished_at=T0 + timedelta(hours=1), error="x"
            )

    monkeypatch.setattr(history, "time", SimpleNamespace(sleep=pause))
    code, out, _ = cli("logs", "run-2", "--follow")
    assert code == 1
    assert out == "log of run-2\nstage 1 failed\nrun run-2 failed\n"

    code, out, _ = cli("logs", "run-0", "--follow", "--json")
    assert code == 0
    assert json.loads(out) == {"run_id": "run-0", "status": "succeeded", "log": "log of run-0\n"}


def test_unknown_run_names_the_database_and_the_command_that_lists_runs(cli: Cli) -> None:
    code, _, err = cli("logs", "nope")
    assert code == 1
    assert err.startswith("th2etl: error: run 'nope' does not exist in ")
    assert "'th2etl runs' lists the latest runs" in err


def test_cancel_sets_the_flag_of_a_running_run_and_refuses_an_ended_one(cli: Cli) -> None:
    _history(cli)
    code, out, _ = cli("cancel", "run-2")
    assert code == 0
    assert out.startswith("cancel requested for run run-2 of pipeline 'sales' (running)")
    assert cli.storage.cancel_requested("run-2")

    code, _, err = cli("cancel", "run-0")
    assert code == 1
    assert "run run-0 already finished (succeeded); there is nothing to cancel" in err
    assert not cli.storage.cancel_requested("run-0")


@pytest.fixture
def service(cli: Cli, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """The API over the same database, served by uvicorn, with the key in TH2ETL_API_KEY."""
    from th2etl.api import create_app

    monkeypatch.setenv("TH2ETL_API_KEY", "cli-key")
    app = create_app(cli.storage, api_key="cli-key", start_scheduler=False)
    with uvicorn_server(app) as url:
        yield url


@pytest.mark.slow
def test_every_looking_command_answers_the_same_through_api(cli: Cli, service: str) -> None:
    _history(cli)
    cli.storage.create_trigger("at_six", "sales", "0 6 * * *", timezone="Europe/Paris")
    cli.storage.create_scheduler("nightly", "sales", "at_six")
    for args in (
        ["runs", "--json"],
        ["runs", "--status", "failed", "--json"],
        ["logs", "run-1", "--json"],
        ["list", "pipelines", "--json"],
        ["list", "schedulers", "--json"],
        ["next", "nightly", "-n", "3", "--after", "2026-03-28T00:00Z", "--json"],
    ):
        local = cli(*args)
        remote = cli(*args, "--api", service)
        assert remote == local, args
    code, out, _ = cli("cancel", "run-2", "--api", service, "--json")
    assert code == 0 and json.loads(out)["cancel_requested"] is True
    assert cli.storage.cancel_requested("run-2")
    code, _, err = cli("cancel", "run-0", "--api", service)
    assert code == 1 and "HTTP 409: run run-0 already finished (succeeded)" in err


@pytest.mark.slow
def test_a_wrong_key_or_an_unreachable_service_is_named(
    cli: Cli, service: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TH2ETL_API_KEY", "wrong")
    code, _, err = cli("runs", "--api", service)
    assert code == 1 and "HTTP 401" in err
    monkeypatch.delenv("TH2ETL_API_KEY")
    code, _, err = cli("runs", "--api", "http://127.0.0.1:9")
    assert code == 1 and "cannot reach the th2etl API at http://127.0.0.1:9" in err


def test_runs_status_choices_are_the_run_statuses() -> None:
    from th2etl.cli import build_parser

    parsed = build_parser().parse_args(["runs", "--status", RunStatus.ABANDONED.value])
    assert parsed.status == "abandoned" and parsed.limit == 20
