"""Progress while rows flow: the run's record (read through the API) and `th2etl run`'s lines."""

from __future__ import annotations

import io
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.api.conftest import LOCAL
from tests.conftest import wait_until
from tests.pipelines.test_streaming import Counter, Opener
from th2etl import Pipeline, register_bloc
from th2etl.blocs import unregister_bloc
from th2etl.cli.run import ProgressPrinter


@pytest.fixture(autouse=True)
def types() -> Iterator[None]:
    register_bloc(Counter)
    register_bloc(Opener)
    Counter.gates, Counter.fail_after, Counter.attempts = {}, {}, {}
    yield
    unregister_bloc(Counter.bloc_type)
    unregister_bloc(Opener.bloc_type)


def test_a_running_run_shows_its_blocs_rows_so_far_through_the_api(tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    from th2etl.api import create_app
    from th2etl.storage import DatabaseStorage

    gate = threading.Event()
    Counter.gates["load"] = gate  # the loader waits after its first batch of 5,000 rows
    storage = DatabaseStorage(tmp_path / "th2etl.db")
    app = create_app(storage, start_scheduler=False, api_key="")
    try:
        with TestClient(app, base_url=LOCAL) as client:
            storage.create_bloc("load", "test_counter", description="12000")
            storage.create_bloc("pass", "test_opener")
            storage.create_pipeline("flowing", stages=[["load"], ["pass"]])
            run_id = client.post("/pipelines/flowing/run").json()["run_id"]

            def rows_so_far() -> dict[str, Any]:
                run = client.get(f"/runs/{run_id}").json()
                return {b["bloc_name"]: (b["status"], b["rows_out"]) for b in run["blocs"]}

            try:
                wait_until(
                    lambda: rows_so_far().get("load") == ("running", 5000),
                    timeout=20,
                    what="the loader's first batch in the run's record",
                )
                assert client.get(f"/runs/{run_id}").json()["status"] == "running"
            finally:
                gate.set()
            wait_until(
                lambda: client.get(f"/runs/{run_id}").json()["status"] == "succeeded",
                timeout=20,
                what="the run to succeed",
            )
            assert rows_so_far() == {"load": ("succeeded", 12000), "pass": ("succeeded", 12000)}
    finally:
        storage.close()


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_th2etl_run_shows_rows_and_rate_in_place_on_a_terminal() -> None:
    gate = threading.Event()
    Counter.gates["load"] = gate
    screen = Terminal()

    class OpenAfterProgress(ProgressPrinter):
        def bloc_progress(self, context: Any, result: Any) -> None:
            super().bloc_progress(context, result)
            gate.set()

    pipeline = Pipeline("shown", [[Counter("load", {}, description="30")], [Opener("pass", {})]])
    result = pipeline.run(batch_size=10, listeners=[OpenAfterProgress(screen)])
    assert result.succeeded
    text = screen.getvalue()
    assert "\r\x1b[K  streaming load 10 rows (" in text
    assert " rows/s)" in text
    # Every later line first clears the status line.
    assert "\r\x1b[K  succeeded load" in text or "\r\x1b[K  succeeded pass" in text


def test_th2etl_run_prints_a_progress_line_now_and_then_when_not_on_a_terminal() -> None:
    gate = threading.Event()
    Counter.gates["load"] = gate
    out = io.StringIO()

    class OpenAfterProgress(ProgressPrinter):
        def bloc_progress(self, context: Any, result: Any) -> None:
            super().bloc_progress(context, result)
            gate.set()

    pipeline = Pipeline("logged", [[Counter("load", {}, description="30")]])
    assert pipeline.run(batch_size=10, listeners=[OpenAfterProgress(out, every=0)]).succeeded
    lines = out.getvalue().splitlines()
    assert any(line.startswith("  streaming load 10 rows (") for line in lines), lines
    assert "\r" not in out.getvalue()
