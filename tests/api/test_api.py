"""The REST API against real storage (SQLite and PostgreSQL), through FastAPI's TestClient."""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.api.conftest import LOCAL
from th2etl.api import create_app
from th2etl.clock import FakeClock

NOW = datetime(2026, 3, 7, 12, 0, tzinfo=UTC)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(NOW)


@pytest.fixture
def client(storage: Any, clock: FakeClock) -> Iterator[TestClient]:
    app = create_app(storage, start_scheduler=False, api_key="", clock=clock, max_body_bytes=20_000)
    with TestClient(app, base_url=LOCAL) as test_client:
        yield test_client


@pytest.fixture
def sales_csv(tmp_path: Path) -> Path:
    path = tmp_path / "sales.csv"
    path.write_text("region,units\nnorth,3\nsouth,5\n")
    return path


def _define_pipeline(client: TestClient, sales_csv: Path, tmp_path: Path) -> None:
    for body in (
        {"name": "load", "bloc_type": "csv_loader", "config": {"file_path": str(sales_csv)}},
        {"name": "double", "bloc_type": "example_transformer", "config": {"factor": 2}},
        {"name": "triple", "bloc_type": "example_transformer", "config": {"factor": 3}},
        {
            "name": "export",
            "bloc_type": "csv_exporter",
            "config": {"file_path": str(tmp_path / "out.csv"), "source_bloc": "double"},
        },
    ):
        answer = client.post("/blocs", json=body)
        assert answer.status_code == 201, answer.text
    stages = [["load"], ["double", "triple"], ["export"]]
    answer = client.post("/pipelines", json={"name": "sales", "stages": stages})
    assert answer.status_code == 201, answer.text


def _wait_for_run(client: TestClient, run_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + 30
    while True:
        run: dict[str, Any] = client.get(f"/runs/{run_id}").json()
        if run["status"] != "running":
            return run
        assert time.monotonic() < deadline, f"run {run_id} still running after 30s"
        time.sleep(0.02)


# -- definitions ---------------------------------------------------------------------------------


def test_bloc_crud(client: TestClient, sales_csv: Path) -> None:
    created = client.post(
        "/blocs",
        json={
            "name": "load",
            "bloc_type": "csv_loader",
            "config": {"file_path": str(sales_csv)},
            "description": "daily sales",
        },
    )
    assert created.status_code == 201
    assert created.json()["config"] == {"file_path": str(sales_csv)}
    assert created.json()["description"] == "daily sales"

    assert [b["name"] for b in client.get("/blocs").json()] == ["load"]
    assert client.get("/blocs/load").json()["bloc_type"] == "csv_loader"

    updated = client.put(
        "/blocs/load", json={"config": {"file_path": "other.csv", "delimiter": ";"}}
    )
    assert updated.status_code == 200, updated.text
    assert updated.json()["config"] == {"file_path": "other.csv", "delimiter": ";"}
    assert updated.json()["description"] == "daily sales"
    assert client.get("/blocs").json()[0]["config"]["delimiter"] == ";"

    assert client.delete("/blocs/load").status_code == 204
    missing = client.get("/blocs/load")
    assert missing.status_code == 404
    assert "load" in missing.json()["detail"]
    assert client.get("/blocs").json() == []


def test_conflicts_are_409_and_not_found_is_404(
    client: TestClient, sales_csv: Path, tmp_path: Path
) -> None:
    _define_pipeline(client, sales_csv, tmp_path)
    again = client.post(
        "/blocs", json={"name": "load", "bloc_type": "csv_loader", "config": {"file_path": "x.csv"}}
    )
    assert again.status_code == 409
    assert "load" in again.json()["detail"]
    in_use = client.delete("/blocs/double")
    assert in_use.status_code == 409
    assert "sales" in in_use.json()["detail"]
    for path in ("/pipelines/nope", "/triggers/nope", "/schedulers/nope", "/runs/nope"):
        answer = client.get(path)
        assert answer.status_code == 404, path
        assert "nope" in answer.json()["detail"]
    assert client.delete("/pipelines/nope").status_code == 404
    assert client.post("/pipelines/nope/run", json={}).status_code == 404


def test_storage_validation_is_422_with_its_message(client: TestClient) -> None:
    unknown_type = client.post("/blocs", json={"name": "x", "bloc_type": "no_such_type"})
    assert unknown_type.status_code == 422
    assert "unknown bloc_type 'no_such_type'" in unknown_type.json()["detail"]
    bad_config = client.post(
        "/blocs", json={"name": "x", "bloc_type": "csv_loader", "config": {"path": "a.csv"}}
    )
    assert bad_config.status_code == 422
    assert "unknown config key 'path'" in bad_config.json()["detail"]
    bad_stages = client.post("/pipelines", json={"name": "p", "stages": [["ghost"]]})
    assert bad_stages.status_code == 422
    assert "ghost" in bad_stages.json()["detail"]
    bad_cron = client.post(
        "/triggers",
        json={"name": "t", "pipeline_name": "p", "cron_expression": "* * *"},
    )
    assert bad_cron.status_code == 422
    assert "has 3 field(s); use 5 fields" in bad_cron.json()["detail"]
    for path in ("/blocs", "/pipelines", "/triggers", "/schedulers"):
        assert client.get(path).json() == []


def test_triggers_schedulers_and_preview(
    client: TestClient, sales_csv: Path, tmp_path: Path
) -> None:
    _define_pipeline(client, sales_csv, tmp_path)
    trigger = client.post(
        "/triggers",
        json={
            "name": "nightly",
            "pipeline_name": "sales",
            "cron_expression": "30 2 * * *",
            "timezone": "America/New_York",
        },
    )
    assert trigger.status_code == 201, trigger.text
    scheduler = client.post(
        "/schedulers",
        json={"name": "sales_nightly", "pipeline_name": "sales", "trigger_name": "nightly"},
    )
    assert scheduler.status_code == 201, scheduler.text
    assert scheduler.json()["enabled"] is True

    preview = client.get("/triggers/nightly/preview", params={"n": 3})
    assert preview.status_code == 200
    times = preview.json()["fire_times"]
    # Now is 07:00 in New York; 2026-03-08 02:30 does not exist there: it runs when the clocks
    # jump, at 03:00 EDT.
    assert preview.json()["after"] == NOW.isoformat()
    assert times == [
        {"local": "2026-03-08T03:00:00-04:00", "utc": "2026-03-08T07:00:00+00:00"},
        {"local": "2026-03-09T02:30:00-04:00", "utc": "2026-03-09T06:30:00+00:00"},
        {"local": "2026-03-10T02:30:00-04:00", "utc": "2026-03-10T06:30:00+00:00"},
    ]
    assert client.get("/triggers/nightly/preview", params={"n": 0}).status_code == 422
    assert client.get("/triggers/nightly/preview", params={"n": "many"}).status_code == 422

    disabled = client.put("/schedulers/sales_nightly", json={"enabled": False})
    assert disabled.json()["enabled"] is False
    assert client.get("/schedulers").json()[0]["enabled"] is False
    changed = client.put("/triggers/nightly", json={"cron_expression": "0 6 * * *"})
    assert changed.json()["cron_expression"] == "0 6 * * *"

    assert client.delete("/triggers/nightly").status_code == 409
    assert client.delete("/pipelines/sales").status_code == 409
    assert client.delete("/schedulers/sales_nightly").status_code == 204
    assert client.delete("/triggers/nightly").status_code == 204
    assert client.delete("/pipelines/sales").status_code == 204


def test_graph_draws_stages_and_data_flows(
    client: TestClient, sales_csv: Path, tmp_path: Path
) -> None:
    _define_pipeline(client, sales_csv, tmp_path)
    graph = client.get("/pipelines/sales/graph").json()
    assert graph["stages"] == [["load"], ["double", "triple"], ["export"]]
    assert graph["mermaid"].splitlines() == [
        "graph TD",
        '  subgraph S1 ["Stage 1"]',
        "    direction LR",
        '    B1_1["load"]',
        "  end",
        '  subgraph S2 ["Stage 2"]',
        "    direction LR",
        '    B2_1["double"]',
        '    B2_2["triple"]',
        "  end",
        '  subgraph S3 ["Stage 3"]',
        "    direction LR",
        '    B3_1["export"]',
        "  end",
        "  B1_1 --> B2_1",
        "  B1_1 --> B2_2",
        "  B2_1 --> B3_1",  # export reads source_bloc 'double' only
    ]


def test_run_now_is_202_then_recorded_with_blocs_and_log(
    client: TestClient, sales_csv: Path, tmp_path: Path
) -> None:
    _define_pipeline(client, sales_csv, tmp_path)
    started = client.post("/pipelines/sales/run", json={"variables": {"day": "2026-03-07"}})
    assert started.status_code == 202
    run_id = started.json()["run_id"]
    # Recorded before the answer: readable at once.
    assert client.get(f"/runs/{run_id}").status_code == 200

    run = _wait_for_run(client, run_id)
    assert run["status"] == "succeeded", run
    assert run["variables"] == {"day": "2026-03-07"}
    assert [(b["bloc_name"], b["status"], b["rows_in"]) for b in run["blocs"]] == [
        ("load", "succeeded", 0),
        ("double", "succeeded", 2),
        ("triple", "succeeded", 2),
        ("export", "succeeded", 2),
    ]
    assert (tmp_path / "out.csv").read_text().splitlines()[1:] == ["north,6", "south,10"]
    log = client.get(f"/runs/{run_id}/log").json()
    assert log["run_id"] == run_id
    assert "export" in log["log"]

    listed = client.get("/runs", params={"pipeline": "sales", "status": "succeeded"}).json()
    assert [r["run_id"] for r in listed] == [run_id]
    assert client.get("/runs", params={"pipeline": "other"}).json() == []
    assert client.get("/runs", params={"status": "weird"}).status_code == 422
    naive = client.get("/runs", params={"since": "2026-03-07T00:00:00"})
    assert naive.status_code == 422
    assert "has no timezone" in naive.json()["detail"]
    assert client.get("/runs", params={"since": "2000-01-01T00:00:00Z", "limit": 5}).json()
    assert client.get("/runs", params={"limit": 0}).status_code == 422

    finished = client.post(f"/runs/{run_id}/cancel")
    assert finished.status_code == 409
    assert "already finished (succeeded)" in finished.json()["detail"]
    assert client.post("/runs/nope/cancel").status_code == 404


def test_a_failing_run_is_recorded_failed(client: TestClient, tmp_path: Path) -> None:
    client.post(
        "/blocs",
        json={
            "name": "load",
            "bloc_type": "csv_loader",
            "config": {"file_path": str(tmp_path / "missing.csv")},
        },
    )
    client.post("/pipelines", json={"name": "broken", "stages": [["load"]]})
    run = _wait_for_run(client, client.post("/pipelines/broken/run").json()["run_id"])
    assert run["status"] == "failed"
    assert "missing.csv" in run["error"]


def test_bloc_types_lists_every_registered_type(client: TestClient) -> None:
    from th2etl.blocs.registry import bloc_types

    answer = client.get("/bloc-types").json()
    assert [t["bloc_type"] for t in answer] == list(bloc_types())
    csv_loader = next(t for t in answer if t["bloc_type"] == "csv_loader")
    assert csv_loader["kind"] == "loader"
    assert any(f["name"] == "file_path" and f["required"] for f in csv_loader["config"])


# -- bad input ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        (b'{"name": "x", "bloc_type": ', 400, "the request body is not valid JSON"),
        (b"[1, 2]", 422, "Input should be a valid dictionary"),
        (
            json.dumps({"name": 5, "bloc_type": "csv_loader"}).encode(),
            422,
            "name: Input should be a valid string",
        ),
        (
            json.dumps({"name": "x", "bloc_type": "csv_loader", "config": "a.csv"}).encode(),
            422,
            "config: Input should be a valid dictionary",
        ),
        (
            json.dumps({"name": "x", "bloc_type": "csv_loader", "colour": "red"}).encode(),
            422,
            "colour: Extra inputs are not permitted",
        ),
        (json.dumps({"bloc_type": "csv_loader"}).encode(), 422, "name: Field required"),
        (
            json.dumps(
                {"name": "drop table;", "bloc_type": "csv_loader", "config": {"file_path": "a"}}
            ).encode(),
            422,
            "has characters that are not allowed",
        ),
        (
            json.dumps(
                {"name": "x" * 200, "bloc_type": "csv_loader", "config": {"file_path": "a"}}
            ).encode(),
            422,
            "use at most 128",
        ),
        (
            json.dumps(
                {"name": "x", "bloc_type": "csv_loader", "config": {"file_path": "a" * 30_000}}
            ).encode(),
            413,
            "the request body is too large",
        ),
    ],
)
def test_bad_bodies_are_clear_4xx_and_store_nothing(
    client: TestClient, body: bytes, status: int, message: str
) -> None:
    answer = client.post("/blocs", content=body, headers={"Content-Type": "application/json"})
    assert answer.status_code == status, answer.text
    assert message in answer.json()["detail"]
    assert "Traceback" not in answer.text
    assert client.get("/blocs").json() == []


def test_chunked_huge_body_is_413(client: TestClient) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"name": "x", "bloc_type": "csv_loader", "config": {"file_path": "'
        for _ in range(100):
            yield b"a" * 1000
        yield b'"}}'

    answer = client.post("/blocs", content=chunks(), headers={"Content-Type": "application/json"})
    assert answer.status_code == 413
    assert client.get("/blocs").json() == []


def test_wrong_types_in_updates_and_runs_are_422(
    client: TestClient, sales_csv: Path, tmp_path: Path
) -> None:
    _define_pipeline(client, sales_csv, tmp_path)
    assert client.put("/schedulers/x", json={"enabled": "yes"}).status_code == 422
    assert client.put("/pipelines/sales", json={"stages": "load"}).status_code == 422
    assert client.post("/pipelines/sales/run", json={"variables": ["a"]}).status_code == 422
    assert client.post("/pipelines/sales/run", json={"vars": {}}).status_code == 422
    assert client.get("/runs").json() == []
    assert client.get("/pipelines/sales").json()["stages"] == [
        ["load"],
        ["double", "triple"],
        ["export"],
    ]


# -- authentication -------------------------------------------------------------------------------


def test_api_key_is_required_everywhere_but_health(storage: Any) -> None:
    app = create_app(storage, start_scheduler=False, api_key="s3cret-key")
    with TestClient(app, base_url=LOCAL) as client:
        assert client.get("/health").status_code == 200
        for method, path in (
            ("GET", "/blocs"),
            ("GET", "/runs"),
            ("GET", "/bloc-types"),
            ("POST", "/blocs"),
        ):
            answer = client.request(method, path, json={})
            assert answer.status_code == 401, path
            assert answer.headers["WWW-Authenticate"] == "Bearer"
            assert "no API key was sent" in answer.json()["detail"]
        wrong = client.get("/blocs", headers={"Authorization": "Bearer s3cret-kez"})
        assert wrong.status_code == 401
        assert "the API key is wrong" in wrong.json()["detail"]
        basic = client.get("/blocs", headers={"Authorization": "Basic czNjcmV0LWtleQ=="})
        assert basic.status_code == 401
        bare = client.get("/blocs", headers={"Authorization": "s3cret-key"})
        assert bare.status_code == 401
        assert bare.json()["detail"] == (
            "the Authorization header does not start with 'Bearer '; send the header "
            "'Authorization: Bearer <key>' with the service's TH2ETL_API_KEY"
        )
        ok = client.get("/blocs", headers={"Authorization": "Bearer s3cret-key"})
        assert ok.status_code == 200
        created = client.post(
            "/blocs",
            json={"name": "x", "bloc_type": "example_transformer"},
            headers={"Authorization": "Bearer s3cret-key"},
        )
        assert created.status_code == 201


def test_api_key_defaults_to_the_environment(storage: Any, clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("TH2ETL_API_KEY", "from-env")
    with TestClient(create_app(storage, start_scheduler=False), base_url=LOCAL) as client:
        assert client.get("/blocs").status_code == 401
        assert client.get("/blocs", headers={"Authorization": "Bearer from-env"}).status_code == 200


# -- health and the scheduler ---------------------------------------------------------------------


def test_health_reports_database_and_running_scheduler(storage: Any) -> None:
    with TestClient(create_app(storage, api_key=""), base_url=LOCAL) as client:
        from tests.api.servers import wait_until

        wait_until(
            lambda: client.get("/health").status_code == 200, timeout=30, what="scheduler up"
        )
        body = client.get("/health").json()
        assert body["status"] == "ok"
        assert body["components"]["database"] == {"status": "up"}
        assert body["components"]["scheduler"] == {"status": "up", "state": "running"}
        assert body["down"] == []


def test_health_is_503_naming_a_scheduler_that_keeps_failing(storage: Any) -> None:
    def broken(storage: Any) -> Any:
        raise RuntimeError("scheduler cannot start")

    app = create_app(storage, api_key="", scheduler_factory=broken)
    with TestClient(app, base_url=LOCAL) as client:
        answer = client.get("/health")
        assert answer.status_code == 503
        body = answer.json()
        assert body["down"] == ["scheduler"]
        assert body["detail"] == "scheduler is down"
        assert body["components"]["database"] == {"status": "up"}
        assert client.get("/blocs").status_code == 200


def test_missing_api_extra_names_it() -> None:
    import importlib
    import sys

    from th2etl.exceptions import MissingExtraError

    saved = {
        name: module
        for name, module in sys.modules.items()
        if name == "th2etl.api" or name.startswith(("th2etl.api.", "fastapi"))
    }
    for name in saved:
        del sys.modules[name]
    sys.modules["fastapi"] = None  # type: ignore[assignment]
    try:
        with pytest.raises(MissingExtraError, match=r"pip install 'th2etl\[api\]'"):
            importlib.import_module("th2etl.api")
    finally:
        del sys.modules["fastapi"]
        for name in [n for n in sys.modules if n == "th2etl.api" or n.startswith("th2etl.api.")]:
            del sys.modules[name]
        sys.modules.update(saved)


# -- listings cache -------------------------------------------------------------------------------


def test_listing_shows_writes_from_elsewhere_after_its_ttl_and_api_writes_at_once(
    storage: Any,
) -> None:
    app = create_app(storage, start_scheduler=False, api_key="", listing_ttl=3600)
    with TestClient(app, base_url=LOCAL) as client:
        assert client.get("/blocs").json() == []
        # Written by "another process": this app's cached listing stands until its TTL ...
        storage.create_bloc("outside", "example_transformer")
        assert client.get("/blocs").json() == []
        # ... but any write through the API makes the next listing read the revision again.
        client.post("/blocs", json={"name": "inside", "bloc_type": "example_transformer"})
        assert [b["name"] for b in client.get("/blocs").json()] == ["inside", "outside"]

    app = create_app(storage, start_scheduler=False, api_key="", listing_ttl=0)
    with TestClient(app, base_url=LOCAL) as client:
        assert len(client.get("/pipelines").json()) == 0
        storage.create_pipeline("p", stages=[["outside"]])
        assert [p["name"] for p in client.get("/pipelines").json()] == ["p"]
        storage.update_bloc("outside", description="changed elsewhere")
        assert client.get("/blocs").json()[1]["description"] == "changed elsewhere"


# -- where the server may listen ------------------------------------------------------------------


def test_loopback_hosts_need_no_key_and_others_do(caplog: pytest.LogCaptureFixture) -> None:
    from th2etl.api.server import check_bind, is_loopback
    from th2etl.exceptions import ConfigurationError

    for host in ("127.0.0.1", "127.5.0.1", "::1", "[::1]", "localhost"):
        assert is_loopback(host)
        check_bind(host, None)
    for host in ("0.0.0.0", "::", "192.168.1.10", "example.com"):
        assert not is_loopback(host)
        with pytest.raises(
            ConfigurationError,
            match=rf"refusing to serve the API on '{re.escape(host)}' without an API key"
            r".*TH2ETL_API_KEY.*--insecure-no-auth",
        ):
            check_bind(host, None)
        check_bind(host, "a-key")
    with caplog.at_level("WARNING", logger="th2etl.api"):
        check_bind("0.0.0.0", None, insecure_no_auth=True)
    assert "WITHOUT an API key (--insecure-no-auth)" in caplog.text


def test_api_url_brackets_ipv6_addresses() -> None:
    from th2etl.api.server import api_url

    assert api_url("127.0.0.1", 8000) == "http://127.0.0.1:8000"
    assert api_url("localhost", 80) == "http://localhost:80"
    assert api_url("::1", 8080) == "http://[::1]:8080"
    assert api_url("[::1]", 8080) == "http://[::1]:8080"


def test_a_port_in_use_is_a_clear_error() -> None:
    import socket

    from th2etl.api.server import bind_socket
    from th2etl.exceptions import ConfigurationError

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(
            ConfigurationError, match=rf"cannot listen on 127.0.0.1:{port}: .*choose another --port"
        ):
            bind_socket("127.0.0.1", port)
    with pytest.raises(
        ConfigurationError, match=r"--host 'no-such-host.invalid' is not an address"
    ):
        bind_socket("no-such-host.invalid", 8000)


# -- cancelling -----------------------------------------------------------------------------------


@pytest.fixture
def waiting_bloc_type() -> Iterator[threading.Event]:
    """A bloc type that works until its run is cancelled (at most 30 s); the event it yields is
    set when such a bloc starts."""
    from th2etl.blocs import TransformerBloc, register_bloc
    from th2etl.blocs.registry import unregister_bloc

    @register_bloc
    class WaitForCancel(TransformerBloc):
        bloc_type = "test_wait_for_cancel"

        def run(self, context: Any, rows: Any) -> Any:
            started.set()
            deadline = time.monotonic() + 30
            while not context.cancel_requested and time.monotonic() < deadline:
                time.sleep(0.01)
            return rows

    started = threading.Event()
    try:
        yield started
    finally:
        unregister_bloc("test_wait_for_cancel")


def test_cancel_a_running_run_and_shutdown_ends_the_others(
    storage: Any, waiting_bloc_type: threading.Event
) -> None:
    app = create_app(storage, start_scheduler=False, api_key="", run_workers=1, drain_grace=0.01)
    with TestClient(app, base_url=LOCAL) as client:
        client.post("/blocs", json={"name": "wait", "bloc_type": "test_wait_for_cancel"})
        client.post("/blocs", json={"name": "after", "bloc_type": "example_transformer"})
        client.post("/pipelines", json={"name": "slow", "stages": [["wait"], ["after"]]})
        first = client.post("/pipelines/slow/run").json()["run_id"]
        assert waiting_bloc_type.wait(10)  # cancel while 'wait' runs, not before it starts
        cancelled = client.post(f"/runs/{first}/cancel")
        assert cancelled.status_code == 202
        assert cancelled.json()["cancel_requested"] is True
        run = _wait_for_run(client, first)
        assert run["status"] == "cancelled"
        assert [(b["bloc_name"], b["status"]) for b in run["blocs"]] == [
            ("wait", "succeeded"),
            ("after", "cancelled"),
        ]

        running = client.post("/pipelines/slow/run").json()["run_id"]
        queued = client.post("/pipelines/slow/run").json()["run_id"]  # one worker: it waits
    # Shutdown cancels the running run once its drain grace is over, and the queued one at
    # once; neither stays "running".
    assert storage.get_run(running).status == "cancelled"
    assert storage.get_run(queued).status == "cancelled"


@pytest.mark.parametrize(
    ("method", "path", "status", "message"),
    [
        ("GET", "/blocs/a%20b", 422, "bloc name 'a b' has characters that are not allowed"),
        ("PUT", "/blocs/a%20b", 422, "bloc name 'a b' has characters that are not allowed"),
        ("GET", "/blocs/%00", 422, "has characters that are not allowed"),
        ("GET", "/blocs/" + "x" * 300, 422, "is 300 characters long; use at most 128"),
        ("GET", "/pipelines/%C3%A9/graph", 422, "pipeline name 'é' has characters"),
        ("DELETE", "/triggers/%3Bdrop", 422, "trigger name ';drop' has characters"),
        ("GET", "/runs/%27%3B", 404, "does not exist"),
    ],
)
def test_odd_names_in_paths_are_clear_4xx(
    client: TestClient, method: str, path: str, status: int, message: str
) -> None:
    answer = client.request(method, path, json={"description": "x"} if method == "PUT" else None)
    assert answer.status_code == status, answer.text
    assert message in answer.json()["detail"]


def test_a_body_that_is_not_a_json_object_says_what_to_send(client: TestClient) -> None:
    answer = client.post(
        "/blocs",
        content=b'{"name": "x", "bloc_type": "example_transformer"}',
        headers={"Content-Type": "text/plain"},
    )
    assert answer.status_code == 415
    assert answer.json()["detail"] == (
        "this endpoint takes JSON, not 'text/plain'; send a JSON object with "
        "Content-Type: application/json"
    )
    assert client.post("/blocs").json()["detail"] == (
        "invalid request: body: Field required; send a JSON object with "
        "Content-Type: application/json"
    )
    assert client.get("/blocs").json() == []


def test_docs_are_served_without_the_key(storage: Any) -> None:
    with TestClient(
        create_app(storage, start_scheduler=False, api_key="k"), base_url=LOCAL
    ) as client:
        assert client.get("/docs").status_code == 200
        schema = client.get("/openapi.json").json()
        assert {"/blocs", "/pipelines/{name}/run", "/runs/{run_id}/cancel", "/health"} <= set(
            schema["paths"]
        )
        assert schema["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
        assert client.get("/pipelines").status_code == 401
