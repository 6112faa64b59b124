"""A cancel made through one service process stops a run that another service process owns:
two real uvicorn processes on one PostgreSQL database."""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Iterator

import pytest

from th2etl.helpers.th2etl_client import Th2etlClient
from th2etl.storage import PostgresStorage

from ..conftest import PostgresServer, subprocess_env, wait_until
from ..http_servers import Reply, Request, serve
from .servers import free_port

pytestmark = [pytest.mark.postgres, pytest.mark.slow]


def _service(postgres: PostgresServer, schema: str) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    env = subprocess_env(
        DATABASE_URL=postgres.url, DATABASE_SCHEMA=schema, TH2ETL_HEARTBEAT_INTERVAL="2"
    )
    command = [sys.executable, "-m", "uvicorn", "--factory", "th2etl.api.app:create_app",
               "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"]  # fmt: skip
    return subprocess.Popen(command, env=env), f"http://127.0.0.1:{port}"


@pytest.fixture
def services(postgres: PostgresServer, pg_schema: str) -> Iterator[list[Th2etlClient]]:
    started = [_service(postgres, pg_schema) for _ in range(2)]
    clients = [Th2etlClient(url) for _, url in started]
    try:
        for client in clients:
            wait_until(lambda c=client: _up(c), timeout=60, what="the service to answer")
        yield clients
    finally:
        for process, _ in started:
            process.terminate()
        for process, _ in started:
            process.wait(timeout=60)


def _up(client: Th2etlClient) -> bool:
    try:
        return bool(client.health_check()["status"] == "ok")
    except Exception:
        return False


def test_a_cancel_through_another_service_stops_the_run_within_a_heartbeat(
    services: list[Th2etlClient], postgres: PostgresServer, pg_schema: str
) -> None:
    first, second = services
    arrived, release = threading.Event(), threading.Event()

    def slow(request: Request) -> Reply:
        arrived.set()
        release.wait(60)
        return Reply(body=[{"n": 1}])

    with serve(slow) as api:
        first.create_bloc("slow", "api_loader", config={"url": f"{api.url}/rows"})
        first.create_bloc("double", "example_transformer", config={"source_bloc": "slow"})
        first.create_pipeline("cancellable", [["slow"], ["double"]])
        run = first.run_pipeline("cancellable")
        assert arrived.wait(30), first.get_run(run["run_id"])  # the run is in its first bloc
        answer = second.cancel_run(run["run_id"])
        assert answer["cancel_requested"] is True and answer["cancelled_here"] is False
        assert answer["cancelled_by"] == "api"
        # The owner (the first service) sees the request at its next heartbeat and stops the
        # run; its next heartbeat says so. The bloc's request is answered only then.
        with PostgresStorage(postgres.url, schema=pg_schema) as storage:
            wait_until(
                lambda: any(
                    run["run_id"] in i.info.get("stopping", []) for i in storage.list_instances()
                ),
                timeout=30,
                what="the owner to stop the run",
            )
        release.set()
        done = first.wait_for_run(run["run_id"], timeout=60)
    assert (done["status"], done["cancelled_by"]) == ("cancelled", "api"), done
    assert done["owner_id"].startswith("api-") and done["started_by"] == "api"
    assert {b["bloc_name"]: b["status"] for b in done["blocs"]}["double"] == "cancelled"
