"""Account changes on /admin need a fresh step-up, like an original download (i11 item
5, AC-13): a session whose last code is older than five minutes changes nothing; the
admin's form is held on a "confirm it is you" page and carried out once a code passes."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest
from sqlmodel import select
from starlette.testclient import TestClient

from reviewer_ui import sessions
from storage.models import User
from tests.fixtures.reviewer import ReviewHarness, Staff, csrf_of

STALE_MINUTES = 10  # past the five-minute step-up window, inside the 30-minute idle limit


def stale_admin(review: ReviewHarness) -> tuple[Staff, TestClient]:
    admin = review.make_user("admin")
    client = review.client()
    review.sign_in(client, admin)
    csrf = csrf_of(client.get("/admin/users").text)
    review.clock.advance(minutes=STALE_MINUTES)
    client.headers["x-test-csrf"] = csrf
    return admin, client


def _post(client: TestClient, path: str, data: dict[str, str]) -> Any:
    return client.post(path, data={**data, "csrf_token": client.headers["x-test-csrf"]})


# (name, path for a target user, form, check that the change happened)
Case = tuple[str, Callable[[Staff], str], dict[str, str], Callable[[ReviewHarness, Staff], bool]]


def _user_by_email(review: ReviewHarness, email: str) -> User | None:
    with review.db.read() as s:
        return s.exec(select(User).where(User.email == email)).first()


CASES: list[Case] = [
    ("create-admin", lambda t: "/admin/users", {"email": "second.admin@force.example", "role": "admin"},
     lambda r, t: _user_by_email(r, "second.admin@force.example") is not None),
    ("create-officer", lambda t: "/admin/users", {"email": "new.officer@force.example", "role": "officer"},
     lambda r, t: _user_by_email(r, "new.officer@force.example") is not None),
    ("disable", lambda t: f"/admin/users/{t.user_id}/disable", {"confirmed": "yes"}, lambda r, t: r.user(t).disabled),
    ("reset-mfa", lambda t: f"/admin/users/{t.user_id}/reset-mfa", {"confirmed": "yes"}, lambda r, t: not r.user(t).mfa_enrolled),
    ("reset-password", lambda t: f"/admin/users/{t.user_id}/reset-password", {"confirmed": "yes"},
     lambda r, t: bool(r.events("user.reset_password"))),
    ("signout", lambda t: f"/admin/users/{t.user_id}/signout", {},
     lambda r, t: bool(r.events("user.signed_out_everywhere"))),
    ("change-role", lambda t: f"/admin/users/{t.user_id}/role", {"role": "admin"},
     lambda r, t: r.user(t).role == "admin"),
]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_an_account_change_without_a_fresh_code_is_refused_then_carried_out(review: ReviewHarness,
                                                                           case: Case) -> None:
    _name, path_of, form, done = case
    admin, client = stale_admin(review)
    target = review.make_user("officer")
    path = path_of(target)

    held = _post(client, path, form)
    assert held.status_code == 403 and "Confirm it is you" in held.text
    assert not done(review, target)  # refused: nothing changed
    for name, value in form.items():  # the form is held, not lost
        assert f'name="{name}" value="{value}"' in held.text

    wrong = client.post(path, data={**form, "step_up_code": "000000", "csrf_token": csrf_of(held.text)})
    assert wrong.status_code == 400 and not done(review, target)

    cookie_name = sessions.cookie_name(review.settings)
    old_cookie = client.cookies.get(cookie_name)
    code = review.next_code(admin)
    finished = client.post(path, data={**form, "step_up_code": code, "csrf_token": csrf_of(wrong.text)})
    assert finished.status_code in (200, 303), finished.text
    assert done(review, target)
    # The session was re-issued by the code (AC-09), and the new one works.
    assert client.cookies.get(cookie_name) not in (None, old_cookie)
    assert client.get("/admin/users").status_code == 200
    assert [e.actor for e in review.events("auth.step_up")] == [admin.email]


def test_enabling_an_account_also_needs_a_fresh_code(review: ReviewHarness) -> None:
    admin, client = stale_admin(review)
    target = review.make_user("officer")
    with review.db.write() as s:
        row = s.get(User, target.user_id)
        assert row is not None
        row.disabled = True
        s.add(row)
    r = _post(client, f"/admin/users/{target.user_id}/enable", {})
    assert r.status_code == 403 and review.user(target).disabled
    r = client.post(f"/admin/users/{target.user_id}/enable",
                    data={"step_up_code": review.next_code(admin), "csrf_token": csrf_of(r.text)})
    assert r.status_code == 303 and not review.user(target).disabled


def test_a_fresh_session_acts_at_once_and_the_created_password_is_shown(review: ReviewHarness) -> None:
    admin = review.make_user("admin")
    client = review.client()
    review.signed_in_session(client, admin)
    r = client.post("/admin/users", data={"email": "quick@force.example", "role": "officer",
                                          "csrf_token": csrf_of(client.get("/admin/users").text)})
    assert r.status_code == 200 and re.search(r'id="new-password">([^<]+)<', r.text)


def test_a_role_change_is_recorded_ends_sessions_and_never_applies_to_oneself(review: ReviewHarness) -> None:
    admin = review.make_user("admin")
    client = review.client()
    review.signed_in_session(client, admin)
    officer = review.make_user("officer")
    officer_client = review.client(ip="192.0.2.90")
    review.signed_in_session(officer_client, officer)
    assert officer_client.get("/reports").status_code == 200
    token = csrf_of(client.get("/admin/users").text)
    r = client.post(f"/admin/users/{officer.user_id}/role", data={"role": "auditor", "csrf_token": token})
    assert r.status_code == 303 and review.user(officer).role == "auditor"
    [event] = review.events("user.role_changed")
    assert event.actor == admin.email and event.detail is not None
    assert (event.detail["from"], event.detail["to"]) == ("officer", "auditor")
    assert officer_client.get("/reports").status_code == 303  # signed out: the new role needs a new sign-in
    token = csrf_of(client.get("/admin/users").text)
    for data in ({"role": "officer"}, {"role": "superuser"}):
        target = admin if data["role"] == "officer" else officer
        r = client.post(f"/admin/users/{target.user_id}/role", data={**data, "csrf_token": token})
        assert r.status_code == 400
    assert review.user(admin).role == "admin" and review.user(officer).role == "auditor"
    r = client.post(f"/admin/users/{officer.user_id}/role", data={"role": "partner", "csrf_token": token})
    assert r.status_code == 400 and review.user(officer).role == "auditor"  # a partner needs an organisation


def _lock_codes(review: ReviewHarness, user_id: str) -> None:
    """Pause an account's codes as ten wrong ones would (reviewer_ui.throttle)."""
    from reviewer_ui import throttle
    from storage.models import TotpGuard

    with review.db.write() as s:
        throttle.totp_locked(s, user_id, review.clock())
        guard = s.get(TotpGuard, user_id)
        assert guard is not None
        guard.failures, guard.locked_at = throttle.TOTP_LIMIT, review.clock()
        s.add(guard)


def test_allowing_codes_again_also_needs_a_fresh_code(review: ReviewHarness) -> None:
    # Letting code guessing resume on an account is an account change (AC-13): a hijacked
    # admin session without a fresh code must not lift the pause it may have caused.
    admin, client = stale_admin(review)
    target = review.make_user("officer")
    _lock_codes(review, target.user_id)
    path = f"/admin/users/{target.user_id}/allow-codes"
    held = _post(client, path, {})
    assert held.status_code == 403 and "Confirm it is you" in held.text
    assert not review.events("auth.totp_unlocked")
    r = client.post(path, data={"step_up_code": review.next_code(admin), "csrf_token": csrf_of(held.text)})
    assert r.status_code == 303 and [e.actor for e in review.events("auth.totp_unlocked")] == [admin.email]


def test_the_admin_step_up_obeys_the_accounts_code_pause(review: ReviewHarness) -> None:
    # The step-up is a TOTP check like the sign-in's: it must not be a way round the
    # per-account bound on code guessing (AU, i11 item 4). With the admin's codes paused,
    # even the right code changes nothing.
    admin, client = stale_admin(review)
    target = review.make_user("officer")
    held = _post(client, f"/admin/users/{target.user_id}/disable", {"confirmed": "yes"})
    assert held.status_code == 403
    _lock_codes(review, admin.user_id)
    r = client.post(f"/admin/users/{target.user_id}/disable",
                    data={"step_up_code": review.next_code(admin), "csrf_token": csrf_of(held.text), "confirmed": "yes"})
    assert r.status_code == 429 and "Codes are paused" in r.text
    assert not review.user(target).disabled
