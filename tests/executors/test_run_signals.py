"""``th2etl run`` as a real process: SIGTERM and SIGINT cancel its run, which is recorded
``cancelled`` (after the grace period when the run ignores its cancel)."""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Iterator

import pytest

from tests.api.conftest import postgres_settings_env
from tests.conftest import ROOT, PostgresServer, subprocess_env, wait_until
from th2etl import DatabaseStorage, RunStatus
from th2etl.storage.base import Storage

from . import blocs  # registers the test bloc types

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

# ``th2etl run``, in a process that can import the test bloc types (as a user's plugin would).
COMMAND = (
    f"import {blocs.__name__}, sys; from th2etl.runner import main; sys.exit(main(sys.argv[1:]))"
)


@pytest.fixture
def storage(postgres: PostgresServer, pg_schema: str) -> Iterator[Storage]:
    with DatabaseStorage(postgres.url, schema=pg_schema) as storage:
        storage.create_bloc("nap", "test_sleeper", config={"seconds": 60})
        storage.create_bloc("stuck", "test_sleeper", config={"seconds": 60, "stubborn": True})
        storage.create_pipeline("napping", stages=[["nap"]])
        storage.create_pipeline("stuck", stages=[["stuck"]])
        yield storage


@pytest.mark.parametrize(
    ("pipeline", "executor", "signum", "error"),
    [
        ("napping", "thread", signal.SIGINT, "the run was cancelled"),
        ("stuck", "thread", signal.SIGTERM, "the run did not stop within 1s of its cancel"),
        ("napping", "process", signal.SIGTERM, "the run was cancelled"),
    ],
)
def test_a_signal_cancels_the_run_of_th2etl_run(
    storage: Storage,
    postgres: PostgresServer,
    pg_schema: str,
    pipeline: str,
    executor: str,
    signum: signal.Signals,
    error: str,
) -> None:
    env = subprocess_env(
        **postgres_settings_env(postgres, pg_schema),
        TH2ETL_EXECUTOR=executor,
        TH2ETL_CANCEL_GRACE="1",
    )
    process = subprocess.Popen(
        [sys.executable, "-c", COMMAND, "run", pipeline],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        lines = []
        for line in process.stdout:  # the bloc runs once its start is printed
            lines.append(line)
            if line.strip().startswith("started"):
                break
        else:
            pytest.fail(f"th2etl run ended before its bloc started: {lines} {process.stderr}")
        process.send_signal(signum)
        out, err = process.communicate(timeout=60)
    finally:
        process.kill()
        process.wait()
    assert process.returncode == 128 + signum, (out, err)
    assert f"received {signum.name}: cancelling the run (it has 1s to stop)" in err
    [run] = storage.list_runs(pipeline_name=pipeline)
    assert run.status is RunStatus.CANCELLED
    assert run.error is not None and run.error.startswith(error)
    assert f"run id: {run.run_id}" in out


def test_a_killed_th2etl_run_leaves_its_run_abandoned_by_a_live_process(
    storage: Storage, postgres: PostgresServer, pg_schema: str
) -> None:
    from th2etl.storage.owner import RunOwner

    env = subprocess_env(
        **postgres_settings_env(postgres, pg_schema), TH2ETL_HEARTBEAT_INTERVAL="2"
    )
    process = subprocess.Popen(
        [sys.executable, "-c", COMMAND, "run", "napping"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert process.stdout is not None
        for line in process.stdout:  # the bloc runs once its start is printed
            if line.strip().startswith("started"):
                break
    finally:
        process.kill()  # as the kernel's out-of-memory killer would: nothing to clean up
        process.communicate()
    [run] = storage.list_runs(pipeline_name="napping")
    assert run.status is RunStatus.RUNNING and run.started_by == "cli"
    # Any live th2etl process with the same heartbeat settings marks it, within two periods.
    with RunOwner(storage, kind="python", heartbeat_interval=2):  # type: ignore[arg-type]
        wait_until(
            lambda: storage.get_run(run.run_id).status is RunStatus.ABANDONED,
            timeout=30,
            what="the killed run to be marked abandoned",
        )
    error = storage.get_run(run.run_id).error
    assert error is not None and error.startswith("abandoned: its owner sent no heartbeat for")
