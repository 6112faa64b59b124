"""Browser safety (th2etl/api/security.py): cross-origin writes, DNS rebinding, form bodies."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from tests.api.conftest import LOCAL
from tests.api.servers import uvicorn_server
from th2etl.api import create_app

FORM = {"Content-Type": "application/x-www-form-urlencoded"}


@pytest.fixture
def client(storage: Any) -> Iterator[TestClient]:
    storage.create_bloc("double", "example_transformer")
    storage.create_pipeline("p", stages=[["double"]])
    app = create_app(storage, start_scheduler=False, api_key="", allowed_hosts=["etl.example.com"])
    with TestClient(app, base_url=LOCAL) as test_client:
        yield test_client


@pytest.mark.slow
def test_the_cross_origin_form_post_of_the_issue_is_refused_on_a_real_server(
    storage: Any,
) -> None:
    """A page on evil.example posting a form to the keyless local service starts nothing."""
    storage.create_bloc("double", "example_transformer")
    storage.create_pipeline("p", stages=[["double"]])
    app = create_app(storage, start_scheduler=False, api_key="")
    with uvicorn_server(app) as url:
        answer = httpx.post(
            f"{url}/pipelines/p/run", headers={"Origin": "http://evil.example", **FORM}
        )
        assert answer.status_code == 403
        assert answer.json()["detail"].startswith(
            "cross-origin request refused: its Origin 'http://evil.example' is not this service"
        )
        # The same page after a DNS rebinding of its own name to 127.0.0.1: refused by Host.
        port = url.rsplit(":", 1)[1]
        rebound = httpx.get(f"{url}/pipelines", headers={"Host": f"evil.example:{port}"})
        assert rebound.status_code == 400
        assert "the Host header 'evil.example:" in rebound.json()["detail"]
        assert "TH2ETL_ALLOWED_HOSTS" in rebound.json()["detail"]
        # A script (no Origin, JSON or no body) still works keyless on loopback.
        assert httpx.post(f"{url}/pipelines/p/run", json={}).status_code == 202
    assert len(storage.list_runs()) == 1


@pytest.mark.parametrize(
    ("headers", "status", "message"),
    [
        ({"Origin": "http://evil.example"}, 403, "its Origin 'http://evil.example'"),
        ({"Origin": "null"}, 403, "its Origin 'null'"),
        ({"Origin": "http://127.0.0.1:8000"}, 403, "is not this service (127.0.0.1)"),
        ({"Referer": "https://evil.example/page"}, 403, "its Referer 'https://evil.example/"),
        ({"Cookie": "th2etl_session=x"}, 403, "must carry an Origin or Referer header"),
        (FORM, 415, "this endpoint takes JSON, not 'application/x-www-form-urlencoded'"),
        ({"Content-Type": "multipart/form-data; boundary=x"}, 415, "not 'multipart/form-data'"),
    ],
)
def test_browser_shaped_writes_are_refused_and_change_nothing(
    client: TestClient, headers: dict[str, str], status: int, message: str
) -> None:
    for method, path in (
        ("POST", "/pipelines/p/run"),
        ("POST", "/blocs"),
        ("PUT", "/blocs/double"),
        ("DELETE", "/pipelines/p"),
    ):
        answer = client.request(method, path, headers=headers)
        assert answer.status_code == status, (method, path, answer.text)
        assert message in answer.json()["detail"]
    assert client.get("/runs").json() == []
    assert [p["name"] for p in client.get("/pipelines").json()] == ["p"]


def test_same_origin_writes_and_reads_from_anywhere_pass(client: TestClient) -> None:
    same = {"Origin": "http://127.0.0.1", "Cookie": "th2etl_session=x"}
    assert client.post("/pipelines/p/run", json={}, headers=same).status_code == 202
    referer = {"Referer": "http://127.0.0.1/ui/pipelines/p"}
    assert client.post("/pipelines/p/run", json={}, headers=referer).status_code == 202
    # Reading is not a write: a cross-origin GET gets its answer (the browser hides it from
    # the page unless CORS allows, which the service never does).
    assert client.get("/pipelines", headers={"Origin": "http://evil.example"}).status_code == 200
    assert "access-control-allow-origin" not in client.get("/pipelines").headers
    # A key (Bearer) with a cookie and no Origin is a script: allowed.
    scripted = {"Cookie": "th2etl_session=x", "Authorization": "Bearer ignored-when-keyless"}
    assert client.post("/pipelines/p/run", json={}, headers=scripted).status_code == 202


@pytest.mark.parametrize(
    ("host", "status"),
    [
        ("127.0.0.1:8000", 200),
        ("[::1]:8000", 200),
        ("10.1.2.3", 200),
        ("localhost:8000", 200),
        ("etl.example.com", 200),
        ("ETL.example.com.:443", 200),
        (socket.gethostname(), 200),
        ("evil.example", 400),
        ("etl.example.com.evil.example", 400),
        ("", 400),
    ],
)
def test_host_header_is_an_address_or_a_known_name(
    client: TestClient, host: str, status: int
) -> None:
    answer = client.get("/health", headers={"Host": host})
    assert answer.status_code == status, answer.text


def test_allowed_hosts_come_from_the_environment_and_star_allows_all(
    storage: Any, clean_env: pytest.MonkeyPatch
) -> None:
    clean_env.setenv("TH2ETL_ALLOWED_HOSTS", " etl.example.com , other.example ")
    app = create_app(storage, start_scheduler=False, api_key="")
    with TestClient(app, base_url="http://other.example") as client:
        assert client.get("/blocs").status_code == 200
        assert client.get("/blocs", headers={"Host": "evil.example"}).status_code == 400
    app = create_app(storage, start_scheduler=False, api_key="", allowed_hosts=["*"])
    with TestClient(app, base_url="http://anything.example") as client:
        assert client.get("/blocs").status_code == 200
    app = create_app(storage, start_scheduler=False, api_key="", bound_host="box.lan")
    with TestClient(app, base_url="http://box.lan:8000") as client:
        assert client.get("/blocs").status_code == 200
