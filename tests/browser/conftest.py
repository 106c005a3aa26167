"""Headless Chromium (the system binary, never a downloaded one) driven by Playwright."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

CHROMIUM = Path(os.environ.get("RISKATLAS_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic",
]
ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts" / "screenshots"

if not CHROMIUM.exists():
    pytest.skip(f"no Chromium at {CHROMIUM}", allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api")

pytestmark = pytest.mark.browser


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test in this folder `browser`."""
    for item in items:
        if "tests/browser" in str(item.fspath):
            item.add_marker(pytest.mark.browser)


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    """One headless Chromium for the session."""
    with sync_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            launched.close()


@dataclass
class PageLog:
    """What a page did: console errors, uncaught exceptions, every request URL."""

    console_errors: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)

    def external(self, base_url: str) -> list[str]:
        """Return requests that left the app (anything but its origin, blob: and data:)."""
        return [url for url in self.requests
                if not url.startswith((base_url, "blob:", "data:"))]


@pytest.fixture()
def page(browser: Any) -> Iterator[tuple[Any, PageLog]]:
    """A fresh page (1400x900) with its console, errors and requests logged."""
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    new_page = context.new_page()
    new_page.set_default_timeout(20_000)
    log = PageLog()
    new_page.on("console",
                lambda m: log.console_errors.append(m.text) if m.type == "error" else None)
    new_page.on("pageerror", lambda e: log.page_errors.append(str(e)))
    new_page.on("request", lambda r: log.requests.append(r.url))
    new_page.on("requestfailed", lambda r: log.failed.append(r.url))
    try:
        yield new_page, log
    finally:
        context.close()


@pytest.fixture(scope="session")
def screenshot() -> Callable[[Any, str], Path]:
    """Return a function that saves a page's screenshot under artifacts/screenshots."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)

    def save(target: Any, name: str, **options: Any) -> Path:
        path = ARTIFACTS / f"{name}.png"
        target.screenshot(path=str(path), **options)
        return path

    return save


@pytest.fixture(scope="session")
def demo_site(demo_server: Any, demo_settings: Any) -> str:
    """Base URL of the scored demo region, whose ingestion prepared the tiles' outlines."""
    from geo.db import build_engine

    engine = build_engine(demo_settings.database.url or "", demo_settings)
    try:
        with engine.connect() as conn:
            outlines = conn.execute(text("SELECT count(*) FROM locality_tile_geometry")).scalar()
    finally:
        engine.dispose()
    # Ingestion, not the tests, must prepare them: a blank map here would hide that bug.
    assert outlines, "the demo load left no vector-tile outlines"
    return str(demo_server.base_url)


def open_map(page: Any, base_url: str, query: str = "") -> None:
    """Open the map page and wait until the choropleth has painted its first tiles."""
    page.goto(f"{base_url}/{query}")
    page.wait_for_function("window.__raFirstPaint !== undefined")
    page.wait_for_selector("#ra-legend li[data-colour]")
