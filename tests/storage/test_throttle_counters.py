"""Shared failure counters (``storage.throttle``): keyed, forgotten after a day, bounded."""

from __future__ import annotations

import datetime as dt

from sqlmodel import select

from storage import throttle
from storage.db import Database
from storage.models import ThrottleCounter

T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def test_keys_are_keyed_hashes_of_what_is_counted() -> None:
    key = throttle.counter_key(b"s" * 32, "pair", "my-password-typed-as-email", "203.0.113.5")
    assert len(key) == 64 and "password" not in key
    assert key == throttle.counter_key(b"s" * 32, "pair", "my-password-typed-as-email", "203.0.113.5")
    assert key != throttle.counter_key(b"t" * 32, "pair", "my-password-typed-as-email", "203.0.113.5")
    # The parts are separated: ("ab", "c") and ("a", "bc") are different counters.
    assert throttle.counter_key(b"s" * 32, "ab", "c") != throttle.counter_key(b"s" * 32, "a", "bc")


def test_counts_persist_across_transactions_then_are_forgotten_and_purged(db: Database) -> None:
    with db.write() as s:
        for _ in range(3):
            throttle.fail(throttle.lock(s, ["k"], T0)["k"], T0)
    later = T0 + dt.timedelta(hours=1)
    with db.write() as s:
        assert throttle.lock(s, ["k"], later)["k"].failures == 3
    a_day_on = T0 + dt.timedelta(seconds=throttle.FORGET_SECONDS + 1)
    with db.write() as s:
        throttle.purge(s, a_day_on)
    with db.read() as s:
        assert s.exec(select(ThrottleCounter)).all() == []
    with db.write() as s:
        throttle.fail(throttle.lock(s, ["k"], T0)["k"], T0)
    with db.write() as s:
        assert throttle.lock(s, ["k"], a_day_on)["k"].failures == 0  # forgotten even before a purge
