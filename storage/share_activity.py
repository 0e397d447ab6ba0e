"""What a partner did with a share, read from the custody ledger (issue 15 item 3): the
receipt they acknowledged (``share.acknowledged``) and what they viewed, streamed or
downloaded through it, and when.

Both are read from the ledger, not kept in columns beside the share: the ledger is the
record a court sees, and a sharer's screen that could disagree with it would be a second
truth. ``acknowledge`` appends the event in the caller's writing transaction, once per
share (a second press changes nothing).

The partner side is who the share reaches: its partner user, or every partner user of its
organisation. Their events count from the share's creation; events on the shared item
(an item share) or on any item of the report (a report share).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlmodel import Session, col, select

from storage import ledger
from storage.db import Database
from storage.models import CustodyEvent, Role, Share, User

ACKNOWLEDGED = "share.acknowledged"
# What a partner can do with evidence: see the page, play it, download the original.
PARTNER_SEEING = ("item.viewed", "media.stream", "item.original_downloaded")
ACTIVITY_LIMIT = 10


@dataclass(frozen=True)
class Acknowledgement:
    at: dt.datetime
    by: str


@dataclass(frozen=True)
class ShareActivity:
    acknowledged: Acknowledgement | None
    recent: list[CustodyEvent]  # newest first, at most ACTIVITY_LIMIT
    counts: dict[str, int]  # action -> how many (of the events read)


def acknowledgements(session: Session, shares: list[Share]) -> dict[str, Acknowledgement]:
    """share id -> its (first) acknowledgement, for these shares."""
    if not shares:
        return {}
    wanted = {s.id for s in shares}
    rows = session.exec(select(CustodyEvent).where(
        col(CustodyEvent.action) == ACKNOWLEDGED,
        col(CustodyEvent.report_id).in_({s.report_id for s in shares}),
    ).order_by(col(CustodyEvent.seq))).all()
    out: dict[str, Acknowledgement] = {}
    for event in rows:
        share_id = (event.detail or {}).get("share_id")
        if share_id in wanted and share_id not in out:
            out[share_id] = Acknowledgement(at=event.at, by=event.actor)
    return out


def partner_emails(session: Session, share: Share) -> list[str]:
    if share.partner_user_id:
        user = session.get(User, share.partner_user_id)
        return [user.email] if user is not None else []
    if share.partner_org_id:
        return list(session.exec(select(col(User.email)).where(
            col(User.org_id) == share.partner_org_id, col(User.role) == Role.PARTNER).limit(500)))
    return []


def activity(session: Session, share: Share, acknowledged: Acknowledgement | None = None,
             *, limit: int = ACTIVITY_LIMIT) -> ShareActivity:
    emails = partner_emails(session, share)
    if not emails:
        return ShareActivity(acknowledged, [], {})
    q = select(CustodyEvent).where(col(CustodyEvent.actor).in_(emails),
                                   col(CustodyEvent.action).in_(PARTNER_SEEING),
                                   col(CustodyEvent.at) >= share.created_at)
    if share.item_id:
        q = q.where(col(CustodyEvent.item_id) == share.item_id)
    else:
        q = q.where(col(CustodyEvent.report_id) == share.report_id)
    # Read a bounded window (newest first): a share seen ten thousand times must not make
    # the sharer's page slow; the counts then say "at least".
    rows = list(session.exec(q.order_by(col(CustodyEvent.seq).desc()).limit(500)))
    counts: dict[str, int] = {}
    for event in rows:
        counts[event.action] = counts.get(event.action, 0) + 1
    return ShareActivity(acknowledged, rows[:limit], counts)


def acknowledge(db: Database, session: Session, share: Share, *, actor: str, request_id: str | None) -> bool:
    """Record that the partner received ``share`` (the caller has checked that ``actor``
    is a partner it reaches and that it is live). False when it was already."""
    if share.id in acknowledgements(session, [share]):
        return False
    ledger.append(db, session, actor=actor, action="share.acknowledged", subject=f"share:{share.id}",
                  report_id=share.report_id, item_id=share.item_id,
                  detail={"share_id": share.id, "scope": "item" if share.item_id else "report"},
                  request_id=request_id)
    return True
