"""Stills of a video ("save this frame", i15 item 5): the request, shared by the staff app
(which asks) and the worker (which makes them, ``processing.stills``).

``request_still`` runs in the caller's writing transaction: it enqueues one
``save_still`` job for the item and instant (deduplicated: asking twice for the same
frame makes one still) and appends ``item.still_requested`` with who asked, so the
ledger says who wanted the still even before the worker has made it.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

from sqlmodel import Session

from storage import ledger, queue
from storage.db import Database
from storage.models import EvidenceItem

JOB_KIND = "save_still"
SOURCE_KIND = "proxy"  # which copy a still is taken from (processing.stills says why)
MAX_AT_SECONDS = Decimal(6 * 3600)  # processing.video.MAX_DURATION_SECONDS
KIND_RE = re.compile(r"^still-\d{1,5}\.\d{3}$")


def parse_at(text: str) -> Decimal | None:
    """An instant in seconds (at most microsecond precision kept), 0 to 6 hours."""
    text = text.strip()
    if not text or len(text) > 32:
        return None
    try:
        at = Decimal(text)
    except (InvalidOperation, ValueError):
        return None
    if not at.is_finite() or at < 0 or at > MAX_AT_SECONDS:
        return None
    return at.quantize(Decimal("0.000001"))


def still_kind(at: Decimal) -> str:
    """The derivative kind of a still at ``at``: ``still-<seconds, 3 decimals>`` (at most 15
    characters: the column holds 16)."""
    return f"still-{at.quantize(Decimal('0.001'))}"


def is_still_kind(kind: str) -> bool:
    return bool(KIND_RE.match(kind))


def request_still(db: Database, session: Session, item: EvidenceItem, at: Decimal, *, actor: str,
                  request_id: str | None) -> str:
    """Enqueue the still and record the request; returns its derivative kind."""
    kind = still_kind(at)
    queue.enqueue(session, JOB_KIND, item_id=item.id, payload={"at": str(at), "requested_by": actor},
                  dedup_key=f"still:{item.id}:{at}", max_attempts=3)
    ledger.append(db, session, actor=actor, action="item.still_requested", subject=f"item:{item.id}",
                  report_id=item.report_id, item_id=item.id,
                  detail={"kind": kind, "at_seconds": str(at), "source": SOURCE_KIND}, request_id=request_id)
    return kind
