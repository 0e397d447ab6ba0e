"""Sign-in throttling that slows guessing without letting anyone lock staff out
(SECURITY_CHECKLIST AC-07; SecureDrop's ``test_login_throttle_is_not_global``).

Three counters of consecutive *evaluated* failures (a password or TOTP that was checked
and was wrong), each with its own free allowance and an exponential delay after it:

==================  =========  =====================  =================================
key                 free       delay after that       what it stops
==================  =========  =====================  =================================
(account, client)   5          2^(n-5) s, max 15 min  one client guessing one password
client              30         2^(n-30) s, max 15 min one client spraying many accounts
account             20         2^(n-20) s, max 60 s   a botnet guessing one password
==================  =========  =====================  =================================

Why nobody can lock staff out:

* there is no permanent lockout: every delay is bounded and ends by itself;
* an attempt refused because of a delay is not evaluated and does not count, so
  hammering during a delay does not lengthen it (attempts still being checked do count,
  ``begin``/``end``, so a parallel burst gets no more than the allowance);
* the account-wide delay is short (60 s at most) and never applies to a client that has
  signed in to that account before (``known`` pairs): the officer's own machine keeps
  working while a botnet guesses;
* a client's own delays never touch other clients, and the counters are per account, so
  spraying cannot slow every account down at once (the ``client`` key only slows the
  sprayer).

A success clears the (account, client) and account counters. Keys use the normalised
email that was typed, whether or not the account exists, so a delay says nothing about
which accounts exist. The state is in memory, per reviewer process, and bounded
(``MAX_KEYS``, oldest dropped first); with several reviewer nodes each throttles on its
own, so the effective allowance scales with the node count (documented in the README).
"""

from __future__ import annotations

import datetime as dt
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from threading import Lock

MAX_KEYS = 100_000


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
CLIENT = Rule(free=30, max_delay_seconds=900)
ACCOUNT = Rule(free=20, max_delay_seconds=60)


@dataclass
class _Entry:
    failures: int = 0
    last_failure: dt.datetime | None = None
    inflight: int = 0


class LoginThrottle:
    def __init__(self, clock: Callable[[], dt.datetime], *, pair: Rule = PAIR, client: Rule = CLIENT,
                 account: Rule = ACCOUNT) -> None:
        self.clock = clock
        self.pair, self.client, self.account = pair, client, account
        self._entries: OrderedDict[tuple[str, ...], _Entry] = OrderedDict()
        self._known: OrderedDict[tuple[str, str], None] = OrderedDict()
        self._lock = Lock()

    def _get(self, key: tuple[str, ...]) -> _Entry:
        entry = self._entries.get(key)
        if entry is None:
            entry = self._entries[key] = _Entry()
            while len(self._entries) > MAX_KEYS:
                self._entries.popitem(last=False)
        else:
            self._entries.move_to_end(key)
        return entry

    def _keys(self, account: str, client: str) -> list[tuple[tuple[str, ...], Rule]]:
        keys: list[tuple[tuple[str, ...], Rule]] = [(("pair", account, client), self.pair),
                                                    (("client", client), self.client)]
        if (account, client) not in self._known:
            keys.append((("account", account), self.account))
        return keys

    def _wait_locked(self, account: str, client: str, now: dt.datetime) -> float:
        wait = 0.0
        for key, rule in self._keys(account, client):
            entry = self._entries.get(key)
            if entry is None:
                continue
            # Attempts still being checked count as failures until they end, so a burst of
            # parallel requests cannot all slip in before the first failure lands.
            n = entry.failures + entry.inflight
            delay = rule.delay(n)
            if delay <= 0:
                continue
            since = entry.last_failure or now
            wait = max(wait, (since + dt.timedelta(seconds=delay) - now).total_seconds())
        return wait

    @staticmethod
    def _seconds(wait: float) -> int:
        return int(wait) + (1 if wait > int(wait) else 0)

    def wait_seconds(self, account: str, client: str) -> int:
        """Seconds this client must wait before it may try ``account`` again (0: go)."""
        with self._lock:
            return self._seconds(self._wait_locked(account, client, self.clock()))

    def begin(self, account: str, client: str) -> int:
        """Check and, when the attempt may go ahead (0), mark it in flight until ``end``.
        More than 0 is the wait in seconds; nothing is counted then."""
        now = self.clock()
        with self._lock:
            wait = self._wait_locked(account, client, now)
            if wait > 0:
                return self._seconds(wait)
            for key, _rule in self._keys(account, client):
                self._get(key).inflight += 1
            return 0

    def end(self, account: str, client: str, *, failed: bool) -> None:
        """The attempt started by ``begin`` is over; ``failed``: it counts as a failure."""
        now = self.clock()
        with self._lock:
            counted = {key for key, _rule in self._keys(account, client)}
            for key in (("pair", account, client), ("client", client), ("account", account)):
                entry = self._entries.get(key)
                if entry is not None and entry.inflight > 0:
                    entry.inflight -= 1
                if failed and key in counted:
                    entry = self._get(key)
                    entry.failures += 1
                    entry.last_failure = now

    def failed(self, account: str, client: str) -> None:
        """Count one failure (for callers that did not ``begin``)."""
        now = self.clock()
        with self._lock:
            for key, _rule in self._keys(account, client):
                entry = self._get(key)
                entry.failures += 1
                entry.last_failure = now

    def succeeded(self, account: str, client: str) -> None:
        """The sign-in completed: clear this account's counters for this client."""
        with self._lock:
            self._entries.pop(("pair", account, client), None)
            self._entries.pop(("account", account), None)
            self._known[(account, client)] = None
            self._known.move_to_end((account, client))
            while len(self._known) > MAX_KEYS:
                self._known.popitem(last=False)
