"""The dashboard's pages, login and session cookie, through FastAPI's TestClient (the browser
tests are in test_dashboard.py)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.api.conftest import LOCAL
from th2etl.api import create_app
from th2etl.api.ui.html import config_view
from th2etl.api.ui.session import sign, valid
from th2etl.clock import FakeClock

KEY = "page-key"
NOW = datetime(2026, 3, 20, 12, 0, tzinfo=UTC)


def _define(storage: Any) -> None:
    storage.create_bloc("double", "example_transformer", description="<b>doubles</b>")
    storage.create_pipeline("p", [["double"]], description="<script>alert(1)</script>")
    storage.create_trigger("nightly", "p", "30 2 * * *", "Europe/Paris")
    storage.create_scheduler("p_nightly", "p", "nightly")


@pytest.fixture
def keyless(storage: Any) -> Iterator[TestClient]:
    _define(storage)
    app = create_app(storage, start_scheduler=False, api_key="", clock=FakeClock(NOW))
    with TestClient(app, base_url=LOCAL) as client:
        yield client


@pytest.fixture
def keyed(storage: Any) -> Iterator[TestClient]:
    _define(storage)
    app = create_app(storage, start_scheduler=False, api_key=KEY, clock=FakeClock(NOW))
    with TestClient(app, base_url=LOCAL, follow_redirects=False) as client:
        yield client


def test_root_leads_to_the_dashboard_and_pages_load_only_their_own_assets(
    keyless: TestClient, storage: Any
) -> None:
    assert keyless.get("/", follow_redirects=False).headers["location"] == "/ui"
    storage.run_pipeline("p")
    run_id = storage.list_runs()[0].run_id
    for path in ("/ui", "/ui/pipelines/p", f"/ui/runs/{run_id}", "/ui/schedulers"):
        answer = keyless.get(path)
        assert answer.status_code == 200, path
        assert "script-src 'self'" in answer.headers["Content-Security-Policy"]
        for url in re.findall(r"""(?:src|href)=["']?([^"' >]+)""", answer.text):
            assert url.startswith(("/", "#")), (path, url)
        assert "<script>alert" not in answer.text  # names and texts are escaped
    for asset in ("/ui/static/ui.css", "/ui/static/ui.js", "/ui/static/favicon.svg"):
        assert keyless.get(asset).status_code == 200
    assert keyless.get("/openapi.json").json()["paths"].keys().isdisjoint({"/ui", "/"})


def test_overview_shows_health_schedulers_last_runs_and_failures(
    keyless: TestClient, storage: Any
) -> None:
    storage.create_bloc("broken", "csv_loader", config={"file_path": "/no/such.csv"})
    storage.create_pipeline("bad", [["broken"]])
    storage.run_pipeline("bad")
    page = keyless.get("/ui").text
    assert "p_nightly" in page
    # 2026-03-21 02:30 in Paris, CET: the next fire time in the scheduler's own zone.
    assert "2026-03-21 02:30 CET (+0100)" in page
    assert "never run" in page  # pipeline p
    failures = page.split("Failures in the last 24 hours")[1]
    assert "bad" in failures and "failed" in failures


def test_schedulers_page_lists_ten_fire_times_with_the_dst_note(keyless: TestClient) -> None:
    page = keyless.get("/ui/schedulers").text
    times = re.findall(r"<li><time", page)
    assert len(times) == 10
    # Paris moves its clocks forward on 2026-03-29 at 02:00: 02:30 does not exist that day.
    assert "2026-03-29 03:00 CEST (+0200)" in page
    assert "DST: clocks go forward from 02:00 to 03:00 on 2026-03-29" in page
    assert 'data-action="enable" data-scheduler="p_nightly" data-enabled="false"' in page
    # The backfill form proposes the last week, from midnight, in the trigger's zone.
    assert 'data-action="backfill" data-scheduler="p_nightly"' in page
    assert 'name="from" value="2026-03-13T00:00:00+01:00"' in page
    assert 'name="to" value="2026-03-20T13:00:00+01:00"' in page


def test_pipeline_history_is_paginated_newest_first(keyless: TestClient, storage: Any) -> None:
    for _ in range(23):
        storage.run_pipeline("p")
    runs = storage.list_runs(pipeline_name="p", limit=100)
    first = keyless.get("/ui/pipelines/p").text
    ids = re.findall(r'href="/ui/runs/(\w+)"', first)
    assert ids == [run.run_id for run in runs[:20]]
    older = re.search(r'rel="next" href="([^"]+)"', first)
    assert older is not None
    second = keyless.get(older.group(1).replace("&amp;", "&")).text
    assert re.findall(r'href="/ui/runs/(\w+)"', second) == [run.run_id for run in runs[20:]]
    assert 'rel="next"' not in second
    assert "stage 1" in first and "<svg" in first
    missing = keyless.get("/ui/pipelines/nope")
    assert missing.status_code == 404
    assert "pipeline &#x27;nope&#x27; does not exist" in missing.text


def test_configs_show_references_and_mask_literal_secrets() -> None:
    shown = config_view(
        {
            "password": "${env:PGPASSWORD}",
            "api_key": "sk-live-123",
            "headers": {"Authorization": "Bearer abc"},
            "table": "sales",
        }
    )
    assert "${env:PGPASSWORD}" in shown
    assert "sk-live-123" not in shown and "Bearer abc" not in shown
    assert "a literal secret; store ${env:NAME} instead" in shown
    assert "sales" in shown


def test_with_a_key_the_dashboard_asks_for_it_once(keyed: TestClient) -> None:
    to_login = keyed.get("/ui/pipelines/p")
    assert to_login.status_code == 303
    assert to_login.headers["location"] == "/ui/login?next=%2Fui%2Fpipelines%2Fp"
    assert keyed.get("/ui/login").status_code == 200
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    wrong = keyed.post("/ui/login", content="key=nope&next=/ui", headers=form)
    assert wrong.status_code == 401
    assert "not the service&#x27;s key" in wrong.text
    assert "th2etl_session" not in wrong.headers.get("set-cookie", "")
    signed = keyed.post("/ui/login", content=f"key={KEY}&next=%2Fui%2Fpipelines%2Fp", headers=form)
    assert signed.status_code == 303
    assert signed.headers["location"] == "/ui/pipelines/p"
    cookie = signed.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Max-Age=43200" in cookie
    assert "Secure" not in cookie
    assert keyed.get("/ui/pipelines/p").status_code == 200
    # The cookie authenticates the JSON API too; a write needs the page's Origin.
    assert keyed.get("/blocs").status_code == 200
    assert keyed.post("/pipelines/p/run", json={}).status_code == 403
    run = keyed.post("/pipelines/p/run", json={}, headers={"Origin": LOCAL})
    assert run.status_code == 202
    keyed.post("/ui/logout", headers={"Origin": LOCAL})
    keyed.cookies.clear()
    assert keyed.get("/blocs").status_code == 401


def test_the_cookie_is_secure_behind_https_and_next_stays_on_the_dashboard(
    keyed: TestClient,
) -> None:
    form = {"Content-Type": "application/x-www-form-urlencoded", "X-Forwarded-Proto": "https"}
    for target, expected in (("//evil.example/x", "/ui"), ("https://evil.example", "/ui")):
        answer = keyed.post("/ui/login", content=f"key={KEY}&next={target}", headers=form)
        assert answer.headers["location"] == expected
        assert "Secure" in answer.headers["set-cookie"]


def test_a_forged_or_expired_session_is_refused() -> None:
    token = sign(KEY, now=1_000_000)
    assert valid(KEY, token, now=1_000_000 + 60)
    assert not valid(KEY, token, now=1_000_000 + timedelta(hours=13).total_seconds())
    assert not valid("another-key", token, now=1_000_000)
    expires, signature = token.split(".")
    assert not valid(KEY, f"{int(expires) + 999}.{signature}", now=1_000_000)
    assert not valid(KEY, "garbage", now=1_000_000)


def test_a_scheduler_after_other_pipelines_names_them(keyless: TestClient, storage: Any) -> None:
    storage.create_pipeline("report", [["double"]])
    storage.create_scheduler("report_after_p", "report", after_pipelines=["p"])
    page = keyless.get("/ui/schedulers").text
    section = page.split('id="s-report_after_p"')[1]
    assert 'runs after <a href="/ui/pipelines/p">p</a> succeeded' in section
    assert 'data-action="backfill" data-scheduler="report_after_p"' not in page
