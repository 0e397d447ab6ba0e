"""Real Chromium (the Debian package, /usr/bin/chromium) driven by Playwright.

A missing Chromium is a failure, never a skip: the launch raises and every browser test
errors. ``PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD`` keeps Playwright from fetching its own.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx2 as httpx
import pyotp
import pytest
from playwright.sync_api import Browser, BrowserContext, Page, Playwright, expect, sync_playwright

from storage.settings import Settings
from tests.fixtures.ports import free_port
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

# One deadline for every wait on the page: actions and waits (the contexts' default, below)
# and expect(), whose own default is 5 s. An expect() that waits on the server (a sign-in
# at the production Argon2id cost in `exhibit serve`, a page updated after an upload)
# failed on a loaded machine where the same wait written as an action would have passed.
# Each still returns as soon as its condition holds: the deadline only bounds a failure.
WAIT_MS = 30_000
expect.set_options(timeout=WAIT_MS)


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
    context.set_default_timeout(WAIT_MS)
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


# --- `exhibit serve` in its own process, and signing in to it ---------------------------


@dataclass
class Served:
    base: str  # the staff door
    public: str  # the public door (citizens)
    settings: Settings
    log: Path


def exhibit_db_upgrade(env: dict[str, str]) -> None:
    # `exhibit serve` never migrates (only the owner role does, in `exhibit db upgrade`).
    subprocess.run([sys.executable, "-m", "exhibit", "db", "upgrade"], env=env, check=True, capture_output=True,
                   timeout=120)


@contextmanager
def exhibit_serving(env: dict[str, str], log: Path, serve_args: Sequence[str], ready: Sequence[str],
                    timeout: float) -> Iterator[None]:
    """Run ``exhibit serve *serve_args`` (output to ``log``) until the block ends; each
    ``ready`` URL must answer 200 within ``timeout`` seconds before the block runs. Ended
    by SIGTERM (killed after 30 s)."""
    with log.open("w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "exhibit", "serve", *serve_args], env=env, stdout=out,
                                stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + timeout
    try:
        for url in ready:
            while True:
                assert proc.poll() is None, log.read_text()
                try:
                    if httpx.get(url, timeout=2).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert time.monotonic() < deadline, "server did not come up:\n" + log.read_text()
                time.sleep(0.1)  # polling a readiness endpoint: there is no event to await
        yield
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextmanager
def served_exhibit(tmp_path: Path, serve_args: Sequence[str], timeout: float,
                   database_url: str | None = None) -> Iterator[Served]:
    """A migrated database under ``tmp_path`` (or at ``database_url``) and ``exhibit serve
    *serve_args`` with both doors on free ports, up (their /healthz answers) within
    ``timeout`` seconds."""
    port, staff_port = free_port(), free_port()
    log = tmp_path / "serve.log"
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("EXHIBIT_")},
           "EXHIBIT_DATA_DIR": str(tmp_path / "data"), "EXHIBIT_PORT": str(port),
           "EXHIBIT_STAFF_PORT": str(staff_port),
           "EXHIBIT_PUBLIC_URL": f"http://127.0.0.1:{port}", "EXHIBIT_LOG_LEVEL": "WARNING"}
    if database_url:
        env["EXHIBIT_DATABASE_URL"] = database_url
    exhibit_db_upgrade(env)
    base, public = f"http://127.0.0.1:{staff_port}", f"http://127.0.0.1:{port}"
    with exhibit_serving(env, log, serve_args, ready=[f"{base}/healthz", f"{public}/healthz"], timeout=timeout):
        yield Served(base=base, public=public, settings=Settings.from_env(env), log=log)


def sign_in_with_totp(page: Page, base: str, email: str, password: str) -> None:
    """An account's first sign-in: the password, then enrol the authenticator from the key
    shown beside the QR code and give its code; ends on the reports page."""
    page.goto(f"{base}/login")
    page.fill("#email", email)
    page.fill("#password", password)
    page.locator("form[action='/login'] button[type=submit]").click()
    secret = page.locator("#totp-secret").get_attribute("data-secret")
    assert secret
    page.fill("#code", pyotp.TOTP(secret).now())
    page.locator("form[action='/mfa'] button[type=submit]").click()
    page.wait_for_url(f"{base}/reports")


# --- one `exhibit serve` per database, shared by the staff journeys ----------------------

# Each database's journeys form one xdist group: under `make test` (--dist loadgroup) the
# SQLite journeys share one server on one worker and the PostgreSQL journeys another, and
# the two groups are spread over the workers like any other work (one group for both would
# start both servers on one worker and run every journey there).
JOURNEY_DATABASES = [
    pytest.param("sqlite", marks=pytest.mark.xdist_group("journeys-sqlite")),
    pytest.param("postgresql", marks=pytest.mark.xdist_group("journeys-postgresql")),
]


@pytest.fixture(scope="session", params=JOURNEY_DATABASES)
def journey_server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """``exhibit serve`` (both doors, the worker, the managed clamd), once per database per
    session (per xdist worker): a start-up costs many seconds under load. On PostgreSQL a
    fresh database copied from the session's migrated template, in the cluster the storage
    tests use. Journeys on it share its rows, so each makes its own people and references
    (``unique``) and looks only at what it made."""
    tmp = tmp_path_factory.mktemp(f"journeys-{request.param}")
    database_url = None
    if request.param == "postgresql":
        cluster = request.getfixturevalue("pg_cluster")
        database_url = cluster.create_database(prefix="journeys", template=request.getfixturevalue("pg_template"))
    # Generous: several engineers share two cores; a start-up has taken over 90 s under load.
    with served_exhibit(tmp, [], timeout=300, database_url=database_url) as served:
        yield served
    if database_url:
        cluster.drop_database(database_url)


def unique(text: str) -> str:
    """``text`` with a random tag in it (before any ``@``), so that journeys sharing a
    server never meet each other's users or reports, even when one runs twice."""
    tag = secrets.token_hex(3)
    name, at, domain = text.partition("@")
    return f"{name}.{tag}{at}{domain}" if at else f"{text}-{tag.upper()}"
