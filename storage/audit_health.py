"""The custody chain's health as the audit desk shows it: the last FULL verification (a
walk of every event from genesis), the last periodic round, the last checkpoint.

A full verification is recorded in ``ledger_status`` under the name ``FULL`` by whoever
made it: ``exhibit audit verify`` and the periodic verifier's full rounds
(``storage.ledger_watch``). An incremental round proves only what was appended after its
anchor (``ledger.verify_since``), so an auditor must be able to tell the two apart: "last
verified" alone would overstate what was checked (AU-05). A failed walk is a row with
``ok`` false, shown on the desk; the admin page's alarm comes from the periodic
verifier's own row (``ledger_watch.failing``), so one failure is not shown twice.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass

from sqlmodel import Session, col, select

from storage.db import Database
from storage.ledger import VerifyResult
from storage.models import Checkpoint, LedgerStatus

log = logging.getLogger("exhibit.ledger")

FULL = "full-verification"
PERIODIC = "ledger"  # ledger_watch.STATUS_NAME (not imported: that module pulls in S3)


def record_full_verification(db: Database, result: VerifyResult, *, by: str) -> bool:
    """Record the outcome of a full walk. Returns False (and logs) when it could not be
    written: the verification's answer stands either way, a read-only copy of the
    database included."""
    try:
        with db.write() as session:
            row = session.get(LedgerStatus, FULL)
            now = db.now(session)
            if row is None:
                row = LedgerStatus(name=FULL, ok=result.ok, checked_at=now, head_seq=0)
            row.ok = result.ok
            row.checked_at = now
            row.head_seq = result.head_seq
            row.first_bad_seq = result.first_bad_seq
            row.reason = (result.reason or None) and str(result.reason)[:500]
            row.checkpoint_seq = result.checkpoint_seq
            row.destination = by[:500]
            session.add(row)
        return True
    except Exception:
        log.warning("ledger.full_verification.unrecorded", exc_info=True)
        return False


@dataclass(frozen=True)
class ChainHealth:
    full: LedgerStatus | None  # None: never recorded
    periodic: LedgerStatus | None
    checkpoint_seq: int | None
    checkpoint_at: dt.datetime | None
    head_seq: int
    now: dt.datetime

    @property
    def checkpoint_age(self) -> dt.timedelta | None:
        return self.now - self.checkpoint_at if self.checkpoint_at else None

    @property
    def unvouched(self) -> int:
        """Events appended since the last checkpoint (a cut tail of these would show
        only against the chain itself, not against a signed head)."""
        return max(0, self.head_seq - (self.checkpoint_seq or 0))


def chain_health(session: Session, now: dt.datetime) -> ChainHealth:
    from storage.models import CustodyEvent

    last = session.exec(select(Checkpoint).order_by(col(Checkpoint.seq).desc(), col(Checkpoint.id).desc())
                        .limit(1)).first()
    head = session.exec(select(col(CustodyEvent.seq)).order_by(col(CustodyEvent.seq).desc()).limit(1)).first()
    return ChainHealth(full=session.get(LedgerStatus, FULL), periodic=session.get(LedgerStatus, PERIODIC),
                       checkpoint_seq=last.seq if last else None, checkpoint_at=last.at if last else None,
                       head_seq=int(head or 0), now=now)


def describe_age(age: dt.timedelta | None) -> str:
    if age is None:
        return "never"
    seconds = max(0, int(age.total_seconds()))
    if seconds < 120:
        return f"{seconds} seconds ago"
    if seconds < 7200:
        return f"{seconds // 60} minutes ago"
    if seconds < 172800:
        return f"{seconds // 3600} hours ago"
    return f"{seconds // 86400} days ago"
