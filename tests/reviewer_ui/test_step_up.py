"""Step-up: a fresh TOTP code before a sensitive action (SECURITY_CHECKLIST AC-13)."""

from __future__ import annotations

from starlette.requests import Request

from reviewer_ui import permissions, sessions
from reviewer_ui.auth import safe_next
from storage.models import StaffSession
from tests.fixtures.reviewer import ReviewHarness, csrf_of


def _session_row(review: ReviewHarness, cookie: str) -> StaffSession:
    with review.db.read() as s:
        row = s.get(StaffSession, sessions.session_id(cookie))
        assert row is not None
        return row


def _recent(review: ReviewHarness, cookie: str) -> bool:
    request = Request({"type": "http", "app": review.app, "state": {"staff_session": _session_row(review, cookie)}})
    return permissions.recently_verified(request)


def test_step_up_reissues_the_session_and_keeps_its_deadline(review: ReviewHarness) -> None:
    officer = review.make_user("officer")
    client = review.client()
    review.sign_in(client, officer)
    name = sessions.cookie_name(review.settings)
    first = client.cookies.get(name)
    assert first and _recent(review, first)
    review.clock.advance(minutes=10)
    assert not _recent(review, first)
    page = client.get("/reauth?next=/reports")
    assert page.status_code == 200
    r = client.post("/reauth", data={"code": review.next_code(officer), "next": "/reports",
                                     "csrf_token": csrf_of(page.text)})
    assert r.status_code == 303 and r.headers["location"] == "/reports"
    second = client.cookies.get(name)
    assert second and second != first and _recent(review, second)
    assert _session_row(review, second).expires_at == _session_row(review, first).expires_at
    assert _session_row(review, first).revoked_at is not None
    assert [e.actor for e in review.events("auth.step_up")] == [officer.email]


def test_step_up_refuses_a_wrong_or_replayed_code(review: ReviewHarness) -> None:
    officer = review.make_user("officer")
    client = review.client()
    review.sign_in(client, officer)
    assert officer.totp_secret
    from reviewer_ui import mfa

    used = mfa.code_at(officer.totp_secret, review.clock())  # the step spent at sign-in
    page = client.get("/reauth")
    r = client.post("/reauth", data={"code": used, "next": "/", "csrf_token": csrf_of(page.text)})
    assert r.status_code == 400
    assert review.events("auth.step_up") == []


def test_step_up_needs_a_signed_in_session(review: ReviewHarness) -> None:
    client = review.client()
    assert client.get("/reauth").headers["location"] == "/login"


def test_step_up_returns_only_to_local_paths() -> None:
    assert safe_next("/items/abc") == "/items/abc"
    for bad in ("https://evil.example/", "//evil.example/x", "/\\evil.example", "javascript:alert(1)", ""):
        assert safe_next(bad) == "/"
