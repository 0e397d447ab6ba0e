"""Submissions: a citizen's statement and declaration, under which their files are
grouped; and what the citizen may read of them later (receipt and status), reached with
a status token (``upload_api.tokens``) rather than the link."""

from __future__ import annotations

import re
import secrets
from typing import Any

from sqlmodel import Session, col, select

from storage import ledger
from storage.db import Database
from storage.errors import Invalid, NotFound
from storage.lifecycle import ItemState
from storage.models import EvidenceItem, Report, Submission, UploadLink
from storage.untrusted import clean_text

_REF_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"  # Crockford: no I, L, O, U


def new_reference() -> str:
    raw = "".join(secrets.choice(_REF_ALPHABET) for _ in range(8))
    return f"EXH-{raw[:4]}-{raw[4:]}"


def create_submission(
    db: Database,
    session: Session,
    link: UploadLink,
    *,
    description: str = "",
    occurred_at: str = "",
    location: str = "",
    contact_name: str = "",
    contact_details: str = "",
    declaration_version: str | None = None,
    declaration_accepted: bool,
    actor: str,
    request_id: str | None = None,
) -> Submission:
    """A citizen's statement and declaration, under which their files are grouped.
    Call inside ``db.write()``. ``Invalid`` (ERR_DECLARATION_REQUIRED) without the
    declaration."""
    if not declaration_accepted:
        raise Invalid("the declaration must be accepted", code="ERR_DECLARATION_REQUIRED")
    now = db.now(session)
    for _ in range(5):
        reference = new_reference()
        if session.exec(select(Submission.id).where(Submission.reference == reference)).first() is None:
            break
    submission = Submission(
        reference=reference,
        link_id=link.id,
        report_id=link.report_id,
        description=clean_text(description, 5000, multiline=True),
        occurred_at=clean_text(occurred_at, 200),
        location=clean_text(location, 500, multiline=True),
        contact_name=clean_text(contact_name, 200),
        contact_details=clean_text(contact_details, 300, multiline=True),
        declaration_version=clean_text(declaration_version or "", 32) or None,
        declaration_accepted_at=now,
        created_at=now,
    )
    session.add(submission)
    session.flush()
    ledger.append(
        db, session, actor=actor, action="submission.created", subject=f"submission:{submission.id}",
        report_id=link.report_id,
        detail={"submission_id": submission.id, "reference": reference, "link_id": link.id,
                "declaration_version": submission.declaration_version},
        request_id=request_id,
    )
    return submission


def submission_of_link(session: Session, link: UploadLink, submission_id: str) -> Submission:
    """The submission, only if it belongs to this link (UP-09): any other id is 404."""
    sub = session.get(Submission, submission_id) if re.fullmatch(r"[0-9a-f]{32}", submission_id or "") else None
    if sub is None or sub.link_id != link.id:
        raise NotFound("no such submission", code="ERR_SUBMISSION_NOT_FOUND")
    return sub


CITIZEN_STATUS = {
    ItemState.RECEIVING: "received",
    ItemState.RECEIVED: "received",
    ItemState.SCANNING: "being_checked",
    ItemState.CLEAN: "being_checked",
    ItemState.PROCESSING: "being_checked",
    ItemState.FAILED: "being_checked",
}
STATUS_WORDS = {"received": "Received", "being_checked": "Being checked", "with_officer": "With the officer"}


def _submission_items(session: Session, submission_id: str) -> tuple[Submission, Report, list[EvidenceItem]]:
    sub = session.get(Submission, submission_id)
    if sub is None:
        raise NotFound("no such submission", code="ERR_SUBMISSION_NOT_FOUND")
    report = session.get(Report, sub.report_id)
    assert report is not None
    rows = session.exec(
        select(EvidenceItem).where(EvidenceItem.submission_id == submission_id).order_by(col(EvidenceItem.received_at))
    ).all()
    return sub, report, list(rows)


def receipt(db: Database, submission_id: str) -> dict[str, Any]:
    """The citizen's receipt: reference codes and, per file, what we hold of it."""
    with db.read() as session:
        sub, report, rows = _submission_items(session, submission_id)
        return {
            "reference": sub.reference,
            "report_reference": report.reference,
            "submitted_at": ledger.format_time(sub.created_at),
            "declaration_version": sub.declaration_version,
            "files": [
                {
                    "name": item.original_filename,
                    "size": item.size,
                    "sha256": item.sha256,
                    "received_at": ledger.format_time(item.received_at),
                    "type": item.detected_type,
                    "client_hash_match": item.client_hash_match,
                }
                for item in rows
            ],
        }


def status(db: Database, submission_id: str) -> dict[str, Any]:
    """Per file: received / being checked / with the officer. Nothing of the review:
    a verdict, a rejection or a triage decision all read "with the officer"."""
    with db.read() as session:
        sub, _report, rows = _submission_items(session, submission_id)
        files = []
        for item in rows:
            code = CITIZEN_STATUS.get(ItemState(item.state), "with_officer")
            files.append({"name": item.original_filename, "size": item.size, "status": code,
                          "status_text": STATUS_WORDS[code]})
        return {"reference": sub.reference, "files": files}
