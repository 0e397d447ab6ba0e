"""Reports: the searchable list, creating one, the report page (submissions, links,
evidence grid, report shares) and issuing / revoking upload links.

Pagination is keyset ("seek"), never OFFSET: the list is ordered newest first by
``(created_at, id)`` and a page continues strictly after the last row of the previous
one, read off the ``ix_report_created_id`` / ``ix_report_kind_created_id`` indexes, so
page 2,000 costs what page 1 costs (benchmarks/review.py, 100,000 items). The evidence
grid does the same within a report over ``(received_at, id)``.

What a user sees is ``permissions.visible_reports_query`` / ``can_view_item`` for this
request. A partner sees a report only as the container of the items shared with them:
no statements, links, counts or other items (AC-03, AC-04).
"""

from __future__ import annotations

import base64
import datetime as dt
import json
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import and_, case, exists, func, or_
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import aliased
from sqlmodel import Session, col, select
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from reviewer_ui import (
    assignment,
    audit,
    confirm,
    context,
    coverage,
    form_errors,
    forms,
    item_filters,
    mfa,
    permissions,
)
from storage import ledger
from storage.errors import Conflict, Invalid, NotFound
from storage.lifecycle import TERMINAL
from storage.links import create_link, revoke_link
from storage.models import (
    CustodyEvent,
    Derivative,
    EvidenceItem,
    Report,
    ReportKind,
    Role,
    Submission,
    Triage,
    Upload,
    UploadLink,
    UploadState,
    User,
)
from storage.reports import create_report

PAGE_SIZE = 50
GRID_PAGE_SIZE = 60
# A partner's grid filters items one by one through can_view_item; stop after this many
# rows per page so a report of 100,000 items with one share cannot make a slow page.
GRID_SCAN_LIMIT = 2000
EXPIRY_CHOICES = (("1d", "1 day"), ("3d", "3 days"), ("7d", "7 days"), ("14d", "14 days"), ("30d", "30 days"))


# --- keyset cursors ----------------------------------------------------------------------


def encode_cursor(at: dt.datetime, ident: str) -> str:
    raw = json.dumps([ledger.format_time(at), ident], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(text: str | None) -> tuple[dt.datetime, str] | None:
    """A cursor from the query string, or None when absent or not one of ours (a forged
    cursor only moves where the page starts: it is a position, not a permission)."""
    if not text or len(text) > 200:
        return None
    try:
        at_text, ident = json.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
        at = dt.datetime.strptime(at_text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=dt.UTC)
    except (ValueError, TypeError):
        return None
    if not isinstance(ident, str) or len(ident) > 64:
        return None
    return at, ident


# --- the list ----------------------------------------------------------------------------


@dataclass
class ReportFilters:
    q: str = ""
    kind: str = ""
    date_from: dt.date | None = None
    date_to: dt.date | None = None
    waiting: bool = False
    after: tuple[dt.datetime, str] | None = None
    unit: str = ""
    owner: str = ""  # an e-mail address, exactly

    @classmethod
    def from_query(cls, params: Any) -> ReportFilters:
        kind = str(params.get("kind", ""))
        return cls(
            q=str(params.get("q", "")).strip()[:64],
            kind=kind if kind in {k.value for k in ReportKind} else "",
            date_from=item_filters.query_date(params.get("from")), date_to=item_filters.query_date(params.get("to")),
            waiting=params.get("waiting") == "1",
            after=decode_cursor(params.get("after")),
            unit=str(params.get("unit", "")).strip()[:100],
            owner=str(params.get("owner", "")).strip().lower()[:320],
        )

    def query_string(self, after: str | None = None) -> str:
        from urllib.parse import urlencode

        parts: list[tuple[str, str]] = []
        if self.q:
            parts.append(("q", self.q))
        if self.kind:
            parts.append(("kind", self.kind))
        if self.date_from:
            parts.append(("from", self.date_from.isoformat()))
        if self.date_to:
            parts.append(("to", self.date_to.isoformat()))
        if self.waiting:
            parts.append(("waiting", "1"))
        if self.unit:
            parts.append(("unit", self.unit))
        if self.owner:
            parts.append(("owner", self.owner))
        if after:
            parts.append(("after", after))
        return urlencode(parts)


@dataclass
class ReportRow:
    report: Report
    items: int | None
    waiting: int | None
    owner: str | None


@dataclass
class ReportPage:
    rows: list[ReportRow]
    next_cursor: str | None
    filters: ReportFilters
    show_counts: bool


def _day_start(day: dt.date) -> dt.datetime:
    return dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC)


def list_reports(session: Session, user: User, filters: ReportFilters, *, now: dt.datetime,
                 unit_access: bool, limit: int = PAGE_SIZE) -> ReportPage:
    is_partner = str(user.role) == Role.PARTNER
    # The page walks ix_report_created_id newest first and checks each row: visibility is a
    # correlated EXISTS (one primary-key probe per row), never `id IN (every visible
    # report)`, which SQLite would materialise and sort on every request.
    r = aliased(Report, name="r")
    q = select(r)
    if str(user.role) not in (Role.ADMIN, Role.AUDITOR):
        visible = permissions.visible_reports_query(user, now=now, unit_access=unit_access)
        q = q.where(visible.where(col(Report.id) == col(r.id)).exists())
    if filters.q:
        # Prefix search on the reference (as typed, and upper-cased: references are
        # usually capitals): a range over the unique index, not a scan.
        variants = {filters.q, filters.q.upper()}
        q = q.where(or_(*[and_(col(r.reference) >= v, col(r.reference) < v + "\U0010ffff") for v in variants]))
    if filters.kind:
        q = q.where(col(r.kind) == filters.kind)
    if filters.unit and not is_partner:
        q = q.where(col(r.unit) == filters.unit)
    if filters.owner and not is_partner:
        # Partners see nothing of who works a report (AC-04): the filter is ignored.
        owner_id = select(col(User.id)).where(col(User.email) == filters.owner).scalar_subquery()
        q = q.where(col(r.owner_id) == owner_id)
    if filters.date_from:
        q = q.where(col(r.created_at) >= _day_start(filters.date_from))
    if filters.date_to:
        q = q.where(col(r.created_at) < _day_start(filters.date_to) + dt.timedelta(days=1))
    if filters.waiting and not is_partner:
        q = q.where(exists().where(col(EvidenceItem.report_id) == col(r.id), col(EvidenceItem.triage) == Triage.PENDING))
    if filters.after:
        at, ident = filters.after
        q = q.where(or_(col(r.created_at) < at, and_(col(r.created_at) == at, col(r.id) < ident)))
    q = q.order_by(col(r.created_at).desc(), col(r.id).desc()).limit(limit + 1)
    reports = list(session.exec(q))
    more = len(reports) > limit
    reports = reports[:limit]
    counts: dict[str, tuple[int, int]] = {}
    owners: dict[str, str] = {}
    if reports and not is_partner:
        ids = [r.id for r in reports]
        for rid, total, pending in session.exec(
            select(col(EvidenceItem.report_id), func.count(),
                   func.sum(case((col(EvidenceItem.triage) == Triage.PENDING, 1), else_=0)))
            .where(col(EvidenceItem.report_id).in_(ids)).group_by(col(EvidenceItem.report_id))
        ).all():
            counts[rid] = (int(total), int(pending or 0))
        owner_ids = {r.owner_id for r in reports if r.owner_id}
        if owner_ids:
            for uid, email in session.exec(select(col(User.id), col(User.email)).where(col(User.id).in_(owner_ids))).all():
                owners[uid] = email
    rows = [ReportRow(report=r, items=None if is_partner else counts.get(r.id, (0, 0))[0],
                      waiting=None if is_partner else counts.get(r.id, (0, 0))[1],
                      owner=owners.get(r.owner_id or "")) for r in reports]
    next_cursor = encode_cursor(reports[-1].created_at, reports[-1].id) if more and reports else None
    return ReportPage(rows=rows, next_cursor=next_cursor, filters=filters, show_counts=not is_partner)


async def reports_list(request: Request) -> Response:
    ctx = context.get(request)
    filters = ReportFilters.from_query(request.query_params)

    def load() -> tuple[User, ReportPage]:
        user = permissions.current_user(request)
        with ctx.db.read() as session:
            return user, list_reports(session, user, filters, now=ctx.clock(),
                                      unit_access=ctx.settings.officer_unit_access)

    user, page = await ctx.run_sync(load)
    return ctx.render(request, "reports.html", page=page, kinds=[k.value for k in ReportKind],
                      can_create=permissions.can_act(user, "report.create"))


# --- create ------------------------------------------------------------------------------


async def report_new(request: Request) -> Response:
    ctx = context.get(request)
    await ctx.check_session()
    user = permissions.current_user(request)
    if not permissions.can_act(user, "report.create"):
        raise permissions.Denied("report:new", reason="report.create")
    return ctx.render(request, "report_new.html", kinds=[k.value for k in ReportKind], values={}, existing=None)


# One answer for a malformed reference and for one taken by a report the officer may not
# see: telling them apart would confirm that someone else's matter exists (AC-01).
REFERENCE_REFUSED = ("This reference cannot be used. A reference is 1 to 64 letters, digits or / _ . : -, "
                     "starts with a letter or digit, and is not already in use.")


async def report_create(request: Request) -> Response:
    ctx = context.get(request)
    await ctx.check_session()
    user = permissions.current_user(request)
    if not permissions.can_act(user, "report.create"):
        raise permissions.Denied("report:new", reason="report.create")
    form = await request.form()
    values = {k: str(form.get(k) or "").strip() for k in ("reference", "kind", "title")}

    def apply() -> tuple[str, str | None]:
        """("created", id), ("visible", id of the existing report this user may see) or
        ("refused", None)."""
        try:
            with ctx.db.write() as session:
                report = create_report(ctx.db, session, values["reference"], values["kind"],
                                       title=values["title"][:300], owner_id=user.id, unit=user.unit,
                                       actor=user.email, request_id=audit.request_id_of(request))
                return "created", report.id
        except (Conflict, IntegrityError):
            # Conflict: the reference is taken. IntegrityError: a create racing this one
            # committed the same reference between our check and our insert (the unique
            # index decides); the same answer, never a 500.
            pass
        with ctx.db.read() as session:
            existing = session.exec(select(Report).where(col(Report.reference) == values["reference"])).first()
            if existing is not None and permissions.can_view_report(
                    session, user, existing, now=ctx.clock(), unit_access=ctx.settings.officer_unit_access):
                return "visible", existing.id
        # Someone else's report (AC-01, no existence oracle): the answer is the one any
        # invalid reference gets, and the probe is recorded like any other refusal.
        audit.record_sync(ctx, request, "access.denied", subject="report:new",
                          detail={"subject": "report:new", "reason": "report.create.reference_taken",
                                  "method": request.method, "path": request.url.path[:200]})
        return "refused", None

    def form_again(status: int, error: str, code: str, existing: str | None = None) -> Response:
        return ctx.render(request, "report_new.html", status_code=status, kinds=[k.value for k in ReportKind],
                          errors=form_errors.for_code(error, code, form_errors.REPORT_FIELDS), values=values,
                          existing=existing)

    try:
        outcome, report_id = await ctx.run_sync(apply)
    except Invalid as exc:
        # A malformed reference and a reference taken by a report this user cannot see
        # get the same words (REFERENCE_REFUSED).
        if exc.code == "ERR_REFERENCE_INVALID":
            return form_again(400, REFERENCE_REFUSED, exc.code)
        return form_again(400, str(exc), exc.code)
    if outcome == "visible":
        return form_again(409, f"Report {values['reference']} already exists.", "ERR_REPORT_EXISTS",
                          existing=report_id)
    if outcome == "refused":
        return form_again(400, REFERENCE_REFUSED, "ERR_REFERENCE_INVALID")
    return RedirectResponse(f"/reports/{report_id}", status_code=303)


# --- the report page ---------------------------------------------------------------------


@dataclass
class GridCard:
    item: EvidenceItem
    has_thumbnail: bool
    terminal: bool


@dataclass
class ReportView:
    report: Report
    owner: str | None
    is_partner: bool
    submissions: list[dict[str, Any]]
    links: list[dict[str, Any]]
    cards: list[GridCard]
    next_cursor: str | None
    shares: list[dict[str, Any]]
    partners: list[tuple[str, str]]
    totals: dict[str, int]
    can: dict[str, bool] = field(default_factory=dict)
    refused: list[dict[str, Any]] = field(default_factory=list)
    panel: assignment.Panel | None = None  # who works it (_assignment.html)


def _grid(session: Session, user: User, report: Report, after: tuple[dt.datetime, str] | None, *,
          now: dt.datetime, unit_access: bool,
          filters: item_filters.ItemFilters | None = None) -> tuple[list[GridCard], str | None]:
    is_partner = str(user.role) == Role.PARTNER
    narrowing = filters.conditions(partner=is_partner) if filters else []
    cards: list[EvidenceItem] = []
    cursor = after
    more = False
    scanned = 0
    batch_size = GRID_PAGE_SIZE + 1 if not is_partner else 200
    while True:
        q = select(EvidenceItem).where(col(EvidenceItem.report_id) == report.id, *narrowing)
        if cursor:
            at, ident = cursor
            q = q.where(or_(col(EvidenceItem.received_at) > at, and_(col(EvidenceItem.received_at) == at, col(EvidenceItem.id) > ident)))
        batch = list(session.exec(q.order_by(col(EvidenceItem.received_at), col(EvidenceItem.id)).limit(batch_size)))
        full = False
        for item in batch:
            if len(cards) == GRID_PAGE_SIZE:
                full = True
                break
            cursor = (item.received_at, item.id)
            scanned += 1
            if is_partner and not permissions.can_view_item(session, user, item, now=now, unit_access=unit_access):
                continue
            cards.append(item)
        if full:
            more = True
            break
        if len(batch) < batch_size:
            break
        if scanned >= GRID_SCAN_LIMIT:
            more = True
            break
    thumbs: set[str] = set()
    if cards:
        thumbs = set(session.exec(select(col(Derivative.item_id)).where(
            col(Derivative.item_id).in_([c.id for c in cards]), col(Derivative.kind) == "thumbnail")))
    next_cursor = encode_cursor(cursor[0], cursor[1]) if more and cursor else None
    return [GridCard(item=c, has_thumbnail=c.id in thumbs and c.state == "ready", terminal=c.state in TERMINAL)
            for c in cards], next_cursor


def _links(session: Session, report: Report, now: dt.datetime) -> list[dict[str, Any]]:
    links = list(session.exec(select(UploadLink).where(col(UploadLink.report_id) == report.id)
                              .order_by(col(UploadLink.created_at).desc()).limit(200)))
    use: dict[str, tuple[int, Any]] = {}
    uploads: dict[str, int] = {}
    if links:
        ids = [link.id for link in links]
        # Submissions with at least one file received, as in the list of submissions.
        for lid, n, last in session.exec(
                select(col(Submission.link_id), func.count(func.distinct(col(Submission.id))),
                       func.max(col(Submission.created_at)))
                .join(EvidenceItem, col(EvidenceItem.submission_id) == col(Submission.id))
                .where(col(Submission.link_id).in_(ids)).group_by(col(Submission.link_id))).all():
            use[lid] = (int(n), last)
        for lid, n in session.exec(select(col(Upload.link_id), func.count()).where(col(Upload.link_id).in_(ids))
                                   .group_by(col(Upload.link_id))).all():
            uploads[lid] = int(n)
    out = []
    for link in links:
        if link.revoked_at is not None:
            status = "revoked"
        elif link.expires_at <= now:
            status = "expired"
        elif link.used_files >= link.max_files or link.used_bytes >= link.max_bytes:
            status = "used up"
        else:
            status = "live"
        n, last = use.get(link.id, (0, None))
        out.append({"link": link, "status": status, "submissions": n, "last_used": last,
                    "uploads": uploads.get(link.id, 0)})
    return out


# Why a citizen's file was refused, in an officer's words (the upload app's stable codes;
# reviewer_ui does not import upload_api).
REFUSAL_WORDS = {
    "ERR_UNSUPPORTED_TYPE": "not a photo or video we accept (checked from its content)",
    "ERR_EMPTY_FILE": "empty file",
    "ERR_TOO_LARGE": "larger than one file may be",
    "ERR_QUOTA_BYTES": "over the link's total size",
    "ERR_QUOTA_FILES": "over the link's number of files",
    "ERR_LENGTH_EXCEEDED": "longer than the size it declared",
    "ERR_CHECKSUM_MISMATCH": "damaged on the way (checksum mismatch)",
    "ERR_IDLE_TIMEOUT": "the connection stalled (a form cannot resume)",
}


def _refused(session: Session, report: Report) -> list[dict[str, Any]]:
    """Files a citizen tried to send for this report and that were refused: name (the
    citizen's words, untrusted display data), size, why and when. They are not evidence and
    their bytes are gone; officers still see that someone tried (issue 17.7)."""
    rows = list(session.exec(
        select(Upload).join(UploadLink, col(UploadLink.id) == col(Upload.link_id))
        .where(col(UploadLink.report_id) == report.id, col(Upload.state) == UploadState.REFUSED.value)
        .order_by(col(Upload.completed_at).desc()).limit(200)))
    if not rows:
        return []
    reasons: dict[str, str] = {}
    for detail in session.exec(select(col(CustodyEvent.detail)).where(
            col(CustodyEvent.report_id) == report.id, col(CustodyEvent.action) == "upload.refused")):
        if isinstance(detail, dict) and detail.get("upload_id"):
            reasons[str(detail["upload_id"])] = str(detail.get("reason", ""))
    out = []
    for up in rows:
        code = reasons.get(up.id, "")
        out.append({"filename": up.filename or "(no name)", "size": up.length, "at": up.completed_at,
                    "reason": REFUSAL_WORDS.get(code, code or "refused")})
    return out


def load_report_view(request: Request, report_id: str, after: tuple[dt.datetime, str] | None,
                     filters: item_filters.ItemFilters | None = None) -> ReportView:
    ctx = context.get(request)
    user = permissions.current_user(request)
    now = ctx.clock()
    unit = ctx.settings.officer_unit_access
    with ctx.db.read() as session:
        report = permissions.require_report(request, session, report_id, "report.view")
        is_partner = str(user.role) == Role.PARTNER
        cards, next_cursor = _grid(session, user, report, after, now=now, unit_access=unit, filters=filters)
        owner = session.get(User, report.owner_id) if report.owner_id and not is_partner else None
        submissions: list[dict[str, Any]] = []
        links: list[dict[str, Any]] = []
        totals: dict[str, int] = {}
        refused: list[dict[str, Any]] = []
        if not is_partner:
            # A submission is shown once a file of it has been received: a statement whose
            # every file was refused is not evidence (its attempts are listed as refused).
            for sub, n in session.exec(
                select(Submission, func.count(col(EvidenceItem.id))).join(
                    EvidenceItem, col(EvidenceItem.submission_id) == col(Submission.id))
                .where(col(Submission.report_id) == report.id).group_by(col(Submission.id))
                .order_by(col(Submission.created_at).desc()).limit(200)
            ).all():
                submissions.append({"submission": sub, "items": int(n)})
            links = _links(session, report, now)
            refused = _refused(session, report)
            for state, n in session.exec(select(col(EvidenceItem.triage), func.count()).where(
                    col(EvidenceItem.report_id) == report.id).group_by(col(EvidenceItem.triage))).all():
                totals[str(state)] = int(n)
        can = {
            "link": permissions.can_act(user, "link.issue"),
            "share": permissions.can_act(user, "share.create"),
            "export": permissions.can_act(user, "export"),
        }
        shares: list[dict[str, Any]] = []
        partners: list[tuple[str, str]] = []
        if can["share"]:
            from reviewer_ui.items import partner_choices, shares_for

            shares = shares_for(session, item=None, report_id=report.id)
            partners = partner_choices(session)
        panel = assignment.load_panel(session, user, report)
    return ReportView(report=report, owner=owner.email if owner else None, is_partner=is_partner,
                      submissions=submissions, links=links, cards=cards, next_cursor=next_cursor, shares=shares,
                      partners=partners, totals=totals, can=can, refused=refused, panel=panel)


async def report_page(request: Request, *, form_error: str | None = None, issued: Any = None,
                      status_code: int = 200, export_error: str | None = None) -> Response:
    ctx = context.get(request)
    report_id = request.path_params["report_id"]
    after = decode_cursor(request.query_params.get("after"))
    filters = item_filters.ItemFilters.from_query(request.query_params)

    def load_and_record() -> tuple[ReportView, Any]:
        # The session check, the reads and the custody event in one worker call (one
        # thread hop, not three).
        from reviewer_ui.retention import panel

        view = load_report_view(request, report_id, after, filters)
        # Showing the grid shows thumbnails of evidence: an evidence page view (AU-03).
        audit.record_sync(ctx, request, "report.viewed", report_id=view.report.id,
                          detail={"items_shown": len(view.cards)})
        # The thumbnails this grid shows are covered by that event (reviewer_ui.coverage).
        coverage.page_showed(request, [c.item.id for c in view.cards if c.has_thumbnail], ["thumbnail"])
        assignment.mark_seen(request, view.report)  # "new" in My reports counts from here
        return view, panel(request, view.report)

    view, retention = await ctx.run_sync(load_and_record)
    return ctx.render(request, "report.html", status_code=status_code, view=view, report=view.report,
                      retention=retention,
                      errors=await form_errors.casework(request, form_error), issued=issued,
                      expiry_choices=EXPIRY_CHOICES, export_error=export_error,
                      default_max_files=ctx.settings.link_max_files,
                      default_max_bytes=_gib(ctx.settings.link_max_bytes),
                      fmt_bytes=_fmt_bytes, now=ctx.clock(), grid_filters=filters,
                      item_states=item_filters.STATE_VALUES, can_triage=permissions.can_act(
                          permissions.current_user(request), "triage"))


async def report_page_get(request: Request) -> Response:
    return await report_page(request)


def _gib(n: int) -> str:
    return f"{n >> 30}G" if n % (1 << 30) == 0 else str(n)


def _fmt_bytes(n: int) -> str:
    from reviewer_ui.items import _fmt_bytes as fmt

    return fmt(n)


# --- links ---------------------------------------------------------------------------------


@dataclass
class Issued:
    url: str
    qr_image: str
    expires_at: dt.datetime
    max_files: int
    max_bytes: int


def qr_image(url: str) -> str:
    """The link as a QR code image (an SVG data URI, allowed by the CSP's img-src), made by
    ``mfa``, the one module that imports the QR library."""
    return mfa.qr_data_uri(url)


async def link_issue(request: Request) -> Response:
    ctx = context.get(request)
    await ctx.check_session()
    report_id = request.path_params["report_id"]
    form = await request.form()
    user = permissions.current_user(request)
    try:
        expires = forms.number_field(form, "expires", label="Expiry", kind="duration", default="7d",
                                     low=1, high=90 * 86400, rule="up to 90 days, written like 7d, 36h or 90m.")
        max_files = forms.number_field(form, "max_files", label="Maximum files", kind="count",
                                       default=str(ctx.settings.link_max_files), low=1, high=10000,
                                       rule="a whole number from 1 to 10,000.")
        max_bytes = forms.number_field(form, "max_bytes", label="Maximum size", kind="bytes",
                                       default=_gib(ctx.settings.link_max_bytes), low=1, high=1 << 50,
                                       rule="a positive size up to 1P, written like 500M or 2G.")
        form_error = None
    except forms.FieldError as exc:
        form_error = str(exc)
        expires = max_files = max_bytes = 0
    note = str(form.get("note") or "")[:300]

    def apply() -> Issued | None:
        with ctx.db.write() as session:
            report = permissions.require_report(request, session, report_id, "link.issue")
            if form_error is not None:  # checked after the access check: says nothing of the report
                return None
            issued = create_link(ctx.db, session, report, public_url=ctx.settings.public_url,
                                 expires_in_seconds=expires, max_files=max_files, max_bytes=max_bytes,
                                 actor=user.email, note=note, request_id=audit.request_id_of(request))
            # The token exists only in this response (the page is no-store and POST-only,
            # so it is not in history or any cache); the database keeps its hash.
            return Issued(url=issued.url, qr_image=qr_image(issued.url), expires_at=issued.link.expires_at,
                          max_files=max_files, max_bytes=max_bytes)

    issued = await ctx.run_sync(apply)
    if issued is None:
        return await report_page(request, form_error=form_error, status_code=400)
    return await report_page(request, issued=issued)


async def link_revoke(request: Request) -> Response:
    ctx = context.get(request)
    await ctx.check_session()
    link_id = request.path_params["link_id"]
    user = permissions.current_user(request)
    form = await confirm.form_of(request)

    def apply() -> tuple[str, bool]:
        with ctx.db.write() as session:
            link = session.get(UploadLink, link_id) if len(link_id) <= 64 else None
            if link is None:
                raise permissions.Denied(f"link:{link_id[:64]}", reason="link.revoke")
            permissions.require_report(request, session, link.report_id, "link.revoke")
            if not confirm.given(form):
                return link.report_id, False  # asked first (reviewer_ui.confirm): nothing is done
            try:
                revoke_link(ctx.db, session, link.id, actor=user.email, request_id=audit.request_id_of(request))
            except NotFound:
                raise permissions.Denied(f"link:{link_id[:64]}", reason="link.revoke") from None
            return link.report_id, True

    report_id, done = await ctx.run_sync(apply)
    if not done:
        return confirm.page(request, form, question="Revoke this upload link?",
                            consequence="The link stops accepting uploads at once; files already received are kept. "
                            "A citizen who still has evidence to send will need a new link.",
                            button="Yes, revoke the link", back=f"/reports/{report_id}#links")
    return RedirectResponse(f"/reports/{report_id}#links", status_code=303)


async def home(request: Request) -> Response:
    await context.get(request).check_session()
    permissions.current_user(request)
    return RedirectResponse("/reports", status_code=303)


def routes() -> list[Route]:
    return [
        Route("/", home, methods=["GET"], name="home"),
        Route("/reports", reports_list, methods=["GET"], name="reports"),
        Route("/reports", report_create, methods=["POST"], name="report_create"),
        Route("/reports/new", report_new, methods=["GET"], name="report_new"),
        Route("/reports/{report_id}", report_page_get, methods=["GET"], name="report"),
        Route("/reports/{report_id}/links", link_issue, methods=["POST"], name="link_issue"),
        Route("/links/{link_id}/revoke", link_revoke, methods=["POST"], name="link_revoke"),
    ]
