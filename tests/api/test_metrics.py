"""GET /metrics scraped from a real uvicorn server and parsed with prometheus_client.parser."""

from __future__ import annotations

import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.api.servers import uvicorn_server
from th2etl.api import create_app
from th2etl.helpers.th2etl_client import Th2etlApiError, Th2etlClient
from th2etl.retention import prune

pytestmark = pytest.mark.slow


def scrape(url: str, key: str | None = "metrics-key") -> dict[tuple[str, tuple[Any, ...]], float]:
    from prometheus_client.parser import text_string_to_metric_families

    headers = {"Authorization": f"Bearer {key}"} if key else {}
    request = urllib.request.Request(f"{url}/metrics", headers=headers)
    with urllib.request.urlopen(request, timeout=30) as response:
        assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        text = response.read().decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


@pytest.fixture
def service(storage: Any) -> Iterator[str]:
    app = create_app(storage, api_key="metrics-key", start_scheduler=False)
    with uvicorn_server(app) as url:
        yield url


def test_metrics_count_runs_rows_durations_and_lag(service: str, storage: Any) -> None:
    storage.create_bloc("double", "example_transformer", config={"factor": 2})
    storage.create_pipeline("metered", [["double"]])
    before = scrape(service)
    client = Th2etlClient(base_url=service, api_key="metrics-key")
    run = client.run_pipeline("metered")
    assert client.wait_for_run(run["run_id"])["status"] == "succeeded"
    due = datetime.now(UTC) - timedelta(seconds=3)
    storage.run_pipeline("metered", scheduler_name="hourly_meter", scheduled_time=due)
    after = scrape(service)

    def delta(name: str, **labels: str) -> float:
        key = (name, tuple(sorted(labels.items())))
        return after.get(key, 0.0) - before.get(key, 0.0)

    assert delta("th2etl_runs_total", pipeline="metered", status="succeeded") == 2
    assert delta("th2etl_run_duration_seconds_count", pipeline="metered") == 2
    assert delta("th2etl_run_duration_seconds_bucket", pipeline="metered", le="+Inf") == 2
    assert delta("th2etl_bloc_rows_total", pipeline="metered", bloc="double", direction="in") == 0
    assert delta("th2etl_scheduler_lag_seconds_count", scheduler="hourly_meter") == 1
    assert delta("th2etl_scheduler_lag_seconds_sum", scheduler="hourly_meter") >= 3
    assert after[("th2etl_database_up", ())] == 1.0
    assert after[("th2etl_queued_manual_runs", ())] == 0.0

    # Retention deletes rows, never counts.
    assert prune(storage, timedelta(seconds=1), now=datetime.now(UTC) + timedelta(days=1)).runs
    assert (
        scrape(service)[("th2etl_runs_total", (("pipeline", "metered"), ("status", "succeeded")))]
        == (after[("th2etl_runs_total", (("pipeline", "metered"), ("status", "succeeded")))])
    )


def test_metrics_need_the_api_key(service: str) -> None:
    with pytest.raises(Th2etlApiError, match="HTTP 401"):
        Th2etlClient(base_url=service, api_key="wrong").request("GET", "/metrics")


@pytest.mark.parametrize("storage", ["sqlite"], indirect=True)
def test_a_database_that_is_down_is_reported_as_zero(storage: Any) -> None:
    from th2etl.storage import DatabaseStorage

    unreachable = DatabaseStorage("postgresql://nobody@127.0.0.1:1/none", connect=False)
    app = create_app(unreachable, api_key="metrics-key", start_scheduler=False)
    with uvicorn_server(app) as url:
        samples = scrape(url)
    assert samples[("th2etl_database_up", ())] == 0.0
    assert ("th2etl_queued_manual_runs", ()) not in samples
