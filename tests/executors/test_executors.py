"""Executors: a whole run in a thread or in a worker process, with the same records, and a
run that crashes, eats memory, hangs past its timeout or ignores its cancel is stopped and
recorded while the owner keeps going. Real PostgreSQL, real worker processes."""

from __future__ import annotations

import contextlib
import importlib
import logging
import os
import re
import signal
import socket
import sys
import threading
import uuid
from collections.abc import Iterator, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from th2etl import (
    DatabaseStorage,
    Pipeline,
    RunContext,
    RunListener,
    RunStatus,
    create_bloc,
)
from th2etl.blocs.registry import unregister_bloc
from th2etl.clock import utcnow
from th2etl.exceptions import ConfigurationError, ExecutorError
from th2etl.executors import Executor, RunJob, ThreadExecutor, make_executor
from th2etl.executors.process import ProcessExecutor
from th2etl.metrics import METRICS
from th2etl.pipelines import BlocStatus
from th2etl.storage.base import Storage

from ..conftest import PostgresServer, process_alive, wait_until
from . import blocs  # registers the test bloc types

pytestmark = pytest.mark.slow


@pytest.fixture
def storage(postgres: PostgresServer, pg_schema: str) -> Iterator[Storage]:
    with DatabaseStorage(postgres.url, schema=pg_schema) as storage:
        yield storage


def pipeline(
    name: str, *stages: tuple[str, str, dict[str, Any]], timeout: float | None = None
) -> Pipeline:
    return Pipeline(name, [[create_bloc(n, t, c)] for n, t, c in stages], timeout=timeout)


def submit(
    executor: Executor,
    storage: Storage,
    job_pipeline: Pipeline,
    listeners: Sequence[RunListener] = (),
    **options: Any,
) -> Any:
    run_id = uuid.uuid4().hex
    storage.start_run(run_id, job_pipeline.name, started_at=utcnow())
    return executor.submit(RunJob(run_id, job_pipeline, **options), listeners=listeners)


class BlocStarted(RunListener, threading.Event):
    """Set when a bloc starts (in a worker: the event is forwarded to this process)."""

    def __init__(self) -> None:
        threading.Event.__init__(self)

    def bloc_started(self, context: RunContext, bloc: Any, attempt: int) -> None:
        self.set()


def test_a_worker_process_records_the_run_as_a_thread_does(
    storage: Storage, caplog: pytest.LogCaptureFixture
) -> None:
    two = pipeline("two", ("a", "test_where_am_i", {}), ("b", "test_where_am_i", {}))
    records = {}
    for kind in ("thread", "process"):
        caplog.clear()
        before = METRICS.snapshot()
        with caplog.at_level(logging.INFO):
            handle = submit(make_executor(kind, storage), storage, two)
            result = handle.wait(60)
        assert result is not None and result.status is RunStatus.SUCCEEDED, result
        assert handle.recorded
        # This process's metrics count the run once, wherever it executed.
        after = METRICS.snapshot()
        runs = ("two", "succeeded")
        assert after["runs"][runs] == before["runs"].get(runs, 0) + 1, kind
        rows_out = ("two", "b", "out")
        assert (
            after["rows"][rows_out] - before["rows"].get(rows_out, 0) == result.blocs["b"].rows_out
        )
        records[kind] = storage.get_run(handle.run_id)
        # Where it executed: this process, or the worker.
        here = f"{socket.gethostname()}:{os.getpid()}"
        assert records[kind].worker == (here if kind == "thread" else handle.worker)
        # The worker's log records reach this process's logging.
        pids = {int(pid) for pid in re.findall(r"bloc b runs in process (\d+)", caplog.text)}
        assert len(pids) == 1
        assert (pids == {os.getpid()}) is (kind == "thread"), (kind, pids)
    thread, process = records["thread"], records["process"]
    assert process.status is thread.status is RunStatus.SUCCEEDED
    assert [(b.bloc_name, b.status, b.rows_in, b.rows_out) for b in process.blocs] == [
        (b.bloc_name, b.status, b.rows_in, b.rows_out) for b in thread.blocs
    ]
    assert process.log is not None and thread.log is not None
    shape = re.compile(r"\d{4}-\S+ |run \w+ |\d+\.\d+s")
    assert shape.sub("", process.log) == shape.sub("", thread.log)


def test_the_owner_counts_the_scheduler_lag_of_a_run_in_a_worker(storage: Storage) -> None:
    one = pipeline("one", ("a", "test_where_am_i", {}))
    before = METRICS.snapshot()["lags"].get("lagging", ([], 0.0))
    handle = submit(
        make_executor("process", storage),
        storage,
        one,
        scheduler_name="lagging",
        scheduled_time=utcnow() - timedelta(seconds=3),
    )
    result = handle.wait(60)
    assert result is not None and result.status is RunStatus.SUCCEEDED, result
    buckets, total = METRICS.snapshot()["lags"]["lagging"]
    assert buckets[-1][1] == (before[0][-1][1] if before[0] else 0) + 1  # one more observation
    assert total - before[1] >= 3  # due three seconds before it started


def test_a_bloc_type_defined_in_main_is_refused_before_the_run_starts(storage: Storage) -> None:
    class Local(blocs.WhereAmI):
        bloc_type = "test_where_am_i"

    Local.__module__ = "__main__"
    local = Pipeline("local", [[Local("mine")]])
    executor = make_executor("process", storage)
    with pytest.raises(
        ExecutorError,
        match=r"bloc 'mine' of pipeline 'local' is of bloc type "
        r"'test_where_am_i', whose class Local is defined in __main__ .*Move Local "
        r"into a module of its own .*'th2etl.blocs' entry point.*"
        r"TH2ETL_EXECUTOR=thread",
    ):
        executor.check(local)
    # A thread runs it.
    assert ThreadExecutor(None).submit(RunJob("r", local)).wait(30).status is RunStatus.SUCCEEDED


def test_a_worker_killed_by_sigkill_leaves_its_run_failed_with_the_signal(
    storage: Storage,
) -> None:
    handle = submit(ProcessExecutor(storage), storage, pipeline("k", ("k", "test_self_killer", {})))
    result = handle.wait(60)
    assert result is not None and result.status is RunStatus.FAILED
    record = storage.get_run(handle.run_id)
    assert record.status is RunStatus.FAILED
    assert record.error is not None
    assert f"its worker process {handle.worker} was killed by SIGKILL" in record.error
    # The owner goes on: the next run in a worker succeeds.
    again = submit(ProcessExecutor(storage), storage, pipeline("ok", ("a", "test_where_am_i", {})))
    assert again.wait(60).status is RunStatus.SUCCEEDED


def test_a_worker_past_its_memory_limit_leaves_its_run_failed(storage: Storage) -> None:
    hog = pipeline("hog", ("hog", "test_memory_hog", {"limit_mb": 512}))
    handle = submit(ProcessExecutor(storage), storage, hog)
    assert handle.wait(60) is not None
    record = storage.get_run(handle.run_id)
    assert record.status is RunStatus.FAILED
    assert record.error is not None and "MemoryError" in record.error
    assert [b.status for b in record.blocs] == [BlocStatus.FAILED]


def test_a_run_past_its_pipeline_timeout_is_terminated_and_recorded_failed(
    storage: Storage,
) -> None:
    stuck = pipeline(
        "stuck", ("s", "test_sleeper", {"seconds": 120, "stubborn": True}), timeout=0.5
    )
    handle = submit(ProcessExecutor(storage, grace=1), storage, stuck)
    result = handle.wait(60)
    assert result is not None and result.status is RunStatus.FAILED
    record = storage.get_run(handle.run_id)
    assert record.status is RunStatus.FAILED
    assert record.error == (
        "the run went on longer than the pipeline timeout of 0.5s of pipeline 'stuck'; "
        f"its worker {handle.worker} is terminated"
    )
    assert record.log is not None and "pipeline timeout of 0.5s" in record.log


def test_a_cancelled_run_that_does_not_stop_is_terminated_and_recorded_cancelled(
    storage: Storage,
) -> None:
    stuck = pipeline("stuck", ("s", "test_sleeper", {"seconds": 120, "stubborn": True}))
    started = BlocStarted()
    handle = submit(ProcessExecutor(storage, grace=0.5), storage, stuck, listeners=[started])
    assert started.wait(60), "the bloc never started"
    handle.cancel()
    assert handle.wait(60) is not None
    record = storage.get_run(handle.run_id)
    assert record.status is RunStatus.CANCELLED
    assert record.error == (
        f"the run did not stop within 0.5s of its cancel; its worker {handle.worker} is terminated"
    )


def test_a_cancelled_run_that_stops_is_recorded_by_its_worker(storage: Storage) -> None:
    polite = pipeline("polite", ("s", "test_sleeper", {"seconds": 120}), ("t", "test_sleeper", {}))
    started = BlocStarted()
    handle = submit(ProcessExecutor(storage), storage, polite, listeners=[started])
    assert started.wait(60), "the bloc never started"
    handle.cancel()
    result = handle.wait(60)
    assert result is not None and result.status is RunStatus.CANCELLED
    record = storage.get_run(handle.run_id)
    assert record.status is RunStatus.CANCELLED
    assert [b.status for b in record.blocs] == [BlocStatus.SUCCEEDED, BlocStatus.CANCELLED]


def test_a_thread_past_its_pipeline_timeout_is_recorded_failed(storage: Storage) -> None:
    stuck = pipeline("stuck", ("s", "test_sleeper", {"seconds": 1, "stubborn": True}), timeout=0.2)
    handle = submit(ThreadExecutor(storage), storage, stuck)
    result = handle.wait(30)
    assert result is not None and result.status is RunStatus.FAILED
    assert handle.stopped
    assert result.error is not None
    assert result.error.startswith(
        "the run went on longer than the pipeline timeout of 0.2s of pipeline 'stuck'; it was "
        "cancelled and its thread"
    )
    # The thread, left to finish, records nothing more: the run stays as the executor said.
    wait_until(
        lambda: all(t.name != handle.worker for t in threading.enumerate()),
        timeout=30,
        what="the abandoned run thread to end",
    )
    record = storage.get_run(handle.run_id)
    assert (record.status, record.error) == (RunStatus.FAILED, result.error)


def test_an_unknown_executor_is_refused_with_the_allowed_values() -> None:
    from th2etl.configs.settings import get_settings

    with pytest.raises(
        ConfigurationError,
        match=r"TH2ETL_EXECUTOR='fork' is not an executor; use one of thread, process",
    ):
        get_settings({"TH2ETL_EXECUTOR": "fork"})
    with pytest.raises(ConfigurationError, match=r"'dask' is not an executor"):
        make_executor("dask", None)
    with pytest.raises(
        ConfigurationError,
        match=r"TH2ETL_CANCEL_GRACE 'soon' is not allowed; use a number from 0.1 to 3600, or "
        r"unset it for the default 10",
    ):
        get_settings({"TH2ETL_CANCEL_GRACE": "soon"})
    with pytest.raises(ConfigurationError, match=r"TH2ETL_DRAIN_GRACE '-1' is not allowed"):
        get_settings({"TH2ETL_DRAIN_GRACE": "-1"})
    assert get_settings({"TH2ETL_EXECUTOR": " Process "}).executor == "process"
    assert get_settings({}).executor is None


def test_a_run_cancelled_while_queued_is_not_executed(
    storage: Storage, caplog: pytest.LogCaptureFixture
) -> None:
    queued = storage.create_run(None, "one", owner_id="test", started_by="python")
    storage.request_cancel(queued.run_id, by="test")
    one = pipeline("one", ("a", "test_where_am_i", {}))
    for kind in ("thread", "process"):
        with caplog.at_level(logging.INFO):
            result = make_executor(kind, storage).submit(RunJob(queued.run_id, one)).wait(60)
        assert result is not None and result.status is RunStatus.CANCELLED
        assert result.error == "the run was cancelled before it started; it was not executed"
        assert "runs in process" not in caplog.text
    assert storage.get_run(queued.run_id).status is RunStatus.CANCELLED


def _tcp_peers(pid: int) -> set[int]:
    """Remote ports of the TCP connections process ``pid`` holds open (from /proc)."""
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        with contextlib.suppress(OSError):
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
            if target.startswith("socket:["):
                inodes.add(target[len("socket:[") : -1])
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as lines:
            next(lines)
            for line in lines:
                fields = line.split()
                if fields[9] in inodes:
                    ports.add(int(fields[2].rsplit(":", 1)[1], 16))
    return ports


def test_a_worker_opens_no_database_connection_its_owner_records_the_run(
    storage: Storage, postgres: PostgresServer, tmp_path: Path
) -> None:
    started_file = tmp_path / "started"
    held = pipeline(
        "held",
        ("a", "test_where_am_i", {}),
        ("s", "test_sleeper", {"seconds": 120, "started_file": str(started_file)}),
    )
    executor = ProcessExecutor(storage)
    try:
        handle = submit(executor, storage, held)
        wait_until(started_file.exists, timeout=60, what="the sleeper to start")
        pid = int(handle.worker.rsplit(":", 1)[1])
        assert postgres.port not in _tcp_peers(pid)
        # Meanwhile its owner recorded it as it went: running in that worker, bloc a done.
        record = storage.get_run(handle.run_id)
        assert (record.status, record.worker) == (RunStatus.RUNNING, handle.worker)
        assert [(b.bloc_name, b.status) for b in record.blocs] == [("a", BlocStatus.SUCCEEDED)]
        handle.cancel()
        result = handle.wait(60)
        assert result is not None and result.status is RunStatus.CANCELLED
        assert handle.recorded
        assert storage.get_run(handle.run_id).status is RunStatus.CANCELLED
    finally:
        executor.shutdown()


LATE_BLOCS = """
from th2etl import TransformerBloc, register_bloc


@register_bloc
class Late(TransformerBloc):
    bloc_type = "test_late"

    def run(self, context, rows):
        return [{"late": True}]
"""


def test_the_spare_worker_imports_bloc_modules_from_the_path_of_the_submit(
    storage: Storage, tmp_path: Path
) -> None:
    executor = ProcessExecutor(storage)
    one = pipeline("one", ("a", "test_where_am_i", {}))
    try:
        assert submit(executor, storage, one).wait(60).status is RunStatus.SUCCEEDED
        # The next run's worker is started already, before the module's folder is on the path.
        [(spare, _)] = executor._spare
        spare_pid = spare.pid
        (tmp_path / "late_blocs.py").write_text(LATE_BLOCS)
        sys.path.insert(0, str(tmp_path))
        importlib.import_module("late_blocs")
        handle = submit(executor, storage, pipeline("late", ("l", "test_late", {})))
        result = handle.wait(60)
        assert result is not None and result.status is RunStatus.SUCCEEDED, result.error
        assert handle.worker == f"{socket.gethostname()}:{spare_pid}"
    finally:
        with contextlib.suppress(ValueError):
            sys.path.remove(str(tmp_path))
        sys.modules.pop("late_blocs", None)
        with contextlib.suppress(LookupError):
            unregister_bloc("test_late")
        executor.shutdown()


def test_a_spare_worker_killed_from_outside_is_replaced_and_shutdown_ends_the_spare(
    storage: Storage,
) -> None:
    executor = ProcessExecutor(storage)
    one = pipeline("one", ("a", "test_where_am_i", {}))
    assert submit(executor, storage, one).wait(60).status is RunStatus.SUCCEEDED
    [(spare, _)] = executor._spare
    killed = spare.pid
    os.kill(killed, signal.SIGKILL)
    wait_until(lambda: not spare.is_alive(), timeout=30, what="the spare to die")
    handle = submit(executor, storage, one)
    assert handle.wait(60).status is RunStatus.SUCCEEDED
    assert handle.worker != f"{socket.gethostname()}:{killed}"
    [(spare, _)] = executor._spare
    pid = spare.pid
    executor.shutdown()
    assert executor._spare == []
    wait_until(lambda: not process_alive(pid), timeout=30, what="the spare to end")
    # A shut down executor starts no more spares, and still runs what it is given.
    assert submit(executor, storage, one).wait(60).status is RunStatus.SUCCEEDED
    assert executor._spare == []
