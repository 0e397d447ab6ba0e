"""End to end through `exhibit serve` (both apps, the real worker, the managed clamd) and
real Chromium: an officer signs in with password + TOTP (enrolling the authenticator on
first sign-in), creates a report, issues a link; a citizen's script uploads a generated MP4
through the link (POST /u/submit); the worker scans and transcodes it; the officer plays
the video, seeks (currentTime moves) and sees the custody events the viewing created. On
SQLite and on PostgreSQL, through the server each database's journeys share
(``journey_server``, tests/browser/conftest.py)."""

from __future__ import annotations

import httpx2 as httpx
import pytest
from playwright.sync_api import Browser

from storage.db import Database
from storage.settings import Settings
from storage.users import add_user
from tests.browser.conftest import Served, new_context, sign_in_with_totp, unique
from tests.fixtures.evidence import make_mp4

pytestmark = pytest.mark.browser

PASSWORD = "correct horse battery staple 7"


def _add_officer(settings: Settings, email: str) -> None:
    db = Database(settings.database_url)
    try:
        with db.write() as session:
            add_user(db, session, email, "officer", display_name="PC Jones", password=PASSWORD, actor="test")
    finally:
        db.dispose()


def _upload(link_url: str, base: str, clip: bytes) -> None:
    with httpx.Client(base_url=base, follow_redirects=False, timeout=60) as citizen:
        exchanged = citizen.get(link_url)
        assert exchanged.status_code == 303
        r = citizen.post(
            "/u/submit",
            data={"description": "The van went through the red light.", "occurred_at": "Monday 08:10",
                  "location": "Station Road", "declaration": "accepted", "declaration_version": "v1"},
            files=[("files", ("dashcam.mp4", clip, "video/mp4"))],
            headers={"Accept": "application/json"},
        )
        assert r.status_code in (200, 201), r.text


def test_officer_watches_a_citizens_clip_and_sees_the_custody_trail(journey_server: Served,
                                                                     chromium: Browser) -> None:
    served = journey_server  # one server per database (tests/browser/conftest.py), shared
    email, reference = unique("pc.jones@force.test"), unique("RTC/2026/E2E")
    _add_officer(served.settings, email)
    context = new_context(chromium)
    context.set_default_timeout(60_000)
    page = context.new_page()
    try:
        sign_in_with_totp(page, served.base, email, PASSWORD)

        page.goto(f"{served.base}/reports/new")
        page.fill("#reference", reference)
        page.select_option("#kind", "rtc")
        page.get_by_role("button", name="Create report").click()
        page.wait_for_selector(f"h1:has-text('Report {reference}')")

        page.fill("#max_files", "3")
        page.get_by_role("button", name="Issue link").click()
        link_url = page.locator("#issued-url").input_value()
        assert link_url.startswith(f"{served.public}/u/")
        assert page.locator("img.qr").count() == 1

        _upload(link_url, served.public, make_mp4(4.0, "320x240"))

        page.reload()  # the report page (a GET: the link is not shown again)
        page.get_by_role("link", name="dashcam.mp4").click()
        # The item page polls its progress JSON and reloads itself when processing ends.
        page.wait_for_selector("progress[data-progress-url]", state="detached", timeout=240_000)
        assert page.locator("video").count() == 1, page.locator("main").inner_text()
        assert page.locator(".watermark span").first.inner_text().startswith("PC Jones · ")

        duration = page.evaluate(
            """async () => {
                const v = document.querySelector('video');
                v.muted = true;
                await v.play();
                return v.duration;
            }"""
        )
        assert duration > 3
        page.wait_for_function("() => document.querySelector('video').currentTime > 0.1")
        seeked_to = page.evaluate(
            """() => new Promise(resolve => {
                const v = document.querySelector('video');
                v.addEventListener('seeked', () => resolve(v.currentTime), {once: true});
                v.currentTime = 3.0;
            })"""
        )
        assert seeked_to >= 2.9
        page.wait_for_function("() => document.querySelector('video').currentTime > 3.0")

        page.reload()
        page.get_by_role("tab", name="Custody").click()  # the item workspace's custody panel
        timeline = page.locator("table.custody").inner_text()
        for action in ("item.received", "item.clean", "item.ready", "item.viewed", "media.stream"):
            assert action in timeline, action
        viewing_rows = [line for line in timeline.splitlines() if email in line]
        assert any("media.stream" in line for line in viewing_rows)
        assert any("item.viewed" in line for line in viewing_rows)
    finally:
        context.close()
