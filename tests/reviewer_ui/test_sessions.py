"""Server-side sessions with a controllable clock: idle and absolute timeouts, logout
replay, disabled account, sign out everywhere (SECURITY_CHECKLIST AC-10, AC-11)."""

from __future__ import annotations

from starlette.testclient import TestClient

from reviewer_ui import sessions
from tests.fixtures.reviewer import ReviewHarness


def signed_in(client: TestClient) -> bool:
    """/login sends a signed-in user on to / and shows the form to anyone else."""
    r = client.get("/login")
    return r.status_code == 303


def test_idle_session_ends_after_the_idle_timeout(review: ReviewHarness) -> None:
    officer = review.make_user("officer")
    client = review.client()
    review.sign_in(client, officer)
    idle = review.settings.session_idle_minutes
    review.clock.advance(minutes=idle - 1)
    assert signed_in(client)
    review.clock.advance(minutes=idle - 1)  # active a minute before: still alive
    assert signed_in(client)
    review.clock.advance(minutes=idle, seconds=1)
    assert not signed_in(client)


def test_activity_does_not_extend_a_session_past_its_absolute_lifetime(review_factory: object) -> None:
    review: ReviewHarness = review_factory(session_idle_minutes=30, session_absolute_hours=2)  # type: ignore[operator]
    officer = review.make_user("officer")
    client = review.client()
    review.sign_in(client, officer)
    step = review.settings.session_idle_minutes // 2
    elapsed = 0
    while elapsed + step < review.settings.session_absolute_hours * 60:
        review.clock.advance(minutes=step)
        elapsed += step
        assert signed_in(client), f"signed out after {elapsed} minutes"
    review.clock.advance(minutes=step)
    assert not signed_in(client)


def test_timeouts_follow_the_settings(review_factory: object) -> None:
    review: ReviewHarness = review_factory(session_idle_minutes=5, session_absolute_hours=1)  # type: ignore[operator]
    officer = review.make_user("officer")
    client = review.client()
    review.sign_in(client, officer)
    review.clock.advance(minutes=5, seconds=1)
    assert not signed_in(client)


def test_half_signed_in_session_expires_quickly(review: ReviewHarness) -> None:
    officer = review.make_user("officer")
    client = review.client()
    review.password_step(client, officer)
    assert client.get("/mfa").status_code == 200
    review.clock.advance(seconds=sessions.PENDING_MFA_SECONDS + 1)
    assert client.get("/mfa").headers["location"] == "/login"


def test_cookie_replayed_after_logout_is_anonymous(review: ReviewHarness) -> None:
    officer = review.make_user("officer")
    client = review.client()
    review.sign_in(client, officer)
    cookie = client.cookies.get(sessions.cookie_name(review.settings))
    assert cookie
    assert review.post(client, "/logout", page="/no-such-page").status_code == 303
    thief = review.client(ip="198.51.100.7")
    thief.cookies.set(sessions.cookie_name(review.settings), cookie)
    assert not signed_in(thief)


def test_disabling_an_account_ends_its_sessions_at_once(review: ReviewHarness) -> None:
    admin = review.make_user("admin")
    officer = review.make_user("officer")
    admin_client, officer_client = review.client(), review.client(ip="192.0.2.20")
    review.sign_in(admin_client, admin)
    review.sign_in(officer_client, officer)
    assert signed_in(officer_client)
    r = review.post(admin_client, f"/admin/users/{officer.user_id}/disable", {"confirmed": "yes"})
    assert r.status_code == 303
    assert not signed_in(officer_client)
    # ...and a disabled account cannot sign in again.
    again = review.client(ip="192.0.2.21")
    assert review.password_step(again, officer).status_code == 400
    [event] = review.events("user.disabled")
    assert event.actor == admin.email and event.detail and event.detail["sessions_ended"] == 1


def test_disabled_flag_alone_ends_sessions(review: ReviewHarness) -> None:
    officer = review.make_user("officer")
    client = review.client()
    review.sign_in(client, officer)
    with review.db.write() as s:
        user = review.user(officer)
        user.disabled = True
        s.add(user)
    assert not signed_in(client)


def test_sign_out_everywhere_ends_every_session_of_the_account(review: ReviewHarness) -> None:
    admin = review.make_user("admin")
    officer = review.make_user("officer")
    admin_client = review.client()
    laptop, phone = review.client(ip="192.0.2.30"), review.client(ip="192.0.2.31")
    review.sign_in(admin_client, admin)
    review.sign_in(laptop, officer)
    review.sign_in(phone, officer)
    r = review.post(admin_client, f"/admin/users/{officer.user_id}/signout")
    assert r.status_code == 303
    assert not signed_in(laptop) and not signed_in(phone)
    assert signed_in(admin_client)
    [event] = review.events("user.signed_out_everywhere")
    assert event.detail and event.detail["sessions_ended"] == 2
    # The account itself still works: a fresh sign-in succeeds.
    review.sign_in(laptop, officer)
    assert signed_in(laptop)


def test_session_row_is_keyed_by_the_hash_of_the_cookie(review: ReviewHarness) -> None:
    officer = review.make_user("officer")
    client = review.client()
    review.sign_in(client, officer)
    cookie = client.cookies.get(sessions.cookie_name(review.settings))
    assert cookie and len(cookie) >= 43  # 256 bits, base64url
    from storage.models import StaffSession

    with review.db.read() as s:
        row = s.get(StaffSession, sessions.session_id(cookie))
        assert row is not None and row.mfa_passed
        assert s.get(StaffSession, cookie) is None
