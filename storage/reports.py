"""Reports: the police matters evidence belongs to."""

from __future__ import annotations

import re

from sqlalchemy import select
from sqlmodel import Session

from storage import ledger
from storage.db import Database
from storage.errors import Conflict, Invalid, NotFound
from storage.models import Report, ReportKind, User

REFERENCE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9/_.:-]{0,63}$")


def create_report(
    db: Database,
    session: Session,
    reference: str,
    kind: str,
    *,
    title: str = "",
    owner_id: str | None = None,
    unit: str | None = None,
    actor: str,
    request_id: str | None = None,
) -> Report:
    if not REFERENCE_RE.match(reference):
        raise Invalid(
            "a report reference is 1-64 letters, digits or / _ . : - and starts with a letter or digit",
            code="ERR_REFERENCE_INVALID",
        )
    try:
        kind = ReportKind(kind)
    except ValueError:
        raise Invalid(f"kind must be one of {', '.join(k.value for k in ReportKind)}", code="ERR_KIND_INVALID") from None
    if session.exec(select(Report.id).where(Report.reference == reference)).first():  # type: ignore[call-overload]
        raise Conflict(f"report {reference} already exists", code="ERR_REPORT_EXISTS")
    report = Report(reference=reference, kind=kind, title=title[:300], owner_id=owner_id, unit=unit)
    session.add(report)
    session.flush()
    detail: dict[str, str] = {"reference": reference, "kind": str(kind), "title": report.title}
    # Who works it from the start is part of its history (issue 15 item 1).
    if owner_id:
        owner = session.get(User, owner_id)
        detail["owner"] = owner.email if owner else owner_id
    if unit:
        detail["unit"] = unit
    ledger.append(
        db, session, actor=actor, action="report.created", subject=f"report:{report.id}",
        report_id=report.id, detail=detail, request_id=request_id,
    )
    return report


def get_report_by_reference(session: Session, reference: str) -> Report:
    report = session.exec(select(Report).where(Report.reference == reference)).scalars().first()  # type: ignore[call-overload, arg-type]
    if report is None:
        raise NotFound(f"no report {reference}", code="ERR_REPORT_NOT_FOUND")
    return report  # type: ignore[no-any-return]
