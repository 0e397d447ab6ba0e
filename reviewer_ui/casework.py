"""Reports, links, submissions, evidence, the viewer and sharing (owned by casework).

``routes(ctx)`` gathers the casework route modules:

* ``reports``  the report list (search, keyset pages), create, report page, links;
* ``items``    the item page (viewer, metadata, custody timeline), progress JSON,
               triage, notes, tags;
* ``media``    derivatives with HTTP Range, the original as an audited download;
* ``sharing``  shares to partners and their revocation;
* ``assignment`` who works a report (assign, reassign) and "My reports".
* ``stills``   "save this frame" of a video (made by the worker).

Every handler authorises its own request through ``permissions`` (``require_item`` /
``require_report``), so a refusal is the same 404 and an ``access.denied`` event on
every endpoint.
"""

from __future__ import annotations

from starlette.routing import BaseRoute

from reviewer_ui import assignment, exports, item_filters, items, media, reports, sharing, stills
from reviewer_ui.context import ReviewContext


def routes(ctx: ReviewContext) -> list[BaseRoute]:
    from reviewer_ui import retention

    return [*assignment.routes(), *item_filters.routes(), *reports.routes(), *items.routes(), *media.routes(),
            *sharing.routes(), *exports.routes(), *retention.routes(), *stills.routes()]
