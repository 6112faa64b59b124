"""Real Dask clusters on 127.0.0.1 for the executor tests, each stopped by its fixture.

* ``local_cluster``: ``distributed.LocalCluster(processes=True)``, 2 workers of 1 thread.
* ``dask_command_cluster``: the ``dask scheduler`` and ``dask worker`` commands as
  subprocesses (random ports, the address read from the scheduler file).

Workers read th2etl's database from their environment, as in production: both clusters run
with ``dask_database_env``, which points at a PostgreSQL schema of the test session's own.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ROOT, PostgresServer, subprocess_env, wait_until

DASK = str(Path(sys.executable).with_name("dask"))


@pytest.fixture(scope="session")
def dask_schema(postgres: PostgresServer) -> Iterator[str]:
    """A PostgreSQL schema shared by the session's Dask tests and its clusters' workers."""
    import psycopg
    from psycopg import sql

    schema = f"{postgres.schema}_dask_{uuid.uuid4().hex[:6]}"
    with psycopg.connect(postgres.url, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
    try:
        yield schema
    finally:
        with psycopg.connect(postgres.url, autocommit=True) as admin:
            admin.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))


@pytest.fixture(scope="session")
def dask_database_env(postgres: PostgresServer, dask_schema: str) -> dict[str, str]:
    """What a worker needs to reach th2etl's database (and this checkout's code)."""
    return {
        "DATABASE_URL": postgres.url,
        "DATABASE_SCHEMA": dask_schema,
        "PYTHONPATH": str(ROOT),
    }


@pytest.fixture(scope="session")
def local_cluster(dask_database_env: dict[str, str]) -> Iterator[Any]:
    """A 2-worker ``LocalCluster`` (nanny processes, 1 thread each) on 127.0.0.1."""
    from distributed import LocalCluster

    cluster = LocalCluster(
        processes=True,
        n_workers=2,
        threads_per_worker=1,
        host="127.0.0.1",
        dashboard_address="127.0.0.1:0",  # ":0" would listen on every interface
        env=dask_database_env,
    )
    try:
        yield cluster
    finally:
        cluster.close()


@dataclass
class CommandCluster:
    """A scheduler and workers started with the ``dask`` command."""

    address: str
    scheduler_file: Path
    scheduler: subprocess.Popen[bytes]
    workers: list[subprocess.Popen[bytes]]

    def stop(self) -> None:
        # Workers first: a worker whose scheduler is gone waits for it before it exits.
        for group in (self.workers, [self.scheduler]):
            for process in group:
                if process.poll() is None:
                    process.send_signal(signal.SIGTERM)
            for process in group:
                try:
                    process.wait(15)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()


def start_command_cluster(tmp: Path, env: dict[str, str], n_workers: int = 1) -> CommandCluster:
    """``dask scheduler`` on a random port of 127.0.0.1, and ``n_workers`` ``dask worker``."""
    scheduler_file = tmp / "scheduler.json"
    full_env = subprocess_env(**env)
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    local = ["--host", "127.0.0.1", "--no-dashboard"]
    scheduler = subprocess.Popen(
        [DASK, "scheduler", *local, "--port", "0", "--scheduler-file", str(scheduler_file)],
        env=full_env,
        **quiet,
    )
    cluster = CommandCluster("", scheduler_file, scheduler, [])
    try:
        wait_until(scheduler_file.exists, timeout=120, what="the dask scheduler's file")
        wait_until(lambda: scheduler_file.stat().st_size > 0, timeout=5, what="its address")
        cluster.address = json.loads(scheduler_file.read_text())["address"]
        for _ in range(n_workers):
            command = [DASK, "worker", cluster.address, *local, "--nthreads", "1"]
            cluster.workers.append(subprocess.Popen(command, env=full_env, **quiet))
    except BaseException:
        cluster.stop()
        raise
    return cluster


@pytest.fixture(scope="session")
def dask_command_cluster(
    tmp_path_factory: pytest.TempPathFactory, dask_database_env: dict[str, str]
) -> Iterator[CommandCluster]:
    """``dask scheduler`` and one ``dask worker`` as subprocesses, stopped afterwards."""
    cluster = start_command_cluster(tmp_path_factory.mktemp("dask"), dask_database_env)
    try:
        yield cluster
    finally:
        cluster.stop()


def worker_pids(client: Any) -> dict[str, int]:
    """Each worker's address -> its process id."""
    return dict(client.run(os.getpid))


def exported(storage: Any, run_id: str) -> list[tuple[int, int]]:
    """``(i, parent pid)`` of each row the ``dask_test_export`` bloc wrote for ``run_id``."""
    table = f'"{storage.schema}".dask_export'
    rows = storage._all(f"SELECT i, ppid FROM {table} WHERE run_id = %s ORDER BY i", (run_id,))
    return [(row[0], row[1]) for row in rows]


def parent_of(pid: int) -> int:
    """The parent process id of the live process ``pid``."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    return int(stat.rsplit(")", 1)[1].split()[1])
