"""Headless Chromium for the dashboard tests: the system's browser and driver, never a download.

Debian's ``chromium`` and ``chromium-driver`` (``.ci/run`` installs them with apt-get). Without
them the browser tests skip and say how to install them, except under ``CI=true``, where a
missing browser fails them. Screenshots go to ``test-artifacts/`` (not in git);
``TH2ETL_DOCS_SCREENSHOTS=1`` also writes the README's ``docs/run-page.png``.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts"
DOCS_SHOTS = {"run-page": ROOT / "docs" / "run-page.png"}
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
)


def _find(*names: str) -> str | None:
    for name in names:
        found = shutil.which(name) or (
            f"/usr/bin/{name}" if Path(f"/usr/bin/{name}").exists() else None
        )
        if found:
            return found
    return None


def chromium(size: tuple[int, int] = (1200, 900)) -> Iterator[Any]:
    """A Selenium driver for a fresh headless Chromium (its own profile folder), then quit."""
    browser = _find("chromium", "chromium-browser")
    driver_path = _find("chromedriver")
    if browser is None or driver_path is None:
        reason = (
            "headless Chromium is not installed: apt-get install -y chromium chromium-driver "
            "(.ci/run does it)"
        )
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{reason} (CI=true: browser tests may not skip)", pytrace=False)
        pytest.skip(reason)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="th2etl-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={profile}")
    options.add_argument(f"--window-size={size[0]},{size[1]}")
    driver = webdriver.Chrome(options=options, service=Service(executable_path=driver_path))
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def screenshot(driver: Any, name: str) -> Path:
    """Save the page to ``test-artifacts/<name>.png`` (and to docs/ for the README's pictures
    when ``TH2ETL_DOCS_SCREENSHOTS=1``); return the artifact's path."""
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    driver.save_screenshot(str(path))
    if name in DOCS_SHOTS and os.environ.get("TH2ETL_DOCS_SCREENSHOTS") == "1":
        DOCS_SHOTS[name].parent.mkdir(exist_ok=True)
        shutil.copyfile(path, DOCS_SHOTS[name])
    return path
