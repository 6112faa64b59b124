"""Every kind of owner, killed by SIGKILL while its run goes: the API service, ``th2etl run``, a
scheduler and Python with storage (``storage.run_pipeline``). Another live th2etl process on
the database (a RunOwner heartbeating in a process of its own) marks the run ``abandoned``
within two heartbeat periods of the owner's last heartbeat. Real processes, real signals."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from th2etl.helpers.th2etl_client import Th2etlClient
from th2etl.pipelines.result import RunStatus
from th2etl.storage import PostgresStorage

from ..api.servers import free_port
from ..conftest import ROOT, PostgresServer, subprocess_env, wait_until
from . import lease_blocs

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

assert lease_blocs  # registers test_lease_hold

HERE = Path(__file__).resolve().parent
HEARTBEAT = "2"  # seconds, for every process: runs are stale 3 s after their last heartbeat


@pytest.fixture
def storage(postgres: PostgresServer, pg_schema: str, tmp_path: Path) -> Iterator[PostgresStorage]:
    with PostgresStorage(postgres.url, schema=pg_schema) as opened:
        files = {
            name: str(tmp_path / name) for name in ("pid_file", "release_file", "stopped_file")
        }
        opened.create_bloc("hold", "test_lease_hold", config=files)
        opened.create_pipeline("held", stages=[["hold"]])
        yield opened


@pytest.fixture
def watcher(postgres: PostgresServer, storage: PostgresStorage) -> Iterator[subprocess.Popen[str]]:
    """Another live th2etl process: an owner of a run of its own, heartbeating."""
    command = [sys.executable, str(HERE / "owner_process.py"), postgres.url, storage.schema,
               "watcher", HEARTBEAT]  # fmt: skip
    process = subprocess.Popen(
        command, env=subprocess_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    assert process.stdout is not None
    assert "ready" in json.loads(process.stdout.readline() or "{}")
    yield process
    process.kill()
    process.communicate(timeout=30)


@pytest.mark.parametrize("kind", ["api", "cli", "scheduler", "python"])
def test_a_killed_owners_run_is_abandoned_by_another_live_process(
    postgres: PostgresServer,
    storage: PostgresStorage,
    watcher: subprocess.Popen[str],
    tmp_path: Path,
    kind: str,
) -> None:
    if kind == "scheduler":
        storage.create_trigger("minutely", cron_expression="* * * * *")
        storage.create_scheduler("held_minutely", "held", "minutely")
    port = free_port()
    env = subprocess_env(
        DATABASE_URL=postgres.url,
        DATABASE_SCHEMA=storage.schema,
        TH2ETL_HEARTBEAT_INTERVAL=HEARTBEAT,
        TH2ETL_EXECUTOR="process",
    )
    owner = subprocess.Popen(
        [sys.executable, "-m", "tests.storage.killed_owner_process", kind, str(port)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,  # its worker processes die with it
    )
    try:
        if kind == "api":
            client = Th2etlClient(f"http://127.0.0.1:{port}", timeout=30)

            def up() -> bool:
                try:
                    return bool(client.health_check()["status"] == "ok")
                except Exception:
                    return False

            wait_until(up, timeout=60, what="the service to answer")
            client.run_pipeline("held")
        pid_file = tmp_path / "pid_file"
        wait_until(pid_file.exists, timeout=60, what=f"the {kind} run's bloc to start")
        [run] = [r for r in storage.list_runs(pipeline_name="held")]
        assert run.status is RunStatus.RUNNING
        os.killpg(owner.pid, signal.SIGKILL)
        owner.wait(timeout=30)
        wait_until(
            lambda: storage.get_run(run.run_id).status is RunStatus.ABANDONED,
            timeout=60,
            what=f"the killed {kind} owner's run to be abandoned",
        )
    finally:
        if owner.poll() is None:
            os.killpg(owner.pid, signal.SIGKILL)
        _, err = owner.communicate(timeout=30)
    record = storage.get_run(run.run_id)
    assert record.error is not None
    assert record.error.startswith("abandoned: its owner sent no heartbeat for 3s"), err
    assert record.started_by == {"api": "api", "cli": "cli", "python": "python"}.get(
        kind, "scheduler:held_minutely"
    )
    # The watcher, not this test, marked it: this process never asked.
    assert watcher.poll() is None
    assert storage.get_run("watcher").status is RunStatus.RUNNING
