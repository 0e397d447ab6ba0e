"""Sign-in throttling that slows guessing without letting anyone lock staff out
(SECURITY_CHECKLIST AC-07; SecureDrop's ``test_login_throttle_is_not_global``; OWASP's
"Slow Down Online Guessing Attacks with Device Cookies").

Counters of *evaluated* failures (a password or TOTP that was checked and was wrong) live
in the database (``storage.throttle``), so the allowance is the same whatever the number
of processes or nodes. Each gating counter has a free allowance and an exponential delay
after it:

==================  ====  ======================  =====================================
key                 free  delay after that        what it stops
==================  ====  ======================  =====================================
(account, client)   5     2^(n-5) s, max 15 min   one client guessing one password
account             20    2^(n-20) s, max 60 s    a botnet guessing one password
(account, device)   5     2^(n-5) s, max 15 min   a stolen device cookie guessing
==================  ====  ======================  =====================================

A browser with a valid **device cookie** for the account (issued when it signed in to that
account; signed, so it cannot be forged or moved to another account) is throttled only on
its own (account, device) counter: neither the account-wide delay a botnet causes nor its
address's history touch it, so the officer's own browser keeps trying at the normal pace.

The **client** counter (failures from one address, across accounts) never refuses anyone
on its own: behind a carrier NAT or an office proxy one address is many people. It counts
only failures, and once it reaches 30 the (account, client) allowance of that address
drops from 5 to 1: a sprayer gets one guess per account before the doubling delays start,
while a colleague at the same address who types the right password the first time is
never refused, and never by what someone else did.

Why nobody can lock staff out:

* there is no permanent lockout: every delay is bounded and ends by itself;
* an attempt refused because of a delay is not evaluated and does not count, so hammering
  during a delay does not lengthen it; an attempt being checked counts until it ends
  (``begin`` counts it, ``end`` takes it back when it passed), so a parallel burst, on any
  number of processes, gets no more than the allowance;
* the account-wide delay is short (60 s at most) and never applies to a browser with the
  account's device cookie;
* a client's own delays never touch other clients.

A success clears the account's counters for that client and device. Keys are keyed hashes
of the normalised e-mail that was typed, whether or not the account exists, so a delay says
nothing about which accounts exist.

TOTP guessing is bounded separately per account (``TotpGuard``): 10 wrong codes in 24 hours
and codes are refused for that account until the 24 hours are over or an admin allows them
again; reaching the bound is a custody event (``auth.totp_locked``) and a banner on the
admin page.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Session, col, select

from storage import throttle as counters
from storage.db import Database
from storage.models import ThrottleCounter, TotpGuard, User


@dataclass(frozen=True)
class Rule:
    free: int
    max_delay_seconds: int

    def delay(self, failures: int) -> float:
        over = failures - self.free
        if over < 0:
            return 0.0
        return float(min(2 ** min(over, 30), self.max_delay_seconds))


PAIR = Rule(free=5, max_delay_seconds=900)
CLIENT = Rule(free=30, max_delay_seconds=900)  # only ``free`` is used: see the docstring
ACCOUNT = Rule(free=20, max_delay_seconds=60)
SPRAYER_PAIR_FREE = 1

TOTP_LIMIT = 10
TOTP_WINDOW_SECONDS = 24 * 3600


@dataclass(frozen=True)
class Attempt:
    """Who tries: the typed (normalised) account, the client address, and the id of a
    valid device cookie for that account, if the browser sent one."""

    account: str
    client: str
    device: str | None = None


class LoginThrottle:
    def __init__(self, db: Database, secret: bytes, clock: Callable[[], dt.datetime], *, pair: Rule = PAIR,
                 client: Rule = CLIENT, account: Rule = ACCOUNT) -> None:
        self.db = db
        self.secret = secret
        self.clock = clock
        self.pair, self.client, self.account = pair, client, account

    def _key(self, *parts: str) -> str:
        return counters.counter_key(self.secret, *parts)

    def _gates(self, a: Attempt) -> list[tuple[str, Rule]]:
        if a.device:
            return [(self._key("device", a.account, a.device), self.pair)]
        return [(self._key("pair", a.account, a.client), self.pair), (self._key("account", a.account), self.account)]

    def _client_key(self, a: Attempt) -> str:
        return self._key("client", a.client)

    def _wait(self, s: Session, a: Attempt, now: dt.datetime) -> tuple[float, dict[str, ThrottleCounter]]:
        gates = self._gates(a)
        rows = counters.lock(s, [k for k, _ in gates] + [self._client_key(a)], now)
        sprayer = rows[self._client_key(a)].failures >= self.client.free
        wait = 0.0
        for key, rule in gates:
            if sprayer and rule is self.pair and not a.device:
                # This address has failed on many accounts: one free guess per account.
                rule = Rule(free=min(rule.free, SPRAYER_PAIR_FREE), max_delay_seconds=rule.max_delay_seconds)
            row = rows[key]
            delay = rule.delay(row.failures)
            if delay > 0:
                wait = max(wait, (row.last_failure + dt.timedelta(seconds=delay) - now).total_seconds())
        return wait, rows

    def wait_seconds(self, a: Attempt) -> int:
        """Seconds ``a`` must wait before it may try (0: go). Counts nothing."""
        now = self.clock()
        with self.db.write() as s:
            wait, _ = self._wait(s, a, now)
        return max(0, math.ceil(wait))

    def begin(self, a: Attempt) -> int:
        """0: the attempt may be evaluated, and counts as a failure until ``end`` says it
        passed; more than 0: the wait in seconds, and nothing is counted."""
        now = self.clock()
        with self.db.write() as s:
            wait, rows = self._wait(s, a, now)
            if wait > 0:
                return math.ceil(wait)
            for key, _rule in self._gates(a):
                counters.fail(rows[key], now)
            return 0

    def end(self, a: Attempt, *, failed: bool) -> None:
        """The attempt ``begin`` let through is over. Passed: its count is taken back.
        Failed: it stays, and the client's failure counter goes up."""
        now = self.clock()
        with self.db.write() as s:
            gates = [k for k, _ in self._gates(a)]
            rows = counters.lock(s, [*gates, self._client_key(a)], now)
            if failed:
                counters.fail(rows[self._client_key(a)], now)
            else:
                for key in gates:
                    rows[key].failures = max(0, rows[key].failures - 1)

    def succeeded(self, a: Attempt) -> None:
        """The sign-in completed: clear this account's counters for this client and device."""
        now = self.clock()
        keys = [self._key("pair", a.account, a.client), self._key("account", a.account)]
        if a.device:
            keys.append(self._key("device", a.account, a.device))
        with self.db.write() as s:
            counters.clear(s, keys)
            counters.purge(s, now)


# --- TOTP: a bound per account, whatever the client --------------------------------------


def totp_locked(s: Session, user_id: str, now: dt.datetime) -> bool:
    """Codes for this account are refused now (checked inside the write transaction that
    then checks the code; the row is locked, so the bound holds across processes)."""
    s.exec(_insert_guard(s, user_id, now))
    guard = s.exec(select(TotpGuard).where(col(TotpGuard.user_id) == user_id).with_for_update()).one()
    if (now - guard.window_start).total_seconds() > TOTP_WINDOW_SECONDS:
        guard.failures, guard.window_start, guard.locked_at = 0, now, None
    return guard.locked_at is not None or guard.failures >= TOTP_LIMIT


def totp_failed(s: Session, user_id: str, now: dt.datetime) -> bool:
    """Count a wrong code (same transaction as ``totp_locked``). True: this failure reached
    the bound and locked the account's codes (the caller records the custody event)."""
    guard = s.exec(select(TotpGuard).where(col(TotpGuard.user_id) == user_id)).one()
    guard.failures += 1
    if guard.failures >= TOTP_LIMIT and guard.locked_at is None:
        guard.locked_at = now
        return True
    return False


def _insert_guard(s: Session, user_id: str, now: dt.datetime) -> Any:
    dialect = s.get_bind().dialect.name
    insert = (postgresql.insert if dialect == "postgresql" else sqlite.insert)(TotpGuard)
    return insert.values(user_id=user_id, failures=0, window_start=now).on_conflict_do_nothing(
        index_elements=["user_id"])


def totp_locked_accounts(s: Session, now: dt.datetime) -> list[tuple[User, TotpGuard]]:
    """Accounts whose codes are refused now (the admin page's banner)."""
    since = now - dt.timedelta(seconds=TOTP_WINDOW_SECONDS)
    rows = s.exec(select(User, TotpGuard).join(TotpGuard, col(TotpGuard.user_id) == col(User.id))
                  .where(col(TotpGuard.locked_at).is_not(None), col(TotpGuard.window_start) >= since)
                  .order_by(col(User.email))).all()
    return [(u, g) for u, g in rows]


def allow_codes(s: Session, user_id: str) -> bool:
    """An admin lets the account use codes again (a fresh allowance). False: it was not locked."""
    guard = s.get(TotpGuard, user_id)
    if guard is None or guard.locked_at is None:
        return False
    s.delete(guard)
    return True
