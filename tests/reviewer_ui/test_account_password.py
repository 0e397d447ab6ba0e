"""Changing one's own password (issue 15 item 2): a one-time password leads to the change
page before anything else; a change needs the current password and a fresh second factor;
the NCSC-style policy is applied with its errors tied to the field; other sessions end."""

from __future__ import annotations

from reviewer_ui import accounts
from storage.models import User
from storage.passwords import verify_password
from tests.fixtures.reviewer import PASSWORD, ReviewHarness, Staff, csrf_of

NEW = "a kettle on the landing at dawn"


def _one_time(review: ReviewHarness, staff: Staff) -> str:
    with review.db.write() as s:
        user = s.get(User, staff.user_id)
        assert user is not None
        password = accounts.new_password(review.db, s, user, actor="admin@force.example", now=review.clock())
    staff.password = password
    return password


def test_a_one_time_password_opens_nothing_but_the_change_page(review: ReviewHarness) -> None:
    officer = review.make_user("officer")
    one_time = _one_time(review, officer)
    client = review.client()
    review.sign_in(client, officer)
    for path in ("/", "/reports", "/admin/users"):
        r = client.get(path)
        assert (r.status_code, r.headers.get("location")) == (303, "/account/password"), path
    page = client.get("/account/password")
    assert page.status_code == 200 and "Choose your own password" in page.text
    assert 'name="code"' not in page.text  # the sign-in's code is seconds old: not asked again
    token = csrf_of(page.text)

    same = client.post("/account/password", data={"current_password": one_time, "new_password": one_time,
                                                   "csrf_token": token})
    assert same.status_code == 400 and "different from the one you have now" in same.text
    common = client.post("/account/password", data={"current_password": one_time, "new_password": "password1234",
                                                     "csrf_token": token})
    assert common.status_code == 400 and "most common" in common.text
    assert '<a href="#new-password">' in common.text and 'aria-describedby="new-password-hint new-password-error"' \
        in common.text and common.text.count("<title>Error: ") == 1
    done = client.post("/account/password", data={"current_password": one_time, "new_password": NEW,
                                                   "csrf_token": token})
    assert (done.status_code, done.headers["location"]) == (303, "/")
    assert client.get("/reports").status_code == 200  # signed in from now on
    user = review.user(officer)
    assert not user.must_change_password and verify_password(user.password_hash, NEW)
    (event,) = review.events("user.password_changed")
    assert event.actor == officer.email and event.detail["replaced_one_time"] is True
    assert NEW not in str(event.detail) and one_time not in str(event.detail)


def test_changing_a_password_needs_the_current_one_and_a_fresh_code_and_ends_other_sessions(
        review: ReviewHarness) -> None:
    officer = review.make_user("officer")
    client, elsewhere = review.client(), review.client(ip="192.0.2.44")
    review.sign_in(client, officer)
    review.signed_in_session(elsewhere, officer)
    review.clock.advance(minutes=6)  # the sign-in's code is no longer fresh
    page = client.get("/account/password")
    assert page.status_code == 200 and "Change your password" in page.text and 'name="code"' in page.text
    token = csrf_of(page.text)

    no_code = client.post("/account/password", data={"current_password": PASSWORD, "new_password": NEW,
                                                      "csrf_token": token})
    assert no_code.status_code == 400 and '<a href="#code">Enter the 6-digit code' in no_code.text
    wrong = client.post("/account/password", data={"current_password": "not my password at all", "new_password": NEW,
                                                   "code": review.next_code(officer), "csrf_token": token})
    assert wrong.status_code == 400 and "current password is not right" in wrong.text
    assert review.events("auth.failed")[-1].detail["step"] == "password-change:password"
    bad_code = client.post("/account/password", data={"current_password": PASSWORD, "new_password": NEW,
                                                      "code": "000000", "csrf_token": token})
    assert bad_code.status_code == 400 and "That code is not right" in bad_code.text
    assert verify_password(review.user(officer).password_hash, PASSWORD)  # nothing changed so far

    done = client.post("/account/password", data={"current_password": PASSWORD, "new_password": NEW,
                                                  "code": review.next_code(officer), "csrf_token": token})
    assert (done.status_code, done.headers["location"]) == (303, "/account/password?done=1")
    assert "Your password is changed" in client.get("/account/password?done=1").text
    assert client.get("/reports").status_code == 200  # this session goes on
    assert elsewhere.get("/reports").status_code == 303  # the other one has ended
    assert review.events("user.password_changed")[0].detail["sessions_ended"] == 1
    officer.password = NEW
    review.sign_in(review.client(ip="192.0.2.45"), officer)


def test_the_page_needs_a_signed_in_account(review: ReviewHarness) -> None:
    client = review.client()
    r = client.get("/account/password")
    assert (r.status_code, r.headers["location"]) == (303, "/login")
