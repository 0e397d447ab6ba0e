"""Searching the custody ledger: the audit desk and ``exhibit audit search`` (issue 15 item 3).

``search(db, AuditFilter(...), before=..., after=..., limit=...) -> AuditPage`` finds events
by who acted (``actor``: the e-mail the event names, or ``cli:...``, ``worker``...), by
report (its reference, resolved to the id the events carry), by item, by action (exact,
or a prefix when it ends in ``.`` or ``*``: ``media.`` finds every ``media.*`` event) and
by time range (``since`` inclusive, ``until`` exclusive), newest first.

Pages are keyset pages on ``seq`` (the ledger's own order, assigned under the append
lock; never the wall clock, AU-02): ``before=S`` is the page of older events (seq < S),
``after=S`` the page of newer ones (seq > S). A page costs the same at the millionth
event as at the first: every filter has an index that ends in ``seq`` (migration
0013_auditdesk; ``benchmarks/audit.py`` measures it).

``iter_events`` walks every matching event in batches (constant memory) for an export.

The module only reads. Recording that someone searched or exported (an ``audit.*``
custody event, AU-03: "all access to the logs must be recorded") is the caller's job, in
the same request that shows or sends the result.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from typing import Any

from sqlalchemy import ColumnElement, and_, func, literal, or_
from sqlmodel import Session, col, select
from sqlmodel.sql.expression import SelectOfScalar

from storage.db import Database
from storage.errors import Invalid, NotFound
from storage.models import CustodyEvent, Report

MAX_LIMIT = 500
DEFAULT_LIMIT = 50
EXPORT_BATCH = 2000
# The actions that are someone seeing evidence: "what did this person see" and "who saw
# this item" filter on these (a page view, a stream start, a download of the original,
# an export that carried it).
SEEING_ACTIONS = ("item.viewed", "media.stream", "item.original_downloaded", "export.created")
_ACTION_RE = re.compile(r"^[a-z0-9_.]{1,64}\*?$")
_MAX_FIELD = 320


@dataclass(frozen=True)
class AuditFilter:
    """What to look for; every field is optional and they combine with AND."""

    actor: str | None = None
    report: str | None = None  # a report reference, as staff know it
    item_id: str | None = None
    action: str | None = None  # exact, or a prefix ending in "." or "*"
    actions: tuple[str, ...] = ()  # any of these exact actions (e.g. SEEING_ACTIONS)
    since: dt.datetime | None = None  # inclusive
    until: dt.datetime | None = None  # exclusive

    def as_dict(self) -> dict[str, Any]:
        """The filters as given (for the ``audit.export`` event and for links)."""
        out: dict[str, Any] = {}
        for key in ("actor", "report", "item_id", "action"):
            value = getattr(self, key)
            if value:
                out[key] = value
        if self.actions:
            out["actions"] = list(self.actions)
        if self.since:
            out["since"] = _iso(self.since)
        if self.until:
            out["until"] = _iso(self.until)
        return out

    def is_empty(self) -> bool:
        return not self.as_dict()


@dataclass
class AuditPage:
    events: list[CustodyEvent]
    # Report id -> reference for the events on the page (staff know reports by reference).
    references: dict[str, str] = field(default_factory=dict)
    older: int | None = None  # pass as ``before`` for the next older page
    newer: int | None = None  # pass as ``after`` for the next newer page


def _iso(value: dt.datetime) -> str:
    return value.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(text: str, *, name: str = "time") -> dt.datetime | None:
    """``2026-12-01``, ``2026-12-01T10:30``, ``2026-12-01 10:30:00Z`` or with an offset
    -> an aware UTC datetime (a time without an offset is UTC, as the ledger keeps it).
    Empty -> None. Anything else is ``Invalid``."""
    text = (text or "").strip()
    if not text:
        return None
    try:
        value = dt.datetime.fromisoformat(text.replace("z", "Z").replace("Z", "+00:00"))
    except ValueError:
        raise Invalid(f"{name}: give a date or time like 2026-12-01 or 2026-12-01T10:30 (UTC)",
                      code="ERR_TIME_INVALID") from None
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    return value.astimezone(dt.UTC)


def make_filter(*, actor: str = "", report: str = "", item_id: str = "", action: str = "", since: str = "",
                until: str = "", actions: tuple[str, ...] = ()) -> AuditFilter:
    """An ``AuditFilter`` from typed text (a form, the command line), checked: a value
    that cannot match anything is refused with a reason rather than answered with
    nothing, so that a typo is not read as "nobody did it"."""
    actor, report, item_id, action = (v.strip()[:_MAX_FIELD] for v in (actor, report, item_id, action))
    action = action.lower()
    if action and not _ACTION_RE.match(action):
        raise Invalid("action: letters, digits, '_' and '.', optionally ending in '*' (e.g. media.* or item.viewed)",
                      code="ERR_ACTION_INVALID")
    for a in actions:
        if not _ACTION_RE.match(a) or a.endswith("*"):
            raise Invalid(f"unknown action {a!r}", code="ERR_ACTION_INVALID")
    if item_id and len(item_id) > 64:
        raise Invalid("item: an item id is 32 characters", code="ERR_ITEM_INVALID")
    start, end = parse_time(since, name="since"), parse_time(until, name="until")
    if start and end and end <= start:
        raise Invalid("until must be after since", code="ERR_TIME_INVALID")
    return AuditFilter(actor=actor or None, report=report or None, item_id=item_id or None, action=action or None,
                       actions=tuple(actions), since=start, until=end)


def _action_clause(action: str) -> ColumnElement[bool]:
    if not (action.endswith(".") or action.endswith("*")):
        return col(CustodyEvent.action) == action
    prefix = action.rstrip("*")
    if not prefix:
        return literal(True) == literal(True)
    # A prefix as a range on the index (ASCII action names: the upper bound is the prefix
    # with its last character moved on by one). The exact test keeps a collation that
    # orders punctuation differently from ever adding a row the prefix does not start.
    upper = prefix[:-1] + chr(ord(prefix[-1]) + 1)
    return and_(col(CustodyEvent.action) >= prefix, col(CustodyEvent.action) < upper,
                func.substr(col(CustodyEvent.action), 1, len(prefix)) == prefix)


def _report_id(session: Session, reference: str) -> str:
    found = session.exec(select(col(Report.id)).where(col(Report.reference) == reference)).first()
    if found is None:
        raise NotFound(f"no report {reference}", code="ERR_REPORT_NOT_FOUND")
    return str(found)


def _query(session: Session, f: AuditFilter) -> SelectOfScalar[CustodyEvent]:
    q = select(CustodyEvent)
    if f.actor:
        q = q.where(col(CustodyEvent.actor) == f.actor)
    if f.report:
        q = q.where(col(CustodyEvent.report_id) == _report_id(session, f.report))
    if f.item_id:
        q = q.where(col(CustodyEvent.item_id) == f.item_id)
    if f.action:
        q = q.where(_action_clause(f.action))
    if f.actions:
        q = q.where(or_(*(col(CustodyEvent.action) == a for a in f.actions)))
    if f.since:
        q = q.where(col(CustodyEvent.at) >= f.since)
    if f.until:
        q = q.where(col(CustodyEvent.at) < f.until)
    return q


def _references(session: Session, events: list[CustodyEvent]) -> dict[str, str]:
    ids = {e.report_id for e in events if e.report_id}
    if not ids:
        return {}
    rows = session.exec(select(col(Report.id), col(Report.reference)).where(col(Report.id).in_(ids))).all()
    return {rid: ref for rid, ref in rows}


def search(db: Database, f: AuditFilter, *, before: int | None = None, after: int | None = None,
           limit: int = DEFAULT_LIMIT) -> AuditPage:
    """One page of matching events, newest first. ``before``/``after``: see the module
    docstring (``before`` wins when both are given). ``NotFound`` for an unknown report."""
    return _page(db, f, before=before, after=after, limit=max(1, min(int(limit), MAX_LIMIT)))


def _page(db: Database, f: AuditFilter, *, before: int | None, after: int | None, limit: int) -> AuditPage:
    going_newer = before is None and after is not None
    with db.read() as session:
        q = _query(session, f)
        if before is not None:
            q = q.where(col(CustodyEvent.seq) < before).order_by(col(CustodyEvent.seq).desc())
        elif after is not None:
            q = q.where(col(CustodyEvent.seq) > after).order_by(col(CustodyEvent.seq))
        else:
            q = q.order_by(col(CustodyEvent.seq).desc())
        rows = list(session.exec(q.limit(limit + 1)))
        more = len(rows) > limit
        rows = rows[:limit]
        if going_newer:
            rows.reverse()  # fetched oldest first: shown newest first like every page
        references = _references(session, rows)
    page = AuditPage(events=rows, references=references)
    if rows:
        # The cursor row matched the filter, so there is a page on the side we came from;
        # on the side we went to, there is one when the fetch overflowed.
        page.older = rows[-1].seq if (True if going_newer else more) else None
        page.newer = rows[0].seq if (more if going_newer else before is not None) else None
    return page


def iter_events(db: Database, f: AuditFilter, *, batch: int = EXPORT_BATCH) -> Iterator[tuple[CustodyEvent, str | None]]:
    """Every matching event, newest first, with its report's reference, ``batch`` events
    per read session (constant memory for an export of any size). The first batch
    resolves the report reference, so ``NotFound`` comes before anything is sent."""
    before: int | None = None
    while True:
        page = _page(db, f, before=before, after=None, limit=batch)
        for event in page.events:
            yield event, page.references.get(event.report_id or "")
        if page.older is None:
            return
        before = page.older


def event_row(event: CustodyEvent, reference: str | None) -> dict[str, Any]:
    """One event as plain data (JSON export, ``exhibit audit search --json``)."""
    from storage.ledger import format_time

    return {"seq": event.seq, "at": format_time(event.at), "actor": event.actor, "action": event.action,
            "subject": event.subject, "report_id": event.report_id, "report": reference,
            "item_id": event.item_id, "detail": event.detail or {}, "request_id": event.request_id,
            "hash": event.hash}


def with_seeing(f: AuditFilter) -> AuditFilter:
    """The same filter narrowed to the actions that are someone seeing evidence."""
    return replace(f, action=None, actions=SEEING_ACTIONS)
