"""Sign-in throttling is per account and per client, and cannot be turned into a
lock-out (SECURITY_CHECKLIST AC-07).

Each password check costs an Argon2id hash (hundreds of milliseconds here), so the
large-count scenarios run against ``LoginThrottle`` itself with the production rules,
and over HTTP with the same throttle built with small allowances."""

from __future__ import annotations

from starlette.testclient import TestClient

from reviewer_ui import throttle
from reviewer_ui.throttle import LoginThrottle, Rule
from tests.fixtures.reviewer import Clock, ReviewHarness, Staff, csrf_of


def attempt(client: TestClient, email: str, password: str) -> int:
    page = client.get("/login")
    r = client.post("/login", data={"email": email, "password": password, "csrf_token": csrf_of(page.text)})
    return r.status_code


def can_sign_in(client: TestClient, staff: Staff) -> bool:
    return attempt(client, staff.email, staff.password) == 303


def small_allowances(review: ReviewHarness) -> LoginThrottle:
    small = LoginThrottle(review.clock, pair=Rule(free=3, max_delay_seconds=900),
                          client=Rule(free=4, max_delay_seconds=900), account=Rule(free=3, max_delay_seconds=60))
    review.app.state.ctx.extras["throttle"] = small
    return small


# --- over HTTP -------------------------------------------------------------------------


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
    for _ in range(throttle.PAIR.free + 10):
        attempt(attacker, officer.email, "wrong password guess")
    assert attempt(attacker, officer.email, officer.password) == 429
    real = review.client(ip="192.0.2.44")
    review.sign_in(real, officer)
    assert real.get("/login").status_code == 303


def test_many_clients_guessing_one_account_only_delay_it_briefly(review: ReviewHarness) -> None:
    small = small_allowances(review)
    officer = review.make_user("officer")
    desk = review.client(ip="192.0.2.50")  # the officer's own machine has signed in before
    review.sign_in(desk, officer)
    review.post(desk, "/logout", page="/no-such-page")
    for i in range(small.account.free):  # a botnet: one guess per address
        assert attempt(review.client(ip=f"198.51.100.{i + 1}"), officer.email, f"guess {i} password") == 400
    # The account is now delayed for clients it does not know, bots included...
    assert attempt(review.client(ip="198.51.100.200"), officer.email, "guess x password") == 429
    laptop = review.client(ip="192.0.2.51")
    assert attempt(laptop, officer.email, officer.password) == 429
    # ...but not for the officer's known machine...
    review.sign_in(desk, officer)
    # ...and only for a bounded time.
    review.clock.advance(seconds=small.account.max_delay_seconds)
    review.sign_in(laptop, officer)


def test_spraying_many_accounts_does_not_lock_any_of_them_out(review: ReviewHarness) -> None:
    small = small_allowances(review)
    victims = [review.make_user("officer") for _ in range(2)]
    sprayer = review.client(ip="203.0.113.9")
    emails = [v.email for v in victims] + [f"guess{i}@force.example" for i in range(small.client.free - 2)]
    for email in emails:
        assert attempt(sprayer, email, "Winter2026! guess") == 400
    # The sprayer is slowed down, for any account...
    assert attempt(sprayer, "another@force.example", "Winter2026! guess") == 429
    # ...but every victim still signs in at once from their own machine.
    for i, victim in enumerate(victims):
        review.sign_in(review.client(ip=f"192.0.2.{60 + i}"), victim)


def test_throttle_is_per_account_not_global(review: ReviewHarness) -> None:
    alice, bob = review.make_user("officer"), review.make_user("officer")
    office = "192.0.2.70"  # the same address for both (an office NAT)
    for _ in range(throttle.PAIR.free):
        attempt(review.client(ip=office), alice.email, "wrong password guess")
    assert attempt(review.client(ip=office), alice.email, alice.password) == 429
    review.sign_in(review.client(ip=office), bob)


def test_totp_guessing_is_throttled(review: ReviewHarness) -> None:
    officer = review.make_user("officer")
    client = review.client(ip="203.0.113.20")
    assert review.password_step(client, officer).status_code == 303
    for _ in range(throttle.PAIR.free):
        page = client.get("/mfa")
        assert client.post("/mfa", data={"code": "123456", "csrf_token": csrf_of(page.text)}).status_code == 400
    page = client.get("/mfa")
    right = review.next_code(officer)
    assert client.post("/mfa", data={"code": right, "csrf_token": csrf_of(page.text)}).status_code == 429
    assert [e.detail["step"] for e in review.events("auth.failed")] == ["totp"] * throttle.PAIR.free  # type: ignore[index]


# --- the production rules, directly ----------------------------------------------------


def test_production_rules_spraying_from_one_client_slows_only_that_client() -> None:
    clock = Clock()
    t = LoginThrottle(clock)
    for i in range(throttle.CLIENT.free):
        assert t.wait_seconds(f"user{i}@x", "203.0.113.9") == 0
        t.failed(f"user{i}@x", "203.0.113.9")
    assert t.wait_seconds("anyone@x", "203.0.113.9") > 0
    assert all(t.wait_seconds(f"user{i}@x", "192.0.2.1") == 0 for i in range(throttle.CLIENT.free))


def test_production_rules_a_botnet_delays_an_account_for_at_most_a_minute() -> None:
    clock = Clock()
    t = LoginThrottle(clock)
    t.succeeded("officer@x", "192.0.2.50")  # the officer's machine
    for i in range(1000):
        bot = f"198.51.100.{i % 250}.{i}"
        if t.wait_seconds("officer@x", bot) == 0:
            t.failed("officer@x", bot)
    assert 0 < t.wait_seconds("officer@x", "192.0.2.51") <= 60
    assert t.wait_seconds("officer@x", "192.0.2.50") == 0
    clock.advance(seconds=60)
    assert t.wait_seconds("officer@x", "192.0.2.51") == 0


def test_production_rules_one_client_hammering_one_account() -> None:
    clock = Clock()
    t = LoginThrottle(clock)
    evaluated = 0
    for _ in range(1000):  # 1,000 tries, one a second
        if t.wait_seconds("officer@x", "203.0.113.5") == 0:
            t.failed("officer@x", "203.0.113.5")
            evaluated += 1
        clock.advance(seconds=1)
    assert evaluated <= throttle.PAIR.free + 10  # the pair delay doubles each time
    assert t.wait_seconds("officer@x", "192.0.2.44") == 0  # the real user elsewhere: no wait


def test_the_delay_is_bounded_whatever_the_number_of_failures() -> None:
    for rule in (throttle.PAIR, throttle.CLIENT, throttle.ACCOUNT):
        assert rule.delay(10**9) == rule.max_delay_seconds
    assert throttle.ACCOUNT.max_delay_seconds <= 60


def test_state_is_bounded_in_memory() -> None:
    t = LoginThrottle(Clock())
    for i in range(throttle.MAX_KEYS + 10):
        t.failed(f"u{i}@x", "203.0.113.1")
    assert len(t._entries) <= throttle.MAX_KEYS


def test_a_parallel_burst_cannot_slip_past_the_allowance() -> None:
    """Attempts still being checked (Argon2id takes a while) count against the allowance."""
    t = LoginThrottle(Clock())
    started = [t.begin("officer@x", "203.0.113.5") for _ in range(50)]
    assert started.count(0) == throttle.PAIR.free
    for _ in range(started.count(0)):
        t.end("officer@x", "203.0.113.5", failed=True)
    assert t.wait_seconds("officer@x", "203.0.113.5") > 0


def test_successful_sign_ins_from_one_office_never_add_up() -> None:
    t = LoginThrottle(Clock())
    for i in range(500):  # many staff behind one address, each signing in correctly
        account = f"user{i % 50}@x"
        assert t.begin(account, "192.0.2.1") == 0
        t.end(account, "192.0.2.1", failed=False)  # the password passed
        assert t.begin(account, "192.0.2.1") == 0
        t.end(account, "192.0.2.1", failed=False)  # the TOTP code passed
        t.succeeded(account, "192.0.2.1")
    assert t.wait_seconds("anyone@x", "192.0.2.1") == 0
