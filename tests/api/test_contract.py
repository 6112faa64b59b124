"""The OpenAPI document tells the truth (th2etl/api/contract.py), checked by schemathesis."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.api.conftest import LOCAL
from tests.api.servers import uvicorn_server
from th2etl._names import NAME_PATTERN
from th2etl.api import create_app

KEY = "fuzz-key"
# A documented 404, 409 or 422 (e.g. a name that does not exist, a bloc type nobody
# registered) answers a request that is valid by the schema; 5xx never is acceptable.
CONFIG = """\
[checks.positive_data_acceptance]
expected-statuses = ["2xx", "401", "403", "404", "409", "422", "429"]
"""


def _schema(storage: Any) -> dict[str, Any]:
    app = create_app(storage, start_scheduler=False, api_key=KEY)
    with TestClient(app, base_url=LOCAL) as client:
        schema: dict[str, Any] = client.get("/openapi.json").json()
    return schema


@pytest.mark.parametrize("storage", ["sqlite"], indirect=True)
def test_every_operation_documents_its_errors_with_the_one_shape(storage: Any) -> None:
    schema = _schema(storage)
    assert "HTTPValidationError" not in schema["components"]["schemas"]
    assert schema["components"]["schemas"]["Error"]["required"] == ["detail"]
    for path, item in schema["paths"].items():
        for method, operation in item.items():
            responses = operation["responses"]
            errors = {code for code in responses if code >= "400"}
            assert {"400", "503"} <= errors, (method, path)
            if method != "get":
                assert "403" in errors, (method, path)
            if "{" in path:
                assert {"404", "422"} <= errors, (method, path)
            if path != "/health":
                assert "401" in errors, (method, path)
            for code in errors - ({"503"} if path == "/health" else set()):
                content = responses[code]["content"]["application/json"]["schema"]
                assert content == {"$ref": "#/components/schemas/Error"}, (method, path, code)
            # Every success answer names its body's schema (204 has none).
            for code in {code for code in responses if code < "300"} - {"204"}:
                if path == "/metrics":  # the Prometheus text format
                    assert responses[code]["content"] == {
                        "text/plain": {"schema": {"type": "string"}}
                    }
                    continue
                content = responses[code]["content"]["application/json"]["schema"]
                assert content.get("$ref") or content.get("items"), (method, path, code)
    health = schema["paths"]["/health"]["get"]["responses"]["503"]["content"]
    assert health["application/json"]["schema"] == {"$ref": "#/components/schemas/Health"}
    create_bloc = schema["paths"]["/blocs"]["post"]["responses"]
    assert create_bloc["201"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/BlocRecord"
    }
    assert create_bloc["409"]["description"] == "A bloc of that name exists"
    assert "409" in schema["paths"]["/runs/{run_id}/cancel"]["post"]["responses"]
    for queued in ("/pipelines/{name}/run", "/schedulers/{name}/run"):
        assert (
            "TH2ETL_MAX_QUEUED_RUNS"
            in schema["paths"][queued]["post"]["responses"]["429"]["description"]
        )
    name = schema["paths"]["/blocs/{name}"]["get"]["parameters"][0]["schema"]
    assert name["pattern"] == NAME_PATTERN
    assert name["maxLength"] == 128
    body = schema["components"]["schemas"]["TriggerCreate"]["properties"]
    assert body["pipeline_name"]["pattern"] == NAME_PATTERN
    since = next(p for p in schema["paths"]["/runs"]["get"]["parameters"] if p["name"] == "since")
    assert since["schema"]["format"] == "date-time"


@pytest.mark.parametrize("storage", ["sqlite"], indirect=True)
def test_the_errors_the_issue_found_are_gone(storage: Any) -> None:
    app = create_app(storage, start_scheduler=False, api_key="")
    with TestClient(app, base_url=LOCAL) as client:
        for since in ("0", "0.5", "2026-03-07", "yesterday"):
            answer = client.get("/runs", params={"since": since})
            assert answer.status_code == 422, since
            assert answer.json()["detail"] == (
                f"since={since!r} is not an ISO 8601 date and time; use e.g. "
                "2026-03-07T00:00:00Z or 2026-03-07T00:00:00+02:00"
            )
        assert client.get("/runs", params={"until": "2026-03-07T10:00:00.5+02:00"}).json() == []
        invalid = client.post("/blocs", json={"name": 5})
        assert invalid.status_code == 422
        assert isinstance(invalid.json()["detail"], str)
        assert invalid.json()["errors"][0]["loc"] == ["body", "name"]
        options = client.options("/blocs/x")
        assert options.status_code == 405
        assert options.headers["Allow"] == "DELETE, GET, HEAD, PUT"
        assert (
            options.json()["detail"]
            == "OPTIONS is not allowed on /blocs/x; use DELETE, GET, HEAD, PUT"
        )


def _seed(storage: Any) -> None:
    """The names of the schema's examples exist, so generated requests reach real rows."""
    for name in ("load_sales", "double", "triple", "export"):
        storage.create_bloc(name, "example_transformer")
    storage.create_pipeline("daily_sales", [["load_sales"], ["double", "triple"], ["export"]])
    storage.create_trigger("every_hour", "daily_sales", "0 * * * *", "Europe/Paris")
    storage.create_scheduler("daily_sales_hourly", "daily_sales", "every_hour")


@pytest.mark.slow
def test_schemathesis_finds_no_failure_with_every_check(storage: Any, tmp_path: Path) -> None:
    """Every check, authenticated, every phase (examples, coverage, fuzzing, stateful); a
    bounded number of examples per operation so the suite stays fast."""
    _seed(storage)
    config = tmp_path / "schemathesis.toml"
    config.write_text(CONFIG)
    app = create_app(storage, start_scheduler=False, api_key=KEY)
    with uvicorn_server(app) as url:
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "schemathesis.cli",
                "--config-file",
                str(config),
                "run",
                f"{url}/openapi.json",
                "--checks",
                "all",
                "--header",
                f"Authorization: Bearer {KEY}",
                "--max-examples",
                "12",
                "--seed",
                "15",
                "--workers",
                "1",
                "--generation-database",
                "none",
                "--no-color",
            ],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=300,
        )
    output = done.stdout + done.stderr
    counts = re.search(r"(\d+) generated, (\d+) passed", output)
    print(counts.group(0) if counts else output[-2000:])
    assert done.returncode == 0, output[-6000:]
    assert counts is not None and counts.group(1) == counts.group(2), output[-3000:]


# -- /docs and /redoc offline ---------------------------------------------------------------------


@pytest.mark.parametrize("storage", ["sqlite"], indirect=True)
def test_docs_and_redoc_load_only_assets_the_service_serves(storage: Any) -> None:
    app = create_app(storage, start_scheduler=False, api_key="k")
    with TestClient(app, base_url=LOCAL) as client:
        for page in ("/docs", "/redoc"):
            answer = client.get(page)
            assert answer.status_code == 200
            assert "default-src 'self'" in answer.headers["Content-Security-Policy"]
            urls = re.findall(r"""(?:src|href)=["']([^"']+)""", answer.text)
            assert urls, page
            for url in urls:
                assert url.startswith("/"), (page, url)
                asset = client.get(url)
                assert asset.status_code == 200, url
                assert len(asset.content) > 100, url
            assert "cdn." not in answer.text and "googleapis" not in answer.text
        for licence in ("swagger-ui/LICENSE", "redoc/LICENSE"):
            assert client.get(f"/ui/static/vendor/{licence}").status_code == 200


@pytest.mark.slow
def test_the_wheel_ships_the_docs_assets_and_their_licences(tmp_path: Path) -> None:
    import zipfile

    root = Path(__file__).resolve().parents[2]
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path), str(root)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (wheel,) = tmp_path.glob("th2etl-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    vendor = "th2etl/api/ui/static/vendor/"
    assert {
        f"{vendor}swagger-ui/swagger-ui-bundle.js",
        f"{vendor}swagger-ui/swagger-ui.css",
        f"{vendor}swagger-ui/LICENSE",
        f"{vendor}redoc/redoc.standalone.js",
        f"{vendor}redoc/LICENSE",
        "th2etl/api/ui/static/favicon.svg",
        "th2etl/api/ui/static/ui.css",
        "th2etl/api/ui/static/ui.js",
    } <= names
