"""Retention and legal holds in the reviewer UI (issue 14 items 1, 2 and 5): the report
page's retention section (``_retention.html``: the date and its rule, the set form, the
holds with their add and release forms) and the admin page ``/admin/retention`` (live
holds, and what falls due in the next N days). The domain is ``storage.retention``.

Who may do what is in the permission matrix (``retention.set``, ``hold.add``,
``hold.remove``, ``retention.review``; reasons in reviewer_ui/permissions.py). Every
refusal is the uniform 404 with an ``access.denied`` event; every change is a custody
event naming the user and their reason.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from sqlmodel import col, select
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from reviewer_ui import audit, context, permissions, stepup
from storage import retention as domain
from storage.errors import DomainError
from storage.models import EvidenceItem, LegalHold, Report, ReportRetention, Role, User

MAX_FIELD = 1000
MAX_DAYS = 3660


@dataclass
class Panel:
    until: dt.datetime
    rule: str
    set_by: str | None
    holds: list[dict[str, Any]] = field(default_factory=list)
    can_set: bool = False
    can_hold: bool = False
    can_release: bool = False
    shorten: bool = False


def panel(request: Request, report: Report) -> Panel | None:
    """The retention section of ``report``'s page for the signed-in user, or None for a
    partner (they see neither dates nor holds)."""
    ctx = context.get(request)
    user = permissions.current_user(request)
    if str(user.role) == Role.PARTNER:
        return None
    policy = domain.Policy.from_settings(ctx.settings)
    with ctx.db.read() as s:
        dated = domain.report_date(policy, report, s.get(ReportRetention, report.id))
        holds = s.exec(select(LegalHold).where(col(LegalHold.report_id) == report.id,
                                               col(LegalHold.released_at).is_(None))
                       .order_by(col(LegalHold.placed_at))).all()
        return Panel(until=dated.until, rule=dated.rule, set_by=dated.set_by,
                     holds=[domain.hold_dict(h, report.reference) for h in holds],
                     can_set=permissions.can_act(user, "retention.set"),
                     can_hold=permissions.can_act(user, "hold.add"),
                     can_release=permissions.can_act(user, "hold.remove"),
                     shorten=str(user.role) == Role.ADMIN)


async def _form(request: Request) -> dict[str, str]:
    form = await request.form(max_files=0, max_fields=10, max_part_size=8 * 1024)
    return {k: v.strip()[:MAX_FIELD] for k, v in form.items() if isinstance(v, str)}


def _parse_day(text: str) -> dt.datetime | None:
    try:
        day = dt.date.fromisoformat(text)
    except ValueError:
        return None
    return dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC)


async def _again(request: Request, error: str) -> Response:
    from reviewer_ui.reports import report_page

    return await report_page(request, form_error=error, status_code=400)


async def set_date(request: Request) -> Response:
    ctx = context.get(request)
    await ctx.check_session()
    user = permissions.current_user(request)
    report_id = str(request.path_params["report_id"])[:64]
    form = await _form(request)
    until = _parse_day(form.get("until", ""))
    policy = domain.Policy.from_settings(ctx.settings)

    def apply() -> str | None:
        with ctx.db.write() as s:
            report = permissions.require_report(request, s, report_id, "retention.set")
            if until is None:  # judged after the access check: says nothing of the report
                return "Retention date: enter a date like 2031-12-31."
            # MoPI: bringing a disposal forward is a review decision for the force's
            # records function (an admin), not for the investigating officer, who may
            # only keep evidence longer. Threat: an officer destroying evidence early,
            # e.g. in a complaint against themselves.
            domain.set_retention(ctx.db, s, policy, report, until, reason=form.get("reason", ""),
                                 actor=user.email, allow_shorten=str(user.role) == Role.ADMIN,
                                 request_id=audit.request_id_of(request))
            return None

    try:
        error = await ctx.run_sync(apply)
    except DomainError as exc:
        error = exc.message
    if error:
        return await _again(request, error)
    await domain.apply_now(ctx.db, ctx.store, policy)
    return RedirectResponse(f"/reports/{report_id}#retention", status_code=303)


def _target(s: Any, request: Request, report_id: str, item_id: str, action: str) -> tuple[Report, EvidenceItem | None]:
    report = permissions.require_report(request, s, report_id, action)
    if not item_id:
        return report, None
    item = permissions.require_item(request, s, item_id, action)
    if item.report_id != report.id:
        raise permissions.Denied(f"item:{item_id[:64]}", report_id=report.id, reason=action)
    return report, item


def _hold_action(place: bool) -> Any:
    action = "hold.add" if place else "hold.remove"

    async def handler(request: Request) -> Response:
        ctx = context.get(request)
        await ctx.check_session()
        user = permissions.current_user(request)
        report_id = str(request.path_params["report_id"])[:64]
        form = await _form(request)
        cookie: str | None = None
        if not place:
            # Releasing a hold lets evidence be destroyed: like an original download or an
            # account change, it needs a TOTP code from the last few minutes (AC-13), so a
            # stolen or unattended admin session cannot do it. The access check comes
            # first, so the code page is never shown for a report one may not touch.
            def check() -> None:
                with ctx.db.read() as s:
                    _target(s, request, report_id, form.get("item_id", "")[:64], action)

            await ctx.run_sync(check)
            gate = await stepup.gate(request, form, what="release a legal hold")
            if isinstance(gate, Response):
                return gate
            cookie = gate

        def apply() -> None:
            with ctx.db.write() as s:
                report, item = _target(s, request, report_id, form.get("item_id", "")[:64], action)
                if place:
                    domain.place_hold(ctx.db, s, report, item, reason=form.get("reason", ""), actor=user.email,
                                      request_id=audit.request_id_of(request))
                else:
                    # Releasing a hold lets disposal go ahead: admins only (issue 14 item 2).
                    domain.release_hold(ctx.db, s, report, item, reason=form.get("reason", ""), actor=user.email,
                                        request_id=audit.request_id_of(request))

        try:
            await ctx.run_sync(apply)
        except DomainError as exc:
            return stepup.finish(await _again(request, exc.message), request, cookie)
        await domain.apply_now(ctx.db, ctx.store, domain.Policy.from_settings(ctx.settings))
        return stepup.finish(RedirectResponse(f"/reports/{report_id}#retention", status_code=303), request, cookie)

    return handler


async def review_page(request: Request) -> Response:
    """Admin: every live hold, and what falls due in the next N days (default 30)."""
    ctx = context.get(request)
    await ctx.check_session()
    user: User = permissions.current_user(request)
    if not permissions.can_act(user, "retention.review"):
        raise permissions.Denied(f"admin:{request.url.path[:80]}", reason="retention.review")
    raw = request.query_params.get("days", "30")
    days = int(raw) if raw.isdigit() and int(raw) <= MAX_DAYS else 30
    policy = domain.Policy.from_settings(ctx.settings)

    def load() -> tuple[list[dict[str, Any]], list[domain.DueItem]]:
        with ctx.db.read() as s:
            return domain.list_holds(s), domain.due(s, policy, within_seconds=days * 86400, now=ctx.clock(),
                                                    limit=500)

    holds, due = await ctx.run_sync(load)
    return ctx.render(request, "admin_retention.html", holds=holds, due=due, days=days)


def routes() -> list[Route]:
    return [
        Route("/reports/{report_id}/retention", set_date, methods=["POST"]),
        Route("/reports/{report_id}/holds", _hold_action(True), methods=["POST"]),
        Route("/reports/{report_id}/holds/release", _hold_action(False), methods=["POST"]),
        Route("/admin/retention", review_page, methods=["GET"]),
    ]
