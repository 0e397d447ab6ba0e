"""``exhibit retention set|due|run`` and ``exhibit hold add|remove|list`` (DESIGN.md
section 5; issue 14 items 1-3). The domain is ``storage.retention``; this module parses,
calls and prints. The command line is the operator's door: it acts as an administrator
(who may bring a date forward and release holds), and every act names the operating
system user as its actor in the custody ledger.

Exit codes: 0 done; 1 ``retention run`` left evidence it should have disposed of because
an Object Lock still forbids it (reported item by item, never skipped silently); 2 bad
usage or a domain error; 3 the store or database failed for some item.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import anyio.to_thread

from storage import ledger
from storage.settings import Settings

if TYPE_CHECKING:
    from exhibit.cli import Output
    from storage.db import Database


def parse_until(text: str) -> dt.datetime:
    """``2031-12-31`` (that day's start, UTC) or an ISO 8601 time with a zone."""
    raw = text.strip()
    try:
        if len(raw) == 10:
            day = dt.date.fromisoformat(raw)
            return dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC)
        when = dt.datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"{text[:40]!r} is not a date (YYYY-MM-DD or an ISO 8601 time with its zone)") from None
    if when.tzinfo is None:
        raise ValueError(f"{text[:40]!r} has no time zone: write Z or +00:00")
    return when.astimezone(dt.UTC)


def _apply_locks(settings: Settings, db: Database) -> int:
    """Apply a decision's Object Lock at once (the next run would too)."""
    from storage import retention
    from storage.blobs import open_store

    async def main() -> int:
        store = await anyio.to_thread.run_sync(open_store, settings)
        try:
            return await retention.apply_now(db, store, retention.Policy.from_settings(settings))
        finally:
            await store.close()

    return asyncio.run(main())


def cmd_set(settings: Settings, args: argparse.Namespace, out: Output) -> int:
    from exhibit.cli import _actor, _open_db
    from storage import retention
    from storage.reports import get_report_by_reference

    until = parse_until(args.until)
    policy = retention.Policy.from_settings(settings)
    db = _open_db(settings)
    with db.write() as s:
        report = get_report_by_reference(s, args.ref)
        before = retention.retention_of(s, policy, report)
        retention.set_retention(db, s, policy, report, until, reason=args.reason, actor=_actor())
        data = {"report": report.reference, "from": ledger.format_time(before.until),
                "retain_until": ledger.format_time(until), "reason": args.reason,
                "due_now": until <= dt.datetime.now(dt.UTC)}
    data["locks_applied"] = _apply_locks(settings, db)
    out.emit(data, lambda: f"report {data['report']}: retained until {data['retain_until']} (was {data['from']})"
             + ("; already due: the next retention run disposes of its evidence" if data["due_now"] else ""))
    return 0


def cmd_due(settings: Settings, args: argparse.Namespace, out: Output) -> int:
    from dataclasses import asdict

    from exhibit.cli import _open_db
    from storage import retention

    if args.days < 0:
        raise ValueError("--days must be 0 or more")
    policy = retention.Policy.from_settings(settings)
    db = _open_db(settings)
    with db.read() as s:
        rows = [asdict(d) for d in retention.due(s, policy, within_seconds=args.days * 86400, limit=None)]

    def human() -> str:
        if not rows:
            return f"nothing falls due within {args.days} day(s)"
        return "\n".join(f"{r['until']}  {r['item_id']}  {r['report']:<16} {r['state']:<12}"
                         f"{' HELD' if r['held'] else ''}  {r['rule']}" for r in rows)

    out.emit(rows, human)
    return 0


def cmd_run(settings: Settings, args: argparse.Namespace, out: Output) -> int:
    from exhibit.cli import _actor, _open_db
    from storage import retention
    from storage.blobs import open_store

    db = _open_db(settings)
    result = retention.run(db, lambda: open_store(settings), retention.Policy.from_settings(settings),
                           actor=_actor(), dry_run=args.dry_run)
    data = result.as_dict()

    def human() -> str:
        verb = "would dispose of" if args.dry_run else "disposed of"
        lines = [f"{verb} {len(result.disposed)} item(s); {len(result.held)} held; "
                 f"{len(result.deferred)} still processing; {len(result.refused)} refused by a lock"]
        lines += [f"disposed {d['item_id']} sha256 {d['sha256']} ({d['rule']})" for d in result.disposed]
        lines += [f"REFUSED {r['item_id']}: {r['reason']}" for r in result.refused]
        lines += [f"error {e['item_id']}: {e['error']}" for e in result.errors]
        return "\n".join(lines)

    out.emit(data, human)
    if result.errors:
        return 3
    return 1 if result.refused else 0


def _hold(settings: Settings, args: argparse.Namespace, out: Output, place: bool) -> int:
    from exhibit.cli import _actor, _open_db
    from storage import retention

    db = _open_db(settings)
    with db.write() as s:
        report, item = retention.resolve_target(s, args.target)
        if place:
            holds = [retention.place_hold(db, s, report, item, reason=args.reason, actor=_actor())]
        else:
            holds = retention.release_hold(db, s, report, item, reason=args.reason, actor=_actor())
        data: dict[str, Any] = {"holds": [retention.hold_dict(h, report.reference) for h in holds]}
    data["locks_applied"] = _apply_locks(settings, db)
    what = f"item {item.id}" if item else f"report {report.reference}"
    out.emit(data, f"legal hold {'placed on' if place else 'released from'} {what}")
    return 0


def cmd_hold_add(settings: Settings, args: argparse.Namespace, out: Output) -> int:
    return _hold(settings, args, out, place=True)


def cmd_hold_remove(settings: Settings, args: argparse.Namespace, out: Output) -> int:
    return _hold(settings, args, out, place=False)


def cmd_hold_list(settings: Settings, args: argparse.Namespace, out: Output) -> int:
    from exhibit.cli import _open_db
    from storage import retention

    db = _open_db(settings)
    with db.read() as s:
        rows = retention.list_holds(s, live_only=not args.all, limit=100_000)

    def human() -> str:
        if not rows:
            return "no live legal holds"
        return "\n".join(f"{r['placed_at']}  {r['report']:<16} {r['item_id'] or '(whole report)':<32}  "
                         f"{r['placed_by']}: {r['reason']}" + (f"  [released {r['released_at']}]" if r["released_at"] else "")
                         for r in rows)

    out.emit(rows, human)
    return 0


def register(sub: Any, add: Callable[..., argparse.ArgumentParser]) -> None:
    retention = sub.add_parser("retention", help="retention dates and lawful disposal").add_subparsers(
        dest="sub", required=True)
    p = add(retention, "set", cmd_set, "set a report's retention date, with a reason (a past date: the next run "
            "disposes of its evidence)")
    p.add_argument("ref")
    p.add_argument("--until", required=True, help="YYYY-MM-DD (UTC) or an ISO 8601 time with its zone")
    p.add_argument("--reason", required=True)
    p = add(retention, "due", cmd_due, "list evidence whose retention date falls within N days")
    p.add_argument("--days", type=int, default=0)
    p = add(retention, "run", cmd_run, "dispose of due evidence not under legal hold (bytes destroyed, record kept)")
    p.add_argument("--dry-run", action="store_true", help="list what would be disposed of, change nothing")
    hold = sub.add_parser("hold", help="legal holds").add_subparsers(dest="sub", required=True)
    for verb, func, text in (("add", cmd_hold_add, "place a legal hold on a report or an item"),
                             ("remove", cmd_hold_remove, "release the legal hold on a report or an item")):
        p = add(hold, verb, func, text)
        p.add_argument("target", metavar="REF|ITEM_ID")
        p.add_argument("--reason", required=True)
    p = add(hold, "list", cmd_hold_list, "list live legal holds")
    p.add_argument("--all", action="store_true", help="released holds too")
