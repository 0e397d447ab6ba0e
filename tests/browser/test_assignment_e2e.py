"""Reports reach the officers who work them (issue 15 item 1), end to end through
`exhibit serve` and real Chromium: the force's system files a report for a unit (the
intake API, with a key scoped to that unit); the unit's supervisor signs in (password and
TOTP), finds it, and assigns it to an officer from the report page; the officer finds it
in "My reports" with its new evidence counted, and opens it; an officer of another unit
gets the 404 page. The new and changed pages are axe-clean and do not scroll sideways at
320 CSS px."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

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
    served_exhibit,
    sign_in_with_totp,
)

pytestmark = pytest.mark.browser

PASSWORD = "correct horse battery staple 7"
SERGEANT, PC, OUTSIDER = "sgt.north@force.test", "pc.north@force.test", "pc.south@force.test"


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    # No worker: this journey is about who sees a report, not about processing.
    # Generous: eight engineers share two cores; a start-up has taken over 90 s under load.
    with served_exhibit(tmp_path, ["--no-worker"], timeout=300) as served:
        yield served


def _people_and_key(settings: Settings) -> str:
    db = Database(settings.database_url)
    try:
        with db.write() as session:
            add_user(db, session, SERGEANT, "supervisor", display_name="Sgt North", password=PASSWORD, unit="North",
                     actor="test")
            add_user(db, session, PC, "officer", display_name="PC North", password=PASSWORD, unit="North",
                     actor="test")
            add_user(db, session, OUTSIDER, "officer", display_name="PC South", password=PASSWORD, unit="South",
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


def test_a_supervisor_assigns_a_report_and_the_officer_finds_it_in_my_reports(served: Served,
                                                                              chromium: Browser) -> None:
    key = _people_and_key(served.settings)
    # The force's form files the report for the North unit (no owner yet).
    made = httpx.post(f"{served.public}/api/v1/reports", headers={"Authorization": f"Bearer {key}"},
                      json={"reference": "RTC/2026/ASSIGN-1", "kind": "rtc", "title": "Collision, A38"}, timeout=30)
    assert made.status_code == 201, made.text
    assert made.json()["unit"] == "North"
    # axe is injected as a script: the contexts that run it bypass the CSP (tested elsewhere).
    narrow = {"viewport": {"width": 320, "height": 640}, "bypass_csp": True}
    contexts: list[BrowserContext] = []
    try:
        sup_context, sup = _sign_in(chromium, served.base, SERGEANT, **narrow)
        contexts.append(sup_context)
        # The supervisor's list holds the unit's report; the unit filter finds it too.
        sup.goto(f"{served.base}/reports?unit=North")
        _check_page(sup, "report list (unit filter)")
        sup.get_by_role("link", name="RTC/2026/ASSIGN-1").click()
        sup.wait_for_selector("h1:has-text('Report RTC/2026/ASSIGN-1')")
        report_url = sup.url.split("#")[0]
        assert sup.locator("#assignment").is_visible()
        # Only the unit's officers and supervisors are offered.
        offered = sup.locator("#assign-email option").all_text_contents()
        assert any(PC in o for o in offered) and not any(OUTSIDER in o for o in offered)
        _check_page(sup, "report page (supervisor, assignment panel)")
        sup.select_option("#assign-email", PC)
        sup.get_by_role("button", name="Assign", exact=True).click()
        sup.wait_for_selector(f"section[aria-labelledby=assignment] li:has-text('{PC}')")
        _check_page(sup, "report page after assigning")

        pc_context, pc = _sign_in(chromium, served.base, PC, **narrow)
        contexts.append(pc_context)
        pc.get_by_role("link", name="My reports").click()
        pc.wait_for_url(f"{served.base}/my-reports")
        row = pc.locator("tr", has=pc.get_by_role("link", name="RTC/2026/ASSIGN-1"))
        assert row.locator("td").nth(2).inner_text() == "Assigned"
        assert row.locator("[data-new-for='RTC/2026/ASSIGN-1']").inner_text() == "0"
        _check_page(pc, "my reports")
        pc.get_by_role("link", name="RTC/2026/ASSIGN-1").click()
        pc.wait_for_selector("h1:has-text('Report RTC/2026/ASSIGN-1')")
        # The officer sees who works it but may not hand it out.
        assert pc.locator("#assign-email").count() == 0
        _check_page(pc, "report page (officer)")

        other_context, other = _sign_in(chromium, served.base, OUTSIDER)
        contexts.append(other_context)
        response = other.goto(report_url)
        assert response is not None and response.status == 404
        other.goto(f"{served.base}/my-reports")
        assert other.get_by_text("No reports are assigned to you yet.").is_visible()
    finally:
        for context in contexts:
            context.close()
