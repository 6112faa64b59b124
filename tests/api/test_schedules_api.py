"""Schedules through the REST API: scheduler options, the schedule defaults, a run's ``at``, and
``POST /schedulers/{name}/backfill`` (dry run, refusals, a backfill run in the service)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.api.conftest import LOCAL
from tests.conftest import wait_until
from th2etl.api import create_app
from th2etl.clock import FakeClock

NOW = datetime(2026, 3, 7, 12, 0, tzinfo=UTC)


@pytest.fixture
def client(storage: Any, tmp_path: Path) -> Iterator[TestClient]:
    app = create_app(storage, start_scheduler=False, api_key="", clock=FakeClock(NOW))
    with TestClient(app, base_url=LOCAL) as test_client:
        for day in ("2026-03-01", "2026-03-02", "2026-03-03"):
            (tmp_path / f"sales_{day}.csv").write_text("region\nnorth\n", encoding="utf-8")
        path = str(tmp_path / "sales_${run:date}.csv")
        bloc = {"name": "load", "bloc_type": "csv_loader", "config": {"file_path": path}}
        assert test_client.post("/blocs", json=bloc).status_code == 201
        assert test_client.post("/pipelines", json={"name": "sales", "stages": [["load"]]})
        trigger = {"name": "daily", "cron_expression": "0 6 * * *"}  # no pipeline: a label
        assert test_client.post("/triggers", json=trigger).json()["pipeline_name"] is None
        yield test_client


def test_options_are_created_changed_reset_and_refused_out_of_range(client: TestClient) -> None:
    created = client.post(
        "/schedulers",
        json={
            "name": "sales_daily",
            "pipeline_name": "sales",
            "trigger_name": "daily",
            "variables": {"region": "north"},
            "max_active_runs": 2,
            "timeout": 3600,
            "start_date": "2026-03-01T00:00:00+00:00",
        },
    )
    assert created.status_code == 201, created.json()
    body = created.json()
    assert (body["max_active_runs"], body["timeout"], body["start_date"]) == (
        2,
        3600.0,
        "2026-03-01T00:00:00+00:00",
    )
    changed = client.put("/schedulers/sales_daily", json={"missed": "all", "reset": ["timeout"]})
    assert (changed.json()["missed"], changed.json()["timeout"]) == ("all", None)
    refused = client.put("/schedulers/sales_daily", json={"max_active_runs": 0})
    assert refused.status_code == 422
    assert (
        "max_active_runs must be a whole number from 1 to 10000, got 0" in refused.json()["detail"]
    )
    assert client.get("/schedulers/sales_daily").json()["max_active_runs"] == 2
    assert client.get("/schedule-defaults").json() == {
        "missed": None,
        "overlap": None,
        "max_active_runs": None,
        "timeout": None,
    }
    assert client.put("/schedule-defaults", json={"overlap": "allow"}).json()["overlap"] == "allow"
    bad = client.put("/schedule-defaults", json={"overlap": "never"})
    assert bad.status_code == 422 and "'skip', 'allow'" in bad.json()["detail"]


def test_a_run_now_takes_its_logical_time_from_at(client: TestClient) -> None:
    answer = client.post("/pipelines/sales/run", json={"at": "2026-03-02T23:00:00+00:00"})
    run_id = answer.json()["run_id"]
    wait_until(
        lambda: client.get(f"/runs/{run_id}").json()["status"] != "running",
        timeout=30,
        what="the run to end",
    )
    run = client.get(f"/runs/{run_id}").json()
    assert run["status"] == "succeeded", run
    assert run["logical_time"]["date"] == "2026-03-02"


def test_a_queued_run_keeps_its_at(storage: Any, tmp_path: Path) -> None:
    import threading

    from tests.scheduler.helpers import GATES, Gate
    from th2etl.blocs import register_bloc
    from th2etl.blocs.registry import unregister_bloc

    register_bloc(Gate, replace=True)  # type: ignore[call-overload]
    GATES["api_queue"] = threading.Event()
    try:
        app = create_app(storage, start_scheduler=False, api_key="", run_workers=1)
        with TestClient(app, base_url=LOCAL) as client:
            (tmp_path / "sales_2026-03-02.csv").write_text("region\nnorth\n", encoding="utf-8")
            path = str(tmp_path / "sales_${run:date}.csv")
            for name, bloc_type, config in (
                ("wait", "scheduler_test_gate", {"gate": "api_queue"}),
                ("load", "csv_loader", {"file_path": path}),
            ):
                client.post("/blocs", json={"name": name, "bloc_type": bloc_type, "config": config})
                client.post("/pipelines", json={"name": f"p_{name}", "stages": [[name]]})
            busy = client.post("/pipelines/p_wait/run").json()
            queued = client.post("/pipelines/p_load/run", json={"at": "2026-03-02T12:00:00Z"})
            assert queued.json()["status"] == "queued"
            GATES["api_queue"].set()
            run_id = queued.json()["run_id"]
            wait_until(
                lambda: client.get(f"/runs/{run_id}").json()["status"] == "succeeded",
                timeout=30,
                what="the queued run to succeed on the freed worker",
            )
            assert client.get(f"/runs/{run_id}").json()["logical_time"]["date"] == "2026-03-02"
            assert client.get(f"/runs/{busy['run_id']}").json()["status"] == "succeeded"
    finally:
        GATES["api_queue"].set()
        unregister_bloc(Gate.bloc_type)


def test_backfill_dry_run_refusals_and_a_run_in_the_service(client: TestClient) -> None:
    client.post(
        "/schedulers",
        json={"name": "sales_daily", "pipeline_name": "sales", "trigger_name": "daily"},
    )
    window = {"from": "2026-03-02T00:00:00+00:00", "to": "2026-03-04T23:59:00+00:00"}
    dry = client.post("/schedulers/sales_daily/backfill", json={**window, "dry_run": True})
    assert dry.status_code == 200
    assert [t["scheduled_time"] for t in dry.json()["ticks"]] == [
        "2026-03-02T06:00:00+00:00",
        "2026-03-03T06:00:00+00:00",
        "2026-03-04T06:00:00+00:00",
    ]
    assert client.get("/runs", params={"scheduler": "sales_daily"}).json() == []
    reversed_range = {"from": window["to"], "to": window["from"]}
    refused = client.post("/schedulers/sales_daily/backfill", json=reversed_range)
    assert refused.status_code == 422 and "the range is reversed" in refused.json()["detail"]
    future = {"from": window["from"], "to": "2026-03-09T00:00:00+00:00"}
    ahead = client.post("/schedulers/sales_daily/backfill", json=future)
    assert ahead.status_code == 422
    assert "1 fire time(s) would run before their time" in ahead.json()["detail"]
    missing = client.post("/schedulers/nope/backfill", json=window)
    assert missing.status_code == 404
    client.put("/schedulers/sales_daily", json={"enabled": False})
    started = client.post("/schedulers/sales_daily/backfill", json={**window, "max_active": 2})
    assert started.status_code == 202
    assert started.json()["to_run"] == 3
    assert "is disabled: the backfill runs its ticks anyway" in started.json()["notes"][0]

    def ended() -> list[dict[str, Any]]:
        runs: list[dict[str, Any]] = client.get("/runs", params={"scheduler": "sales_daily"}).json()
        return [run for run in runs if run["status"] not in ("queued", "running")]

    wait_until(lambda: len(ended()) == 3, timeout=30, what="the backfill's 3 runs to end")
    outcome = {run["logical_time"]["date"]: run["status"] for run in ended()}
    # Each run loaded the day before its tick: the 4th's file does not exist.
    assert outcome == {
        "2026-03-01": "succeeded",
        "2026-03-02": "succeeded",
        "2026-03-03": "succeeded",
    }


def test_a_backfill_runs_on_the_services_executor(storage: Any, tmp_path: Path) -> None:
    import os

    from th2etl.blocs import TransformerBloc, register_bloc
    from th2etl.blocs.registry import unregister_bloc
    from th2etl.pipelines import RunContext
    from th2etl.types import Rows

    class InThisTest(TransformerBloc):
        bloc_type = "api_backfill_local"

        def run(self, context: RunContext, rows: Rows) -> Rows:
            return rows

    register_bloc(InThisTest)
    app = create_app(
        storage, start_scheduler=False, api_key="", clock=FakeClock(NOW), executor="process"
    )
    try:
        with TestClient(app, base_url=LOCAL) as client:
            (tmp_path / "sales_2026-03-01.csv").write_text("region\nnorth\n", encoding="utf-8")
            path = str(tmp_path / "sales_${run:date}.csv")
            for name, bloc_type, config in (
                ("load", "csv_loader", {"file_path": path}),
                ("local", "api_backfill_local", {}),
            ):
                block = {"name": name, "bloc_type": bloc_type, "config": config}
                assert client.post("/blocs", json=block).status_code == 201
            client.post("/pipelines", json={"name": "sales", "stages": [["load"]]})
            client.post("/pipelines", json={"name": "odd", "stages": [["local"]]})
            client.post("/triggers", json={"name": "daily", "cron_expression": "0 6 * * *"})
            for name, pipeline in (("sales_daily", "sales"), ("odd_daily", "odd")):
                scheduler = {"name": name, "pipeline_name": pipeline, "trigger_name": "daily"}
                assert client.post("/schedulers", json=scheduler).status_code == 201
            window = {"from": "2026-03-02T00:00:00+00:00", "to": "2026-03-02T23:00:00+00:00"}
            # A bloc type a worker process cannot import is refused before anything runs.
            refused = client.post("/schedulers/odd_daily/backfill", json=window)
            assert refused.status_code == 422
            assert "whose class InThisTest is defined in a function" in refused.json()["detail"]
            assert client.get("/runs", params={"scheduler": "odd_daily"}).json() == []
            started = client.post("/schedulers/sales_daily/backfill", json=window)
            assert started.status_code == 202

            def ended() -> list[dict[str, Any]]:
                runs = client.get("/runs", params={"scheduler": "sales_daily"}).json()
                return [run for run in runs if run["status"] == "succeeded"]

            wait_until(lambda: len(ended()) == 1, timeout=60, what="the backfill's run")
            [run] = ended()
            assert (run["executor"], run["started_by"]) == ("process", "backfill:sales_daily")
            assert not run["worker"].endswith(f":{os.getpid()}")
    finally:
        unregister_bloc(InThisTest.bloc_type)
