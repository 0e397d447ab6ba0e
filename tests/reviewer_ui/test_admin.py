"""Admin pages: users (add, disable, enable, sign out everywhere) and live links with a
one-click revoke; the first-admin bootstrap."""

from __future__ import annotations

import re

from sqlmodel import select
from starlette.testclient import TestClient

from storage import links
from storage.models import UploadLink, User
from storage.reports import create_report
from tests.fixtures.first_admin import ensure_first_admin
from tests.fixtures.reviewer import ReviewHarness, Staff, csrf_of


def signed_in_admin(review: ReviewHarness) -> tuple[Staff, TestClient]:
    admin = review.make_user("admin")
    client = review.client()
    review.signed_in_session(client, admin)
    return admin, client


def test_adding_a_user_shows_a_one_time_password_that_works_with_mfa_enrolment(review: ReviewHarness) -> None:
    admin, client = signed_in_admin(review)
    r = review.post(client, "/admin/users", {"email": "New.Officer@Force.example", "display_name": "New Officer",
                                            "role": "officer", "unit": "north"})
    assert r.status_code == 200
    password = re.search(r'id="new-password">([^<]+)<', r.text)
    assert password
    assert password.group(1) not in client.get("/admin/users").text  # shown once
    with review.db.read() as s:
        user = s.exec(select(User).where(User.email == "new.officer@force.example")).one()
        assert user.role == "officer" and user.unit == "north" and not user.mfa_enrolled
        assert user.password_hash and password.group(1) not in user.password_hash
    assert [e.actor for e in review.events("user.created") if e.detail and e.detail["email"] == user.email] == [admin.email]
    newcomer = Staff(user_id=user.id, email=user.email, role="officer", password=password.group(1), totp_secret=None)
    review.sign_in(review.client(ip="192.0.2.80"), newcomer)
    assert review.user(newcomer).mfa_enrolled


def test_adding_a_user_with_bad_input_explains_and_creates_nothing(review: ReviewHarness) -> None:
    _admin, client = signed_in_admin(review)
    before = len(review.events("user.created"))
    r = review.post(client, "/admin/users", {"email": "not-an-email", "role": "officer"})
    assert r.status_code == 400 and "There is a problem" in r.text
    r = review.post(client, "/admin/users", {"email": "p@force.example", "role": "partner"})
    assert r.status_code == 400  # a partner needs an organisation
    r = review.post(client, "/admin/users", {"email": "x@force.example", "role": "superuser"})
    assert r.status_code == 400
    assert len(review.events("user.created")) == before


def test_an_admin_cannot_disable_themselves(review: ReviewHarness) -> None:
    admin, client = signed_in_admin(review)
    r = review.post(client, f"/admin/users/{admin.user_id}/disable", {"confirmed": "yes"})
    assert r.status_code == 303
    assert not review.user(admin).disabled
    assert client.get("/admin/users").status_code == 200


def test_enable_after_disable_lets_the_user_back_in(review: ReviewHarness) -> None:
    _admin, client = signed_in_admin(review)
    officer = review.make_user("officer")
    review.post(client, f"/admin/users/{officer.user_id}/disable", {"confirmed": "yes"})
    assert review.user(officer).disabled
    review.post(client, f"/admin/users/{officer.user_id}/enable")
    assert not review.user(officer).disabled
    review.sign_in(review.client(ip="192.0.2.81"), officer)


def test_unknown_user_ids_are_a_recorded_404(review: ReviewHarness) -> None:
    _admin, client = signed_in_admin(review)
    r = review.post(client, "/admin/users/" + "f" * 32 + "/disable")
    assert r.status_code == 404
    assert len(review.events("access.denied")) == 1


def test_live_links_page_lists_each_live_link_and_revokes_in_one_click(review: ReviewHarness) -> None:
    admin, client = signed_in_admin(review)
    officer = review.make_user("officer", email="pc.smith@force.example")
    db = review.db
    with db.write() as s:
        report = create_report(db, s, "RTC/2026/77", "rtc", owner_id=officer.user_id, actor=officer.email)
        live = links.create_link(db, s, report, public_url="http://x", expires_in_seconds=86400, max_files=10,
                                 max_bytes=1 << 30, actor=officer.email).link
        gone = links.create_link(db, s, report, public_url="http://x", expires_in_seconds=86400, max_files=10,
                                 max_bytes=1 << 30, actor=officer.email).link
        links.revoke_link(db, s, gone.id, actor=officer.email)
        live.used_files, live.used_bytes = 3, 5 << 20
        s.add(live)
    page = client.get("/admin/links")
    assert page.status_code == 200
    assert "RTC/2026/77" in page.text and "pc.smith@force.example" in page.text
    assert "3 of 10" in page.text and "5.0 MiB of 1.0 GiB" in page.text
    assert f"/admin/links/{live.id}/revoke" in page.text
    assert f"/admin/links/{gone.id}/revoke" not in page.text
    r = client.post(f"/admin/links/{live.id}/revoke", data={"csrf_token": csrf_of(page.text), "confirmed": "yes"})
    assert r.status_code == 303
    with db.read() as s:
        revoked = s.get(UploadLink, live.id)
        assert revoked is not None and revoked.revoked_at is not None and revoked.revoked_by == admin.email
    after = client.get("/admin/links")
    assert f"/admin/links/{live.id}/revoke" not in after.text
    assert [e.actor for e in review.events("link.revoked")][-1] == admin.email


def test_first_admin_is_created_once(review: ReviewHarness) -> None:
    created = ensure_first_admin(review.db)
    assert created is not None
    email, password = created
    assert len(password) >= 20
    assert ensure_first_admin(review.db) is None
    with review.db.read() as s:
        admin = s.exec(select(User).where(User.email == email)).one()
    first = Staff(user_id=admin.id, email=email, role="admin", password=password, totp_secret=None)
    client = review.client()
    review.sign_in(client, first)  # enrols TOTP at first sign-in
    assert client.get("/admin/users").status_code == 200


def test_reset_two_step_makes_the_user_enrol_again_and_ends_sessions(review: ReviewHarness) -> None:
    _admin, client = signed_in_admin(review)
    officer = review.make_user("officer")
    phone = review.client(ip="192.0.2.90")
    review.signed_in_session(phone, officer)
    old_secret = officer.totp_secret
    assert review.post(client, f"/admin/users/{officer.user_id}/reset-mfa", {"confirmed": "yes"}).status_code == 303
    assert phone.get("/login").status_code == 200  # signed out
    user = review.user(officer)
    assert not user.mfa_enrolled and user.totp_secret is None
    officer.totp_secret = None
    review.sign_in(review.client(ip="192.0.2.91"), officer)  # enrols a new authenticator
    assert officer.totp_secret != old_secret
    assert len(review.events("user.reset_mfa")) == 1


def test_new_password_is_shown_once_and_the_old_one_stops_working(review: ReviewHarness) -> None:
    _admin, client = signed_in_admin(review)
    officer = review.make_user("officer")
    r = review.post(client, f"/admin/users/{officer.user_id}/reset-password", {"confirmed": "yes"})
    assert r.status_code == 200
    found = re.search(r'id="new-password">([^<]+)<', r.text)
    assert found
    assert review.password_step(review.client(ip="192.0.2.92"), officer).status_code == 400
    officer.password = found.group(1)
    review.sign_in(review.client(ip="192.0.2.93"), officer)
    assert len(review.events("user.reset_password")) == 1


def test_a_ledger_that_stopped_verifying_is_a_banner_on_the_admin_page(review: ReviewHarness) -> None:
    from storage.ledger_watch import LedgerWatch
    from tests.fixtures.tamper import tamper

    _admin, client = signed_in_admin(review)
    watch = LedgerWatch(review.settings, review.db)
    assert watch.run_once().ok
    page = client.get("/admin/users")
    assert page.status_code == 200 and 'id="ledger-alarm"' not in page.text
    tamper(review.db, "UPDATE custody_event SET actor = 'forger' WHERE seq = 1")
    assert not LedgerWatch(review.settings, review.db, full_every=1).run_once().ok
    page = client.get("/admin/users")
    assert 'id="ledger-alarm"' in page.text and "The custody ledger does not verify" in page.text
    assert "first bad event 1" in page.text
