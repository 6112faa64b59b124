"""A real ``th2etl --serve-api`` with its runs in worker processes (the default): a worker
killed by SIGKILL fails its run while the service keeps answering; SIGTERM drains the service:
what still runs after the drain grace is cancelled and recorded, a run that ignores its cancel
too (its worker terminated)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.api.conftest import postgres_settings_env
from tests.api.servers import free_port
from tests.conftest import ROOT, PostgresServer, subprocess_env, wait_until
from th2etl import DatabaseStorage, RunStatus
from th2etl.storage.base import Storage

from .test_run_signals import COMMAND

pytestmark = [pytest.mark.slow, pytest.mark.postgres]


@pytest.fixture
def storage(postgres: PostgresServer, pg_schema: str, tmp_path: Path) -> Iterator[Storage]:
    with DatabaseStorage(postgres.url, schema=pg_schema) as storage:
        for name, stubborn in (("nap", False), ("stuck", True)):
            config = {"seconds": 60, "stubborn": stubborn, "started_file": str(tmp_path / name)}
            storage.create_bloc(name, "test_sleeper", config=config)
        storage.create_bloc("kill", "test_self_killer")
        storage.create_pipeline("napping", stages=[["nap"]])
        storage.create_pipeline("stuck", stages=[["stuck"]])
        storage.create_pipeline("killed", stages=[["kill"]])
        yield storage


def call(base: str, method: str, path: str) -> tuple[int, Any]:
    body = b"{}" if method == "POST" else None
    request = urllib.request.Request(
        f"{base}{path}", method=method, data=body, headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status, json.loads(answer.read() or b"null")
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"null")


def test_a_service_outlives_a_killed_worker_and_drains_on_sigterm(
    storage: Storage, postgres: PostgresServer, pg_schema: str, tmp_path: Path
) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = subprocess_env(
        **postgres_settings_env(postgres, pg_schema),
        TH2ETL_DRAIN_GRACE="1",
        TH2ETL_CANCEL_GRACE="1",
    )
    service = subprocess.Popen(
        [sys.executable, "-c", COMMAND, "--serve-api", "--port", str(port)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:

        def up() -> bool:
            assert service.poll() is None, service.communicate()[1]
            try:
                return call(base, "GET", "/health")[0] == 200
            except OSError:
                return False

        wait_until(up, timeout=60, what="the service to answer")
        status, killed = call(base, "POST", "/pipelines/killed/run")
        assert status == 202, killed
        wait_until(
            lambda: storage.get_run(killed["run_id"]).status.finished,
            timeout=60,
            what="the killed run to end",
        )
        record = storage.get_run(killed["run_id"])
        assert record.status is RunStatus.FAILED
        assert record.error is not None and "was killed by SIGKILL" in record.error
        assert call(base, "GET", "/health")[0] == 200  # the service keeps answering

        napping = call(base, "POST", "/pipelines/napping/run")[1]["run_id"]
        stuck = call(base, "POST", "/pipelines/stuck/run")[1]["run_id"]
        wait_until(
            lambda: (tmp_path / "nap").exists() and (tmp_path / "stuck").exists(),
            timeout=60,
            what="both blocs to start in their workers",
        )
        service.send_signal(signal.SIGTERM)
        _, log = service.communicate(timeout=90)
    finally:
        service.kill()
        service.wait()
    # A clean stop; uvicorn then ends the process by the signal it received, as shells expect.
    assert "Application shutdown complete" in log
    assert service.returncode in (0, -signal.SIGTERM), log[-3000:]
    assert "2 run(s) still going after 1s at shutdown; cancelling them" in log
    polite, stubborn = storage.get_run(napping), storage.get_run(stuck)
    assert (polite.status, polite.error) == (RunStatus.CANCELLED, "the run was cancelled")
    assert stubborn.status is RunStatus.CANCELLED
    assert stubborn.error is not None
    assert stubborn.error.startswith("the run did not stop within 1s of its cancel; its worker")
