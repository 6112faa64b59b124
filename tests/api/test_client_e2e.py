"""Th2etlClient against a real uvicorn server on 127.0.0.1, end to end."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.api.servers import free_port, uvicorn_server
from th2etl.api import create_app
from th2etl.exceptions import Th2etlError
from th2etl.helpers.th2etl_client import Th2etlApiError, Th2etlClient

pytestmark = pytest.mark.slow


@pytest.fixture
def service(storage: Any) -> Iterator[str]:
    """The API and its scheduler, served by uvicorn, with an API key."""
    app = create_app(storage, api_key="test-key")
    with uvicorn_server(app) as url:
        yield url


def test_client_drives_the_service_end_to_end(service: str, tmp_path: Path) -> None:
    client = Th2etlClient(base_url=service, api_key="test-key")
    health = client.health_check()
    assert health["components"]["database"] == {"status": "up"}

    (tmp_path / "sales.csv").write_text("region,units\nnorth,3\nsouth,5\n")
    created = client.create_bloc(
        name="my-new-bloc",
        bloc_type="csv_loader",
        config={"file_path": str(tmp_path / "sales.csv")},
        description="sales of the day",
    )
    assert created["name"] == "my-new-bloc"
    client.create_bloc("double", "example_transformer", config={"factor": 2})
    client.create_bloc(
        "export", "csv_exporter", config={"file_path": str(tmp_path / "out-${var:day}.csv")}
    )
    assert [b["name"] for b in client.list_blocs()] == ["double", "export", "my-new-bloc"]
    assert client.update_bloc("double", config={"factor": 3})["config"] == {"factor": 3}
    assert client.get_bloc("double")["config"] == {"factor": 3}

    client.create_pipeline("sales", [["my-new-bloc"], ["double"], ["export"]])
    assert [p["name"] for p in client.list_pipelines()] == ["sales"]
    assert client.update_pipeline("sales", description="daily")["description"] == "daily"
    assert client.get_pipeline("sales")["stages"] == [["my-new-bloc"], ["double"], ["export"]]
    assert client.pipeline_graph("sales").startswith("graph TD\n")

    client.create_trigger("hourly", "sales", "0 * * * *", timezone="Europe/Paris")
    assert client.get_trigger("hourly")["timezone"] == "Europe/Paris"
    preview = client.preview_trigger("hourly", n=2)
    assert len(preview["fire_times"]) == 2
    assert preview["fire_times"][0]["local"].endswith(("+01:00", "+02:00"))
    client.create_scheduler("sales_hourly", "sales", "hourly")
    assert client.update_scheduler("sales_hourly", enabled=False)["enabled"] is False
    assert [s["name"] for s in client.list_schedulers()] == ["sales_hourly"]
    assert [t["name"] for t in client.list_triggers()] == ["hourly"]

    started = client.run_pipeline("sales", variables={"day": "2026-03-07"})
    run = client.wait_for_run(started["run_id"], timeout=30)
    assert run["status"] == "succeeded", run
    assert [b["bloc_name"] for b in run["blocs"]] == ["my-new-bloc", "double", "export"]
    assert (tmp_path / "out-2026-03-07.csv").read_text().splitlines()[1:] == ["north,9", "south,15"]
    assert client.get_run(started["run_id"])["variables"] == {"day": "2026-03-07"}
    assert "export" in client.get_run_log(started["run_id"])
    assert [r["run_id"] for r in client.list_runs(pipeline="sales", limit=10)] == [
        started["run_id"]
    ]
    assert client.list_runs(status="failed") == []
    assert any(t["bloc_type"] == "csv_loader" for t in client.bloc_types())

    with pytest.raises(Th2etlApiError, match=r"already finished \(succeeded\)") as finished:
        client.cancel_run(started["run_id"])
    assert finished.value.status == 409

    client.delete_scheduler("sales_hourly")
    client.delete_trigger("hourly")
    client.delete_pipeline("sales")
    for name in ("my-new-bloc", "double", "export"):
        client.delete_bloc(name)
    assert client.list_blocs() == []


def test_api_errors_raise_with_status_and_detail(service: str) -> None:
    client = Th2etlClient(base_url=service, api_key="test-key")
    with pytest.raises(
        Th2etlApiError, match=r"GET /blocs/ghost failed with HTTP 404: .*ghost"
    ) as missing:
        client.get_bloc("ghost")
    assert missing.value.status == 404
    assert "ghost" in missing.value.detail
    assert isinstance(missing.value, Th2etlError)

    with pytest.raises(Th2etlApiError, match=r"unknown config key 'path'") as invalid:
        client.create_bloc("x", "csv_loader", config={"path": "a.csv"})
    assert invalid.value.status == 422

    with pytest.raises(Th2etlApiError, match=r"HTTP 422: invalid request: stages") as wrong:
        client.request("POST", "/pipelines", json_body={"name": "p", "stages": "load"})
    assert isinstance(wrong.value.detail, str)

    odd = client.request("GET", "/blocs/a%20b", ok=(404, 422))
    assert odd[0] in (404, 422)

    anonymous = Th2etlClient(base_url=service, api_key="")
    with pytest.raises(Th2etlApiError, match=r"HTTP 401: no API key was sent") as denied:
        anonymous.list_pipelines()
    assert denied.value.status == 401
    assert anonymous.health_check()["components"]["database"]["status"] == "up"


def test_client_defaults_come_from_the_environment(clean_env: pytest.MonkeyPatch) -> None:
    assert Th2etlClient().base_url == "http://127.0.0.1:8000"
    clean_env.setenv("TH2ETL_API_URL", "http://example.invalid:9000/")
    clean_env.setenv("TH2ETL_API_KEY", "k")
    client = Th2etlClient()
    assert client.base_url == "http://example.invalid:9000"
    assert repr(client) == "Th2etlClient(base_url='http://example.invalid:9000', api_key=***)"
    with pytest.raises(Th2etlError, match=r"base_url 'ftp://x' is not an http\(s\) URL"):
        Th2etlClient(base_url="ftp://x")


def test_a_base_url_with_credentials_is_refused_without_showing_them() -> None:
    with pytest.raises(
        Th2etlError, match=r"base_url 'http://\*\*\*@127.0.0.1:8000' holds a user name or"
    ) as exc:
        Th2etlClient(base_url="http://bob:s3cret@127.0.0.1:8000")
    assert "s3cret" not in str(exc.value) and "pass api_key=" in str(exc.value)


def test_unreachable_service_raises_with_no_status() -> None:
    client = Th2etlClient(base_url=f"http://127.0.0.1:{free_port()}", timeout=5)
    with pytest.raises(
        Th2etlApiError, match=r"cannot reach the th2etl API at http://127.0.0.1:"
    ) as exc:
        client.health_check()
    assert exc.value.status is None
