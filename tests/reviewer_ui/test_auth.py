"""Sign-in with password and TOTP, first-sign-in enrolment, replay, sign-out, audit."""

from __future__ import annotations

import datetime as dt
import re

from reviewer_ui import devices, mfa, sessions
from reviewer_ui.auth import typed_email_digest
from tests.fixtures.reviewer import ReviewHarness, csrf_of


def test_sign_in_with_password_and_totp_reaches_the_app(review: ReviewHarness) -> None:
    officer = review.make_user("officer")
    client = review.client()
    review.sign_in(client, officer)
    r = client.get("/")
    assert r.status_code == 303 and r.headers["location"] == "/reports"
    signed_in = review.events("auth.signed_in")
    assert [e.actor for e in signed_in] == [officer.email]


def test_password_alone_does_not_sign_in(review: ReviewHarness) -> None:
    officer = review.make_user("officer")
    client = review.client()
    r = review.password_step(client, officer)
    assert r.headers["location"] == "/mfa"
    assert client.get("/").headers["location"] == "/mfa"
    assert client.get("/admin/users").status_code in (303, 401)  # not a signed-in user yet


def test_wrong_password_and_unknown_account_get_the_same_answer(review: ReviewHarness) -> None:
    officer = review.make_user("officer")
    client = review.client()
    wrong = review.password_step(client, officer, password="not the password at all")
    unknown_page = client.get("/login")
    unknown = client.post("/login", data={"email": "nobody@force.example", "password": "whatever password",
                                          "csrf_token": csrf_of(unknown_page.text)})
    assert wrong.status_code == unknown.status_code == 400
    strip = re.compile(r'(value="[^"]*")')
    assert strip.sub("", wrong.text) == strip.sub("", unknown.text)
    failed = review.events("auth.failed")
    # A keyed hash of what was typed, never the text (issue 11 item 5).
    assert [e.detail["email_hmac"] for e in failed] == [  # type: ignore[index]
        typed_email_digest(review.secret, officer.email), typed_email_digest(review.secret, "nobody@force.example")]
    assert all("password" not in str(e.detail).replace('"step": "password"', "").replace("'step': 'password'", "")
               for e in failed)


def test_first_sign_in_enrols_totp_with_a_qr_code(review: ReviewHarness) -> None:
    officer = review.make_user("officer", enrolled=False)
    client = review.client()
    review.password_step(client, officer)
    page = client.get("/mfa")
    assert page.status_code == 200
    assert 'src="data:image/svg+xml' in page.text
    secret = re.search(r'data-secret="([A-Z2-7]+)"', page.text)
    assert secret
    # Reloading shows the same secret: the QR code scanned a moment ago stays valid.
    assert secret.group(1) in client.get("/mfa").text
    # The stored secret is sealed, not the base32 text.
    stored = review.user(officer).totp_secret
    assert stored and secret.group(1) not in stored
    assert mfa.unseal(review.secret, stored, officer.user_id) == secret.group(1)
    wrong = client.post("/mfa", data={"code": "000000", "csrf_token": csrf_of(page.text)})
    assert wrong.status_code == 400 and not review.user(officer).mfa_enrolled
    review.sign_in(client, officer)
    assert review.user(officer).mfa_enrolled
    assert [e.actor for e in review.events("auth.mfa_enrolled")] == [officer.email]


def test_a_totp_code_is_accepted_once(review: ReviewHarness) -> None:
    officer = review.make_user("officer")
    first, second = review.client(), review.client()
    review.password_step(first, officer)
    review.password_step(second, officer)
    code = review.next_code(officer)
    page1, page2 = first.get("/mfa"), second.get("/mfa")
    ok = first.post("/mfa", data={"code": code, "csrf_token": csrf_of(page1.text)})
    replay = second.post("/mfa", data={"code": code, "csrf_token": csrf_of(page2.text)})
    assert ok.status_code == 303
    assert replay.status_code == 400
    assert second.get("/").headers["location"] == "/mfa"  # still only half signed in
    # A code of an earlier step than the last one used is refused too.
    assert officer.totp_secret
    older = mfa.code_at(officer.totp_secret, review.clock() - dt.timedelta(seconds=mfa.STEP_SECONDS))
    page = second.get("/mfa")
    assert second.post("/mfa", data={"code": older, "csrf_token": csrf_of(page.text)}).status_code == 400


def test_sign_in_issues_a_new_session_cookie(review: ReviewHarness) -> None:
    officer = review.make_user("officer")
    client = review.client()
    client.get("/login")
    name = sessions.cookie_name(review.settings)
    pre = dict(client.cookies)
    review.password_step(client, officer)
    half = client.cookies.get(name)
    assert half and half not in pre.values()
    page = client.get("/mfa")
    assert client.post("/mfa", data={"code": review.next_code(officer), "csrf_token": csrf_of(page.text)}).status_code == 303
    full = client.cookies.get(name)
    assert full and full != half
    # The half-way cookie is dead once MFA passed (fixation: a planted cookie never
    # becomes a signed-in one).
    attacker = review.client()
    attacker.cookies.set(name, half)
    assert attacker.get("/").headers["location"] == "/login"


def test_sign_out_ends_the_session_and_clears_the_browser(review: ReviewHarness) -> None:
    officer = review.make_user("officer")
    client = review.client()
    review.sign_in(client, officer)
    name = sessions.cookie_name(review.settings)
    cookie = client.cookies.get(name)
    assert cookie
    r = review.post(client, "/logout", page="/no-such-page")
    assert r.status_code == 303
    assert '"cache"' in r.headers["clear-site-data"] and '"storage"' in r.headers["clear-site-data"]
    assert name not in client.cookies  # the session cookie is cleared by name...
    assert client.cookies.get(devices.cookie_name(review.settings))  # ...the device cookie stays (AC-07)
    replay = review.client()
    replay.cookies.set(name, cookie)
    assert replay.get("/").headers["location"] == "/login"
    assert [e.actor for e in review.events("auth.signed_out")] == [officer.email]
