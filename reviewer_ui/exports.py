""""Export for court" on the report page (issue 13 item 1): the same bundle as
``exhibit export``, streamed to the browser in constant memory.

Who: admins, and officers on the reports they may see (the ``export`` row of the
permission matrix; partners and auditors never). A reason is required and a fresh TOTP
code (step-up, AC-13), as for an original download: a bundle carries every original of
the report.

"Download as an evidence bundle" on the item page (issue 13 item 3): one exhibit, for
whoever may download its original (``item.download``). A partner, through a live share
with downloads allowed, gets the partner's bundle (``storage.export.PartnerScope``: the
same format, nothing of the force's casework). The request is recorded before the first byte leaves (``export.requested``,
AU-10), the finished bundle with its SHA-256 after the last (``export.created``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from reviewer_ui import audit, context, permissions, stepup
from reviewer_ui.media import REASON_MAX, REASON_MIN
from storage import export, ledger
from storage.models import EvidenceItem, Organisation, Report, Role

log = logging.getLogger(__name__)

HEADERS = {
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "sandbox; default-src 'none'",
}


class _Pieces:
    """What the zip writer wrote since the last drain."""

    def __init__(self) -> None:
        self._buf = bytearray()

    def write(self, data: bytes) -> int:
        self._buf += data
        return len(data)

    def flush(self) -> None:
        return None

    def take(self) -> bytes:
        data, self._buf = bytes(self._buf), bytearray()
        return data


def _stream(request: Request, *, reference: str, report_id: str, reason: str, item_ids: list[str] | None,
            partner: export.PartnerScope | None, filename: str) -> Response:
    """Stream the bundle to the client; ``export.created`` with its SHA-256 after the last
    byte. The caller has checked permission and step-up and recorded ``export.requested``."""
    ctx = context.get(request)
    assert ctx.settings.signing_key_file is not None
    key_file = ctx.settings.signing_key_file
    actor = audit.actor_of(request)
    pieces = _Pieces()
    # Back-pressure: at most a few pieces wait for a slow client (memory stays flat).
    queue: asyncio.Queue[bytes | None] = asyncio.Queue(maxsize=4)

    async def drain() -> None:
        data = pieces.take()
        if data:
            await queue.put(data)

    async def produce() -> None:
        try:
            key = await ctx.run_sync(lambda: ledger.load_or_create_signing_key(key_file))
            result = await export.write_bundle(ctx.db, ctx.store, reference, pieces, key=key, exported_by=actor,
                                               reason=reason, item_ids=item_ids, partner=partner, drain=drain)
            await drain()
            detail = export.export_detail(result, reason)
            if partner is not None:
                detail["audience"] = "partner"
            await audit.record(ctx, request, "export.created", report_id=report_id,
                               item_id=item_ids[0] if item_ids and len(item_ids) == 1 else None, detail=detail)
        finally:
            await queue.put(None)

    async def body() -> AsyncIterator[bytes]:
        task = asyncio.create_task(produce())
        try:
            while (piece := await queue.get()) is not None:
                yield piece
            # An error after the first byte (a broken ledger, an original that no
            # longer matches its hash) aborts the transfer: the client never gets a
            # cleanly ended, partial bundle.
            await task
        finally:
            if not task.done():
                task.cancel()

    headers = {**HEADERS, "Content-Disposition": f'attachment; filename="{filename}"'}
    return StreamingResponse(body(), headers=headers, media_type="application/zip")


async def export_report(request: Request) -> Response:
    ctx = context.get(request)
    report_id = request.path_params["report_id"]
    form = await request.form()
    reason = str(form.get("reason") or "").strip()

    def load() -> Report:
        with ctx.db.read() as session:
            report = permissions.require_report(request, session, report_id, "export")
            session.expunge(report)
            return report

    report = await ctx.run_sync(load)
    if not REASON_MIN <= len(reason) <= REASON_MAX:
        from reviewer_ui.reports import report_page  # one module renders the report page

        return await report_page(request, export_error=f"To export, give a reason of {REASON_MIN} to {REASON_MAX} "
                                 "characters.", status_code=400)
    # Step-up (AC-13): a stolen or unattended session alone cannot take a report's
    # evidence away. The form (the reason) is held on the code page and the export is
    # carried out in the request that brings the code (i15 item 5: it was lost on the
    # way through /reauth and nothing downloaded).
    gate = await stepup.gate(request, {k: str(v) for k, v in form.items()},
                             what=f"export {report.reference} for court, with the reason: {reason}",
                             cancel=f"/reports/{report.id}#export", why="Exporting a report's evidence")
    if isinstance(gate, Response):
        return gate
    await audit.record(ctx, request, "export.requested", report_id=report.id, detail={"reason": reason})
    reference = export.sanitise_name(report.reference.replace("/", "-"))
    return stepup.finish(_stream(request, reference=report.reference, report_id=report.id, reason=reason,
                                 item_ids=None, partner=None, filename=f"exhibit-{reference}.zip"), request, gate)


async def export_item(request: Request) -> Response:
    """One exhibit as a bundle, for whoever may download its original: a partner through
    a live share with downloads allowed (issue 13 item 3) gets the partner's bundle, staff
    the full one. Same reason and step-up as the original download."""
    ctx = context.get(request)
    item_id = request.path_params["item_id"]
    form = await request.form()
    reason = str(form.get("reason") or "").strip()

    def load() -> tuple[EvidenceItem, Report, export.PartnerScope | None]:
        with ctx.db.read() as session:
            # "item.download" also applies can_download_original: for a partner, a live
            # share of this item or its report with allow_download (AC-04, AC-05).
            item = permissions.require_item(request, session, item_id, "item.download")
            report = session.get(Report, item.report_id)
            assert report is not None
            scope = None
            user = permissions.current_user(request)
            if str(user.role) == Role.PARTNER:
                shares = permissions.live_shares_of_item(session, user, item, ctx.clock())
                org = session.get(Organisation, user.org_id) if user.org_id else None
                scope = export.PartnerScope(recipient=org.name if org is not None else user.email,
                                            grant_location=any(s.grant_location for s in shares if s.allow_download))
            session.expunge(item)
            session.expunge(report)
            return item, report, scope

    item, report, scope = await ctx.run_sync(load)
    if not REASON_MIN <= len(reason) <= REASON_MAX:
        from reviewer_ui.items import item_page  # one module renders the item page

        return await item_page(request, download_error=f"Give a reason of {REASON_MIN} to {REASON_MAX} characters.",
                               status_code=400)
    # Step-up (AC-13), as for the original itself: a bundle carries it. The form is held
    # on the code page, as for the original (i15 item 5).
    gate = await stepup.gate(request, {k: str(v) for k, v in form.items()},
                             what=f"download {item.original_filename or item.id} as an evidence bundle, "
                                  f"with the reason: {reason}",
                             cancel=f"/items/{item.id}#original", why="Downloading an evidence bundle")
    if isinstance(gate, Response):
        return gate
    await audit.record(ctx, request, "export.requested", report_id=report.id, item_id=item.id,
                       detail={"reason": reason, "audience": "partner" if scope is not None else "force"})
    return stepup.finish(_stream(request, reference=report.reference, report_id=report.id, reason=reason,
                                 item_ids=[item.id], partner=scope, filename=f"exhibit-{item.id}.zip"), request, gate)


def routes() -> list[Route]:
    return [
        Route("/reports/{report_id}/export", export_report, methods=["POST"], name="report_export"),
        Route("/items/{item_id}/bundle", export_item, methods=["POST"], name="item_bundle"),
    ]
