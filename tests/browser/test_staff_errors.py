"""Errors on the staff forms are identified as the citizen pages identify them (WCAG 3.3.1,
3.3.3, 4.1.2), in real Chromium: each form sent empty or wrong answers with a page whose
title starts "Error: ", whose focus is on an error summary (role="alert") that links to
each field in error; each such field is aria-invalid and described by its own message; a
link in the summary takes focus to its field; and axe-core finds no violation. The casework
forms (triage, tag, note) are not stopped by the browser's own "required" bubbles: they
reach the server, which answers in words."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, expect

from reviewer_ui import sessions
from storage.models import User
from tests.browser.conftest import axe_violations, new_context
from tests.fixtures.casework import Casework, LiveReview

pytestmark = [pytest.mark.browser, pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)]


@pytest.fixture
def browser_context(chromium: Browser) -> Iterator[BrowserContext]:
    context = new_context(chromium, bypass_csp=True)  # axe is injected as a script
    try:
        yield context
    finally:
        context.close()


def _cookie(live: LiveReview, user: User, *, mfa_passed: bool = True) -> list[dict[str, Any]]:
    cw = live.casework
    with cw.db.write() as session:
        value = sessions.create(cw.ctx, session, user, mfa_passed=mfa_passed, client_ip="127.0.0.1",
                                user_agent="chromium")
    return [{"name": sessions.cookie_name(cw.settings), "value": value, "url": live.base_url,
             "httpOnly": True, "sameSite": "Strict"}]


def assert_errors_identified(page: Page, fields: dict[str, str]) -> None:
    """``fields`` maps each control id in error to a word of its message."""
    summary = page.locator("#error-summary")
    # Focus moves to the summary when the page loads (autofocus; errors.js as a fallback).
    page.wait_for_function("() => document.activeElement && document.activeElement.id === 'error-summary'")
    assert summary.get_attribute("role") == "alert"
    assert page.title().startswith("Error: "), page.title()
    for field, words in fields.items():
        control = page.locator(f"[id='{field}']")
        link = summary.locator(f"a[href='#{field}']")
        expect(link).to_contain_text(words)
        assert control.get_attribute("aria-invalid") == "true", field
        assert f"{field}-error" in (control.get_attribute("aria-describedby") or "").split(), field
        message = page.locator(f"[id='{field}-error']")
        expect(message).to_be_visible()
        expect(message).to_contain_text(words)
        # What a screen reader announces on reaching the field: its own message, "Error:" first.
        expect(control).to_have_accessible_description(re.compile("Error: .*" + re.escape(words)))
    violations = axe_violations(page)
    assert violations == [], violations
    # The first link in the summary takes the keyboard to its field.
    first = next(iter(fields))
    summary.locator(f"a[href='#{first}']").click()
    page.wait_for_function(f"() => document.activeElement && document.activeElement.id === '{first}'")


def test_sign_in_sent_empty_then_wrong(browser_context: BrowserContext, live_review: LiveReview) -> None:
    page = browser_context.new_page()
    page.goto(f"{live_review.base_url}/login")
    assert not page.title().startswith("Error")
    page.get_by_role("button", name="Continue").click()
    assert_errors_identified(page, {"email": "Enter your email address", "password": "Enter your password"})

    page.get_by_label("Email address").fill("nobody@force.test")
    page.get_by_label("Password").fill("not the password")
    page.get_by_role("button", name="Continue").click()
    assert_errors_identified(page, {"email": "not right"})
    # The password is marked too, described by the same message: sign-in never says which was wrong.
    password = page.locator("#password")
    assert password.get_attribute("aria-invalid") == "true"
    assert password.get_attribute("aria-describedby") == "email-error"


def test_code_pages_mfa_enrolment_and_step_up(browser_context: BrowserContext, live_review: LiveReview,
                                              casework: Casework) -> None:
    base = live_review.base_url
    enrolled = casework.user("officer")
    page = browser_context.new_page()
    browser_context.add_cookies(_cookie(live_review, enrolled, mfa_passed=False))  # type: ignore[arg-type]
    page.goto(f"{base}/mfa")
    page.get_by_role("button", name="Sign in").click()
    assert_errors_identified(page, {"code": "not right"})
    # The hint stays in the description, with the message.
    assert page.locator("#code").get_attribute("aria-describedby") == "code-hint code-error"

    browser_context.clear_cookies()
    new = casework.user("officer")
    with casework.db.write() as session:
        row = session.get(User, new.id)
        assert row is not None
        row.mfa_enrolled = False
        session.add(row)
    browser_context.add_cookies(_cookie(live_review, new, mfa_passed=False))  # type: ignore[arg-type]
    page.goto(f"{base}/mfa")
    page.get_by_label("Enter the 6-digit code the app shows").fill("000000")
    page.get_by_role("button", name="Confirm and sign in").click()
    assert_errors_identified(page, {"code": "not right"})

    browser_context.clear_cookies()
    browser_context.add_cookies(_cookie(live_review, enrolled))  # type: ignore[arg-type]
    page.goto(f"{base}/reauth?next=/reports")
    page.get_by_role("button", name="Confirm").click()
    assert_errors_identified(page, {"code": "not right"})


def test_casework_forms_on_the_item_page(browser_context: BrowserContext, live_review: LiveReview,
                                         casework: Casework) -> None:
    officer = casework.user("officer")
    casework.user("partner")
    report = casework.report(officer)
    item = casework.item(report).item
    client = casework.client(officer)
    assert client.post(f"/items/{item.id}/notes", {"body": "First look: plate unreadable."}).status_code == 303
    browser_context.add_cookies(_cookie(live_review, officer))  # type: ignore[arg-type]
    page = browser_context.new_page()
    url = f"{live_review.base_url}/items/{item.id}"

    page.goto(url + "#triage")  # the workspace opens the panel the anchor is in (i15 item 5)
    # Triage sent empty: the browser does not stop it with a bubble; the server answers.
    triage = page.locator("form[action$='/triage']")
    assert triage.get_attribute("novalidate") is not None
    triage.get_by_role("button", name="Record decision").click()
    assert_errors_identified(page, {"decision-accept": "Choose accept or decline", "triage-reason": "Give a reason"})
    page.get_by_label("Decline").check()
    page.locator("form[action$='/triage']").get_by_role("button", name="Record decision").click()
    assert_errors_identified(page, {"triage-reason": "Give a reason"})
    expect(page.get_by_label("Decline")).to_be_checked()  # what was chosen is kept
    # A reason typed without a decision is kept too.
    page.goto(url + "#triage")
    page.get_by_label("Reason", exact=True).fill("Shows the junction clearly.")
    page.get_by_role("button", name="Record decision").click()
    assert_errors_identified(page, {"decision-accept": "Choose accept or decline"})
    expect(page.get_by_label("Reason", exact=True)).to_have_value("Shows the junction clearly.")

    page.goto(url + "#tags")
    page.get_by_role("button", name="Add tag").click()
    assert_errors_identified(page, {"tag-new": "A tag is 1 to 64"})
    page.get_by_label("Add a tag").fill("plate?!")
    page.get_by_role("button", name="Add tag").click()
    assert_errors_identified(page, {"tag-new": "A tag is 1 to 64"})
    expect(page.get_by_label("Add a tag")).to_have_value("plate?!")

    page.goto(url + "#notes")
    page.get_by_role("button", name="Add note").click()
    assert_errors_identified(page, {"note-body": "A note is 1 to"})

    # Editing a note with its text removed: the folded editor opens on the error.
    page.goto(url + "#notes")
    page.get_by_text("Edit this note").click()
    editor = page.get_by_label("New version")
    editor.fill("")
    page.get_by_role("button", name="Save new version").click()
    field = page.get_by_label("New version").get_attribute("id")
    assert field and field.startswith("edit-")
    assert_errors_identified(page, {field: "A note is 1 to"})

    page.goto(url + "#shares")
    page.get_by_label("Expires after (days)").fill("")
    page.get_by_role("button", name="Share this item").click()
    assert_errors_identified(page, {"days-item": "a whole number of days from 1 to"})

    page.goto(url)
    page.get_by_label("Reason for downloading the original").fill("court")
    page.get_by_role("button", name="Download original").click()
    assert_errors_identified(page, {"download-reason": "Give a reason"})
    expect(page.get_by_label("Reason for downloading the original")).to_have_value("court")


def test_report_and_admin_forms(browser_context: BrowserContext, live_review: LiveReview, casework: Casework) -> None:
    admin = casework.user("admin")
    casework.user("partner")  # so the share form is shown
    report = casework.report(admin)
    browser_context.add_cookies(_cookie(live_review, admin))  # type: ignore[arg-type]
    page = browser_context.new_page()
    base = live_review.base_url

    page.goto(f"{base}/reports/new")
    page.get_by_role("button", name="Create report").click()
    assert_errors_identified(page, {"reference": "This reference cannot be used"})
    # The hint stays in the description, with the message.
    assert page.locator("#reference").get_attribute("aria-describedby") == "reference-hint reference-error"

    page.goto(f"{base}/reports/{report.id}")
    page.get_by_label("Most bytes in total").fill("lots")
    page.get_by_role("button", name="Issue link").click()
    assert_errors_identified(page, {"max_bytes": "a positive size"})

    page.goto(f"{base}/reports/{report.id}")
    page.locator("#days-report").fill("9999")
    page.get_by_role("button", name="Share this report").click()
    assert_errors_identified(page, {"days-report": "a whole number of days from 1 to"})

    page.goto(f"{base}/admin/users")
    page.get_by_role("button", name="Add user").click()
    assert_errors_identified(page, {"new-email": "not an email address"})
    page.get_by_label("Email address").fill("cps.lawyer@cps.test")
    page.get_by_label("Role").select_option("partner")
    page.get_by_role("button", name="Add user").click()
    assert_errors_identified(page, {"new-org": "organisation"})
