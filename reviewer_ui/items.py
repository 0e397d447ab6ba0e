"""The item page (viewer, metadata, custody timeline), its progress JSON, and what staff
do to an item: triage, notes (append-only; an edit supersedes), tags.

Every handler starts with ``permissions.require_item`` for *this* request and action, so
an officer without the report, a partner without a live share, or an auditor trying to
change something all get the same 404 and an ``access.denied`` event. Changes commit in
one transaction with their custody event (``audit.record_in``).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import literal, literal_column, union_all
from sqlalchemy import select as sa_select
from sqlmodel import Session, col, select
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from reviewer_ui import audit, context, coverage, custody_words, form_errors, partner, permissions, visits
from reviewer_ui.display import clock, local_text
from storage import stills
from storage.lifecycle import TERMINAL, VIEWABLE
from storage.models import (
    CustodyEvent,
    Derivative,
    EvidenceItem,
    ItemTag,
    Note,
    Organisation,
    Report,
    Role,
    Share,
    Submission,
    Triage,
    User,
    utcnow,
)

TAG_RE = re.compile(r"^[a-z0-9][a-z0-9 _-]{0,63}$")
TRIAGE_REASON_MAX = 1000
NOTE_MAX = 10000
TIMELINE_LIMIT = 500
# A photo's viewer copies: shown by the page itself, so covered by its item.viewed.
IMAGE_KINDS = ("preview", "full")

# What a reviewer reads for each state that has no preview.
STATE_EXPLANATIONS = {
    "receiving": "Still arriving from the citizen.",
    "received": "Received; waiting for the integrity check and virus scan.",
    "scanning": "Being checked and virus-scanned.",
    "clean": "Scanned clean; previews are being made.",
    "processing": "Scanned clean; previews are being made.",
    "infected": "The virus scanner found malware. The file is kept byte-exact and is never previewed or shared.",
    "unscannable": "The file could not be scanned (too large or over a scanner limit). It is not treated as clean "
                   "and is not previewed until a recorded human decision.",
    "rejected": "Not an allowed file type (checked from its content). Not previewed.",
    "integrity_alarm": "The file's SHA-256 re-computed by the worker differs from the one taken at upload. "
                       "Not previewed; treat as an integrity incident.",
    "failed": "Making previews failed. The original is kept; the reason is below.",
    "purged": "The bytes were destroyed under retention or a legal order. The record and hash remain.",
}


# One size formatter for every staff page (i15 item 5: sizes in one unit everywhere).
_fmt_bytes = context.format_bytes


def _flatten(prefix: str, value: Any, out: list[tuple[str, str]], depth: int = 0) -> None:
    """Metadata (EXIF, ffprobe) as label/value rows; attacker-controlled text stays text
    (autoescaped in the template) and is length-capped here (BF-09)."""
    if len(out) >= 200:
        return
    if isinstance(value, dict) and depth < 4:
        for k, v in list(value.items())[:100]:
            _flatten(f"{prefix}.{k}" if prefix else str(k), v, out, depth + 1)
    elif isinstance(value, list) and depth < 4:
        for i, v in enumerate(value[:20]):
            _flatten(f"{prefix}[{i}]", v, out, depth + 1)
    else:
        text = "" if value is None else str(value)
        out.append((prefix[:120], text[:500] + ("…" if len(text) > 500 else "")))


@dataclass
class ItemView:
    item: EvidenceItem
    report: Report
    submission: Submission | None
    derivatives: dict[str, Derivative]
    events: list[CustodyEvent]
    notes: list[dict[str, Any]]
    tags: list[str]
    shares: list[dict[str, Any]]
    partners: list[tuple[str, str]]
    metadata_rows: list[tuple[str, str]]
    is_partner: bool = False
    can: dict[str, bool] = field(default_factory=dict)

    @property
    def viewable(self) -> bool:
        return self.item.state in VIEWABLE

    @property
    def media(self) -> str:
        if not self.viewable:
            return "none"
        if "proxy" in self.derivatives:
            return "video"
        if "preview" in self.derivatives:
            return "image"
        return "none"

    @property
    def terminal(self) -> bool:
        return self.item.state in TERMINAL

    @property
    def stills(self) -> list[Derivative]:
        """Stills saved from the video ("save this frame"), in time order."""
        found = [d for kind, d in self.derivatives.items() if stills.is_still_kind(kind)]
        return sorted(found, key=lambda d: float(d.kind.removeprefix("still-")))

    @property
    def frame_rate(self) -> float:
        """Frames per second of the video (ffprobe's average rate), for frame stepping;
        25 when unknown."""
        for stream in (self.item.media_metadata or {}).get("streams") or []:
            if isinstance(stream, dict) and stream.get("type") == "video":
                num, _, den = str(stream.get("frame_rate") or "").partition("/")
                try:
                    rate = float(num) / float(den or 1)
                except (ValueError, ZeroDivisionError):
                    continue
                if 1 <= rate <= 1000:
                    return rate
        return 25.0


def still_time(kind: str) -> str:
    """``still-75.400`` -> ``1:15.400``."""
    return clock(float(kind.removeprefix("still-")))


def notes_for(session: Session, item_id: str) -> list[dict[str, Any]]:
    """Current notes, newest first, each with the versions it superseded."""
    rows = list(session.exec(
        select(Note, col(User.email)).join(User, col(User.id) == col(Note.author_id), isouter=True)
        .where(col(Note.item_id) == item_id).order_by(col(Note.created_at), col(Note.id))
    ).all())
    by_id = {note.id: (note, email) for note, email in rows}
    superseded = {note.supersedes_id for note, _ in rows if note.supersedes_id}
    current = []
    for note, email in reversed(rows):
        if note.id in superseded:
            continue
        history: list[dict[str, Any]] = []
        prev = note.supersedes_id
        while prev and prev in by_id and len(history) < 50:
            old, old_email = by_id[prev]
            history.append({"note": old, "author": old_email})
            prev = old.supersedes_id
        current.append({"note": note, "author": email, "history": history})
    return current


def shares_for(session: Session, *, item: EvidenceItem | None, report_id: str) -> list[dict[str, Any]]:
    q = select(Share).where(col(Share.report_id) == report_id)
    q = q.where(col(Share.item_id) == item.id) if item is not None else q.where(col(Share.item_id).is_(None))
    out = []
    for share in session.exec(q.order_by(col(Share.created_at).desc())):
        if share.partner_org_id:
            org = session.get(Organisation, share.partner_org_id)
            grantee = f"Organisation: {org.name}" if org else "Organisation (removed)"
        else:
            u = session.get(User, share.partner_user_id) if share.partner_user_id else None
            grantee = f"Partner user: {u.email}" if u else "User (removed)"
        out.append({"share": share, "grantee": grantee})
    from reviewer_ui.share_receipts import annotate

    return annotate(session, out)  # acknowledged at, what the partner saw (issue 15 item 3)


def partner_choices(session: Session) -> list[tuple[str, str]]:
    """(value, label) for the share form: partner organisations, then partner users (one
    statement: the item page runs on every view)."""
    orgs: Any = sa_select(literal("org").label("kind"), col(Organisation.id).label("id"), col(Organisation.name).label("label")) \
        .where(col(Organisation.is_partner).is_(True))
    users: Any = sa_select(literal("user").label("kind"), col(User.id).label("id"), col(User.email).label("label")) \
        .where(col(User.role) == Role.PARTNER, col(User.disabled).is_(False))
    rows = session.connection().execute(
        union_all(orgs, users).order_by(literal_column("kind"), literal_column("label")).limit(500)
    )
    return [(f"{kind}:{ident}", f"{'Organisation' if kind == 'org' else 'Partner user'}: {label}")
            for kind, ident, label in rows]


def load_item_view(request: Request, item_id: str) -> ItemView:
    ctx = context.get(request)
    user = permissions.current_user(request)
    with ctx.db.read() as session:
        item = permissions.require_item(request, session, item_id, "item.view")
        report = session.get(Report, item.report_id)
        assert report is not None
        is_partner = str(user.role) == Role.PARTNER
        derivatives = {d.kind: d for d in session.exec(
            select(Derivative).where(col(Derivative.item_id) == item.id))}
        # A partner gets no citizen statement, notes or sharing details (AC-04).
        submission = session.get(Submission, item.submission_id) if item.submission_id and not is_partner else None
        events = list(session.exec(
            select(CustodyEvent).where(col(CustodyEvent.item_id) == item.id)
            .order_by(col(CustodyEvent.seq)).limit(TIMELINE_LIMIT)
        ))
        notes = [] if is_partner else notes_for(session, item.id)
        tags = [t for t in session.exec(select(col(ItemTag.tag)).where(col(ItemTag.item_id) == item.id).order_by(col(ItemTag.tag)))]
        can = {
            "triage": permissions.can_act(user, "triage"),
            "note": permissions.can_act(user, "note.add"),
            "tag": permissions.can_act(user, "tag.add"),
            "share": permissions.can_act(user, "share.create"),
            "download": permissions.can_download_original(session, user, item, now=ctx.clock(),
                                                          unit_access=ctx.settings.officer_unit_access),
        }
        shares = shares_for(session, item=item, report_id=report.id) if can["share"] else []
        partners = partner_choices(session) if can["share"] else []
    rows: list[tuple[str, str]] = []
    _flatten("", item.media_metadata or {}, rows)
    return ItemView(item=item, report=report, submission=submission, derivatives=derivatives, events=events,
                    notes=notes, tags=tags, shares=shares, partners=partners, metadata_rows=rows,
                    is_partner=is_partner, can=can)


async def item_page(request: Request, *, download_error: str | None = None, form_error: str | None = None,
                    status_code: int = 200, landing: bool = False) -> Response:
    """The item page. ``landing``: a GET that may be the redirect after a change
    (``reviewer_ui.visits``); any other render (a form's error page) is a view."""
    ctx = context.get(request)
    item_id = request.path_params["item_id"]
    done: str | None = None

    def load_and_record() -> ItemView | partner.PartnerItemView:
        nonlocal done
        # The view's reads and its custody event in one worker call (a thread hop costs a
        # wake-up; under upload load, a wait for a CPU), the session check first of all.
        # A refusal raises before the event.
        if partner.is_partner(request):
            # A partner's page is built from its own field list, never this staff view
            # with parts hidden (AC-04, reviewer_ui/partner.py).
            return partner.load_and_record(request, item_id)
        view = load_item_view(request, item_id)
        # AU-03, i15 item 4: one item.viewed per visit. The redirect after a change this
        # session just made (its own event written) is that change's answer, not a new
        # visit; the one-shot mark is server-side, so a client cannot forge it.
        done = visits.take(request, f"item:{view.item.id}") if landing else None
        if done is None:
            audit.record_sync(ctx, request, "item.viewed", report_id=view.item.report_id, item_id=view.item.id)
            # The stills the page shows (poster, thumbnail; a photo's preview and
            # full-resolution copy: seeing the page is seeing the photo) are covered by
            # that event (reviewer_ui.coverage). A video's proxy is not: its first read
            # in this visit, when playback starts, writes media.stream.
            coverage.page_showed(request, [view.item.id], ["poster", "thumbnail", *IMAGE_KINDS,
                                                            *(d.kind for d in view.stills)])
            coverage.forget(request, view.item.id, ["proxy"])
        return view

    view = await ctx.run_sync(load_and_record)
    if isinstance(view, partner.PartnerItemView):
        return partner.render(request, view, download_error=download_error, status_code=status_code)
    user = permissions.current_user(request)
    now = ctx.clock()
    return ctx.render(
        request, "item.html", status_code=status_code, view=view, item=view.item, report=view.report,
        explanation=STATE_EXPLANATIONS.get(view.item.state, ""), fmt_bytes=_fmt_bytes,
        watermark=f"{user.display_name or user.email} · {local_text(now, ctx.settings.time_zone)}",
        now=now, errors=await form_errors.casework(request, form_error, download_error), done=done,
        still_time=still_time, describe=custody_words.describe,
    )


async def item_page_get(request: Request) -> Response:
    return await item_page(request, landing=True)


async def progress_json(request: Request) -> Response:
    ctx = context.get(request)
    item_id = request.path_params["item_id"]

    def load() -> EvidenceItem:
        with ctx.db.read() as session:
            return permissions.require_item(request, session, item_id, "item.view")

    item = await ctx.run_sync(load)
    if partner.is_partner(request):
        return partner.progress(item)  # the partner fields only: no triage (AC-04)
    return JSONResponse({
        "id": item.id, "state": item.state, "progress": max(0, min(100, item.progress)),
        "verdict": item.verdict, "triage": item.triage, "terminal": item.state in TERMINAL,
    })


def _back(item_id: str, anchor: str = "") -> RedirectResponse:
    return RedirectResponse(f"/items/{item_id}{anchor}", status_code=303)


async def triage(request: Request) -> Response:
    ctx = context.get(request)
    item_id = request.path_params["item_id"]
    form = await request.form()
    decision = str(form.get("decision") or "")
    reason = str(form.get("reason") or "").strip()

    def apply() -> str | None:
        with ctx.db.write() as session:
            item = permissions.require_item(request, session, item_id, "triage")
            if decision not in (Triage.ACCEPTED, Triage.DECLINED):
                return "Choose accept or decline."
            if not reason or len(reason) > TRIAGE_REASON_MAX:
                return f"Give a reason (up to {TRIAGE_REASON_MAX} characters)."
            before = item.triage
            item.triage = decision
            item.triage_reason = reason
            item.updated_at = utcnow()
            session.add(item)
            audit.record_in(ctx, session, request, "item.triage", report_id=item.report_id, item_id=item.id,
                            detail={"from": before, "to": decision, "reason": reason})
        return None

    error = await ctx.run_sync(apply)
    if error:
        return await item_page(request, form_error=error, status_code=400)
    visits.landed(request, f"item:{item_id}", f"Decision recorded: {decision}.")
    return _back(item_id, "#triage")


async def add_note(request: Request) -> Response:
    ctx = context.get(request)
    item_id = request.path_params["item_id"]
    form = await request.form()
    body = str(form.get("body") or "").strip()
    supersedes = str(form.get("supersedes") or "") or None

    def apply() -> str | None:
        with ctx.db.write() as session:
            item = permissions.require_item(request, session, item_id, "note.add")
            user = permissions.current_user(request)
            if not body or len(body) > NOTE_MAX:
                return f"A note is 1 to {NOTE_MAX} characters."
            if supersedes is not None:
                old = session.get(Note, supersedes)
                if old is None or old.item_id != item.id:
                    return "That note is not on this item."
                already = session.exec(select(col(Note.id)).where(col(Note.supersedes_id) == old.id)).first()
                if already is not None:
                    return "That note has already been edited; edit its latest version."
            note = Note(report_id=item.report_id, item_id=item.id, author_id=user.id, body=body,
                        supersedes_id=supersedes)
            session.add(note)
            session.flush()
            # The ledger keeps the note's hash, not its text: notes are internal and the
            # ledger travels in export bundles (AC-04).
            audit.record_in(ctx, session, request, "note.edited" if supersedes else "note.added",
                            report_id=item.report_id, item_id=item.id,
                            detail={"note_id": note.id, "supersedes": supersedes,
                                    "sha256": hashlib.sha256(body.encode("utf-8")).hexdigest()})
        return None

    error = await ctx.run_sync(apply)
    if error:
        return await item_page(request, form_error=error, status_code=400)
    visits.landed(request, f"item:{item_id}", "New version of the note saved." if supersedes else "Note added.")
    return _back(item_id, "#notes")


async def notes_page(request: Request) -> Response:
    """Every version of every note on the item (the append-only history)."""
    ctx = context.get(request)
    item_id = request.path_params["item_id"]

    def load() -> tuple[EvidenceItem, list[tuple[Note, str | None]]]:
        with ctx.db.read() as session:
            item = permissions.require_item(request, session, item_id, "item.view")
            if str(permissions.current_user(request).role) == Role.PARTNER:
                # Notes are internal: a partner with a share of the item still gets the
                # uniform 404 here (AC-04).
                raise permissions.Denied(f"item:{item.id}", report_id=item.report_id, item_id=item.id,
                                         reason="notes.partner")
            rows = list(session.exec(
                select(Note, col(User.email)).join(User, col(User.id) == col(Note.author_id), isouter=True)
                .where(col(Note.item_id) == item.id).order_by(col(Note.created_at), col(Note.id))
            ).all())
            return item, [(n, e) for n, e in rows]

    item, rows = await ctx.run_sync(load)
    return ctx.render(request, "notes.html", item=item, rows=rows)


def normalise_tag(text: str) -> str | None:
    tag = " ".join(text.strip().lower().split())
    return tag if TAG_RE.match(tag) else None


async def change_tag(request: Request) -> Response:
    ctx = context.get(request)
    item_id = request.path_params["item_id"]
    remove = request.url.path.endswith("/remove")
    form = await request.form()
    tag = normalise_tag(str(form.get("tag") or ""))
    changed = False

    def apply() -> str | None:
        nonlocal changed
        with ctx.db.write() as session:
            item = permissions.require_item(request, session, item_id, "tag.add")
            if tag is None:
                return "A tag is 1 to 64 letters, digits, spaces, - or _."
            user = permissions.current_user(request)
            existing = session.get(ItemTag, (item.id, tag))
            if remove and existing is not None:
                session.delete(existing)
                changed = True
                audit.record_in(ctx, session, request, "tag.removed", report_id=item.report_id, item_id=item.id,
                                detail={"tag": tag})
            elif not remove and existing is None:
                session.add(ItemTag(item_id=item.id, tag=tag, created_by=user.id))
                changed = True
                audit.record_in(ctx, session, request, "tag.added", report_id=item.report_id, item_id=item.id,
                                detail={"tag": tag})
        return None

    error = await ctx.run_sync(apply)
    if error:
        return await item_page(request, form_error=error, status_code=400)
    if changed:  # only a change with its own custody event answers for the next view
        visits.landed(request, f"item:{item_id}", f"Tag {'removed' if remove else 'added'}: {tag}.")
    return _back(item_id, "#tags")


def routes() -> list[Route]:
    return [
        Route("/items/{item_id}", item_page_get, methods=["GET"], name="item"),
        Route("/items/{item_id}/progress.json", progress_json, methods=["GET"], name="item_progress"),
        Route("/items/{item_id}/triage", triage, methods=["POST"], name="item_triage"),
        Route("/items/{item_id}/notes", add_note, methods=["POST"], name="item_note_add"),
        Route("/items/{item_id}/notes", notes_page, methods=["GET"], name="item_notes"),
        Route("/items/{item_id}/tags", change_tag, methods=["POST"], name="item_tag_add"),
        Route("/items/{item_id}/tags/remove", change_tag, methods=["POST"], name="item_tag_remove"),
    ]
