"""Real Chromium (the Debian package, /usr/bin/chromium) driven by Playwright.

A missing Chromium is a failure, never a skip: the launch raises and every browser test
errors. ``PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD`` keeps Playwright from fetching its own.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, Playwright, sync_playwright

from tests.fixtures.upload_server import UploadServer, make_upload_link

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
AXE = Path(__file__).resolve().parent.parent / "assets" / "axe.min.js"
# What axe checks: WCAG 2.0/2.1/2.2 A and AA, plus its best practices.
AXE_TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "wcag22aa", "best-practice"]


# Module scope, not session: while the sync API is active it keeps an asyncio loop
# running in the main thread, and every later test that calls asyncio.run() (blob
# stores, the upload app) would fail with "another loop is running".
@pytest.fixture(scope="module")
def playwright() -> Iterator[Playwright]:
    os.environ.setdefault("PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD", "1")
    with sync_playwright() as p:
        yield p


@pytest.fixture(scope="module")
def chromium(playwright: Playwright) -> Iterator[Browser]:
    browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
    try:
        yield browser
    finally:
        browser.close()


@dataclass
class Citizen:
    server: UploadServer
    link_url: str
    report_reference: str

    def new_link(self, **kwargs: int) -> tuple[str, str]:
        return make_upload_link(self.server.data_dir, base_url=self.server.base_url, **kwargs)


@pytest.fixture(scope="module")
def shared_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[UploadServer]:
    """One server per test module (starting one costs seconds); each test gets its own
    link, so tests do not see each other's submissions."""
    server = UploadServer(data_dir=tmp_path_factory.mktemp("upload-data"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def citizen(shared_server: UploadServer) -> Citizen:
    url, reference = make_upload_link(shared_server.data_dir, base_url=shared_server.base_url)
    return Citizen(server=shared_server, link_url=url, report_reference=reference)


def new_context(browser: Browser, **kwargs: object) -> BrowserContext:
    context = browser.new_context(**kwargs)  # type: ignore[arg-type]
    context.set_default_timeout(30_000)
    return context


@pytest.fixture
def context(chromium: Browser) -> Iterator[BrowserContext]:
    ctx = new_context(chromium)
    try:
        yield ctx
    finally:
        ctx.close()


@pytest.fixture
def page(context: BrowserContext) -> Page:
    return context.new_page()


def axe_violations(page: Page) -> list[dict[str, object]]:
    """Run axe-core on the page as it is now. The page's CSP forbids injected inline
    scripts, so the context must be made with ``bypass_csp=True``; the CSP itself is
    tested separately (tests/browser/test_csp.py)."""
    page.add_script_tag(path=str(AXE))
    result = page.evaluate(
        "async (tags) => (await axe.run(document, {runOnly: {type: 'tag', values: tags}})).violations"
        ".map(v => ({id: v.id, impact: v.impact, help: v.help, nodes: v.nodes.map(n => n.target.join(' '))}))",
        AXE_TAGS,
    )
    assert isinstance(result, list)
    return result


def no_horizontal_scroll(page: Page) -> bool:
    return bool(page.evaluate(
        "() => document.documentElement.scrollWidth <= document.documentElement.clientWidth"
    ))
