"""Finding evidence within a report, and triaging many items at once (issue 15 item 1).

``ItemFilters`` narrows the report page's evidence grid by state, triage, tag, media type
and capture time (the camera's own clock, from the metadata: EXIF ``captured_at`` for
photos, the container's ``creation_time`` for video). Filters are conditions added to the
grid's keyset walk over ``(received_at, id)``, never an OFFSET, so a filtered page costs
what an unfiltered one does. A partner's grid ignores the triage and tag filters: a partner
sees nothing of the review (AC-04), and a filter on it would be an oracle.

``POST /reports/{id}/triage`` triages the selected items with one decision and one reason:
one custody event per item (``item.triage`` with ``"bulk": true``), all in one
transaction, so either every selected item is triaged and recorded or none is.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from sqlalchemy import ColumnElement, exists, func
from sqlmodel import col, select
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from reviewer_ui import audit, context, permissions
from storage.lifecycle import ItemState
from storage.models import EvidenceItem, ItemTag, Triage, utcnow

MEDIA_TYPES = ("image", "video")
TRIAGE_VALUES = tuple(t.value for t in Triage)
STATE_VALUES = tuple(s.value for s in ItemState)
BULK_MAX = 500


def query_date(text: object) -> dt.date | None:
    """A ``YYYY-MM-DD`` query parameter (anything after the tenth character ignored), or
    None when absent or not a date."""
    try:
        return dt.date.fromisoformat(str(text or "")[:10])
    except ValueError:
        return None


@dataclass
class ItemFilters:
    state: str = ""
    triage: str = ""
    tag: str = ""
    media: str = ""
    captured_from: dt.date | None = None
    captured_to: dt.date | None = None

    @classmethod
    def from_query(cls, params: Any) -> ItemFilters:
        def pick(name: str, allowed: tuple[str, ...]) -> str:
            value = str(params.get(name, ""))
            return value if value in allowed else ""

        return cls(state=pick("state", STATE_VALUES), triage=pick("triage", TRIAGE_VALUES),
                   tag=str(params.get("tag", "")).strip().lower()[:64], media=pick("media", MEDIA_TYPES),
                   captured_from=query_date(params.get("captured_from")),
                   captured_to=query_date(params.get("captured_to")))

    @property
    def active(self) -> bool:
        return any((self.state, self.triage, self.tag, self.media, self.captured_from, self.captured_to))

    def query_string(self, **extra: str) -> str:
        parts = [(k, v) for k, v in (("state", self.state), ("triage", self.triage), ("tag", self.tag),
                                     ("media", self.media)) if v]
        if self.captured_from:
            parts.append(("captured_from", self.captured_from.isoformat()))
        if self.captured_to:
            parts.append(("captured_to", self.captured_to.isoformat()))
        parts += [(k, v) for k, v in extra.items() if v]
        return urlencode(parts)

    def conditions(self, *, partner: bool) -> list[ColumnElement[bool]]:
        out: list[ColumnElement[bool]] = []
        if self.state:
            out.append(col(EvidenceItem.state) == self.state)
        if self.media:
            # What the bytes are (sniffed), never what the citizen's browser claimed.
            out.append(col(EvidenceItem.detected_type).startswith(self.media + "/"))
        if self.captured_from or self.captured_to:
            meta = col(EvidenceItem.media_metadata)
            taken = func.coalesce(meta["captured_at"].as_string(), meta["creation_time"].as_string())
            # "2026:03:01 08:10:00" (EXIF) and "2026-03-01T08:10:00Z" (video) as one day.
            day = func.replace(func.substr(taken, 1, 10), ":", "-")
            if self.captured_from:
                out.append(day >= self.captured_from.isoformat())
            if self.captured_to:
                out.append(day <= self.captured_to.isoformat())
        if not partner:
            if self.triage:
                out.append(col(EvidenceItem.triage) == self.triage)
            if self.tag:
                out.append(exists().where(col(ItemTag.item_id) == col(EvidenceItem.id), col(ItemTag.tag) == self.tag))
        return out


async def bulk_triage(request: Request) -> Response:
    from reviewer_ui.items import TRIAGE_REASON_MAX
    from reviewer_ui.reports import report_page

    ctx = context.get(request)
    report_id = request.path_params["report_id"]
    form = await request.form()
    ids = list(dict.fromkeys(str(v)[:64] for v in form.getlist("item")))
    decision = str(form.get("decision") or "")
    reason = str(form.get("reason") or "").strip()

    def apply() -> str | None:
        with ctx.db.write() as session:
            # The report first: a refusal says nothing of what was asked (AC-01).
            report = permissions.require_report(request, session, report_id, "triage")
            if not ids:
                return "Select the items to triage."
            if len(ids) > BULK_MAX:
                return f"Select at most {BULK_MAX} items at a time."
            if decision not in (Triage.ACCEPTED, Triage.DECLINED):
                return "Choose accept or decline."
            if not reason or len(reason) > TRIAGE_REASON_MAX:
                return f"Give a reason (up to {TRIAGE_REASON_MAX} characters)."
            items = list(session.exec(select(EvidenceItem).where(
                col(EvidenceItem.id).in_(ids), col(EvidenceItem.report_id) == report.id)))
            if len(items) != len(ids):
                # An id of another report (or none at all) in the selection: refuse the
                # whole request, as a probe, rather than triage part of it.
                raise permissions.Denied(f"report:{report.id}", report_id=report.id, reason="triage.bulk")
            now = utcnow()
            for item in sorted(items, key=lambda i: (i.received_at, i.id)):
                before = item.triage
                item.triage = decision
                item.triage_reason = reason
                item.updated_at = now
                session.add(item)
                audit.record_in(ctx, session, request, "item.triage", report_id=report.id, item_id=item.id,
                                detail={"from": before, "to": decision, "reason": reason, "bulk": True,
                                        "selected": len(items)})
        return None

    error = await ctx.run_sync(apply)
    if error:
        return await report_page(request, form_error=error, status_code=400)
    back = form.get("back")
    query = back if isinstance(back, str) and len(back) < 500 and back.startswith("?") else ""
    return RedirectResponse(f"/reports/{report_id}{query}#evidence-heading", status_code=303)


def routes() -> list[Route]:
    return [Route("/reports/{report_id}/triage", bulk_triage, methods=["POST"], name="report_bulk_triage")]
