"""``exhibit reports create|assign``: who works a report, from the command line (issue 15
item 1). ``--owner`` and ``--to`` name an enabled officer or supervisor by e-mail
(``storage.assignments.assignable_user``); every change is a custody event."""

from __future__ import annotations

import argparse
from typing import Any

from storage import assignments
from storage.settings import Settings


def cmd_reports_create(settings: Settings, args: argparse.Namespace, out: Any) -> int:
    from exhibit.cli import _actor, _open_db
    from storage.reports import create_report

    db = _open_db(settings)
    with db.write() as session:
        unit = assignments.normalise_unit(args.unit)
        owner = assignments.assignable_user(session, args.owner) if args.owner else None
        # The report joins its owner's unit unless told otherwise: a supervisor's list
        # then shows it without a second command.
        if unit is None and owner is not None:
            unit = owner.unit
        report = create_report(db, session, args.ref, args.kind, title=args.title or "",
                               owner_id=owner.id if owner else None, unit=unit, actor=_actor())
        data = {"id": report.id, "reference": report.reference, "kind": report.kind, "title": report.title,
                "owner": owner.email if owner else None, "unit": report.unit}
    out.emit(data, f"report {data['reference']} created ({data['kind']})"
             + (f", owner {data['owner']}" if data["owner"] else "") + (f", unit {data['unit']}" if data["unit"] else ""))
    return 0


def cmd_reports_assign(settings: Settings, args: argparse.Namespace, out: Any) -> int:
    from exhibit.cli import _actor, _open_db
    from storage.reports import get_report_by_reference

    db = _open_db(settings)
    with db.write() as session:
        report = get_report_by_reference(session, args.ref)
        user = assignments.assignable_user(session, args.to)
        changed = assignments.assign(db, session, report, user, as_owner=args.owner, actor=_actor())
        owner = session.get(type(user), report.owner_id) if report.owner_id else None
        data = {"reference": report.reference, "changed": changed, "owner": owner.email if owner else None,
                "assignees": [a.email for a in assignments.assignees(session, report.id)], "unit": report.unit}
    verb = "is now the owner of" if args.owner else "is assigned to"
    out.emit(data, f"{args.to.strip().lower()} {verb} {data['reference']}" + ("" if changed else " (already)"))
    return 0


def add_commands(reports: Any, add: Any) -> None:
    """The ``reports`` subcommands (``add`` is ``exhibit.cli``'s helper)."""
    p = add(reports, "create", cmd_reports_create, "create a report")
    p.add_argument("ref")
    p.add_argument("--kind", required=True, choices=["rtc", "crime", "asb", "complaint", "other"])
    p.add_argument("--title")
    p.add_argument("--owner", help="e-mail of the officer or supervisor who works it")
    p.add_argument("--unit", help="the unit it belongs to (default: the owner's unit)")
    p = add(reports, "assign", cmd_reports_assign, "assign a report to an officer or supervisor (a custody event)")
    p.add_argument("ref")
    p.add_argument("--to", required=True, help="e-mail of an enabled officer or supervisor")
    p.add_argument("--owner", action="store_true", help="make them the owner (the previous owner is no longer it)")
