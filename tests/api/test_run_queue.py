"""The run queue through the API: runs that find every worker busy wait `queued` (not
finished, for the client and the overlap checks alike), a full queue answers 429 naming its
limit, a freed worker takes the oldest queued run, and a cancel of an ended run is 409."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest

from th2etl.api.app import create_app
from th2etl.configs.settings import Settings
from th2etl.helpers.th2etl_client import Th2etlApiError, Th2etlClient
from th2etl.pipelines.result import RunStatus

from .servers import uvicorn_server


@pytest.fixture
def gate_bloc_type() -> Iterator[threading.Event]:
    """A bloc type that waits for the event it yields (at most 30 s) or its run's cancel."""
    from th2etl.blocs import TransformerBloc, register_bloc
    from th2etl.blocs.registry import unregister_bloc

    opened = threading.Event()

    @register_bloc
    class Gate(TransformerBloc):
        bloc_type = "test_queue_gate"

        def run(self, context: Any, rows: Any) -> Any:
            opened.wait(30)
            return rows

    try:
        yield opened
    finally:
        opened.set()
        unregister_bloc("test_queue_gate")


def test_queued_runs_are_not_finished_the_queue_is_bounded_and_drained(
    storage: Any, gate_bloc_type: threading.Event
) -> None:
    app = create_app(
        storage,
        Settings(max_queued_runs=1),
        start_scheduler=False,
        api_key="",
        run_workers=1,
    )
    with uvicorn_server(app) as url:
        client = Th2etlClient(url)
        client.create_bloc("gate", "test_queue_gate")
        client.create_pipeline("gated", [["gate"]])
        first = client.run_pipeline("gated")
        second = client.run_pipeline("gated")  # the only worker is busy: it waits
        assert (first["status"], second["status"]) == ("running", "queued")
        with pytest.raises(Th2etlApiError, match=r"TH2ETL_MAX_QUEUED_RUNS is 1") as full:
            client.run_pipeline("gated")
        assert full.value.status == 429
        # The client and the overlap checks count a queued run as not finished.
        with pytest.raises(TimeoutError, match=r"is still 'queued'"):
            client.wait_for_run(second["run_id"], timeout=0.3, interval=0.1)
        assert {run.run_id for run in storage.active_runs()} == {
            first["run_id"],
            second["run_id"],
        }
        gate_bloc_type.set()  # the first ends; the freed worker takes the queued one
        assert client.wait_for_run(first["run_id"], timeout=30)["status"] == "succeeded"
        done = client.wait_for_run(second["run_id"], timeout=30)
        assert done["status"] == "succeeded", done["error"]
        assert done["started_by"] == "api"
        assert done["owner_id"].startswith("api-")
        assert storage.get_run(second["run_id"]).definition["pipeline"]["stages"] == [["gate"]]
        with pytest.raises(Th2etlApiError, match=r"already finished \(succeeded\)") as ended:
            client.cancel_run(first["run_id"])
        assert ended.value.status == 409
    assert storage.count_active_runs() == 0
    assert storage.get_run(first["run_id"]).status is RunStatus.SUCCEEDED
