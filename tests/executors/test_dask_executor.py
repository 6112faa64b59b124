"""Runs executed on a real Dask cluster (LocalCluster, nanny worker processes), recorded in
PostgreSQL by the workers themselves."""

from __future__ import annotations

import os
import signal
import socket
import uuid
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

import tests.executors.dask_blocs  # noqa: F401 - registers the bloc types here too
from tests.conftest import PostgresServer, process_alive, wait_until
from tests.executors.conftest import exported, parent_of, worker_pids
from th2etl.blocs.registry import unregister_bloc
from th2etl.configs.settings import get_settings
from th2etl.executors.base import RunJob
from th2etl.executors.dask import DaskExecutor
from th2etl.logical_time import LogicalTime
from th2etl.pipelines.result import RunStatus
from th2etl.storage import DatabaseStorage

pytestmark = [pytest.mark.postgres, pytest.mark.slow]


@pytest.fixture(scope="module")
def storage(postgres: PostgresServer, dask_schema: str) -> Iterator[DatabaseStorage]:
    env = {"DATABASE_URL": postgres.url, "DATABASE_SCHEMA": dask_schema}
    with DatabaseStorage.from_settings(get_settings(env)) as store:
        yield store


@pytest.fixture(scope="module")
def executor(local_cluster: Any, storage: DatabaseStorage) -> Iterator[DaskExecutor]:
    dask = DaskExecutor(local_cluster.scheduler_address, storage, grace=2.0)
    try:
        yield dask
    finally:
        dask.shutdown()


def define(
    storage: DatabaseStorage, *blocs: tuple[str, str, dict[str, Any]], timeout: float | None = None
) -> str:
    """A pipeline of one stage per bloc, under fresh names; returns its name."""
    suffix = uuid.uuid4().hex[:8]
    for name, bloc_type, config in blocs:
        storage.create_bloc(f"{name}_{suffix}", bloc_type, config)
    pipeline = f"p_{suffix}"
    storage.create_pipeline(
        pipeline, [[f"{name}_{suffix}"] for name, _, _ in blocs], timeout=timeout
    )
    return pipeline


def queued_job(storage: DatabaseStorage, pipeline: str) -> RunJob:
    """Record a queued run of ``pipeline`` and return its job."""
    run_id = uuid.uuid4().hex
    storage.create_run(run_id, pipeline, owner_id="dask-tests", started_by="python")
    return RunJob(run_id, storage.build_pipeline(pipeline))


def test_a_run_executes_on_a_worker_and_is_recorded_there(
    storage: DatabaseStorage, executor: DaskExecutor
) -> None:
    pipeline = define(
        storage, ("load", "dask_test_rows", {"n": 5}), ("save", "dask_test_export", {})
    )
    # The worker records the run from the events of its child: the engine's logical time too.
    day = datetime(2026, 12, 2, tzinfo=UTC)
    logical = LogicalTime(day + timedelta(days=1), day, day + timedelta(days=1), "UTC")
    job = replace(queued_job(storage, pipeline), logical_time=logical)
    handle = executor.submit(job)
    result = handle.wait(180)
    assert result is not None and result.status is RunStatus.SUCCEEDED, result
    assert handle.recorded
    assert handle.worker in worker_pids(executor.cluster.client())
    record = storage.get_run(job.run_id)
    assert (record.status, record.worker) == (RunStatus.SUCCEEDED, handle.worker)
    assert record.logical_time == logical
    assert [(b.status.value, b.rows_out) for b in record.blocs] == [
        ("succeeded", 5),
        ("succeeded", 1),
    ]
    assert f"run {job.run_id} of pipeline {pipeline!r} started" in (record.log or "")
    rows = exported(storage, job.run_id)
    assert [i for i, _ in rows] == [0, 1, 2, 3, 4]
    # The bloc ran in a child of the worker's forker.
    assert parent_of(rows[0][1]) == worker_pids(executor.cluster.client())[handle.worker]


def _held_run(
    storage: DatabaseStorage, executor: DaskExecutor, tmp_path: Path
) -> tuple[RunJob, Any, int]:
    """A run submitted to the cluster whose bloc holds it (ignoring cancels) until stopped:
    its job, its handle and the pid of the child executing it."""
    pid_file = tmp_path / "pid"
    pipeline = define(
        storage,
        ("load", "dask_test_rows", {}),
        ("hold", "dask_test_hold", {"pid_file": str(pid_file),
                                    "release_file": str(tmp_path / "never"),
                                    "cooperative": False}),
    )  # fmt: skip
    job = queued_job(storage, pipeline)
    handle = executor.submit(job)
    wait_until(pid_file.exists, timeout=180, what="the hold bloc to start")
    child = int(pid_file.read_text())
    return job, handle, child


def test_a_cancel_stops_the_run_on_its_worker(
    storage: DatabaseStorage, executor: DaskExecutor, tmp_path: Path
) -> None:
    job, handle, child = _held_run(storage, executor, tmp_path)
    handle.cancel()
    result = handle.wait(180)
    assert result is not None and result.status is RunStatus.CANCELLED
    assert "did not stop within 2s of its cancel" in (result.error or "")
    assert storage.get_run(job.run_id).status is RunStatus.CANCELLED
    with pytest.raises(ProcessLookupError):
        os.kill(child, 0)
    assert handle.future.cancelled()


def test_a_run_its_owner_abandons_stops_on_its_worker_and_is_recorded_abandoned(
    storage: DatabaseStorage, executor: DaskExecutor, tmp_path: Path
) -> None:
    """An owner that lost its lease abandons its runs: on Dask the worker hears it through the
    database, terminates the child at once and records ``abandoned``, never ``cancelled``."""
    job, handle, child = _held_run(storage, executor, tmp_path)
    handle.abandon("its owner o-1 could not renew its lease")
    result = handle.wait(180)
    assert result is not None and result.status is RunStatus.ABANDONED
    record = storage.get_run(job.run_id)
    assert record.status is RunStatus.ABANDONED
    assert "its owner o-1 could not renew its lease" in (record.error or "")
    with pytest.raises(ProcessLookupError):
        os.kill(child, 0)


def test_a_bloc_type_missing_on_the_workers_fails_its_run_naming_it(
    storage: DatabaseStorage,
    executor: DaskExecutor,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A plugin installed where the run is submitted, but not on the workers.
    module = f"th2etl_plugin_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{module}.py").write_text(PLUGIN, encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    __import__(module)
    try:
        pipeline = define(storage, ("load", "local_only_rows", {}))
        job = queued_job(storage, pipeline)
        handle = executor.submit(job)
        result = handle.wait(180)
    finally:
        unregister_bloc("local_only_rows")
    assert result is not None and result.status is RunStatus.FAILED
    message = storage.get_run(job.run_id).error or ""
    assert message.startswith(
        f"bloc type 'local_only_rows' ({module}.LocalOnly) cannot be imported on the Dask "
        f"worker {handle.worker}: ModuleNotFoundError: No module named '{module}'; install the "
        "package that defines it on every worker, or start the workers with `dask worker "
        "--preload MODULE`"
    ), message


PLUGIN = """
from th2etl.blocs import LoaderBloc, register_bloc

@register_bloc
class LocalOnly(LoaderBloc):
    bloc_type = "local_only_rows"
    summary = "Installed on the submitting host only."

    def run(self, context, rows):
        return [{"i": 1}]
"""


def test_a_worker_killed_mid_run_leaves_it_failed_and_exported_once(
    storage: DatabaseStorage, executor: DaskExecutor, tmp_path: Path
) -> None:
    pid_file = tmp_path / "pid"
    pipeline = define(
        storage,
        ("load", "dask_test_rows", {"n": 4}),
        ("save", "dask_test_export", {}),
        ("hold", "dask_test_hold", {"pid_file": str(pid_file),
                                    "release_file": str(tmp_path / "never")}),
    )  # fmt: skip
    job = queued_job(storage, pipeline)
    handle = executor.submit(job)
    wait_until(pid_file.exists, timeout=180, what="the hold bloc to start")
    child = int(pid_file.read_text())
    pid_file.unlink()  # an execution of the run anywhere else would write it again
    client = executor.cluster.client()
    (worker,) = [w for w, keys in client.processing().items() if handle.future.key in keys]
    assert storage.get_run(job.run_id).worker == worker
    os.kill(worker_pids(client)[worker], signal.SIGKILL)
    # The owner is alive: the run fails, naming the dead worker. Dask ran the task again on
    # a live worker, where the claim fenced it: the run was not executed a second time.
    result = handle.wait(180)
    assert result is not None and result.status is RunStatus.FAILED, result
    assert (result.error or "").startswith(
        f"the Dask worker {worker} died (or lost the scheduler) before the run ended; Dask ran "
        "its task again on tcp://"
    ), result.error
    assert f", which did not execute it: the run is running on {worker} already" in (
        result.error or ""
    )
    assert handle.worker == worker
    record = storage.get_run(job.run_id)
    assert (record.status, record.error, record.worker) == (RunStatus.FAILED, result.error, worker)
    wait_until(lambda: not process_alive(child), timeout=10, what="the run's child process to exit")
    assert [i for i, _ in exported(storage, job.run_id)] == [0, 1, 2, 3]
    assert not pid_file.exists()


def test_a_run_past_its_pipeline_timeout_is_killed_on_its_worker(
    storage: DatabaseStorage, executor: DaskExecutor, tmp_path: Path
) -> None:
    pid_file = tmp_path / "pid"
    pipeline = define(
        storage,
        ("hold", "dask_test_hold", {"pid_file": str(pid_file),
                                    "release_file": str(tmp_path / "never"),
                                    "cooperative": False}),
        timeout=1.0,
    )  # fmt: skip
    job = queued_job(storage, pipeline)
    result = executor.submit(job).wait(180)
    assert result is not None and result.status is RunStatus.FAILED
    assert (result.error or "").startswith(
        f"the run went on longer than the pipeline timeout of 1s of pipeline {pipeline!r}"
    )
    assert storage.get_run(job.run_id).status is RunStatus.FAILED
    wait_until(lambda: not process_alive(int(pid_file.read_text())), timeout=10, what="the kill")


def test_an_unreachable_cluster_fails_each_run_at_once_naming_it(
    storage: DatabaseStorage,
) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        address = f"tcp://127.0.0.1:{sock.getsockname()[1]}"
    dead = DaskExecutor(address, storage, connect_timeout=0.5)
    pipeline = define(storage, ("load", "dask_test_rows", {}))
    jobs = [queued_job(storage, pipeline) for _ in range(3)]
    handles = [dead.submit(job) for job in jobs]
    for handle, job in zip(handles, jobs, strict=True):
        assert handle.done()  # failed in submit: no wait for a cluster that is not there
        record = storage.get_run(job.run_id)
        assert record.status is RunStatus.FAILED
        assert (record.error or "").startswith(f"the Dask scheduler at {address} cannot be")
    assert dead.health()["status"] == "down"
