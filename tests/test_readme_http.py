"""The README's HTTP snippets, run as written against local servers.

The pipelines read their service addresses from the environment, as the README says, so they
run verbatim; the seed's HttpClient example names a public API, which is replaced by a local
server's address (no test reaches outside 127.0.0.1).
"""

from __future__ import annotations

import csv
import threading
from pathlib import Path

import pytest

from tests.helpers.test_client import PostsApi
from tests.http_servers import AdkServer, Reply, Request, serve
from tests.readme import code_blocks, exec_snippet

ORDERS_TOKEN = "orders-token-4711"


def test_api_to_csv_pipeline_runs_as_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def orders_api(request: Request) -> Reply:
        if request.headers.get("authorization") != f"Bearer {ORDERS_TOKEN}":
            return Reply(401, {"detail": "unauthorized"})
        if request.path != "/orders" or request.query.get("status") != ["open"]:
            return Reply(404, {"detail": "no such listing"})
        items = [{"id": 1, "total": 9.5}, {"id": 2, "total": 20}]
        return Reply(200, {"data": {"items": items, "count": 2}})

    [snippet] = code_blocks("API to CSV")
    with serve(orders_api) as server:
        monkeypatch.setenv("ORDERS_API_URL", server.url)
        monkeypatch.setenv("ORDERS_API_TOKEN", ORDERS_TOKEN)
        monkeypatch.chdir(tmp_path)
        namespace = exec_snippet(snippet)
    assert namespace["result"].succeeded, namespace["result"].summary()
    with (tmp_path / "orders.csv").open(newline="") as handle:
        assert list(csv.DictReader(handle)) == [
            {"id": "1", "total": "9.5"},
            {"id": "2", "total": "20"},
        ]
    assert "pipeline 'orders_to_csv' succeeded" in capsys.readouterr().out


def test_adk_enrichment_pipeline_runs_as_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "tickets.csv").write_text(
        "id,subject\n1,Cannot log in\n2,Invoice is wrong\n3,App crashes\n4,Refund please\n",
        encoding="utf-8",
    )
    agent = AdkServer(echo_agents=("triage_agent",), barrier=threading.Barrier(4))
    [snippet] = code_blocks("Enrich rows with an ADK agent")
    with serve(agent) as server:
        monkeypatch.setenv("ADK_URL", server.url)
        monkeypatch.chdir(tmp_path)
        namespace = exec_snippet(snippet)
    assert namespace["result"].succeeded, namespace["result"].summary()
    with (tmp_path / "tickets_triaged.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    prompt = "Give one word for the category of this support ticket: "
    assert [row["category"] for row in rows] == [
        f"echo: {prompt}{subject}"
        for subject in ("Cannot log in", "Invoice is wrong", "App crashes", "Refund please")
    ]
    assert agent.max_in_flight == 4  # the four tickets were with the agent at once


def test_the_api_client_example_runs_against_a_local_api(
    capsys: pytest.CaptureFixture[str],
) -> None:
    example, secure = code_blocks("API Client")
    assert 'HttpClient(base_url="https://jsonplaceholder.typicode.com")' in example
    with serve(PostsApi()) as server:
        namespace = exec_snippet(
            example.replace("https://jsonplaceholder.typicode.com", server.url)
        )
        namespace["client"].close()
        namespace = exec_snippet(
            "from th2etl.helpers.client import HttpClient\n" + secure
        )  # constructing a client sends nothing
        assert namespace["secure_client"].base_url == "https://api.example.com"
        namespace["secure_client"].close()
    out = capsys.readouterr().out
    assert "Found 3 posts." in out
    assert "Created new post with ID: 101" in out
    assert [f"{r.method} {r.path}" for r in server.requests] == ["GET /posts", "POST /posts"]
