"""The audit desk (issue 15 item 3): search the custody ledger, export a search, see the
chain's health. Admins and auditors (``audit.read`` in the permission matrix); anyone
else gets the uniform 404 and an ``access.denied`` event.

* ``GET /audit`` - the search form (GET, so a search is a bookmark) and one keyset page
  of matching events, newest first, with "older"/"newer" links. Each actor's name is a
  one-click "what did this person see" (their views, stream starts, downloads, exports);
  each item id a "who saw this item". The item page links here too.
* ``POST /audit/export`` - the same search as CSV or JSON, streamed (constant memory for
  any number of events). A POST with the CSRF token: an export is a custody event, and a
  page on another site must not be able to make an auditor's browser write one (AC-06).
* The chain's health: the last full verification (``exhibit audit verify`` or the
  periodic verifier's full walk; "never" when none is recorded), the periodic verifier's
  last round, the last checkpoint's seq, time and age.

Reading the ledger is itself recorded (AU-03, "all access to the logs must be
recorded"): each page of results is an ``audit.searched`` event and each export an
``audit.export`` event, both with the filters, appended before anything is shown or sent
(fail closed, AU-10).
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from starlette.datastructures import FormData, QueryParams
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from reviewer_ui import audit, context, form_errors, permissions
from storage import audit_health, audit_search
from storage.errors import DomainError
from storage.models import User

FIELDS = ("user", "report", "item", "action", "since", "until")
# Which control each refusal is about (the form's ids are "audit-<field>").
ERROR_FIELDS = {"ERR_REPORT_NOT_FOUND": "audit-report", "ERR_ACTION_INVALID": "audit-action",
                "ERR_ITEM_INVALID": "audit-item", "ERR_TIME_INVALID": "audit-since"}
CSV_COLUMNS = ("seq", "at", "actor", "action", "report", "report_id", "item_id", "subject", "detail",
               "request_id", "hash")
# A spreadsheet runs a cell that starts with one of these as a formula. Ledger values carry
# text from citizens and files (a filename, a caption), so an export opened in Excel must
# not become code (CSV injection, OWASP): such a cell is written with a leading quote.
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _require(request: Request) -> User:
    user = permissions.current_user(request)
    if not permissions.can_act(user, "audit.read"):
        raise permissions.Denied("audit", reason="audit.read")
    return user


@dataclass(frozen=True)
class Asked:
    """The search as typed (for the form and links) and as a filter."""

    values: dict[str, str]
    seeing: bool

    def filter(self) -> audit_search.AuditFilter:
        v = self.values
        f = audit_search.make_filter(actor=v["user"], report=v["report"], item_id=v["item"], action=v["action"],
                                     since=v["since"], until=v["until"])
        return audit_search.with_seeing(f) if self.seeing else f

    def query(self, **extra: str | int) -> str:
        params: dict[str, str | int] = {k: v for k, v in self.values.items() if v}
        if self.seeing:
            params["seeing"] = "1"
        params.update(extra)
        return "/audit" + ("?" + urlencode(params) if params else "")


def person_url(actor: str) -> str:
    """"What did this person see": their views, stream starts, downloads, exports."""
    return Asked(values={**dict.fromkeys(FIELDS, ""), "user": actor}, seeing=True).query()


def item_url(item_id: str) -> str:
    """"Who saw this item" (the item page links here too)."""
    return Asked(values={**dict.fromkeys(FIELDS, ""), "item": item_id}, seeing=True).query()


def _asked(source: QueryParams | FormData) -> Asked:
    values = {}
    for name in FIELDS:
        raw = source.get(name)
        values[name] = raw.strip()[:320] if isinstance(raw, str) else ""
    return Asked(values=values, seeing=source.get("seeing") == "1")


def _cursor(text: str | None) -> int | None:
    if not text or not text.isdigit() or len(text) > 18:
        return None
    return int(text)


def _errors(exc: DomainError) -> list[form_errors.FieldError]:
    return [form_errors.FieldError(exc.message, ERROR_FIELDS.get(exc.code))]


async def desk(request: Request) -> Response:
    ctx = context.get(request)
    asked = _asked(request.query_params)
    before, after = _cursor(request.query_params.get("before")), _cursor(request.query_params.get("after"))

    def load() -> tuple[audit_search.AuditPage | None, list[form_errors.FieldError], audit_health.ChainHealth]:
        _require(request)  # in the page's one thread hop, after the session check
        page: audit_search.AuditPage | None = None
        errors: list[form_errors.FieldError] = []
        try:
            f = asked.filter()
            page = audit_search.search(ctx.db, f, before=before, after=after)
            # Before the results are shown: reading the ledger is recorded (AU-03).
            audit.record_sync(ctx, request, "audit.searched", subject="audit",
                              detail={"filters": f.as_dict(), "before": before, "after": after,
                                      "shown": len(page.events)})
        except DomainError as exc:
            errors = _errors(exc)
        with ctx.db.read() as session:
            health = audit_health.chain_health(session, ctx.clock())
        return page, errors, health

    page, errors, health = await ctx.run_sync(load)
    return _page(request, asked, page, errors, health)


def _page(request: Request, asked: Asked, page: audit_search.AuditPage | None,
          errors: list[form_errors.FieldError], health: audit_health.ChainHealth) -> Response:
    """The desk (``audit.html``): the search's results, or the refusal with the form again."""
    return context.get(request).render(
        request, "audit.html", status_code=400 if errors else 200, asked=asked, page=page, errors=errors,
        health=health, age=audit_health.describe_age,
        seeing_actions=audit_search.SEEING_ACTIONS, person_url=person_url, item_url=item_url)


def _csv_cell(value: Any) -> str:
    text = "" if value is None else value if isinstance(value, str) else json.dumps(value, sort_keys=True,
                                                                                      ensure_ascii=False)
    return "'" + text if text.startswith(FORMULA_START) else text


def _csv_lines(rows: Iterator[tuple[Any, str | None]]) -> Iterator[str]:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(CSV_COLUMNS)
    for event, reference in rows:
        row = audit_search.event_row(event, reference)
        writer.writerow([_csv_cell(row[c]) if c != "seq" else row[c] for c in CSV_COLUMNS])
        if buffer.tell() > 64 * 1024:
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue()


def _json_lines(rows: Iterator[tuple[Any, str | None]], filters: dict[str, Any]) -> Iterator[str]:
    yield '{"filters": ' + json.dumps(filters, sort_keys=True) + ', "events": ['
    first = True
    for event, reference in rows:
        yield ("" if first else ",") + "\n" + json.dumps(audit_search.event_row(event, reference), sort_keys=True,
                                                         ensure_ascii=False)
        first = False
    yield "\n]}\n"


async def export(request: Request) -> Response:
    ctx = context.get(request)
    await ctx.check_session()
    _require(request)
    form = await request.form(max_files=0, max_fields=20, max_part_size=4096)
    asked = _asked(form)
    fmt = form.get("format")
    if fmt not in ("csv", "json"):
        fmt = "csv"

    def prepare() -> audit_search.AuditFilter | list[form_errors.FieldError]:
        try:
            f = asked.filter()
            audit_search.search(ctx.db, f, limit=1)  # an unknown report is refused before anything is sent
        except DomainError as exc:
            return _errors(exc)
        # The export is a custody event, with its filters, before the first byte (AU-03, AU-10).
        audit.record_sync(ctx, request, "audit.export", subject="audit", detail={"filters": f.as_dict(), "format": fmt})
        return f

    prepared = await ctx.run_sync(prepare)
    if isinstance(prepared, list):
        def health() -> audit_health.ChainHealth:
            with ctx.db.read() as session:
                return audit_health.chain_health(session, ctx.clock())

        return _page(request, asked, None, prepared, await ctx.run_sync(health))
    f = prepared
    stamp = ctx.clock().strftime("%Y%m%dT%H%M%SZ")
    rows = audit_search.iter_events(ctx.db, f)
    if fmt == "json":
        body: Iterator[str] = _json_lines(rows, f.as_dict())
        media_type = "application/json"
    else:
        body = _csv_lines(rows)
        media_type = "text/csv; charset=utf-8"
    # A sync iterator: Starlette runs each step in a worker thread (the database is sync).
    return StreamingResponse(body, media_type=media_type,
                             headers={"Content-Disposition": f'attachment; filename="custody-search-{stamp}.{fmt}"'})


def routes() -> list[Route]:
    return [
        Route("/audit", desk, methods=["GET"], name="audit_desk"),
        Route("/audit/export", export, methods=["POST"], name="audit_export"),
    ]
