"""Share receipts (issue 15 item 3): a partner acknowledges receipt of a share, and the
sharer sees that and what the partner viewed, streamed or downloaded, and when.

* ``POST /shares/{share_id}/acknowledge`` - a partner the share reaches (its partner user,
  or a partner user of its organisation), while it is live; a ``share.acknowledged``
  custody event, once. Anyone else, or a revoked or expired share, gets the uniform 404
  and an ``access.denied`` event (AC-01, AC-03): a partner cannot learn that another
  organisation's share exists by acknowledging it.
* ``partner_shares`` - for the partner's item page: their own live shares that reach the
  item (never another partner's), each with when they acknowledged it.
* ``annotate`` - for the sharer's share listing (item and report pages): each row gets
  ``acknowledged`` and ``activity`` (``storage.share_activity``, read from the ledger).
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from typing import Any

from sqlmodel import Session, select
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from reviewer_ui import audit, context, permissions
from storage import share_activity
from storage.models import Role, Share, User

_ITEM_ID = re.compile(r"^[0-9a-f]{32}$")


@dataclass(frozen=True)
class PartnerShare:
    """One of the partner's own shares, as their page may show it."""

    id: str
    scope: str  # "item" or "report"
    expires_at: dt.datetime
    acknowledged_at: dt.datetime | None


def _reaches(share: Share, user: User, now: dt.datetime) -> bool:
    if str(user.role) != Role.PARTNER or user.disabled:
        return False
    if share.revoked_at is not None or share.expires_at <= now:
        return False
    return share.partner_user_id == user.id or (share.partner_org_id is not None and share.partner_org_id == user.org_id)


def partner_shares(session: Session, shares: list[Share]) -> tuple[PartnerShare, ...]:
    """``shares``: the live shares through which this partner reaches the item
    (``permissions.live_shares_of_item``)."""
    acks = share_activity.acknowledgements(session, shares)
    return tuple(PartnerShare(id=s.id, scope="item" if s.item_id else "report", expires_at=s.expires_at,
                              acknowledged_at=acks[s.id].at if s.id in acks else None)
                 for s in sorted(shares, key=lambda s: s.created_at))


def annotate(session: Session, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Add ``acknowledged`` and ``activity`` to the sharer's rows ({"share": Share, ...})."""
    acks = share_activity.acknowledgements(session, [r["share"] for r in rows])
    for row in rows:
        ack = acks.get(row["share"].id)
        row["acknowledged"] = ack
        row["activity"] = share_activity.activity(session, row["share"], ack)
    return rows


async def acknowledge(request: Request) -> Response:
    ctx = context.get(request)
    share_id = str(request.path_params["share_id"])[:64]
    form = await request.form(max_files=0, max_fields=5, max_part_size=1024)
    back_item = str(form.get("item") or "")

    def apply() -> str:
        user = permissions.current_user(request)
        with ctx.db.write() as session:
            # Row lock on PostgreSQL (SQLite's writer already holds the database): two presses
            # at once record one acknowledgement.
            share = session.exec(select(Share).where(Share.id == share_id).with_for_update()).first()
            if share is None or not _reaches(share, user, ctx.clock()):
                raise permissions.Denied(f"share:{share_id}", reason="share.acknowledge")
            share_activity.acknowledge(ctx.db, session, share, actor=user.email,
                                       request_id=audit.request_id_of(request))
            item = share.item_id or (back_item if _ITEM_ID.match(back_item) else None)
            return f"/items/{item}#receipt" if item else "/reports"

    target = await ctx.run_sync(apply)
    return RedirectResponse(target, status_code=303)


def routes() -> list[Route]:
    return [Route("/shares/{share_id}/acknowledge", acknowledge, methods=["POST"], name="share_acknowledge")]
