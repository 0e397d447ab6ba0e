"""Staff administration in real Chromium (issue 15 item 2): a one-time password leads to
choosing one's own at first sign-in; a destructive admin action asks first, and the
question works with JavaScript switched off; disabling an account, from the admin page or
from `exhibit users disable`, ends a signed-in browser session at once. axe-core on the new
pages, and no sideways scroll at 320 px."""

from __future__ import annotations

import contextlib
import io
from collections.abc import Iterator

import pyotp
import pytest
from playwright.sync_api import Browser, BrowserContext, Page, expect

from reviewer_ui import accounts, sessions
from storage.models import User
from tests.browser.conftest import axe_violations, new_context, no_horizontal_scroll
from tests.fixtures.reviewer import Clock, LiveServer, ReviewHarness, Staff

pytestmark = pytest.mark.browser  # SQLite (tests/conftest.py), but the journeys marked both_databases
NEW = "a kettle on the landing at dawn"
NARROW = {"width": 320, "height": 640}


@pytest.fixture
def clock() -> Clock:
    return Clock(follow_real_time=True)  # Chromium's user types codes computed at the real time


@pytest.fixture
def js(chromium: Browser) -> Iterator[BrowserContext]:
    context = new_context(chromium, bypass_csp=True, viewport=NARROW)  # axe is injected as a script
    try:
        yield context
    finally:
        context.close()


@pytest.fixture
def no_js(chromium: Browser) -> Iterator[BrowserContext]:
    context = new_context(chromium, java_script_enabled=False, viewport=NARROW)
    try:
        yield context
    finally:
        context.close()


def signed_in(review: ReviewHarness, context: BrowserContext, base: str, staff: Staff) -> Page:
    """A signed-in session for ``staff`` (made as the sign-in makes it), its cookie in ``context``."""
    with review.db.write() as s:
        user = s.get(User, staff.user_id)
        assert user is not None
        value = sessions.create(review.app.state.ctx, s, user, mfa_passed=True, client_ip="127.0.0.1",
                                user_agent="chromium")
    context.add_cookies([{"name": sessions.cookie_name(review.settings), "value": value, "url": base}])
    return context.new_page()


def clean(page: Page) -> None:
    assert axe_violations(page) == []
    assert no_horizontal_scroll(page), "scrolls sideways at 320 px"


def test_a_one_time_password_leads_to_choosing_ones_own_first(live_staff: LiveServer, review: ReviewHarness,
                                                               js: BrowserContext) -> None:
    base = live_staff.base_url
    officer = review.make_user("officer", email="pc.new@force.example")
    with review.db.write() as s:
        user = s.get(User, officer.user_id)
        assert user is not None
        one_time = accounts.new_password(review.db, s, user, actor="cli:root", now=review.clock())
    assert officer.totp_secret

    page = js.new_page()
    page.goto(f"{base}/login")
    page.get_by_label("Email address").fill(officer.email)
    page.get_by_label("Password").fill(one_time)
    page.get_by_role("button", name="Continue").click()
    page.get_by_label("6-digit code").fill(pyotp.TOTP(officer.totp_secret).now())
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Choose your own password")
    assert page.url == f"{base}/account/password"
    clean(page)
    page.goto(f"{base}/reports")  # nothing else opens before the password is changed
    expect(page.get_by_role("heading", level=1)).to_have_text("Choose your own password")

    page.get_by_label("The one-time password you were given").fill(one_time)
    page.get_by_label("New password").fill("qwertyqwerty")
    page.get_by_role("button", name="Change password").click()
    summary = page.locator("#error-summary")
    expect(summary).to_be_focused()
    expect(summary).to_contain_text("most common")
    assert page.title().startswith("Error: ")
    assert page.get_by_label("New password").get_attribute("aria-describedby") == "new-password-hint new-password-error"
    clean(page)

    page.get_by_label("The one-time password you were given").fill(one_time)
    page.get_by_label("New password").fill(NEW)
    page.get_by_role("button", name="Change password").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Reports")
    assert [e.detail["replaced_one_time"] for e in review.events("user.password_changed")] == [True]

    page.get_by_role("link", name="Change password").click()  # the page for a signed-in account
    expect(page.get_by_role("heading", level=1)).to_have_text("Change your password")
    clean(page)


def test_disabling_asks_first_without_javascript_and_ends_the_officers_session(
        live_staff: LiveServer, review: ReviewHarness, js: BrowserContext, no_js: BrowserContext) -> None:
    base = live_staff.base_url
    admin = review.make_user("admin", email="admin@force.example")
    officer = review.make_user("officer", email="pc.gone@force.example")
    officer_page = signed_in(review, js, base, officer)
    officer_page.goto(f"{base}/reports")
    expect(officer_page.get_by_role("heading", level=1)).to_have_text("Reports")

    page = signed_in(review, no_js, base, admin)
    page.goto(f"{base}/admin/users")
    page.get_by_role("button", name="Disable pc.gone@force.example").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Disable the account pc.gone@force.example?")
    assert not review.user(officer).disabled  # asked, nothing done
    page.get_by_role("button", name="Yes, disable the account").click()
    expect(page.get_by_role("status")).to_contain_text("disabled and signed out everywhere")
    assert review.user(officer).disabled

    officer_page.reload()  # the very next request of the officer's browser is anonymous
    expect(officer_page.get_by_role("heading", level=1)).to_have_text("Sign in to Exhibit")

    # The confirmation page itself: axe-clean and no sideways scroll at 320 px.
    axe_page = signed_in(review, js, base, admin)
    axe_page.goto(f"{base}/admin/users")
    axe_page.get_by_role("button", name="New password for pc.gone@force.example").click()
    expect(axe_page.get_by_role("heading", level=1)).to_have_text("Issue a new password for pc.gone@force.example?")
    clean(axe_page)
    axe_page.get_by_role("link", name="Cancel and go back").click()
    expect(axe_page.get_by_role("heading", level=1)).to_have_text("Users")
    assert not review.events("user.reset_password")


@pytest.mark.both_databases  # an i15 journey: on SQLite and PostgreSQL
def test_exhibit_users_disable_ends_a_signed_in_browser_session(
        live_staff: LiveServer, review: ReviewHarness, js: BrowserContext, monkeypatch: pytest.MonkeyPatch) -> None:
    from exhibit.cli import main

    base = live_staff.base_url
    officer = review.make_user("officer", email="pc.cli@force.example")
    page = signed_in(review, js, base, officer)
    page.goto(f"{base}/reports")
    expect(page.get_by_role("heading", level=1)).to_have_text("Reports")
    monkeypatch.setenv("EXHIBIT_DATA_DIR", str(review.settings.data_dir))
    monkeypatch.setenv("EXHIBIT_DATABASE_URL", review.db.url)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["users", "disable", officer.email]) == 0
    assert "1 session(s) ended" in out.getvalue()
    page.reload()
    expect(page.get_by_role("heading", level=1)).to_have_text("Sign in to Exhibit")
