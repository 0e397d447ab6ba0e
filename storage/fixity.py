"""Fixity: prove that every original at rest is still the bytes that were received.

An original is written once and never changed (ACPO principle 1; DESIGN.md section 3),
but disks rot, operators err and attackers with storage access may try. This module
re-reads each original from the blob store, re-computes its SHA-256 and compares it (and
the size) with the hash taken while the bytes streamed in:

* every check is recorded (``fixity_check``: item, when, result, the hash read);
* a mismatch or a missing original moves the item to ``integrity_alarm`` with a custody
  event naming what was expected and what was found, in the same transaction as the
  record; admins see the alarm (``alarms()``: the admin page's banner, /readyz);
* a store that cannot be read (an outage) is recorded as ``error``: nothing proved,
  no alarm, the item stays due and is checked again.

Reads stay within a bandwidth budget (``EXHIBIT_FIXITY_MB_PER_S``), shared by the whole
run, so a re-hash of terabytes never starves uploads and reviewers of the store.

Entry points: ``run(...)`` for ``exhibit fixity run [--item ID]`` and the worker's
background job (``due_only=True``: items whose last check, or receipt, is older than
``EXHIBIT_FIXITY_INTERVAL``, oldest-checked first).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import logging
import platform
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import anyio.to_thread
from sqlalchemy import func, select
from sqlmodel import Session, col

from storage.blobs import BlobNotFound, BlobStore, BlobStoreError
from storage.db import Database
from storage.lifecycle import ItemState, can_transition, transition
from storage.models import Disposal, EvidenceItem, FixityCheck, utcnow

log = logging.getLogger(__name__)

OK, MISMATCH, MISSING, ERROR = "ok", "mismatch", "missing", "error"
ALARMS = frozenset({MISMATCH, MISSING})
# States whose original is not at rest: not uploaded yet, or destroyed on purpose.
NO_BYTES = frozenset({ItemState.RECEIVING, ItemState.PURGED})
HASH_IN_THREAD_BYTES = 256 << 10


def tool() -> dict[str, str]:
    return {"tool": "hashlib.sha256", "tool_version": f"Python {platform.python_version()}; {ssl.OPENSSL_VERSION}"}


class Budget:
    """Paces reads to ``mb_per_s`` (10^6 bytes per second) over a whole run: after each
    chunk, wait until the bytes read so far are within budget. ``None``: no limit.
    ``stop`` cuts a wait short (the worker is shutting down)."""

    def __init__(self, mb_per_s: float | None, stop: threading.Event | None = None) -> None:
        self.bytes_per_s = mb_per_s * 1_000_000 if mb_per_s else None
        self.stop = stop
        self.started = time.monotonic()
        self.spent = 0

    async def spend(self, n: int) -> None:
        self.spent += n
        if self.bytes_per_s is None:
            return
        while True:
            ahead = self.spent / self.bytes_per_s - (time.monotonic() - self.started)
            if ahead <= 0 or (self.stop is not None and self.stop.is_set()):
                return
            await asyncio.sleep(min(ahead, 0.25))


@dataclass
class Outcome:
    item_id: str
    result: str
    expected_sha256: str
    sha256: str | None
    size: int | None
    seconds: float
    state: str
    error: str | None = None
    alarm_raised: bool = False


@dataclass
class Summary:
    checked: int = 0
    ok: int = 0
    alarms: int = 0
    errors: int = 0
    bytes: int = 0
    seconds: float = 0.0
    outcomes: list[Outcome] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        mb_per_s = self.bytes / 1_000_000 / self.seconds if self.seconds > 0 else None
        return {"checked": self.checked, "ok": self.ok, "alarms": self.alarms, "errors": self.errors,
                "bytes": self.bytes, "seconds": round(self.seconds, 3),
                "mb_per_s": round(mb_per_s, 1) if mb_per_s else None,
                "items": [asdict(o) for o in self.outcomes]}


async def _hash_blob(store: BlobStore, key: str, budget: Budget, stop: threading.Event | None) -> tuple[str, int]:
    digest = hashlib.sha256()
    size = 0
    # Quarantined originals are out of ``read``'s reach on purpose; fixity still proves them.
    reader: Any = getattr(store, "read_quarantined", store.read)
    stream = reader(key)
    try:
        async for chunk in stream:
            if stop is not None and stop.is_set():
                raise _Stopped()
            if len(chunk) >= HASH_IN_THREAD_BYTES:
                # hashlib releases the GIL on large buffers: the next read overlaps
                # nothing here, but the event loop (and the store's threads) stay free.
                await anyio.to_thread.run_sync(digest.update, chunk)
            else:
                digest.update(chunk)
            size += len(chunk)
            await budget.spend(len(chunk))
    finally:
        await stream.aclose()
    return digest.hexdigest(), size


class _Stopped(Exception):
    pass


def _load(db: Database, session: Session, item_id: str, *, lock: bool) -> EvidenceItem | None:
    query = select(EvidenceItem).where(col(EvidenceItem.id) == item_id)
    if lock and db.is_postgresql:
        query = query.with_for_update()
    return session.exec(query).scalars().first()  # type: ignore[call-overload, no-any-return]


async def check_item(
    db: Database, store: BlobStore, item_id: str, *, actor: str, budget: Budget | None = None,
    stop: threading.Event | None = None,
) -> Outcome | None:
    """Re-hash one item's original and record the check; raise the alarm on a mismatch
    or a missing original. None: nothing to check (no bytes at rest, or the item moved
    on, e.g. was purged, while it was read)."""
    budget = budget or Budget(None)
    with db.read() as s:
        item = _load(db, s, item_id, lock=False)
        if item is None or ItemState(item.state) in NO_BYTES:
            return None
        key, expected, expected_size = item.blob_key, item.sha256, item.size
    started = time.monotonic()
    digest: str | None = None
    size: int | None = None
    error: str | None = None
    try:
        digest, size = await _hash_blob(store, key, budget, stop)
        result = OK if digest == expected and size == expected_size else MISMATCH
    except BlobNotFound:
        result = MISSING
    except BlobStoreError as exc:
        result, error = ERROR, f"{type(exc).__name__}: {exc}"[:500]
    seconds = time.monotonic() - started
    with db.write() as s:
        item = _load(db, s, item_id, lock=True)
        # Judged on the row as it is now: an item purged (bytes destroyed on purpose) or
        # given another key while we read is not an alarm; its next check will tell.
        if item is None or ItemState(item.state) in NO_BYTES or item.blob_key != key:
            return None
        if s.get(Disposal, item_id) is not None:
            return None  # being disposed of (storage.retention): its bytes go on purpose
        s.add(FixityCheck(item_id=item_id, checked_at=utcnow(), result=result, blob_key=key,
                          expected_sha256=expected, sha256=digest, size=size, seconds=round(seconds, 4),
                          error=error))
        raised = False
        if result in ALARMS and can_transition(item.state, ItemState.INTEGRITY_ALARM):
            reason = ("the stored original is missing" if result == MISSING else
                      f"fixity: SHA-256 of the original at rest ({digest}, {size} bytes) differs from "
                      f"the ingest hash ({expected}, {expected_size} bytes)")
            # Threat: altered or lost evidence shown, shared or exported as if intact.
            # The alarm and its custody event commit with the check that found it.
            transition(db, s, item, ItemState.INTEGRITY_ALARM, actor=actor, reason=reason[:1000],
                       detail={**tool(), "check": "fixity", "result": result, "argv": ["sha256", key],
                               "expected": expected, "expected_size": expected_size, "computed": digest,
                               "size": size})
            raised = True
        state = item.state
    if result in ALARMS:
        log.error("fixity.alarm", extra={"item_id": item_id, "result": result})
    return Outcome(item_id=item_id, result=result, expected_sha256=expected, sha256=digest, size=size,
                   seconds=round(seconds, 4), state=str(state), error=error, alarm_raised=raised)


def candidates(db: Database, *, due_before: dt.datetime | None = None, limit: int | None = None) -> list[str]:
    """Items with an original at rest, oldest-checked first (an item never checked counts
    from its receipt). ``due_before``: only those last checked (or received) before it."""
    with db.read() as s:
        last = (
            select(FixityCheck.item_id, func.max(FixityCheck.checked_at).label("last"))  # type: ignore[call-overload]
            .group_by(FixityCheck.item_id).subquery()
        )
        since = func.coalesce(last.c.last, EvidenceItem.received_at)
        query = (
            select(EvidenceItem.id)  # type: ignore[call-overload]
            .outerjoin(last, last.c.item_id == EvidenceItem.id)
            .where(col(EvidenceItem.state).notin_([str(x) for x in NO_BYTES]),
                   col(EvidenceItem.state) != ItemState.INTEGRITY_ALARM)
            .order_by(since, EvidenceItem.id)
        )
        if due_before is not None:
            query = query.where(since < due_before)
        if limit is not None:
            query = query.limit(limit)
        return [row[0] for row in s.exec(query).all()]


async def run_async(
    db: Database, store: BlobStore, *, actor: str, item_ids: list[str] | None = None, mb_per_s: float | None = None,
    due_before: dt.datetime | None = None, limit: int | None = None, stop: threading.Event | None = None,
) -> Summary:
    budget = Budget(mb_per_s, stop)
    ids = item_ids if item_ids is not None else candidates(db, due_before=due_before, limit=limit)
    summary = Summary()
    started = time.monotonic()
    for item_id in ids:
        if stop is not None and stop.is_set():
            break
        try:
            outcome = await check_item(db, store, item_id, actor=actor, budget=budget, stop=stop)
        except _Stopped:
            break
        if outcome is None:
            continue
        summary.outcomes.append(outcome)
        summary.checked += 1
        summary.bytes += outcome.size or 0
        if outcome.result == OK:
            summary.ok += 1
        elif outcome.result in ALARMS:
            summary.alarms += 1
        else:
            summary.errors += 1
    summary.seconds = time.monotonic() - started
    return summary


def run(
    db: Database, store_factory: Callable[[], BlobStore], *, actor: str, item_ids: list[str] | None = None,
    mb_per_s: float | None = None, due_before: dt.datetime | None = None, limit: int | None = None,
    stop: threading.Event | None = None,
) -> Summary:
    """Blocking: open the store (``store_factory`` blocks too: S3 discovery), check, close."""

    async def main() -> Summary:
        store = await anyio.to_thread.run_sync(store_factory)
        try:
            return await run_async(db, store, actor=actor, item_ids=item_ids, mb_per_s=mb_per_s,
                                   due_before=due_before, limit=limit, stop=stop)
        finally:
            await store.close()

    return asyncio.run(main())


def alarms(session: Session, limit: int = 100) -> list[EvidenceItem]:
    """Items in ``integrity_alarm``, newest first: what the admin banner and a readiness
    check show until someone investigates."""
    query = (select(EvidenceItem).where(col(EvidenceItem.state) == ItemState.INTEGRITY_ALARM)
             .order_by(col(EvidenceItem.updated_at).desc()).limit(limit))
    return list(session.exec(query).scalars().all())  # type: ignore[call-overload]


def alarm_count(session: Session) -> int:
    query = select(func.count()).select_from(EvidenceItem).where(col(EvidenceItem.state) == ItemState.INTEGRITY_ALARM)
    return int(session.exec(query).scalar_one())  # type: ignore[call-overload]


def last_checks(session: Session, item_id: str, limit: int = 20) -> list[FixityCheck]:
    query = (select(FixityCheck).where(col(FixityCheck.item_id) == item_id)
             .order_by(col(FixityCheck.checked_at).desc(), col(FixityCheck.id).desc()).limit(limit))
    return list(session.exec(query).scalars().all())  # type: ignore[call-overload]


def due_before(settings_interval_seconds: int, now: dt.datetime | None = None) -> dt.datetime:
    return (now or utcnow()) - dt.timedelta(seconds=settings_interval_seconds)
