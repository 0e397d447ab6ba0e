"""Staff sign-in in real Chromium: first sign-in with TOTP enrolment (the secret read from
the page's text fallback, the code computed with pyotp), sign-in with password and TOTP,
the admin pages driven by keyboard, axe-core on every one of those pages, and no CSP
violation on them."""

from __future__ import annotations

from collections.abc import Iterator

import pyotp
import pytest
from playwright.sync_api import Browser, BrowserContext, ConsoleMessage, Page, expect

from storage import links
from storage.reports import create_report
from tests.browser.conftest import axe_violations, new_context
from tests.fixtures.first_admin import ensure_first_admin
from tests.fixtures.reviewer import PASSWORD, Clock, LiveServer, ReviewHarness

pytestmark = [pytest.mark.browser, pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)]


@pytest.fixture
def clock() -> Clock:
    # Chromium's user types a code computed at the real time: the server's clock follows it.
    return Clock(follow_real_time=True)


@pytest.fixture
def axe_context(chromium: Browser) -> Iterator[BrowserContext]:
    context = new_context(chromium, bypass_csp=True)  # axe is injected as a script
    try:
        yield context
    finally:
        context.close()


def assert_accessible(page: Page) -> None:
    violations = axe_violations(page)
    assert violations == [], violations


def sign_in_with_password(page: Page, base: str, email: str, password: str) -> None:
    page.goto(f"{base}/login")
    page.get_by_label("Email address").fill(email)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Continue").click()
    page.wait_for_url(f"{base}/mfa")


def test_first_sign_in_enrols_totp_and_admin_pages_work_by_keyboard(
    live_staff: LiveServer, review: ReviewHarness, axe_context: BrowserContext
) -> None:
    base = live_staff.base_url
    created = ensure_first_admin(review.db)
    assert created is not None
    email, password = created
    officer = review.make_user("officer", email="pc.jones@force.example")
    with review.db.write() as s:
        report = create_report(review.db, s, "RTC/2026/0101", "rtc", owner_id=officer.user_id, actor=officer.email)
        links.create_link(review.db, s, report, public_url=base, expires_in_seconds=3600, max_files=5,
                          max_bytes=1 << 30, actor=officer.email)

    page = axe_context.new_page()
    page.goto(f"{base}/login")
    expect(page.get_by_role("heading", level=1)).to_have_text("Sign in to Exhibit")
    assert_accessible(page)

    # First sign-in: password, then enrolment with a QR code and the key as text.
    sign_in_with_password(page, base, email, password)
    expect(page.get_by_role("heading", level=1)).to_have_text("Set up two-step sign-in")
    qr = page.get_by_role("img", name="QR code to add Exhibit to your authenticator app", exact=False)
    expect(qr).to_be_visible()
    assert (qr.get_attribute("src") or "").startswith("data:image/svg+xml")
    assert qr.evaluate("img => img.naturalWidth") > 0  # the QR code really renders
    assert_accessible(page)
    secret = page.locator("#totp-secret").inner_text().replace(" ", "")
    page.get_by_label("Enter the 6-digit code the app shows").fill(pyotp.TOTP(secret).now())
    page.get_by_role("button", name="Confirm and sign in").click()
    page.wait_for_url(lambda url: "/login" not in url and "/mfa" not in url)

    # Users page, by keyboard: add an officer.
    page.goto(f"{base}/admin/users")
    assert_accessible(page)
    page.get_by_label("Email address").focus()
    page.keyboard.type("new.officer@force.example")
    page.keyboard.press("Tab")
    page.keyboard.type("New Officer")
    page.keyboard.press("Tab")  # the role list: least privilege, "officer", is preselected
    assert page.get_by_label("Role").input_value() == "officer"
    page.keyboard.press("Tab")  # organisation: none
    page.keyboard.press("Tab")
    page.keyboard.type("north")
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", name="Account created for new.officer@force.example")).to_be_visible()
    assert len(page.locator("#new-password").inner_text()) >= 20
    assert_accessible(page)

    # Sign the officer out everywhere, by keyboard.
    button = page.get_by_role("button", name="Sign out everywhere pc.jones@force.example")
    button.focus()
    page.keyboard.press("Enter")
    expect(page.get_by_role("status")).to_contain_text("signed out everywhere")

    # Live links, and a one-click revoke by keyboard.
    page.goto(f"{base}/admin/links")
    expect(page.get_by_role("cell", name="RTC/2026/0101", exact=True)).to_be_visible()
    assert_accessible(page)
    revoke = page.get_by_role("button", name="Revoke link for RTC/2026/0101", exact=False)
    revoke.focus()
    page.keyboard.press("Enter")
    # A destructive action asks first (reviewer_ui.confirm), by keyboard too.
    expect(page.get_by_role("heading", level=1)).to_have_text("Revoke the upload link for RTC/2026/0101?")
    assert_accessible(page)
    page.get_by_role("button", name="Yes, revoke the link").focus()
    page.keyboard.press("Enter")
    expect(page.get_by_role("status")).to_contain_text("revoked")
    expect(page.get_by_text("No upload link is live.")).to_be_visible()
    assert [e.actor for e in review.events("link.revoked")] == [email]

    # Sign out; the enrolled officer signs in with password + TOTP (the verify page).
    page.get_by_role("button", name="Sign out").click()
    page.wait_for_url(f"{base}/login")
    sign_in_with_password(page, base, officer.email, PASSWORD)
    expect(page.get_by_role("heading", level=1)).to_have_text("Enter the code from your authenticator app")
    assert_accessible(page)
    assert officer.totp_secret
    page.get_by_label("6-digit code").fill(pyotp.TOTP(officer.totp_secret).now())
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(lambda url: "/login" not in url and "/mfa" not in url)
    page.goto(f"{base}/reauth?next=/reports")  # the step-up page
    expect(page.get_by_role("heading", level=1)).to_have_text("Confirm it is you")
    assert_accessible(page)
    page.goto(f"{base}/admin/users")
    expect(page.get_by_role("heading", level=1)).to_have_text("Not found")  # officers are not admins
    assert_accessible(page)
    assert {e.action for e in review.events()} >= {"auth.signed_in", "auth.mfa_enrolled", "auth.signed_out",
                                                    "access.denied", "user.created"}


def test_sign_in_pages_raise_no_csp_violation(live_staff: LiveServer, review: ReviewHarness,
                                              chromium: Browser) -> None:
    base = live_staff.base_url
    auditor = review.make_user("auditor", enrolled=False)
    context = new_context(chromium)  # the real CSP applies
    problems: list[str] = []

    def on_console(message: ConsoleMessage) -> None:
        if message.type in ("error", "warning"):
            problems.append(message.text)

    try:
        page = context.new_page()
        page.on("console", on_console)
        page.goto(f"{base}/login")
        # The stylesheet is a file, so it applies under the CSP.
        assert page.locator(".skip-link").evaluate("el => getComputedStyle(el).position") == "absolute"
        sign_in_with_password(page, base, auditor.email, PASSWORD)
        assert page.locator("img.qr").evaluate("img => img.naturalWidth") > 0  # data: image allowed
        secret = page.locator("#totp-secret").inner_text().replace(" ", "")
        page.get_by_label("Enter the 6-digit code the app shows").fill(pyotp.TOTP(secret).now())
        page.get_by_role("button", name="Confirm and sign in").click()
        page.wait_for_url(lambda url: "/login" not in url and "/mfa" not in url)
        # Skip link: the first Tab lands on it and it leads to the main content.
        page.goto(f"{base}/no-such-page")
        page.keyboard.press("Tab")
        expect(page.get_by_role("link", name="Skip to main content")).to_be_focused()
        assert [p for p in problems if "Content Security Policy" in p or "Refused" in p] == []
    finally:
        context.close()
