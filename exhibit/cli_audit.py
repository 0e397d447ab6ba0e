"""``exhibit audit search``: the custody ledger searched from the command line (issue 15
item 3), the same search as the audit desk (``storage.audit_search``).

    exhibit audit search [--user E] [--report REF] [--item ID] [--action A] [--since T]
                         [--until T] [--limit N] [--before SEQ] [--json]

Newest first; ``--before SEQ`` (the ``older`` value printed) gives the next older page.
An unknown report is exit 2, as a mistyped filter must not read as "nobody did it".

The command records no custody event: whoever runs it holds the database's credentials
and could read the table directly, so an event would prove nothing. Searches made
through the staff door, where people act under their own accounts, are recorded.
"""

from __future__ import annotations

import argparse
from typing import Any

from storage.audit_search import event_row, make_filter, search
from storage.settings import Settings


def add_commands(audit: Any, add: Any, open_db: Any) -> None:
    """Register the commands under ``exhibit audit`` (``add`` is cli.build_parser's helper)."""

    def cmd_search(settings: Settings, args: argparse.Namespace, out: Any) -> int:
        f = make_filter(actor=args.user or "", report=args.report or "", item_id=args.item or "",
                        action=args.action or "", since=args.since or "", until=args.until or "")
        db = open_db(settings)
        page = search(db, f, before=args.before, limit=args.limit)
        rows = [event_row(e, page.references.get(e.report_id or "")) for e in page.events]
        data = {"filters": f.as_dict(), "events": rows, "older": page.older, "newer": page.newer}

        def human() -> str:
            if not rows:
                return "no matching events"
            lines = [f"{r['seq']:>9}  {r['at']}  {r['actor']:<30} {r['action']:<26} "
                     f"{r['report'] or '-':<16} {r['item_id'] or '-'}" for r in rows]
            if page.older is not None:
                lines.append(f"older events: --before {page.older}")
            return "\n".join(lines)

        out.emit(data, human)
        return 0

    p = add(audit, "search", cmd_search, "search the custody ledger by user, report, item, action and time, "
            "newest first")
    p.add_argument("--user", help="who acted: the e-mail the events name (or cli:NAME, worker)")
    p.add_argument("--report", help="a report reference")
    p.add_argument("--item", help="an evidence item id")
    p.add_argument("--action", help="an action, e.g. item.viewed, or a prefix ending in . or * (media.*)")
    p.add_argument("--since", help="from this UTC date or time (inclusive), e.g. 2026-12-01 or 2026-12-01T10:00")
    p.add_argument("--until", help="up to this UTC date or time (exclusive)")
    p.add_argument("--limit", type=int, default=50, help="events per page (1-500, default 50)")
    p.add_argument("--before", type=int, help="the page older than this seq (the 'older' value of a page)")
