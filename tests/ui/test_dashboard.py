"""The dashboard driven as a user would, in real headless Chromium against a real server."""

from __future__ import annotations

import http.server
import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.api.servers import free_port, uvicorn_server
from tests.conftest import wait_until
from tests.ui.browser import chromium, screenshot
from th2etl.api import create_app

KEY = "ui-test-key"

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    yield from chromium()


@pytest.fixture
def slow_bloc_type() -> Iterator[threading.Event]:
    """A bloc that works until its run is cancelled (at most 60 s); the event is set when it
    starts."""
    from th2etl.blocs import TransformerBloc, register_bloc
    from th2etl.blocs.registry import unregister_bloc

    started = threading.Event()

    @register_bloc
    class UiWaitForCancel(TransformerBloc):
        bloc_type = "test_ui_wait_for_cancel"

        def run(self, context: Any, rows: Any) -> Any:
            started.set()
            deadline = time.monotonic() + 60
            while not context.cancel_requested and time.monotonic() < deadline:
                time.sleep(0.02)
            return rows

    try:
        yield started
    finally:
        unregister_bloc("test_ui_wait_for_cancel")


@pytest.fixture
def service(tmp_path: Path, slow_bloc_type: threading.Event) -> Iterator[tuple[str, Any]]:
    from th2etl import DatabaseStorage

    (tmp_path / "sales.csv").write_text("region,units\nnorth,3\nsouth,5\n")
    storage = DatabaseStorage(tmp_path / "th2etl.db")
    storage.create_bloc("load", "csv_loader", config={"file_path": str(tmp_path / "sales.csv")})
    storage.create_bloc("double", "example_transformer", config={"factor": 2})
    storage.create_bloc("triple", "example_transformer", config={"factor": 3})
    storage.create_bloc(
        "export",
        "csv_exporter",
        config={"file_path": str(tmp_path / "out.csv"), "source_bloc": "double"},
    )
    storage.create_pipeline("sales", [["load"], ["double", "triple"], ["export"]])
    storage.create_bloc("wait", "test_ui_wait_for_cancel")
    storage.create_pipeline("long", [["load"], ["wait"], ["double"]])
    storage.create_trigger("nightly", "sales", "30 2 * * *", "Europe/Paris")
    storage.create_scheduler("sales_nightly", "sales", "nightly")
    app = create_app(storage, start_scheduler=False, api_key=KEY)
    try:
        with uvicorn_server(app) as url:
            yield url, storage
    finally:
        storage.close()


def _text(browser: Any, css: str) -> str:
    from selenium.webdriver.common.by import By

    return str(browser.find_element(By.CSS_SELECTOR, css).text)


def _wait_for(browser: Any, condition: Any, what: str, timeout: float = 30) -> None:
    def check() -> bool:
        try:
            return bool(condition())
        except Exception:  # the page is reloading under us: look again
            return False

    wait_until(check, timeout=timeout, what=what)


def _sign_in(browser: Any, url: str, target: str = "/ui") -> None:
    """A fresh session: forget the cookie of an earlier test, enter the key."""
    from selenium.webdriver.common.by import By

    browser.get(f"{url}/ui/login")
    browser.delete_all_cookies()
    browser.get(f"{url}/ui/login?next={target}")
    browser.find_element(By.ID, "key").send_keys(KEY)
    browser.find_element(By.CSS_SELECTOR, "form.login button").click()
    _wait_for(browser, lambda: browser.current_url == f"{url}{target}", f"signed in, {target}")


def _run_status(browser: Any) -> str:
    return _text(browser, ".run-head .badge")


def test_a_user_signs_in_runs_follows_cancels_and_disables(
    browser: Any, service: tuple[str, Any], slow_bloc_type: threading.Event
) -> None:
    from selenium.webdriver.common.by import By

    url, storage = service
    # Enter the key (once): a wrong one is refused, the right one opens the overview.
    browser.get(f"{url}/ui/login")
    browser.delete_all_cookies()
    browser.get(f"{url}/")
    assert "/ui/login" in browser.current_url
    browser.find_element(By.ID, "key").send_keys("not-the-key")
    browser.find_element(By.CSS_SELECTOR, "form.login button").click()
    # The click only starts the form's submission: wait for the answer's page.
    _wait_for(
        browser,
        lambda: "not the service's key" in _text(browser, ".error"),
        "the refusal of a wrong key",
    )
    browser.find_element(By.ID, "key").send_keys(KEY)
    browser.find_element(By.CSS_SELECTOR, "form.login button").click()
    _wait_for(browser, lambda: browser.current_url == f"{url}/ui", "the overview")
    cookie = browser.get_cookie("th2etl_session")
    assert cookie["httpOnly"] is True
    assert cookie["sameSite"] == "Strict"
    overview = _text(browser, "main")
    assert "sales_nightly" in overview and "Europe/Paris" in overview
    pipelines = [
        a.text for a in browser.find_elements(By.CSS_SELECTOR, "td a[href^='/ui/pipelines/']")
    ]
    assert {"sales", "long"} <= set(pipelines)
    screenshot(browser, "overview")

    # Start a run with a variable and watch it turn succeeded; its log is there.
    browser.get(f"{url}/ui/pipelines/sales")
    assert browser.find_element(By.CSS_SELECTOR, "svg.graph").is_displayed()
    assert "stage 2" in _text(browser, "svg.graph")
    browser.find_element(By.ID, "variables").send_keys("day=2026-03-07")
    browser.find_element(By.CSS_SELECTOR, "form.run button").click()
    _wait_for(browser, lambda: "/ui/runs/" in browser.current_url, "the run page")
    _wait_for(browser, lambda: _run_status(browser) == "succeeded", "the run to succeed")
    assert "run succeeded" in _text(browser, "#log")
    assert "day=2026-03-07" in _text(browser, "dl.facts")
    bars = browser.find_elements(By.CSS_SELECTOR, "svg.timeline rect.bar.succeeded")
    assert len(bars) == 4
    (run,) = storage.list_runs(pipeline_name="sales")
    assert run.status == "succeeded" and run.variables == {"day": "2026-03-07"}
    screenshot(browser, "run-page")

    # Start a long run, watch it run, cancel it.
    browser.get(f"{url}/ui/pipelines/long")
    browser.find_element(By.CSS_SELECTOR, "form.run button").click()
    _wait_for(browser, lambda: "/ui/runs/" in browser.current_url, "the long run's page")
    assert slow_bloc_type.wait(30)
    _wait_for(browser, lambda: "bloc 'load'" in _text(browser, "#log"), "the log to follow")
    browser.find_element(By.CSS_SELECTOR, "button[data-action=cancel]").click()
    _wait_for(browser, lambda: _run_status(browser) == "cancelled", "the run to be cancelled")
    (long_run,) = storage.list_runs(pipeline_name="long")
    assert long_run.status == "cancelled"
    screenshot(browser, "cancelled-run")

    # Disable the scheduler; the page shows it, storage has it.
    browser.get(f"{url}/ui/schedulers")
    assert len(browser.find_elements(By.CSS_SELECTOR, "ol.fire-times li")) == 10
    browser.find_element(By.CSS_SELECTOR, "button[data-scheduler=sales_nightly]").click()
    _wait_for(
        browser,
        lambda: _text(browser, "#s-sales_nightly h2 .badge") == "disabled",
        "the scheduler to show disabled",
    )
    assert storage.get_scheduler("sales_nightly").enabled is False
    screenshot(browser, "schedulers")

    # Backfill its last week (the form's default range): preview, then run it.
    browser.find_element(By.CSS_SELECTOR, "#s-sales_nightly details summary").click()
    browser.find_element(By.CSS_SELECTOR, "#s-sales_nightly button[value=true]").click()
    result = "#s-sales_nightly .backfill-result"
    _wait_for(browser, lambda: " to run" in _text(browser, result), "the backfill preview")
    preview = _text(browser, result)
    # 02:30 in Paris on each day from a week ago at midnight to this hour: 7 or 8 of them.
    planned = int(re.search(r"(\d+) to run", preview).group(1))  # type: ignore[union-attr]
    assert planned in (7, 8), preview
    assert len([line for line in preview.splitlines() if line.endswith("  run")]) == planned
    assert storage.list_runs(scheduler_name="sales_nightly") == []
    browser.find_element(By.CSS_SELECTOR, "#s-sales_nightly button[value=false]").click()
    _wait_for(browser, lambda: "started" in _text(browser, result), "the backfill to start")
    wait_until(
        lambda: (
            [r.status for r in storage.list_runs(scheduler_name="sales_nightly")]
            == ["succeeded"] * planned
        ),
        timeout=60,
        what="the backfilled runs",
    )


class _EvilPage(http.server.BaseHTTPRequestHandler):
    """Another origin (same host, other port, so the SameSite cookie IS sent) whose page posts
    a form to the service at once."""

    target = ""

    def do_GET(self) -> None:
        page = (
            "<!doctype html><html><body>"
            f'<form id=f method=post action="{self.target}" '
            'enctype="application/x-www-form-urlencoded"></form>'
            "<script>document.getElementById('f').submit()</script></body></html>"
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(page)))
        self.end_headers()
        self.wfile.write(page)

    def log_message(self, format: str, *args: Any) -> None:
        pass


def test_a_cross_origin_form_post_is_refused_in_the_browser(
    browser: Any, service: tuple[str, Any]
) -> None:

    url, storage = service
    _sign_in(browser, url)

    handler = type("Evil", (_EvilPage,), {"target": f"{url}/pipelines/sales/run"})
    evil = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), handler)
    evil.daemon_threads = True  # a browser's idle preconnection must not hold shutdown
    thread = threading.Thread(target=evil.serve_forever, daemon=True)
    thread.start()
    try:
        browser.get(f"http://127.0.0.1:{evil.server_address[1]}/")
        _wait_for(browser, lambda: browser.current_url.startswith(url), "the form to post")
        assert "cross-origin request refused" in _text(browser, "body")
        screenshot(browser, "cross-origin-refused")
    finally:
        evil.shutdown()
        evil.server_close()
    assert storage.list_runs() == []


def test_the_pages_read_on_a_phone(service: tuple[str, Any]) -> None:

    url, _ = service
    for phone in chromium(size=(390, 844)):
        _sign_in(phone, url, "/ui/pipelines/sales")
        # Nothing wider than the screen but the boxes that scroll sideways on purpose.
        overflow = phone.execute_script(
            "return document.documentElement.scrollWidth - document.documentElement.clientWidth"
        )
        assert overflow <= 1
        screenshot(phone, "phone-pipeline")


def test_docs_and_redoc_render_from_the_service_alone(
    browser: Any, service: tuple[str, Any]
) -> None:
    """Swagger UI and ReDoc run their scripts in the browser, from the wheel's assets (the
    pages' CSP allows no other origin), and render every operation."""
    from selenium.webdriver.common.by import By

    url, _ = service
    browser.get_log("browser")  # forget what earlier tests left (a refused key, a 403)
    browser.get(f"{url}/docs")
    _wait_for(
        browser,
        lambda: len(browser.find_elements(By.CSS_SELECTOR, ".opblock")) >= 20,
        "Swagger UI to list the operations",
    )
    assert "/pipelines/{name}/run" in _text(browser, "body")
    screenshot(browser, "docs")
    browser.get(f"{url}/redoc")
    _wait_for(
        browser,
        lambda: "Run a pipeline now" in _text(browser, "body"),
        "ReDoc to render the operations",
    )
    screenshot(browser, "redoc")
    errors = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    # ReDoc's sidebar always asks for Redocly's logo from its CDN; the page's CSP stops it
    # before it leaves the machine (and the page works without it). Nothing else fails.
    blocked = [e for e in errors if "cdn.redoc.ly" in e["message"] and e["source"] == "security"]
    assert all("has been blocked" in e["message"] for e in blocked)
    assert [e for e in errors if e not in blocked] == []
