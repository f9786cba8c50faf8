"""Browser tests of the admin UI: Playwright (Python) driving Debian's headless ``chromium``
(``make test-deps`` installs it; Playwright's own browser download is never used), each test in a
fresh profile, against the real daemon. A failed test leaves a screenshot of the page it was on
(path printed and attached to the report) under ``E2E_ARTIFACTS`` (default: the test's tmp dir)."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import BrowserContext, Page, Playwright, sync_playwright

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="module")
def playwright_driver() -> Iterator[Playwright]:
    # Per module, not per session: while it runs, the driver's event loop is the thread's
    # running loop, and tests of other modules that start their own loop must not meet it.
    with sync_playwright() as driver:
        yield driver


@pytest.fixture
def browser_context(playwright_driver: Playwright, tmp_path: Path) -> Iterator[BrowserContext]:
    profile = tmp_path / "chromium-profile"
    context = playwright_driver.chromium.launch_persistent_context(
        str(profile),
        executable_path=CHROMIUM,
        headless=True,
        args=CHROMIUM_ARGS,
        viewport={"width": 1400, "height": 900},
    )
    context.set_default_timeout(20_000)
    yield context
    context.close()


@pytest.fixture
def page(browser_context: BrowserContext, request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Page]:
    page = browser_context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    yield page
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed:
        base = Path(os.environ.get("E2E_ARTIFACTS") or tmp_path)
        base.mkdir(parents=True, exist_ok=True)
        shot = base / (re.sub(r"[^\w.-]+", "_", request.node.name) + ".png")
        page.screenshot(path=str(shot), full_page=True)
        print(f"\nscreenshot of the failed page: {shot}")
        report.sections.append(("screenshot", str(shot)))
        if errors:
            report.sections.append(("browser errors", "\n".join(errors)))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    if report.when == "call":
        item.rep_call = report  # type: ignore[attr-defined]
    return report
