"""The th2etl command, run as a real subprocess: python -m th2etl.runner ..."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

from tests.api.servers import free_port, wait_until
from tests.conftest import PostgresServer, subprocess_env
from tests.tcp_proxy import TcpProxy

pytestmark = pytest.mark.slow


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    paths = {
        "TH2ETL_SQLITE_PATH": str(tmp_path / "th2etl.db"),
        "TH2ETL_HOME": str(tmp_path / "state"),
    }
    return subprocess_env(**{**paths, **extra})


def th2etl(
    tmp_path: Path, *args: str, env: Mapping[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "th2etl.runner", *args],
        env=dict(env) if env is not None else _env(tmp_path),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def test_version_and_help_list_every_command_with_an_example(tmp_path: Path) -> None:
    from th2etl import __version__

    version = th2etl(tmp_path, "--version")
    assert version.returncode == 0
    assert version.stdout.strip() == f"th2etl {__version__}"
    help_ = th2etl(tmp_path, "--help")
    assert help_.returncode == 0
    for example in (
        "th2etl --serve-api --host 0.0.0.0 --port 8080",
        "th2etl --background --env SOURCE=prod",
        "th2etl --serve-api --background",
        "th2etl status",
        "th2etl stop",
        "th2etl run daily_sales --var day=2026-11-25",
        "th2etl demo",
    ):
        assert example in help_.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--port", "http"], r"argument --port: 'http' is not a port number; use a whole number"),
        (["--port", "70000"], r"argument --port: 70000 is out of range; use a port from 1 to"),
        (["--env", "SOURCE"], r"argument --env: 'SOURCE' has no '='; write --env KEY=VALUE"),
        (["--env", "=prod"], r"argument --env: '=prod' has an empty name before '='"),
        (["run", "daily", "--var", "day"], r"argument --var: 'day' has no '='; write --var"),
        (["--background", "status"], r"--background start the service and cannot be combined"),
        (
            ["--port", "8001"],
            r"--port applies only to the REST API, which runs with --serve-api: "
            r"'th2etl --serve-api --port 8001'",
        ),
        (
            ["--background", "--host", "0.0.0.0", "--insecure-no-auth"],
            r"--host, --insecure-no-auth apply only to the REST API, which runs with --serve-api",
        ),
        (["--port", "8001", "run", "daily"], r"--port applies only to the REST API"),
    ],
)
def test_bad_arguments_are_clear_errors(tmp_path: Path, args: list[str], message: str) -> None:
    result = th2etl(tmp_path, *args)
    assert result.returncode == 2
    import re

    assert re.search(message, result.stderr), result.stderr
    assert not (tmp_path / "state").exists()


def test_bad_logging_config_is_refused_at_start_up(tmp_path: Path) -> None:
    result = th2etl(tmp_path, env=_env(tmp_path, LOG_LEVELS="th2etl.scheduler"))
    assert result.returncode == 2
    assert "LOG_LEVELS entry 'th2etl.scheduler' is not logger:LEVEL" in result.stderr


def test_non_loopback_host_without_key_is_refused(tmp_path: Path) -> None:
    result = th2etl(tmp_path, "--serve-api", "--host", "0.0.0.0", "--port", str(free_port()))
    assert result.returncode == 2
    assert "refusing to serve the API on '0.0.0.0' without an API key" in result.stderr
    assert "TH2ETL_API_KEY" in result.stderr


def test_demo_still_runs(tmp_path: Path) -> None:
    result = th2etl(tmp_path, "demo", "--output-dir", str(tmp_path / "out"))
    assert result.returncode == 0, result.stderr
    assert "succeeded" in result.stdout
    assert list((tmp_path / "out").iterdir())


def test_demo_leaves_a_users_definitions_under_its_names_alone(tmp_path: Path) -> None:
    from th2etl.storage import DatabaseStorage

    # The Quickstart's definitions use the demo's names, with a PostgreSQL exporter.
    with DatabaseStorage(tmp_path / "th2etl.db") as storage:
        storage.create_bloc("example_loader", "csv_loader", config={"file_path": "data.csv"})
        storage.create_bloc(
            "example_exporter",
            "postgres_exporter",
            config={"table_name": "processed_data", "source_bloc": "transformer_a"},
        )
        revision = storage.revision()
    result = th2etl(tmp_path, "demo", "--output-dir", str(tmp_path / "out"))
    assert result.returncode == 1, result.stdout + result.stderr
    assert (
        f"th2etl: error: SQLite database at {tmp_path / 'th2etl.db'} already holds definitions "
        "of its own under the demo's names (bloc 'example_loader' has the config "
        "{'file_path': 'data.csv'}); the demo leaves them as they are. Run that pipeline with "
        "'th2etl run example_pipeline', or the demo on a SQLite file of its own"
    ) in result.stderr
    with DatabaseStorage(tmp_path / "th2etl.db") as storage:
        assert storage.revision() == revision
        assert storage.get_bloc("example_exporter").bloc_type == "postgres_exporter"
        assert storage.list_pipelines() == []
        assert storage.list_runs() == []


def test_progress_counts_one_stage_and_one_bloc_in_the_singular(tmp_path: Path) -> None:
    import io

    from th2etl import Pipeline, create_bloc
    from th2etl.runner import ProgressPrinter

    out = io.StringIO()
    Pipeline("one", [[create_bloc("double", "example_transformer")]]).run(
        listeners=[ProgressPrinter(out)]
    )
    assert "of pipeline 'one' started (1 stage, 1 bloc)\n" in out.getvalue()


def test_status_and_stop_without_a_service(tmp_path: Path) -> None:
    status = th2etl(tmp_path, "status")
    assert status.returncode == 3
    assert "not running in the background (no pid file in" in status.stdout
    stop = th2etl(tmp_path, "stop")
    assert stop.returncode == 0
    assert "not running" in stop.stdout


def test_stale_pid_file_is_reported_and_removed(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    # A PID that is certainly dead: a child we started and reaped.
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (state / "th2etl.pid").write_text(
        json.dumps(
            {
                "pid": dead.pid,
                "command": [sys.executable, "-m", "th2etl.runner"],
                "started_at": "2026-11-25T08:00:00+00:00",
                "log_file": str(state / "th2etl-service.log"),
            }
        )
    )
    status = th2etl(tmp_path, "status")
    assert status.returncode == 3
    assert f"removed a stale pid file for PID {dead.pid}" in status.stdout
    assert not (state / "th2etl.pid").exists()


def _get(url: str) -> tuple[int, dict[str, object]]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, json.loads(exc.read())


@pytest.fixture
def background(tmp_path: Path) -> Iterator[tuple[Path, int]]:
    """Whatever a test starts in the background is stopped afterwards, even on failure."""
    port = free_port()
    yield tmp_path, port
    result = th2etl(tmp_path, "stop", "--timeout", "20", "--force")
    assert result.returncode == 0, result.stderr


def test_background_api_service_starts_answers_health_and_stops(
    background: tuple[Path, int],
) -> None:
    tmp_path, port = background
    started = th2etl(
        tmp_path,
        "--serve-api",
        "--port",
        str(port),
        "--background",
        "--env",
        "SOURCE=prod",
        "--env",
        "LOG_LEVEL=DEBUG",
    )
    assert started.returncode == 0, started.stderr
    lines = dict(line.split(": ", 1) for line in started.stdout.splitlines() if ": " in line)
    pid = int(lines["PID"])
    log_file = Path(lines["log"])
    assert log_file.parent == tmp_path / "state"

    url = f"http://127.0.0.1:{port}/health"
    wait_until(lambda: _reachable(url), timeout=30, what=f"{url} to answer")
    status_code, body = _get(url)
    assert status_code == 200, body
    assert body["status"] == "ok"
    assert body["components"] == {
        "database": {"status": "up"},
        "scheduler": {"status": "up", "state": "running"},
        "executor": {"status": "up", "kind": "process"},
    }

    # The detached process got the --env variables and lives in its own session.
    environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    assert b"SOURCE=prod" in environ
    assert os.getsid(pid) == pid

    status = th2etl(tmp_path, "status")
    assert status.returncode == 0
    assert f"running in the background: PID {pid}" in status.stdout

    again = th2etl(tmp_path, "--serve-api", "--port", str(free_port()), "--background")
    assert again.returncode != 0
    assert f"already runs in the background from {tmp_path / 'state'} (PID {pid}" in again.stderr

    stopped = th2etl(tmp_path, "stop")
    assert stopped.returncode == 0, stopped.stderr
    assert f"th2etl stopped (PID {pid})" in stopped.stdout
    assert not _reachable(url)
    assert not (tmp_path / "state" / "th2etl.pid").exists()
    assert "th2etl API stopped" in log_file.read_text()


def _reachable(url: str) -> bool:
    try:
        _get(url)
    except OSError:
        return False
    return True


def test_a_taken_port_is_refused_before_detaching(tmp_path: Path) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = th2etl(tmp_path, "--serve-api", "--port", str(port), "--background")
    assert result.returncode == 2
    assert f"cannot listen on 127.0.0.1:{port}: Address already in use" in result.stderr
    assert not (tmp_path / "state" / "th2etl.pid").exists()


def test_background_service_that_dies_while_starting_is_reported_with_its_log(
    tmp_path: Path,
) -> None:
    # The SQLite file cannot be created (its folder is a file): only the service finds out.
    (tmp_path / "not_a_folder").write_text("")
    env = _env(tmp_path, TH2ETL_SQLITE_PATH=str(tmp_path / "not_a_folder" / "th2etl.db"))
    (tmp_path / "state").mkdir()
    (tmp_path / "state" / "th2etl-service.log").write_text("a line of an earlier start\n")
    result = th2etl(tmp_path, "--background", env=env)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "the background service exited while starting, with status 1" in result.stderr
    assert "not_a_folder" in result.stderr
    assert "an earlier start" not in result.stderr  # only this start's part of the log
    assert not (tmp_path / "state" / "th2etl.pid").exists()


@contextlib.contextmanager
def foreground_scheduler(tmp_path: Path, env: Mapping[str, str]) -> Iterator[subprocess.Popen[str]]:
    """``th2etl`` with no arguments, its log on stdout; killed if the test leaves it running."""
    process = subprocess.Popen(
        [sys.executable, "-m", "th2etl.runner"],
        env=dict(env),
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        yield process
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()


def read_until(process: subprocess.Popen[str], text: str, timeout: float = 60) -> str:
    """The process's output lines up to the first holding ``text`` (asserted)."""
    assert process.stdout is not None
    seen = ""
    started = time.monotonic()
    while text not in seen and time.monotonic() - started < timeout:
        seen += process.stdout.readline()
    assert text in seen
    return seen


def stop_with_sigterm(process: subprocess.Popen[str]) -> str:
    process.send_signal(signal.SIGTERM)
    output, _ = process.communicate(timeout=30)
    assert process.returncode == 0, output
    return output


def test_foreground_scheduler_stops_on_sigterm(tmp_path: Path) -> None:
    with foreground_scheduler(tmp_path, _env(tmp_path)) as process:
        seen = read_until(process, "scheduler started")
        output = stop_with_sigterm(process)
    assert "received SIGTERM: stopping" in seen + output


@pytest.mark.postgres
def test_foreground_scheduler_waits_for_a_database_that_is_down_at_start(
    tmp_path: Path, postgres: PostgresServer, pg_schema: str
) -> None:
    with TcpProxy(postgres.host, postgres.port) as proxy:
        proxy.stop()  # the port is known and refuses connections: the database is "down"
        url = f"postgresql://{postgres.user}@127.0.0.1:{proxy.port}/{postgres.dbname}"
        env = _env(tmp_path, DATABASE_URL=url, DATABASE_SCHEMA=pg_schema)
        with foreground_scheduler(tmp_path, env) as process:
            # Other threads (notifications) may log their own wait first: find the line.
            seen = read_until(process, "database unavailable:")
            first = next(line for line in seen.splitlines() if "database unavailable:" in line)
            assert f"127.0.0.1:{proxy.port}" in first
            assert "retrying in 1s" in first
            proxy.start()  # the database comes back on the same address
            read_until(process, "scheduler started")
            stop_with_sigterm(process)


@pytest.mark.postgres
def test_foreground_scheduler_stopped_while_it_waits_for_its_database(
    tmp_path: Path, postgres: PostgresServer, pg_schema: str
) -> None:
    # The start-up's SIGTERM handler only sets a flag (raising from it broke whatever the main
    # thread was doing, an import half done); the wait looks at it between its short sleeps.
    with TcpProxy(postgres.host, postgres.port) as proxy:
        proxy.stop()
        url = f"postgresql://{postgres.user}@127.0.0.1:{proxy.port}/{postgres.dbname}"
        env = _env(tmp_path, DATABASE_URL=url, DATABASE_SCHEMA=pg_schema)
        with foreground_scheduler(tmp_path, env) as process:
            seen = read_until(process, "database unavailable:")
            output = stop_with_sigterm(process)
    assert "received SIGTERM: stopping" in seen + output
    assert "scheduler started" not in seen + output
    assert "Traceback" not in seen + output


def _store_sales_pipeline(tmp_path: Path) -> None:
    from th2etl.storage import DatabaseStorage

    (tmp_path / "sales-2026-03-07.csv").write_text("region,units\nnorth,3\nsouth,5\n")
    with DatabaseStorage(tmp_path / "th2etl.db") as storage:
        storage.create_bloc(
            "load", "csv_loader", config={"file_path": str(tmp_path / "sales-${var:day}.csv")}
        )
        storage.create_bloc("double", "example_transformer", config={"factor": 2})
        storage.create_bloc(
            "export", "csv_exporter", config={"file_path": str(tmp_path / "out-${var:day}.csv")}
        )
        storage.create_pipeline("sales", stages=[["load"], ["double"], ["export"]])


def test_run_shows_live_progress_and_records_the_run(tmp_path: Path) -> None:
    from th2etl.storage import DatabaseStorage

    _store_sales_pipeline(tmp_path)
    result = th2etl(tmp_path, "run", "sales", "--var", "day=2026-03-07")
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert (
        lines[0].startswith("run ")
        and "of pipeline 'sales' started (3 stages, 3 blocs)" in lines[0]
    )
    # The three blocs stream: they start together, and finish as their rows run out.
    assert lines[1:4] == ["  started   load", "  started   double", "  started   export"]
    finished = sorted(lines[4:7])
    assert finished[0].startswith("  succeeded double  rows in 2 out 2  ")
    assert finished[1].startswith("  succeeded export  rows in 2 out 1  ")
    assert finished[2].startswith("  succeeded load  rows in 0 out 2  ")
    assert lines[7].startswith("pipeline 'sales' succeeded in ")
    run_id = lines[8].removeprefix("run id: ")
    assert (tmp_path / "out-2026-03-07.csv").read_text().splitlines()[1:] == ["north,6", "south,10"]
    with DatabaseStorage(tmp_path / "th2etl.db") as storage:
        run = storage.get_run(run_id)
    assert run.status == "succeeded"
    assert run.variables == {"day": "2026-03-07"}
    assert [bloc.bloc_name for bloc in run.blocs] == ["load", "double", "export"]


def test_run_exits_non_zero_on_failure_and_on_unknown_pipeline(tmp_path: Path) -> None:
    from th2etl.storage import DatabaseStorage

    _store_sales_pipeline(tmp_path)
    failed = th2etl(tmp_path, "run", "sales", "--var", "day=1999-01-01")
    assert failed.returncode == 1
    assert "  failed    load  rows in 0 out 0" in failed.stdout
    assert "sales-1999-01-01.csv" in failed.stdout
    assert "  skipped   double" in failed.stdout
    assert "pipeline 'sales' failed in " in failed.stdout
    with DatabaseStorage(tmp_path / "th2etl.db") as storage:
        assert [run.status for run in storage.list_runs(pipeline_name="sales")] == ["failed"]

    unknown = th2etl(tmp_path, "run", "nope")
    assert unknown.returncode == 1
    assert (
        f"th2etl: error: pipeline 'nope' does not exist in SQLite database at "
        f"{tmp_path / 'th2etl.db'}; the stored pipelines are: sales (or check DATABASE_URL)"
    ) in unknown.stderr

    empty = th2etl(tmp_path, "run", "sales", env=_env(tmp_path, TH2ETL_SQLITE_PATH="empty.db"))
    assert empty.returncode == 1
    assert "no pipeline is stored in SQLite database at" in empty.stderr
    assert "create one (storage.create_pipeline in Python, or POST /pipelines)" in empty.stderr


def test_background_scheduler_starts_reports_status_and_stops(
    background: tuple[Path, int],
) -> None:
    tmp_path, _ = background
    started = th2etl(tmp_path, "--background", "--env", "PIPELINE_SOURCE=prod")
    assert started.returncode == 0, started.stderr
    assert started.stdout.startswith("th2etl scheduler started in the background\n")
    pid = int(started.stdout.split("PID: ")[1].split()[0])
    assert os.getsid(pid) == pid
    assert b"PIPELINE_SOURCE=prod" in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    status = th2etl(tmp_path, "status")
    assert status.returncode == 0
    assert f"running in the background: PID {pid}" in status.stdout
    assert f"command: {sys.executable} -m th2etl.runner\n" in status.stdout
    stopped = th2etl(tmp_path, "stop")
    assert stopped.returncode == 0
    assert f"th2etl stopped (PID {pid})" in stopped.stdout
    assert th2etl(tmp_path, "status").returncode == 3
    log = (tmp_path / "state" / "th2etl-service.log").read_text()
    assert "scheduler started on SQLite database at" in log
    assert "received SIGTERM" in log


def test_a_state_folder_that_cannot_be_created_is_named(tmp_path: Path) -> None:
    from th2etl._background import start_background
    from th2etl.exceptions import ConfigurationError

    (tmp_path / "a-file").write_text("")
    folder = tmp_path / "a-file" / "state"
    with pytest.raises(
        ConfigurationError,
        match=rf"cannot create the state folder {folder}: .*; choose another with --state-dir",
    ):
        start_background(["true"], folder, {})


def test_background_refuses_a_bad_env_value_before_detaching(tmp_path: Path) -> None:
    refused = th2etl(tmp_path, "--background", "--env", "LOG_LEVEL=LOUD")
    assert refused.returncode == 2
    assert "th2etl: error: LOG_LEVEL: 'LOUD' is not a log level; use one of DEBUG" in (
        refused.stderr
    )
    assert not (tmp_path / "state" / "th2etl.pid").exists()
