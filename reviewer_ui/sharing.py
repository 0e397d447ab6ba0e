"""Shares: grant a partner organisation or one partner user an item or a whole report,
with an expiry and a download flag; revoke (DESIGN.md §4 "Sharing").

The grant itself is only a row; what a partner may see is decided on every request by
``permissions.visible_items_query`` from the live shares, so a revocation or an expiry
acts on the partner's very next request (AC-03). Only items that are ready (scanned clean
and processed) can be shared: infected, unscannable or unfinished evidence never leaves
(AC-14). Every grant and revocation is a custody event in the same transaction.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from sqlmodel import Session
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from reviewer_ui import audit, confirm, context, forms, permissions, stepup, visits
from storage import ledger
from storage.models import EvidenceItem, Organisation, Report, Role, Share, User

MAX_SHARE_DAYS = 365
SHAREABLE_STATES = frozenset({"ready"})


class ShareRefused(Exception):
    """A share the form asked for that may not be made (bad partner, state, expiry)."""


def _grantee(session: Session, value: str) -> tuple[str | None, str | None]:
    """``org:<id>`` or ``user:<id>`` -> (partner_org_id, partner_user_id). Only partner
    organisations and enabled partner users can receive a share."""
    kind, _, ident = value.partition(":")
    if kind == "org" and ident:
        org = session.get(Organisation, ident)
        if org is not None and org.is_partner:
            return org.id, None
    if kind == "user" and ident:
        user = session.get(User, ident)
        if user is not None and str(user.role) == Role.PARTNER and not user.disabled:
            return None, user.id
    raise ShareRefused("Choose a partner organisation or partner user.")


def _days(text: str) -> int:
    # Strict parse (forms.number_field): "1e400", "inf", "-1" are a named 400, never a 500.
    try:
        return forms.number_field({"days": text}, "days", label="Expiry in days", kind="count", default="",
                                  low=1, high=MAX_SHARE_DAYS, rule=f"a whole number of days from 1 to {MAX_SHARE_DAYS}.")
    except forms.FieldError as exc:
        raise ShareRefused(str(exc)) from None


class StepUpNeeded(Exception):
    """The session's last TOTP is too old for sharing evidence outside the force (AC-13)."""


def make_share(ctx: context.ReviewContext, session: Session, request: Request, *, report: Report,
               item: EvidenceItem | None, partner: str, days: str, allow_download: bool,
               grant_contact: bool = False, grant_location: bool = False) -> Share:
    user = permissions.current_user(request)
    if not permissions.recently_verified(request):
        raise StepUpNeeded()
    if item is not None and item.state not in SHAREABLE_STATES:
        raise ShareRefused("Only evidence that is scanned clean and ready can be shared.")
    org_id, partner_user_id = _grantee(session, partner)
    now = ctx.clock()
    share = Share(report_id=report.id, item_id=item.id if item else None, partner_org_id=org_id,
                  partner_user_id=partner_user_id, allow_download=allow_download,
                  grant_contact=grant_contact, grant_location=grant_location, created_by=user.id,
                  created_at=now, expires_at=now + dt.timedelta(days=_days(days)))
    session.add(share)
    session.flush()
    audit.record_in(ctx, session, request, "share.created", report_id=report.id, item_id=item.id if item else None,
                    subject=f"share:{share.id}",
                    detail={"share_id": share.id, "scope": "item" if item else "report",
                            "partner_org_id": org_id, "partner_user_id": partner_user_id,
                            "allow_download": allow_download, "grant_contact": grant_contact,
                            "grant_location": grant_location, "expires_at": ledger.format_time(share.expires_at)})
    return share


@dataclass(frozen=True)
class ShareForm:
    partner: str
    days: str
    allow_download: bool
    grant_contact: bool  # the citizen's contact details (default off)
    grant_location: bool  # the precise location: place typed, GPS in metadata (default off)


async def _form(request: Request) -> ShareForm:
    form = await request.form()
    return ShareForm(partner=str(form.get("partner") or ""), days=str(form.get("days") or ""),
                     allow_download=form.get("allow_download") == "yes",
                     grant_contact=form.get("grant_contact") == "yes",
                     grant_location=form.get("grant_location") == "yes")


async def _share(
    request: Request,
    target: Callable[[Session], tuple[Report, EvidenceItem | None]],
    back: str,
    error_page: Callable[[str], Awaitable[Response]],
) -> Response:
    """The one flow behind both share forms: resolve the target under the access check,
    make the share in one writing transaction, and answer with a step-up, the page again
    with the refusal, or a redirect back."""
    ctx = context.get(request)
    asked = await _form(request)
    # Step-up (AC-13) before evidence leaves the force: the form is held on the code page
    # and the share is made in the request that brings the code (i15 item 5: it was lost).
    held = {k: str(v) for k, v in (await request.form()).items()}

    def may_share() -> None:  # the uniform 404 (and its event) comes before any code page
        with ctx.db.read() as session:
            target(session)

    await ctx.run_sync(may_share)
    gate = await stepup.gate(request, held, what=f"share this evidence with a partner for {asked.days or '?'} days",
                             cancel=back,
                             why="Sharing evidence outside the force")
    if isinstance(gate, Response):
        return gate

    def apply() -> str | None:
        with ctx.db.write() as session:
            report, item = target(session)
            try:
                make_share(ctx, session, request, report=report, item=item, partner=asked.partner,
                           days=asked.days, allow_download=asked.allow_download,
                           grant_contact=asked.grant_contact, grant_location=asked.grant_location)
            except ShareRefused as exc:  # raised before anything was added
                return str(exc)
        return None

    try:
        error = await ctx.run_sync(apply)
    except StepUpNeeded:  # the gate passed moments ago: only a clock jump gets here
        return RedirectResponse(permissions.step_up_url(back), status_code=303)
    if error:
        return stepup.finish(await error_page(error), request, gate)
    if back.startswith("/items/"):
        # share.created is written: the item page it lands on is its answer, not a new view.
        visits.landed(request, "item:" + back.removeprefix("/items/").split("#")[0],
                      "Shared. The partner can see it until the share expires or is revoked.")
    return stepup.finish(RedirectResponse(back, status_code=303), request, gate)


async def share_item(request: Request) -> Response:
    item_id = request.path_params["item_id"]

    def target(session: Session) -> tuple[Report, EvidenceItem | None]:
        item = permissions.require_item(request, session, item_id, "share.create")
        report = session.get(Report, item.report_id)
        assert report is not None
        return report, item

    async def error_page(error: str) -> Response:
        from reviewer_ui.items import item_page

        return await item_page(request, form_error=error, status_code=409 if "ready" in error else 400)

    return await _share(request, target, f"/items/{item_id}#shares", error_page)


async def share_report(request: Request) -> Response:
    report_id = request.path_params["report_id"]

    def target(session: Session) -> tuple[Report, EvidenceItem | None]:
        return permissions.require_report(request, session, report_id, "share.create"), None

    async def error_page(error: str) -> Response:
        from reviewer_ui.reports import report_page

        return await report_page(request, form_error=error, status_code=400)

    return await _share(request, target, f"/reports/{report_id}#shares", error_page)


async def revoke_share(request: Request) -> Response:
    ctx = context.get(request)
    share_id = request.path_params["share_id"]
    form = await confirm.form_of(request)

    revoked: list[str] = []

    def apply() -> tuple[str, str | None]:
        with ctx.db.write() as session:
            share = session.get(Share, share_id) if len(share_id) <= 64 else None
            if share is None:
                raise permissions.Denied(f"share:{share_id[:64]}", reason="share.revoke")
            if share.item_id:
                permissions.require_item(request, session, share.item_id, "share.revoke")
            else:
                permissions.require_report(request, session, share.report_id, "share.revoke")
            back = f"/items/{share.item_id}#shares" if share.item_id else f"/reports/{share.report_id}#shares"
            if not confirm.given(form) and share.revoked_at is None:
                # Asked first (reviewer_ui.confirm): nothing is done yet.
                org = session.get(Organisation, share.partner_org_id) if share.partner_org_id else None
                person = session.get(User, share.partner_user_id) if share.partner_user_id else None
                return back, (org.name if org else person.email if person else "the partner")
            if share.revoked_at is None:
                share.revoked_at = ctx.clock()
                share.revoked_by = permissions.current_user(request).id
                session.add(share)
                audit.record_in(ctx, session, request, "share.revoked", report_id=share.report_id,
                                item_id=share.item_id, subject=f"share:{share.id}", detail={"share_id": share.id})
                if share.item_id:
                    revoked.append(share.item_id)
            return back, None

    target, partner = await ctx.run_sync(apply)
    if partner is not None:
        return confirm.page(request, form, question=f"Revoke the share with {partner}?",
                            consequence=f"{partner} loses access to what this share gave them at once, including "
                            "anything they have open now.", button="Yes, revoke the share", back=target)
    for item_id in revoked:  # share.revoked is written: the page it lands on is its answer
        visits.landed(request, f"item:{item_id}", "Share revoked. The partner can no longer see it.")
    return RedirectResponse(target, status_code=303)


def routes() -> list[Route]:
    return [
        Route("/items/{item_id}/shares", share_item, methods=["POST"], name="item_share"),
        Route("/reports/{report_id}/shares", share_report, methods=["POST"], name="report_share"),
        Route("/shares/{share_id}/revoke", revoke_share, methods=["POST"], name="share_revoke"),
    ]
