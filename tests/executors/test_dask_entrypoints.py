"""TH2ETL_EXECUTOR set to a Dask cluster: the API service and ``th2etl run`` submit their runs
to it, and ``/health`` reports it."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

import tests.executors.dask_blocs  # noqa: F401 - registers the bloc types here too
from tests.api.conftest import LOCAL
from tests.conftest import ROOT, PostgresServer, process_alive, subprocess_env, wait_until
from tests.executors.conftest import CommandCluster, exported, parent_of, worker_pids
from th2etl.api.app import create_app
from th2etl.configs.settings import get_settings
from th2etl.executors.dask import DaskExecutor
from th2etl.storage import DatabaseStorage

pytestmark = [pytest.mark.postgres, pytest.mark.slow]


@pytest.fixture(scope="module")
def storage(postgres: PostgresServer, dask_schema: str) -> Iterator[DatabaseStorage]:
    env = {"DATABASE_URL": postgres.url, "DATABASE_SCHEMA": dask_schema}
    with DatabaseStorage.from_settings(get_settings(env)) as store:
        yield store


def export_pipeline(storage: DatabaseStorage, rows: int = 3) -> str:
    suffix = uuid.uuid4().hex[:8]
    storage.create_bloc(f"load_{suffix}", "dask_test_rows", {"n": rows})
    storage.create_bloc(f"save_{suffix}", "dask_test_export", {})
    storage.create_pipeline(f"p_{suffix}", [[f"load_{suffix}"], [f"save_{suffix}"]])
    return f"p_{suffix}"


def test_the_service_runs_pipelines_on_the_cluster(
    storage: DatabaseStorage, local_cluster: Any
) -> None:
    app = create_app(
        storage, start_scheduler=False, api_key="", executor=local_cluster.scheduler_address
    )
    pipeline = export_pipeline(storage)
    with TestClient(app, base_url=LOCAL) as client:
        wait_until(
            lambda: client.get("/health").status_code == 200, timeout=30, what="a healthy service"
        )
        assert client.get("/health").json()["components"]["executor"] == {
            "status": "up",
            "kind": "dask",
            "address": local_cluster.scheduler_address,
            "workers": 2,
        }
        started = client.post(f"/pipelines/{pipeline}/run", json={})
        assert started.status_code == 202, started.text
        run_id = started.json()["run_id"]
        wait_until(
            lambda: client.get(f"/runs/{run_id}").json()["status"] == "succeeded",
            timeout=60,
            what="the run to succeed on the cluster",
        )
        executor = app.state.th2etl.runs.executor
        assert isinstance(executor, DaskExecutor)
        workers = set(worker_pids(executor.cluster.client()).values())
    rows = exported(storage, run_id)
    assert [i for i, _ in rows] == [0, 1, 2]
    assert parent_of(rows[0][1]) in workers  # forked by a worker's forker


def test_an_unreachable_cluster_is_down_in_health_and_fails_runs(
    storage: DatabaseStorage,
) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        address = f"tcp://127.0.0.1:{sock.getsockname()[1]}"
    executor = DaskExecutor(address, storage, connect_timeout=0.5)
    app = create_app(storage, start_scheduler=False, api_key="", executor=executor)
    pipeline = export_pipeline(storage)
    with TestClient(app, base_url=LOCAL) as client:
        answer = client.get("/health")
        assert answer.status_code == 503
        body = answer.json()
        assert body["down"] == ["executor"]
        assert body["components"]["executor"]["status"] == "down"
        assert (
            f"the Dask scheduler at {address} cannot be reached"
            in (body["components"]["executor"]["error"])
        )
        run_id = client.post(f"/pipelines/{pipeline}/run", json={}).json()["run_id"]
        wait_until(
            lambda: client.get(f"/runs/{run_id}").json()["status"] == "failed",
            timeout=30,
            what="the run to fail",
        )
        error = client.get(f"/runs/{run_id}").json()["error"]
    assert error.startswith(f"the Dask scheduler at {address} cannot be reached")


def test_th2etl_run_submits_to_the_cluster_the_dask_command_started(
    storage: DatabaseStorage,
    postgres: PostgresServer,
    dask_schema: str,
    dask_command_cluster: CommandCluster,
) -> None:
    from distributed import Client

    pipeline = export_pipeline(storage, rows=2)
    env = subprocess_env(
        DATABASE_URL=postgres.url,
        DATABASE_SCHEMA=dask_schema,
        TH2ETL_EXECUTOR=dask_command_cluster.address,
    )
    # The bloc types' plugin is imported where the run is submitted, as an installed one is.
    script = (
        "import sys, tests.executors.dask_blocs; from th2etl.cli.parser import main; "
        f"sys.exit(main(['run', {pipeline!r}]))"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"pipeline {pipeline!r} succeeded" in done.stdout
    run_id = done.stdout.split("run id: ")[1].split()[0]
    rows = exported(storage, run_id)
    assert [i for i, _ in rows] == [0, 1]
    with Client(dask_command_cluster.address, set_as_default=False) as client:
        assert parent_of(rows[0][1]) in set(worker_pids(client).values())


def test_two_scheduler_processes_on_one_cluster_run_each_tick_exactly_once(
    storage: DatabaseStorage, postgres: PostgresServer, dask_schema: str, local_cluster: Any
) -> None:
    pipeline = export_pipeline(storage, rows=2)
    name = f"s_{pipeline}"
    storage.create_trigger(f"{name}_trigger", pipeline, "* * * * *")
    storage.create_scheduler(name, pipeline, f"{name}_trigger")
    env = subprocess_env(
        DATABASE_URL=postgres.url,
        DATABASE_SCHEMA=dask_schema,
        TH2ETL_EXECUTOR=local_cluster.scheduler_address,
    )
    start = datetime(2026, 5, 15, 10, 0, tzinfo=UTC)
    command = [sys.executable, "-m", "tests.executors.dask_scheduler_process"]
    instances = [
        subprocess.Popen(
            [*command, f"i{n}", start.isoformat()],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
            cwd=ROOT,
        )
        for n in range(2)
    ]

    def step(instant: datetime) -> list[tuple[str, str]]:
        """Both instances advance to ``instant`` at once (they race for its ticks)."""
        for instance in instances:
            assert instance.stdin is not None
            instance.stdin.write(instant.isoformat() + "\n")
            instance.stdin.flush()
        actions = []
        for instance in instances:
            assert instance.stdout is not None
            for result in json.loads(instance.stdout.readline())["results"]:
                if result["scheduler_name"] == name:
                    actions.append((result["scheduled_time"], result["action"]))
        return actions

    def ended(count: int) -> bool:
        runs = storage.list_runs(scheduler_name=name)
        return len(runs) == count and all(run.status.finished for run in runs)

    try:
        for n, instance in enumerate(instances):
            assert instance.stdout is not None
            assert json.loads(instance.stdout.readline()) == {"ready": f"i{n}"}
        actions: list[tuple[str, str]] = []
        for minute in range(1, 3):
            # 15 s steps: each instance sees the other's heartbeats, never a stale owner.
            for second in range(15, 75, 15):
                actions += step(start + timedelta(minutes=minute - 1, seconds=second))
            wait_until(lambda m=minute: ended(m), timeout=60, what=f"run {minute} to end")

    finally:
        for instance in instances:
            assert instance.stdin is not None
            instance.stdin.close()
        for instance in instances:
            instance.wait(timeout=60)
            assert instance.stdout is not None
            instance.stdout.close()
    ticks = [(start + timedelta(minutes=m)).isoformat() for m in range(1, 3)]
    assert sorted(actions) == [(tick, action) for tick in ticks for action in ("started", "taken")]
    runs = storage.list_runs(scheduler_name=name)
    assert {run.status.value for run in runs} == {"succeeded"}
    for run in runs:
        assert [i for i, _ in exported(storage, run.run_id)] == [0, 1]  # once each


@pytest.mark.parametrize("worker_too", [True, False], ids=["owner-and-worker", "owner-only"])
def test_a_run_whose_owner_died_ends_abandoned_executed_once(
    storage: DatabaseStorage,
    postgres: PostgresServer,
    dask_schema: str,
    local_cluster: Any,
    tmp_path: Path,
    worker_too: bool,
) -> None:
    from distributed import Client

    from th2etl.pipelines.result import RunStatus
    from th2etl.storage.owner import RunOwner

    suffix = uuid.uuid4().hex[:8]
    pid_file = tmp_path / "pid"
    storage.create_bloc(f"load_{suffix}", "dask_test_rows", {"n": 4})
    storage.create_bloc(f"save_{suffix}", "dask_test_export", {})
    storage.create_bloc(
        f"hold_{suffix}",
        "dask_test_hold",
        {"pid_file": str(pid_file), "release_file": str(tmp_path / "never")},
    )
    pipeline = f"p_{suffix}"
    storage.create_pipeline(pipeline, [[f"load_{suffix}"], [f"save_{suffix}"], [f"hold_{suffix}"]])
    env = subprocess_env(
        DATABASE_URL=postgres.url,
        DATABASE_SCHEMA=dask_schema,
        TH2ETL_EXECUTOR=local_cluster.scheduler_address,
        TH2ETL_HEARTBEAT_INTERVAL="2",
    )
    script = (
        "import sys, tests.executors.dask_blocs; from th2etl.cli.parser import main; "
        f"sys.exit(main(['run', {pipeline!r}]))"
    )
    owner = subprocess.Popen(
        [sys.executable, "-c", script],
        env=env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_until(pid_file.exists, timeout=180, what="the hold bloc to start")
    finally:
        owner.kill()  # nothing of th2etl run gets to clean up
        owner.wait()
    child = int(pid_file.read_text())
    pid_file.unlink()  # an execution of the run anywhere else would write it again
    [run] = storage.list_runs(pipeline_name=pipeline)
    assert run.status is RunStatus.RUNNING and run.worker is not None
    if worker_too:
        with Client(local_cluster.scheduler_address, set_as_default=False) as client:
            os.kill(worker_pids(client)[run.worker], signal.SIGKILL)
    # Any live th2etl process marks the run abandoned; a worker still executing it stops it.
    with RunOwner(storage, kind="python", heartbeat_interval=2):  # type: ignore[arg-type]
        wait_until(
            lambda: storage.get_run(run.run_id).status is RunStatus.ABANDONED,
            timeout=60,
            what="the run to be marked abandoned",
        )
    wait_until(lambda: not process_alive(child), timeout=30, what="the run's child process to stop")
    record = storage.get_run(run.run_id)
    assert record.status is RunStatus.ABANDONED, record
    assert (record.error or "").startswith("abandoned: its owner sent no heartbeat for")
    assert record.worker == run.worker
    assert [i for i, _ in exported(storage, run.run_id)] == [0, 1, 2, 3]
    assert not pid_file.exists()


def test_th2etl_run_prints_the_progress_of_a_run_on_the_cluster_as_it_goes(
    storage: DatabaseStorage,
    postgres: PostgresServer,
    dask_schema: str,
    local_cluster: Any,
    tmp_path: Path,
) -> None:
    suffix = uuid.uuid4().hex[:8]
    release = tmp_path / "release"
    storage.create_bloc(f"load_{suffix}", "dask_test_rows", {"n": 3})
    storage.create_bloc(
        f"hold_{suffix}",
        "dask_test_hold",
        {"pid_file": str(tmp_path / "pid"), "release_file": str(release)},
    )
    pipeline = f"p_{suffix}"
    storage.create_pipeline(pipeline, [[f"load_{suffix}"], [f"hold_{suffix}"]])
    env = subprocess_env(
        DATABASE_URL=postgres.url,
        DATABASE_SCHEMA=dask_schema,
        TH2ETL_EXECUTOR=local_cluster.scheduler_address,
    )
    script = (
        "import sys, tests.executors.dask_blocs; from th2etl.cli.parser import main; "
        f"sys.exit(main(['run', {pipeline!r}]))"
    )
    process = subprocess.Popen(
        [sys.executable, "-c", script],
        env=env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    # Without live progress, the line would come at the run's end only: release it then.
    fallback = threading.Timer(90, release.touch)
    fallback.start()
    try:
        assert process.stdout is not None
        lines = []
        for line in process.stdout:  # printed while the hold bloc holds the run on its worker
            lines.append(line.rstrip())
            if line.strip() == f"started   hold_{suffix}":
                break
        else:
            pytest.fail(f"th2etl run ended before printing the hold bloc's start: {lines}")
        assert not release.exists()
        release.touch()
        out, _ = process.communicate(timeout=60)
    finally:
        fallback.cancel()
        process.kill()
        process.wait()
    assert process.returncode == 0, lines + out.splitlines()
    lines += out.splitlines()
    run_id = lines[0].split()[1]
    assert lines[0] == f"run {run_id} of pipeline {pipeline!r} started (2 stages, 2 blocs)"
    assert [line.split()[:2] for line in lines[1:5]] == [
        ["started", f"load_{suffix}"],
        ["succeeded", f"load_{suffix}"],
        ["started", f"hold_{suffix}"],
        ["succeeded", f"hold_{suffix}"],
    ]  # each once: what was heard live is not told again with the run's end
    assert lines[5].startswith(f"pipeline {pipeline!r} succeeded in ")
