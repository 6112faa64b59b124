"""Requests shaped exactly like th2etl 0.0.15's ``Th2etlClient`` (requests, JSON bodies with
``null`` for every optional field it was not given, its key from ``API_KEY``) keep working."""

from __future__ import annotations

from typing import Any

import pytest
import requests

from tests.api.servers import uvicorn_server
from tests.conftest import wait_until
from th2etl.api import create_app


class OldClient:
    """th2etl 0.0.15's Th2etlClient, as it builds its requests (its HttpClient sends
    ``session.request(method, url, json=...)`` with ``Authorization: Bearer <auth_token>``)."""

    def __init__(self, base_url: str, auth_token: str) -> None:
        self.base_url = base_url
        self.session = requests.Session()
        self.session.headers.update({"Authorization": f"Bearer {auth_token}"})

    def _request(self, method: str, endpoint: str, json_data: Any = None) -> Any:
        url = f"{self.base_url}/{endpoint.lstrip('/')}"
        response = self.session.request(method=method, url=url, params=None, json=json_data)
        response.raise_for_status()
        return None if response.status_code == 204 or not response.content else response.json()

    def create_bloc(
        self,
        name: str,
        bloc_type: str,
        config: dict[str, Any],
        dependencies: list[str] | None = None,
        description: str | None = None,
    ) -> Any:
        body = {
            "name": name,
            "bloc_type": bloc_type,
            "config": config,
            "dependencies": dependencies,
            "description": description,
        }
        return self._request("POST", "/blocs", body)

    def create_trigger(
        self, name: str, pipeline_name: str, cron_expression: str, description: str | None = None
    ) -> Any:
        body = {
            "name": name,
            "pipeline_name": pipeline_name,
            "cron_expression": cron_expression,
            "description": description,
        }
        return self._request("POST", "/triggers", body)

    def create_scheduler(
        self, name: str, pipeline_name: str, trigger_name: str, description: str | None = None
    ) -> Any:
        body = {
            "name": name,
            "pipeline_name": pipeline_name,
            "trigger_name": trigger_name,
            "description": description,
        }
        return self._request("POST", "/schedulers", body)

    def update(self, kind: str, name: str, **kwargs: Any) -> Any:
        return self._request("PUT", f"/{kind}/{name}", kwargs)


@pytest.mark.slow
def test_the_old_client_drives_the_service(
    storage: Any, clean_env: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from th2etl.api import server

    clean_env.setenv("API_KEY", "old-name-key")
    clean_env.setattr(server, "_warned_old_name", False)  # logged once per process
    with caplog.at_level("WARNING", logger="th2etl.api"):
        app = create_app(storage, start_scheduler=False)
    assert "rename it to TH2ETL_API_KEY" in caplog.text
    with uvicorn_server(app) as url:
        assert requests.get(f"{url}/blocs").status_code == 401  # API_KEY is the key
        old = OldClient(url, "old-name-key")
        bloc = old.create_bloc("double", "example_transformer", {"factor": 2})
        assert (bloc["description"], bloc["config"]) == ("", {"factor": 2})
        old.create_bloc("triple", "example_transformer", {"factor": 3}, dependencies=["double"])
        # 0.0.15's server took a pipeline as {"name", "stages", "description"}.
        pipeline = old._request(
            "POST",
            "/pipelines",
            {"name": "p", "stages": [["double"], ["triple"]], "description": None},
        )
        assert pipeline["description"] == ""
        trigger = old.create_trigger("hourly", "p", "0 * * * *")
        assert (trigger["timezone"], trigger["description"]) == ("UTC", "")
        scheduler = old.create_scheduler("p_hourly", "p", "hourly")
        assert (scheduler["enabled"], scheduler["description"]) == (True, "")

        # On update, null keeps the stored value.
        old.update("blocs", "double", description="doubles", dependencies=None)
        kept = old.update("blocs", "double", config={"factor": 4}, description=None)
        assert (kept["description"], kept["config"]) == ("doubles", {"factor": 4})
        assert old.update("schedulers", "p_hourly", description=None)["enabled"] is True
        old.update("schedulers", "p_hourly", variables={"region": "north", "day": "0"})

        # 0.0.15's routes: run a scheduler now, read a run's log events.
        started = old._request("POST", "/schedulers/p_hourly/run", {"variables": {"day": "1"}})
        assert (started["pipeline_name"], started["scheduler_name"]) == ("p", "p_hourly")
        run_id = started["run_id"]
        wait_until(
            lambda: old._request("GET", f"/runs/{run_id}")["status"] == "succeeded",
            timeout=30,
            what="the scheduler's run",
        )
        # The scheduler's stored variables, the request's over them (as 0.0.15 did).
        assert old._request("GET", f"/runs/{run_id}")["variables"] == {
            "region": "north",
            "day": "1",
        }
        events = old._request("GET", f"/runs/{run_id}/logs")
        assert events[0]["run_id"] == run_id
        assert events[0]["message"] == f"run {run_id} of pipeline 'p' started"
        assert [e["id"] for e in events] == list(range(1, len(events) + 1))
        assert any("bloc 'triple'" in e["message"] for e in events)
        assert len(old._request("GET", f"/runs/{run_id}/logs?limit=1")) == 1
        old._request("DELETE", "/schedulers/p_hourly")
        with pytest.raises(requests.HTTPError) as missing:
            old._request("POST", "/schedulers/p_hourly/run", {"variables": {}})
        assert missing.value.response.status_code == 404
        assert "p_hourly" in missing.value.response.json()["detail"]


def test_a_required_field_sent_as_null_is_still_refused(storage: Any) -> None:
    from fastapi.testclient import TestClient

    from tests.api.conftest import LOCAL

    with TestClient(create_app(storage, start_scheduler=False, api_key=""), base_url=LOCAL) as c:
        answer = c.post("/blocs", json={"name": "x", "bloc_type": None})
        assert answer.status_code == 422
        assert "bloc_type: Input should be a valid string" in answer.json()["detail"]
        assert c.get("/blocs").json() == []


def test_the_key_is_read_from_th2etl_api_key_first(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    from th2etl.api import server

    assert server.service_api_key({"TH2ETL_API_KEY": "new", "API_KEY": "old"}) == "new"
    assert server.service_api_key({"API_KEY": " "}) is None
    assert server.service_api_key({}) is None
    monkeypatch.setattr(server, "_warned_old_name", False)
    with caplog.at_level("WARNING", logger="th2etl.api"):
        assert server.service_api_key({"API_KEY": "old"}) == "old"
        assert server.service_api_key({"API_KEY": "old"}) == "old"
    assert caplog.text.count("API_KEY, th2etl 0.0.x's name") == 1
