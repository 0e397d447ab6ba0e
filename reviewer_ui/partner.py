"""The partner's item page and progress JSON, built from their OWN field list (i11 item
1; SECURITY_CHECKLIST AC-04; DESIGN.md §4 "Sharing").

A partner (the prosecutor, a council) sees what a share grants and nothing of the
force's casework. This page is not the staff page with parts hidden: a hidden part is one
template edit away from leaking, and the staff view carries whole rows (the item, its
custody events, its derivatives' argv). Here ``load_partner_view`` copies, field by
field, only what is listed below into plain frozen dataclasses; the template receives
nothing else, so it cannot show what it was never given.

Shown to a partner:

* the media (preview or proxy and poster, watermarked, the view recorded);
* the hashes (at upload, re-verified by the worker), size and type from content, the
  time received, the scan verdict;
* how each copy was made: kind, type, size, SHA-256 and input SHA-256, tool and version,
  when (never the storage key, never the argv, which names storage keys);
* the citizen's statement (what happened, when);
* the citizen's name and contact details only when a live share grants ``grant_contact``;
  the precise location (the place they gave, GPS fields of the file's metadata) only when
  one grants ``grant_location``;
* a download form only when a live share allows downloads;
* their own live shares that reach the item, each with a button to acknowledge receipt
  (or when they did).

Never shown: the custody timeline (staff e-mails, download reasons, other shares),
triage and its reason, tags, notes, other partners' shares, storage keys, worker argv,
the rest of the file's metadata, the submission's links and receipts.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from sqlmodel import col, select
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from reviewer_ui import audit, context, coverage, permissions
from reviewer_ui.display import local_text
from storage import export
from storage.lifecycle import TERMINAL, VIEWABLE
from storage.models import Derivative, EvidenceItem, Report, Role, Submission, User

MAX_LOCATION_ROWS = 50


@dataclass(frozen=True)
class PartnerCopy:
    """One derivative, as a partner may know it: how to reproduce it, not where it lives."""

    kind: str
    mime_type: str
    size: int
    sha256: str
    input_sha256: str
    tool: str
    tool_version: str
    width: int | None
    height: int | None
    made_at: dt.datetime


@dataclass(frozen=True)
class PartnerItemView:
    item_id: str
    report_id: str
    report_reference: str
    filename: str
    state: str
    progress: int
    terminal: bool
    media: str  # "image", "video" or "none"
    proxy_type: str
    has_poster: bool
    size: int
    sha256: str
    verified_sha256: str | None
    detected_type: str | None
    verdict: str | None
    signature_db_version: str | None
    received_at: dt.datetime
    copies: tuple[PartnerCopy, ...]
    statement: str | None  # None: no submission (e.g. made by the intake API)
    occurred_at: str
    contact_name: str | None  # None: not granted
    contact_details: str | None
    place: str | None  # None: not granted
    location_rows: tuple[tuple[str, str], ...]  # empty unless granted
    grants_contact: bool
    grants_location: bool
    can_download: bool
    # Their own live shares reaching this item, to acknowledge receipt (share_receipts).
    shares: tuple[Any, ...] = ()


def _location_rows(metadata: dict[str, Any] | None) -> tuple[tuple[str, str], ...]:
    from reviewer_ui.items import _flatten  # the one flattener (caps lengths, BF-09)

    rows: list[tuple[str, str]] = []
    _flatten("", metadata or {}, rows)
    # The one list of location keys, shared with the partner's export bundle.
    return tuple((k, v) for k, v in rows if export.is_location_key(k))[:MAX_LOCATION_ROWS]


def _media(item: EvidenceItem, kinds: dict[str, Derivative]) -> str:
    if item.state not in VIEWABLE:
        return "none"
    if "proxy" in kinds:
        return "video"
    if "preview" in kinds:
        return "image"
    return "none"


def load_partner_view(request: Request, item_id: str) -> PartnerItemView:
    ctx = context.get(request)
    user = permissions.current_user(request)
    now = ctx.clock()
    with ctx.db.read() as session:
        item = permissions.require_item(request, session, item_id, "item.view")
        report = session.get(Report, item.report_id)
        assert report is not None
        shares = permissions.live_shares_of_item(session, user, item, now)
        grants_contact = any(s.grant_contact for s in shares)
        grants_location = any(s.grant_location for s in shares)
        kinds = {d.kind: d for d in session.exec(select(Derivative).where(col(Derivative.item_id) == item.id))}
        submission = session.get(Submission, item.submission_id) if item.submission_id else None
        can_download = permissions.can_download_original(session, user, item, now=now)
        from reviewer_ui.share_receipts import partner_shares

        own_shares = partner_shares(session, shares)
    copies = tuple(
        PartnerCopy(kind=d.kind, mime_type=d.mime_type, size=d.size, sha256=d.sha256, input_sha256=d.input_sha256,
                    tool=d.tool, tool_version=d.tool_version, width=d.width, height=d.height, made_at=d.created_at)
        for _, d in sorted(kinds.items())
    )
    return PartnerItemView(
        item_id=item.id, report_id=report.id, report_reference=report.reference, filename=item.original_filename,
        state=item.state, progress=max(0, min(100, item.progress)), terminal=item.state in TERMINAL,
        media=_media(item, kinds), proxy_type=kinds["proxy"].mime_type if "proxy" in kinds else "",
        has_poster="poster" in kinds, size=item.size, sha256=item.sha256, verified_sha256=item.verified_sha256,
        detected_type=item.detected_type, verdict=item.verdict, signature_db_version=item.signature_db_version,
        received_at=item.received_at, copies=copies,
        statement=submission.description if submission else None,
        occurred_at=submission.occurred_at if submission else "",
        contact_name=submission.contact_name if submission and grants_contact else None,
        contact_details=submission.contact_details if submission and grants_contact else None,
        place=submission.location if submission and grants_location else None,
        location_rows=_location_rows(item.media_metadata) if grants_location else (),
        grants_contact=grants_contact, grants_location=grants_location, can_download=can_download,
        shares=own_shares,
    )


def is_partner(request: Request) -> bool:
    """Is this request's user a partner? (After the session check of the first ``ctx.run_sync``.)"""
    user: User | None = permissions.optional_user(request)
    return user is not None and str(user.role) == Role.PARTNER


def load_and_record(request: Request, item_id: str) -> PartnerItemView:
    """In a worker thread, the session already checked: the view, its custody event, and
    the poster/thumbnail it shows covered by that event."""
    ctx = context.get(request)
    view = load_partner_view(request, item_id)
    audit.record_sync(ctx, request, "item.viewed", report_id=view.report_id, item_id=view.item_id)
    coverage.page_showed(request, [view.item_id], ["poster", "thumbnail"])
    return view


def render(request: Request, view: PartnerItemView, *, download_error: str | None = None,
           status_code: int = 200) -> Response:
    from reviewer_ui.items import STATE_EXPLANATIONS, _fmt_bytes

    ctx = context.get(request)
    user = permissions.current_user(request)
    now = ctx.clock()
    return ctx.render(request, "partner_item.html", status_code=status_code, view=view,
                      explanation=STATE_EXPLANATIONS.get(view.state, ""), fmt_bytes=_fmt_bytes,
                      download_error=download_error,
                      watermark=f"{user.display_name or user.email} · {local_text(now, ctx.settings.time_zone)}")


def progress(item: EvidenceItem) -> Response:
    """progress.json for a partner: the partner fields only (no triage)."""
    return JSONResponse({"id": item.id, "state": item.state, "progress": max(0, min(100, item.progress)),
                         "verdict": item.verdict, "terminal": item.state in TERMINAL})
