"""Failure counters in the database, shared by every process and node (``throttle_counter``).

Threat: an in-memory counter gives a guesser the allowance once per process and once per
node, and forgets everything on a restart. Here every process reads and updates the same
row, under a row lock (PostgreSQL ``SELECT ... FOR UPDATE``; SQLite has one writer at a
time, ``BEGIN IMMEDIATE``), so a check and its count cannot be overtaken by another process.

Keys are keyed hashes (HMAC-SHA-256 under the server secret) of what is counted: a copy of
the table says nothing about who tried which account from where, and a password typed into
the e-mail field is never stored. Rows whose last failure is older than ``FORGET_SECONDS``
are forgotten (treated as zero, and deleted by ``purge``), so the table stays bounded.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
from collections.abc import Sequence
from typing import Any

from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Session, col, delete, select

from storage.models import ThrottleCounter

FORGET_SECONDS = 24 * 3600
KEY_PURPOSE = b"exhibit-throttle-key-v1"


def counter_key(secret: bytes, *parts: str) -> str:
    """The stored key of ``parts`` (e.g. ("pair", email, client)): 64 hex characters."""
    key = hmac.new(secret, KEY_PURPOSE, hashlib.sha256).digest()
    return hmac.new(key, "\x1f".join(parts).encode("utf-8", "replace"), hashlib.sha256).hexdigest()


def _insert(session: Session) -> Any:
    dialect = session.get_bind().dialect.name
    return (postgresql.insert if dialect == "postgresql" else sqlite.insert)(ThrottleCounter)


def lock(session: Session, keys: Sequence[str], now: dt.datetime,
         forget_seconds: int = FORGET_SECONDS) -> dict[str, ThrottleCounter]:
    """The rows of ``keys`` inside the caller's write transaction, created at zero when
    missing, locked until it ends (in key order, so two callers cannot deadlock). A row
    whose last failure is older than ``forget_seconds`` comes back reset to zero."""
    wanted = sorted(set(keys))
    for key in wanted:
        session.exec(_insert(session).values(key=key, failures=0, window_start=now, last_failure=now)
                     .on_conflict_do_nothing(index_elements=["key"]))
    rows = session.exec(select(ThrottleCounter).where(col(ThrottleCounter.key).in_(wanted))
                        .order_by(col(ThrottleCounter.key)).with_for_update()).all()
    found = {row.key: row for row in rows}
    for row in found.values():
        if (now - row.last_failure).total_seconds() > forget_seconds:
            row.failures = 0
            row.window_start = now
    return found


def fail(row: ThrottleCounter, now: dt.datetime) -> None:
    row.failures += 1
    row.last_failure = now


def clear(session: Session, keys: Sequence[str]) -> None:
    session.exec(delete(ThrottleCounter).where(col(ThrottleCounter.key).in_(list(keys))))


def purge(session: Session, now: dt.datetime, forget_seconds: int = FORGET_SECONDS) -> None:
    """Delete counters nobody has failed on for ``forget_seconds`` (they count as zero)."""
    cutoff = now - dt.timedelta(seconds=forget_seconds)
    session.exec(delete(ThrottleCounter).where(col(ThrottleCounter.last_failure) < cutoff))
