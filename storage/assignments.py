"""Who works a report: its owner and assignees, and when each user last looked at it
(issue 15 item 1).

A report has one owner (``Report.owner_id``), any number of assignees
(``ReportAssignment``) and a unit (``Report.unit``). Owner and assignees are officers or
supervisors; an account that is disabled, a partner, an auditor or an admin is never made
one (an admin sees everything already; a partner or auditor must never gain casework
access through an assignment: AC-01). Every change is a custody event in the same
transaction: ``report.owner_changed``, ``report.assigned``, ``report.unassigned``. Who may
make a change is the reviewer's business (``reviewer_ui.permissions.can_assign``); these
functions only keep the data and its history right.

``mark_seen`` and ``queue`` make "My reports": the reports a user owns or is assigned to,
with the evidence received since they last opened the report's page, and the evidence
still waiting for triage.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import and_, case, func, or_
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from storage import ledger
from storage.db import Database
from storage.errors import Invalid, NotFound
from storage.models import EvidenceItem, Report, ReportAssignment, ReportSeen, Role, Triage, User

ASSIGNABLE_ROLES = frozenset({Role.OFFICER.value, Role.SUPERVISOR.value})
UNIT_MAX = 100


def normalise_unit(text: str | None) -> str | None:
    """A unit name as stored: stripped, None when empty; over 100 characters is refused."""
    unit = (text or "").strip()
    if len(unit) > UNIT_MAX:
        raise Invalid(f"a unit is at most {UNIT_MAX} characters", code="ERR_UNIT_INVALID")
    return unit or None


def assignable_user(session: Session, email: str, *, unit: str | None = None) -> User:
    """The enabled officer or supervisor with this e-mail address (and, when ``unit`` is
    given, of that unit), else ``NotFound`` ``ERR_ASSIGNEE_UNKNOWN``: one answer for "no
    such account" and "an account that cannot work reports", so the message does not
    describe accounts it may not name."""
    email = email.strip().lower()
    user = session.exec(select(User).where(col(User.email) == email)).first() if email else None
    if (user is None or user.disabled or str(user.role) not in ASSIGNABLE_ROLES
            or (unit is not None and user.unit != unit)):
        where = f" of unit {unit}" if unit is not None else ""
        raise NotFound(f"no officer or supervisor{where} with the address {email[:320]}",
                       code="ERR_ASSIGNEE_UNKNOWN")
    return user


def assignees(session: Session, report_id: str) -> list[User]:
    return list(session.exec(
        select(User).join(ReportAssignment, col(ReportAssignment.user_id) == col(User.id))
        .where(col(ReportAssignment.report_id) == report_id).order_by(col(User.email))))


def assign(db: Database, session: Session, report: Report, user: User, *, as_owner: bool = False, actor: str,
           request_id: str | None = None) -> bool:
    """Make ``user`` an assignee of ``report`` (or, ``as_owner``, its owner: the previous
    owner is no longer the owner and keeps access only if they are also assigned).
    Returns False when nothing changed (already so: no event). ``user`` must be an
    ``assignable_user``."""
    if user.disabled or str(user.role) not in ASSIGNABLE_ROLES:
        raise Invalid("only an enabled officer or supervisor can work a report", code="ERR_ASSIGNEE_ROLE")
    if as_owner:
        if report.owner_id == user.id:
            return False
        before = session.get(User, report.owner_id) if report.owner_id else None
        report.owner_id = user.id
        session.add(report)
        # The owner needs no assignment row as well: one person, one reason for access.
        row = session.get(ReportAssignment, (report.id, user.id))
        if row is not None:
            session.delete(row)
        session.flush()
        ledger.append(db, session, actor=actor, action="report.owner_changed", subject=f"report:{report.id}",
                      report_id=report.id, request_id=request_id,
                      detail={"reference": report.reference, "from": before.email if before else None,
                              "to": user.email, "unit": report.unit})
        return True
    if report.owner_id == user.id or session.get(ReportAssignment, (report.id, user.id)) is not None:
        return False
    session.add(ReportAssignment(report_id=report.id, user_id=user.id, assigned_by=actor[:32]))
    try:
        session.flush()
    except IntegrityError:
        # Two supervisors assigning the same officer at once: the primary key decides;
        # this transaction is spoilt, and the caller's retry finds it already done.
        raise Invalid("that assignment was just made by someone else; reload the page",
                      code="ERR_ASSIGNMENT_RACE") from None
    ledger.append(db, session, actor=actor, action="report.assigned", subject=f"report:{report.id}",
                  report_id=report.id, request_id=request_id,
                  detail={"reference": report.reference, "user": user.email, "unit": report.unit})
    return True


def unassign(db: Database, session: Session, report: Report, user_id: str, *, actor: str,
             request_id: str | None = None) -> bool:
    """Take an assignee off ``report`` (never its owner: reassign the owner instead).
    Returns False when they were not assigned."""
    row = session.get(ReportAssignment, (report.id, user_id)) if len(user_id) <= 32 else None
    if row is None:
        return False
    user = session.get(User, user_id)
    session.delete(row)
    session.flush()
    ledger.append(db, session, actor=actor, action="report.unassigned", subject=f"report:{report.id}",
                  report_id=report.id, request_id=request_id,
                  detail={"reference": report.reference, "user": user.email if user else user_id, "unit": report.unit})
    return True


def mark_seen(session: Session, user_id: str, report_id: str, now: dt.datetime) -> None:
    """Record that ``user_id`` looked at ``report_id`` at ``now`` (not a custody event: the
    page view itself is one)."""
    row = session.get(ReportSeen, (user_id, report_id))
    if row is None:
        session.add(ReportSeen(user_id=user_id, report_id=report_id, seen_at=now))
    elif row.seen_at < now:
        row.seen_at = now
        session.add(row)


@dataclass
class QueueRow:
    report: Report
    role: str  # "owner" or "assigned"
    seen_at: dt.datetime | None
    new: int  # evidence received since seen_at (all of it when never seen)
    waiting: int  # evidence waiting for triage
    items: int


QUEUE_LIMIT = 200


def queue(session: Session, user: User, *, after: tuple[dt.datetime, str] | None = None,
          limit: int = QUEUE_LIMIT) -> tuple[list[QueueRow], bool]:
    """The reports ``user`` owns or is assigned to, newest first (keyset on
    ``(created_at, id)`` after ``after``), with their counts; and whether more follow."""
    assigned = select(col(ReportAssignment.report_id)).where(col(ReportAssignment.user_id) == user.id)
    q = select(Report).where(or_(col(Report.owner_id) == user.id, col(Report.id).in_(assigned)))
    if after is not None:
        at, ident = after
        q = q.where(or_(col(Report.created_at) < at, and_(col(Report.created_at) == at, col(Report.id) < ident)))
    reports = list(session.exec(q.order_by(col(Report.created_at).desc(), col(Report.id).desc()).limit(limit + 1)))
    more = len(reports) > limit
    reports = reports[:limit]
    if not reports:
        return [], False
    ids = [r.id for r in reports]
    seen = dict(session.exec(select(col(ReportSeen.report_id), col(ReportSeen.seen_at)).where(
        col(ReportSeen.user_id) == user.id, col(ReportSeen.report_id).in_(ids))).all())
    # One grouped count over the page's reports; "new" compares each item with its own
    # report's last-seen time, joined in (an outer join: never seen counts everything).
    rows = session.exec(
        select(col(EvidenceItem.report_id), func.count(),
               func.sum(case((col(EvidenceItem.triage) == Triage.PENDING, 1), else_=0)),
               func.sum(case((or_(col(ReportSeen.seen_at).is_(None),
                                  col(EvidenceItem.received_at) > col(ReportSeen.seen_at)), 1), else_=0)))
        .outerjoin(ReportSeen, and_(col(ReportSeen.report_id) == col(EvidenceItem.report_id),
                                    col(ReportSeen.user_id) == user.id))
        .where(col(EvidenceItem.report_id).in_(ids)).group_by(col(EvidenceItem.report_id))
    ).all()
    counts = {rid: (int(n), int(w or 0), int(new or 0)) for rid, n, w, new in rows}
    out = []
    for r in reports:
        n, waiting, new = counts.get(r.id, (0, 0, 0))
        out.append(QueueRow(report=r, role="owner" if r.owner_id == user.id else "assigned",
                            seen_at=seen.get(r.id),
                            new=new, waiting=waiting, items=n))
    return out, more

