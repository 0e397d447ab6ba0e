"""Sign-in throttling is per account and per client, shared by every process, and cannot be
turned into a lock-out (SECURITY_CHECKLIST AC-07, AC-15; issue 11 item 4).

Everything runs over HTTP through the staff app on SQLite and PostgreSQL (the ``db``
fixture), with the production rules unless a test says otherwise."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from starlette.testclient import TestClient

from reviewer_ui import devices, throttle
from reviewer_ui.auth import typed_email_digest
from reviewer_ui.throttle import Attempt, LoginThrottle, Rule
from tests.fixtures.reviewer import ReviewHarness, Staff, csrf_of


def attempt(client: TestClient, email: str, password: str, **headers: str) -> int:
    page = client.get("/login")
    r = client.post("/login", data={"email": email, "password": password, "csrf_token": csrf_of(page.text)},
                    headers={k.replace("_", "-"): v for k, v in headers.items()})
    return r.status_code


def can_sign_in(client: TestClient, staff: Staff) -> bool:
    return attempt(client, staff.email, staff.password) == 303


def small_allowances(review: ReviewHarness) -> LoginThrottle:
    small = LoginThrottle(review.db, review.secret, review.clock, pair=Rule(free=3, max_delay_seconds=900),
                          client=Rule(free=4, max_delay_seconds=900), account=Rule(free=3, max_delay_seconds=60))
    review.app.state.ctx.extras["throttle"] = small
    return small


def code_attempt(client: TestClient, code: str) -> Any:
    page = client.get("/mfa")
    return client.post("/mfa", data={"code": code, "csrf_token": csrf_of(page.text)})


# --- one client, one account ---------------------------------------------------------------


def test_repeated_failures_on_one_account_delay_that_client(review: ReviewHarness) -> None:
    officer = review.make_user("officer")
    attacker = review.client(ip="203.0.113.5")
    for _ in range(throttle.PAIR.free):
        assert attempt(attacker, officer.email, "wrong password guess") == 400
    # Now even the right password is not tried from this client...
    assert attempt(attacker, officer.email, officer.password) == 429
    # ...and hammering during the delay does not count (nor lengthen it).
    for _ in range(10):
        assert attempt(attacker, officer.email, "wrong password guess") == 429
    assert len(review.events("auth.failed")) == throttle.PAIR.free
    review.clock.advance(seconds=throttle.PAIR.delay(throttle.PAIR.free))
    assert can_sign_in(attacker, officer)


def test_an_attacker_on_one_client_does_not_block_the_real_user_elsewhere(review: ReviewHarness) -> None:
    officer = review.make_user("officer")
    attacker = review.client(ip="203.0.113.5")
    for _ in range(throttle.PAIR.free + 3):
        attempt(attacker, officer.email, "wrong password guess")
    assert attempt(attacker, officer.email, officer.password) == 429
    real = review.client(ip="192.0.2.44")
    review.sign_in(real, officer)
    assert real.get("/login").status_code == 303


def test_throttle_is_per_account_not_global(review: ReviewHarness) -> None:
    alice, bob = review.make_user("officer"), review.make_user("officer")
    office = "192.0.2.70"  # the same address for both (an office NAT)
    for _ in range(throttle.PAIR.free):
        attempt(review.client(ip=office), alice.email, "wrong password guess")
    assert attempt(review.client(ip=office), alice.email, alice.password) == 429
    review.sign_in(review.client(ip=office), bob)


# --- someone else's failures never lock a legitimate user out --------------------------------


def test_spraying_from_one_address_never_blocks_the_right_password_there(review: ReviewHarness) -> None:
    """Issue 11 item 4: ~30 wrong passwords on made-up accounts from one address (a proxy,
    a carrier NAT) used to give a real officer at that address a 429 for 15 minutes."""
    officer = review.make_user("officer")
    nat = "203.0.113.9"
    for i in range(throttle.CLIENT.free + 2):
        assert attempt(review.client(ip=nat), f"made-up-{i}@force.example", "Winter2026! guess") == 400
    # The real officer, same address, new browser, right password: straight in.
    review.sign_in(review.client(ip=nat), officer)
    # The sprayer is slowed all the same: one guess per account from that address now.
    sprayer = review.client(ip=nat)
    assert attempt(sprayer, "another@force.example", "Winter2026! guess") == 400
    assert attempt(sprayer, "another@force.example", "Winter2026! guess") == 429


def test_a_browser_that_signed_in_before_keeps_its_pace_while_a_botnet_guesses(review: ReviewHarness) -> None:
    small = small_allowances(review)
    officer = review.make_user("officer")
    desk = review.client(ip="192.0.2.50")
    review.sign_in(desk, officer)
    assert desk.cookies.get(devices.cookie_name(review.settings))  # the device cookie
    review.post(desk, "/logout", page="/no-such-page")
    for i in range(small.account.free):  # a botnet: one guess per address
        assert attempt(review.client(ip=f"198.51.100.{i + 1}"), officer.email, f"guess {i} password") == 400
    # The account is now delayed for browsers it does not know, bots included...
    assert attempt(review.client(ip="198.51.100.200"), officer.email, "guess x password") == 429
    laptop = review.client(ip="192.0.2.51")
    assert attempt(laptop, officer.email, officer.password) == 429
    # ...but not for the officer's own browser, even from the bots' address, even after a typo...
    desk_on_the_move = review.client(ip="198.51.100.1")
    desk_on_the_move.cookies.update(desk.cookies)
    assert attempt(desk_on_the_move, officer.email, "a typo in it") == 400
    review.sign_in(desk_on_the_move, officer)
    # ...and only for a bounded time.
    review.clock.advance(seconds=small.account.max_delay_seconds)
    review.sign_in(laptop, officer)


def test_a_device_cookie_is_bound_to_its_account(review: ReviewHarness) -> None:
    small = small_allowances(review)
    alice, bob = review.make_user("officer"), review.make_user("officer")
    desk = review.client(ip="192.0.2.50")
    review.sign_in(desk, alice)
    for i in range(small.account.free):
        attempt(review.client(ip=f"198.51.100.{i + 1}"), bob.email, "guess password")
    # Alice's cookie is no pass for Bob's account: the account-wide delay applies.
    thief = review.client(ip="198.51.100.99")
    name = devices.cookie_name(review.settings)
    thief.cookies.set(name, str(desk.cookies.get(name)))
    assert attempt(thief, bob.email, "guess password") == 429
    # A forged cookie is no pass either.
    forged = review.client(ip="198.51.100.98")
    forged.cookies.set(devices.cookie_name(review.settings), "0" * 32 + "." + "A" * 43)
    assert attempt(forged, bob.email, "guess password") == 429


# --- the allowance is shared by every process -------------------------------------------------


def test_two_app_instances_share_one_allowance(review_factory: Any) -> None:
    """Two reviewer processes (here two app instances on the same database, as two nodes
    would be) used to give a guesser the allowance twice."""
    one: ReviewHarness = review_factory()
    two: ReviewHarness = review_factory()
    officer = one.make_user("officer")
    attacker_one, attacker_two = one.client(ip="203.0.113.5"), two.client(ip="203.0.113.5")
    for i in range(throttle.PAIR.free):
        assert attempt(attacker_one if i % 2 else attacker_two, officer.email, "wrong password guess") == 400
    assert attempt(attacker_one, officer.email, "wrong password guess") == 429
    assert attempt(attacker_two, officer.email, "wrong password guess") == 429


def test_a_parallel_burst_cannot_slip_past_the_allowance(review: ReviewHarness) -> None:
    """Attempts still being checked (Argon2id takes a while) count against the allowance."""
    t = LoginThrottle(review.db, review.secret, review.clock)
    who = Attempt("officer@x", "203.0.113.5")
    started = [t.begin(who) for _ in range(12)]
    assert started.count(0) == throttle.PAIR.free
    for _ in range(started.count(0)):
        t.end(who, failed=True)
    assert t.wait_seconds(who) > 0


def test_concurrent_attempts_in_many_threads_get_no_more_than_the_allowance(review_factory: Any) -> None:
    """Two app instances (as two processes would), twelve threads, one account: the row
    lock makes the check and the count one step, so exactly the allowance goes through."""
    one: ReviewHarness = review_factory()
    two: ReviewHarness = review_factory()
    throttles = [LoginThrottle(h.db, h.secret, h.clock) for h in (one, two)]
    who = Attempt("officer@x", "203.0.113.5")
    with ThreadPoolExecutor(max_workers=12) as pool:
        started = list(pool.map(lambda i: throttles[i % 2].begin(who), range(12)))
    assert started.count(0) == throttle.PAIR.free


def test_successful_sign_ins_from_one_office_never_add_up(review: ReviewHarness) -> None:
    t = LoginThrottle(review.db, review.secret, review.clock)
    for i in range(40):  # many staff behind one address, each signing in correctly
        who = Attempt(f"user{i % 10}@x", "192.0.2.1")
        assert t.begin(who) == 0
        t.end(who, failed=False)  # the password passed
        assert t.begin(who) == 0
        t.end(who, failed=False)  # the TOTP code passed
        t.succeeded(who)
    assert t.wait_seconds(Attempt("anyone@x", "192.0.2.1")) == 0


def test_the_delay_is_bounded_whatever_the_number_of_failures() -> None:
    for rule in (throttle.PAIR, throttle.ACCOUNT):
        assert rule.delay(10**9) == rule.max_delay_seconds
    assert throttle.ACCOUNT.max_delay_seconds <= 60


# --- trusted proxies ---------------------------------------------------------------------------


def test_behind_a_trusted_proxy_each_citizen_has_their_own_bucket(review_factory: Any) -> None:
    review: ReviewHarness = review_factory(trusted_proxies=("10.0.0.0/8",))
    officer = review.make_user("officer")
    proxy = review.client(ip="10.0.0.2")
    for _ in range(throttle.PAIR.free):
        assert attempt(proxy, officer.email, "wrong password guess", x_forwarded_for="203.0.113.5") == 400
    assert attempt(proxy, officer.email, officer.password, x_forwarded_for="203.0.113.5") == 429
    # Another client behind the same proxy is not touched; a header the client wrote
    # itself (left of what the proxy appended) changes nothing.
    assert attempt(proxy, officer.email, officer.password, x_forwarded_for="203.0.113.5, 192.0.2.44") == 303
    assert {e.detail["client"] for e in review.events("auth.failed")} == {"203.0.113.5"}  # type: ignore[index]


def test_forwarding_headers_from_anyone_else_are_ignored(review_factory: Any) -> None:
    review: ReviewHarness = review_factory(trusted_proxies=("10.0.0.0/8",))
    officer = review.make_user("officer")
    direct = review.client(ip="203.0.113.5")
    for i in range(throttle.PAIR.free):
        # A new spoofed address each time: it does not buy a new bucket.
        assert attempt(direct, officer.email, "wrong password guess", x_forwarded_for=f"198.51.100.{i}",
                       forwarded=f"for=198.51.100.{i}") == 400
    assert attempt(direct, officer.email, "wrong password guess", x_forwarded_for="198.51.100.77") == 429
    assert {e.detail["client"] for e in review.events("auth.failed")} == {"203.0.113.5"}  # type: ignore[index]


# --- TOTP: bounded per account across all processes ---------------------------------------------


def test_totp_guessing_is_bounded_per_account_and_alerts_admins(review_factory: Any) -> None:
    one: ReviewHarness = review_factory()
    two: ReviewHarness = review_factory()
    officer = one.make_user("officer")
    admin = one.make_user("admin")
    # An attacker who has the password guesses codes from two addresses on two nodes.
    for harness, ip in ((one, "203.0.113.20"), (two, "203.0.113.21")):
        client = harness.client(ip=ip)
        assert harness.password_step(client, officer).status_code == 303
        for _ in range(throttle.TOTP_LIMIT // 2):
            assert code_attempt(client, "123456").status_code == 400
    assert len(one.events("auth.totp_locked")) == 1
    # Now even the right code is refused, from anywhere, on any node.
    real = two.client(ip="192.0.2.44")
    assert two.password_step(real, officer).status_code == 303
    refused = code_attempt(real, one.next_code(officer))
    assert refused.status_code == 429 and "administrator" in refused.text
    assert len(one.events("auth.failed")) == throttle.TOTP_LIMIT
    # Admins see it, and can allow codes again (a custody event).
    desk = one.client(ip="192.0.2.60")
    one.sign_in(desk, admin)
    page = desk.get("/admin/users")
    assert 'id="codes-locked"' in page.text and officer.email in page.text
    r = one.post(desk, f"/admin/users/{officer.user_id}/allow-codes")
    assert r.status_code == 303
    assert [e.actor for e in one.events("auth.totp_unlocked")] == [admin.email]
    assert 'id="codes-locked"' not in desk.get("/admin/users").text
    assert code_attempt(real, one.next_code(officer)).status_code == 303


def test_only_admins_may_allow_codes_again(review: ReviewHarness) -> None:
    officer = review.make_user("officer")
    client = review.client()
    review.sign_in(client, officer)
    assert review.post(client, f"/admin/users/{officer.user_id}/allow-codes", page="/reports").status_code == 404


# --- what auth.failed keeps -----------------------------------------------------------------------


def test_auth_failed_keeps_a_keyed_hash_of_the_typed_email_never_the_text(review: ReviewHarness) -> None:
    client = review.client()
    # Someone types their password into the e-mail field.
    typed = "Tr0ub4dor&3-my-real-password"
    assert attempt(client, typed, "Tr0ub4dor&3-my-real-password") == 400
    (event,) = review.events("auth.failed")
    stored = json.dumps([event.subject, event.detail, event.actor]).lower()
    assert typed.lower() not in stored and "tr0ub4dor" not in stored
    assert event.detail is not None and event.detail["email_hmac"] == typed_email_digest(review.secret, typed.lower())
    # Under another server secret the same text gives another value (no offline table).
    assert typed_email_digest(b"x" * 32, typed.lower()) != event.detail["email_hmac"]
