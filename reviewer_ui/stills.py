"""'Save this frame' from the video viewer (i15 item 5).

The officer's form (the player fills in the presented frame's time; without JavaScript
the officer types it) asks the worker for a still: one transaction enqueues the job and
appends ``item.still_requested`` (``storage.stills``). The worker makes it from the proxy
and records ``item.still_saved`` with the argv (``processing.stills``); the item page then
lists the still with its provenance, served like every derivative (``reviewer_ui.media``).

A still is casework made from evidence, like a note: the ``note.add`` permission, on an
item the officer may work (AC-02); the uniform 404 otherwise.
"""

from __future__ import annotations

from sqlmodel import col, select
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from reviewer_ui import audit, context, display, permissions, visits
from storage import stills
from storage.lifecycle import VIEWABLE
from storage.models import Derivative


async def save_still(request: Request) -> Response:
    ctx = context.get(request)
    item_id = request.path_params["item_id"]
    form = await request.form()
    at = stills.parse_at(str(form.get("at") or ""))

    def apply() -> str | None:
        with ctx.db.write() as session:
            item = permissions.require_item(request, session, item_id, "note.add")
            proxy = session.exec(select(col(Derivative.id)).where(
                col(Derivative.item_id) == item.id, col(Derivative.kind) == stills.SOURCE_KIND)).first()
            if proxy is None or item.state not in VIEWABLE:
                return "Only a video that has its playable copy can have a frame saved."
            if at is None:
                return "Give the time of the frame in seconds, for example 12.5."
            duration = (item.media_metadata or {}).get("duration_seconds")
            if isinstance(duration, (int, float)) and float(at) > float(duration):
                return "That time is after the end of the video."
            stills.request_still(ctx.db, session, item, at, actor=permissions.current_user(request).email,
                                 request_id=audit.request_id_of(request))
        return None

    error = await ctx.run_sync(apply)
    if error:
        from reviewer_ui.items import item_page  # one module renders the item page

        return await item_page(request, form_error=error, status_code=400)
    assert at is not None
    visits.landed(request, f"item:{item_id}",
                  f"Saving the frame at {display.clock(float(at))}. It appears under Stills when it is made.")
    return RedirectResponse(f"/items/{item_id}#stills", status_code=303)


def routes() -> list[Route]:
    return [Route("/items/{item_id}/stills", save_still, methods=["POST"], name="item_still")]
