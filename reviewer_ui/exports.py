""""Export for court" on the report page (issue 13 item 1): the same bundle as
``exhibit export``, streamed to the browser in constant memory.

Who: admins, and officers on the reports they may see (the ``export`` row of the
permission matrix; partners and auditors never). A reason is required and a fresh TOTP
code (step-up, AC-13), as for an original download: a bundle carries every original of
the report. The request is recorded before the first byte leaves (``export.requested``,
AU-10), the finished bundle with its SHA-256 after the last (``export.created``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response, StreamingResponse
from starlette.routing import Route

from reviewer_ui import audit, context, permissions
from reviewer_ui.media import REASON_MAX, REASON_MIN
from storage import export, ledger
from storage.models import Report

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
    if not permissions.recently_verified(request):
        # Step-up (AC-13): a stolen or unattended session alone cannot take a report's
        # evidence away.
        return RedirectResponse(permissions.step_up_url(f"/reports/{report.id}#export"), status_code=303)
    await audit.record(ctx, request, "export.requested", report_id=report.id, detail={"reason": reason})
    assert ctx.settings.signing_key_file is not None
    key_file = ctx.settings.signing_key_file
    key = await ctx.run_sync(lambda: ledger.load_or_create_signing_key(key_file))
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
            result = await export.write_bundle(ctx.db, ctx.store, report.reference, pieces, key=key,
                                               exported_by=actor, reason=reason, drain=drain)
            await drain()
            await audit.record(ctx, request, "export.created", report_id=report.id,
                               detail=export.export_detail(result, reason))
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

    reference = export.sanitise_name(report.reference.replace("/", "-"))
    headers = {**HEADERS, "Content-Disposition": f'attachment; filename="exhibit-{reference}.zip"'}
    return StreamingResponse(body(), headers=headers, media_type="application/zip")


def routes() -> list[Route]:
    return [Route("/reports/{report_id}/export", export_report, methods=["POST"], name="report_export")]
