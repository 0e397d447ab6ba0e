"""Reports reach the officers who work them (issue 15 item 1), end to end through
`exhibit serve` and real Chromium: the force's system files a report for a unit (the
intake API, with a key scoped to that unit); the unit's supervisor signs in (password and
TOTP), finds it, and assigns it to an officer from the report page; the officer finds it
in "My reports" with its new evidence counted, and opens it; an officer of another unit
gets the 404 page. The new and changed pages are axe-clean and do not scroll sideways at
320 CSS px. On SQLite and on PostgreSQL, through the server each database's journeys share
(``journey_server``, tests/browser/conftest.py)."""

from __future__ import annotations

import httpx2 as httpx
import pytest
from playwright.sync_api import Browser, BrowserContext, Page

from storage import apikeys
from storage.db import Database
from storage.settings import Settings
from storage.users import add_user
from tests.browser.conftest import (
    Served,
    axe_violations,
    new_context,
    no_horizontal_scroll,
    sign_in_with_totp,
    unique,
)

pytestmark = pytest.mark.browser

PASSWORD = "correct horse battery staple 7"


def _people_and_key(settings: Settings, sergeant: str, officer: str, outsider: str) -> str:
    db = Database(settings.database_url)
    try:
        with db.write() as session:
            add_user(db, session, sergeant, "supervisor", display_name="Sgt North", password=PASSWORD, unit="North",
                     actor="test")
            add_user(db, session, officer, "officer", display_name="PC North", password=PASSWORD, unit="North",
                     actor="test")
            add_user(db, session, outsider, "officer", display_name="PC South", password=PASSWORD, unit="South",
                     actor="test")
            _row, key = apikeys.add_api_key(db, session, "online forms (North)", actor="test", unit="North")
        return key
    finally:
        db.dispose()


def _sign_in(browser: Browser, base: str, email: str, **options: object) -> tuple[BrowserContext, Page]:
    context = new_context(browser, **options)
    page = context.new_page()
    sign_in_with_totp(page, base, email, PASSWORD)
    return context, page


def _check_page(page: Page, name: str) -> None:
    assert no_horizontal_scroll(page), (name, page.evaluate("document.documentElement.scrollWidth"))
    assert axe_violations(page) == [], name


def test_a_supervisor_assigns_a_report_and_the_officer_finds_it_in_my_reports(journey_server: Served,
                                                                              chromium: Browser) -> None:
    served = journey_server  # one server per database (tests/browser/conftest.py), shared
    sergeant, officer, outsider = (
        unique("sgt.north@force.test"), unique("pc.north@force.test"), unique("pc.south@force.test"))
    reference = unique("RTC/2026/ASSIGN")
    key = _people_and_key(served.settings, sergeant, officer, outsider)
    # The force's form files the report for the North unit (no owner yet).
    made = httpx.post(f"{served.public}/api/v1/reports", headers={"Authorization": f"Bearer {key}"},
                      json={"reference": reference, "kind": "rtc", "title": "Collision, A38"}, timeout=30)
    assert made.status_code == 201, made.text
    assert made.json()["unit"] == "North"
    # axe is injected as a script: the contexts that run it bypass the CSP (tested elsewhere).
    narrow = {"viewport": {"width": 320, "height": 640}, "bypass_csp": True}
    contexts: list[BrowserContext] = []
    try:
        sup_context, sup = _sign_in(chromium, served.base, sergeant, **narrow)
        contexts.append(sup_context)
        # The supervisor's list holds the unit's report; the unit filter finds it too.
        sup.goto(f"{served.base}/reports?unit=North")
        _check_page(sup, "report list (unit filter)")
        sup.get_by_role("link", name=reference).click()
        sup.wait_for_selector(f"h1:has-text('Report {reference}')")
        report_url = sup.url.split("#")[0]
        assert sup.locator("#assignment").is_visible()
        # Only the unit's officers and supervisors are offered.
        offered = sup.locator("#assign-email option").all_text_contents()
        assert any(officer in o for o in offered) and not any(outsider in o for o in offered)
        _check_page(sup, "report page (supervisor, assignment panel)")
        sup.select_option("#assign-email", officer)
        sup.get_by_role("button", name="Assign", exact=True).click()
        sup.wait_for_selector(f"section[aria-labelledby=assignment] li:has-text('{officer}')")
        _check_page(sup, "report page after assigning")

        pc_context, pc = _sign_in(chromium, served.base, officer, **narrow)
        contexts.append(pc_context)
        pc.get_by_role("link", name="My reports").click()
        pc.wait_for_url(f"{served.base}/my-reports")
        row = pc.locator("tr", has=pc.get_by_role("link", name=reference))
        assert row.locator("td").nth(2).inner_text() == "Assigned"
        assert row.locator(f"[data-new-for='{reference}']").inner_text() == "0"
        _check_page(pc, "my reports")
        pc.get_by_role("link", name=reference).click()
        pc.wait_for_selector(f"h1:has-text('Report {reference}')")
        # The officer sees who works it but may not hand it out.
        assert pc.locator("#assign-email").count() == 0
        _check_page(pc, "report page (officer)")

        other_context, other = _sign_in(chromium, served.base, outsider)
        contexts.append(other_context)
        response = other.goto(report_url)
        assert response is not None and response.status == 404
        other.goto(f"{served.base}/my-reports")
        assert other.get_by_text("No reports are assigned to you yet.").is_visible()
    finally:
        for context in contexts:
            context.close()
