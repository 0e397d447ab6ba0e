"""Staff form errors in words, field by field (issue 15 item 6; the browser side is in
tests/browser/test_staff_errors.py): what the server answers, on both databases."""

from __future__ import annotations

import re

from tests.fixtures.reviewer import ReviewHarness, csrf_of


def test_an_empty_sign_in_names_each_missing_field_and_tries_no_password(review: ReviewHarness) -> None:
    officer = review.make_user("officer")
    client = review.client()
    # More empty forms than the throttle lets wrong passwords through for the pair (5).
    for _ in range(8):
        page = client.get("/login")
        r = client.post("/login", data={"email": officer.email, "password": "", "csrf_token": csrf_of(page.text)})
        assert r.status_code == 400
        assert "<title>Error: Sign in - Exhibit</title>" in r.text
        assert '<a href="#password">Enter your password</a>' in r.text
        password = re.search(r'<input type="password"[^>]*>', r.text)
        assert password and 'aria-invalid="true"' in password.group(0)
        assert 'aria-describedby="password-error"' in password.group(0)
        assert 'id="password-error"' in r.text
        assert 'aria-invalid' not in re.search(r'<input type="email"[^>]*>', r.text).group(0)  # type: ignore[union-attr]
    page = client.get("/login")
    r = client.post("/login", data={"email": "", "password": "", "csrf_token": csrf_of(page.text)})
    assert '<a href="#email">Enter your email address</a>' in r.text and "Enter your password" in r.text
    # No password was tried: nothing is recorded as a failed sign-in, and the throttle has
    # not been spent, so the officer's own sign-in goes straight through.
    assert review.events("auth.failed") == []
    r = review.password_step(client, officer)
    assert r.status_code == 303 and r.headers["location"] == "/mfa"


def test_a_wrong_password_marks_both_fields_with_one_message(review: ReviewHarness) -> None:
    officer = review.make_user("officer")
    client = review.client()
    r = review.password_step(client, officer, password="not the password at all")
    assert r.status_code == 400 and "<title>Error: Sign in - Exhibit</title>" in r.text
    for kind in ("email", "password"):
        field = re.search(rf'<input type="{kind}"[^>]*>', r.text)
        assert field and 'aria-invalid="true"' in field.group(0) and 'aria-describedby="email-error"' in field.group(0)
    assert r.text.count("The email address or password is not right.") == 2  # the summary and the field
