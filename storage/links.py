"""Upload links: signed, expiring, revocable capabilities tied to one report.

A link's token is 256 bits from a CSPRNG, shown once (in the URL given to the officer);
only its SHA-256 is stored, so a database read does not hand out working links. Checking
a token is a lookup by hash (no timing oracle on a secret comparison).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
from dataclasses import dataclass

from sqlalchemy import select
from sqlmodel import Session

from storage import ledger
from storage.db import Database
from storage.errors import LinkProblem, NotFound
from storage.models import Report, UploadLink


def new_token() -> str:
    return secrets.token_urlsafe(32)  # 256 bits


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def link_url(public_url: str, token: str) -> str:
    return f"{public_url.rstrip('/')}/u/{token}"


@dataclass(frozen=True)
class IssuedLink:
    link: UploadLink
    token: str  # shown once, never stored
    url: str


def create_link(
    db: Database,
    session: Session,
    report: Report,
    *,
    public_url: str,
    expires_in_seconds: int,
    max_files: int,
    max_bytes: int,
    actor: str,
    note: str = "",
    request_id: str | None = None,
) -> IssuedLink:
    if expires_in_seconds <= 0 or max_files <= 0 or max_bytes <= 0:
        raise ValueError("expiry and quotas must be positive")
    token = new_token()
    now = db.now(session)
    link = UploadLink(
        report_id=report.id,
        token_hash=hash_token(token),
        created_by=actor[:64],
        expires_at=now + dt.timedelta(seconds=expires_in_seconds),
        max_files=max_files,
        max_bytes=max_bytes,
        note=note[:300],
    )
    session.add(link)
    session.flush()
    ledger.append(
        db, session, actor=actor, action="link.created", subject=f"link:{link.id}", report_id=report.id,
        detail={"link_id": link.id, "expires_at": ledger.format_time(link.expires_at),
                "max_files": max_files, "max_bytes": max_bytes},
        request_id=request_id,
    )
    return IssuedLink(link=link, token=token, url=link_url(public_url, token))


def revoke_link(
    db: Database, session: Session, link_id: str, *, actor: str, request_id: str | None = None
) -> UploadLink:
    link = session.get(UploadLink, link_id)
    if link is None:
        raise NotFound(f"no link {link_id}", code="ERR_LINK_NOT_FOUND")
    if link.revoked_at is None:
        link.revoked_at = db.now(session)
        link.revoked_by = actor[:64]
        session.add(link)
        ledger.append(
            db, session, actor=actor, action="link.revoked", subject=f"link:{link.id}",
            report_id=link.report_id, detail={"link_id": link.id}, request_id=request_id,
        )
    return link


def link_problem(db: Database, session: Session, link: UploadLink, report: Report) -> LinkProblem | None:
    """Why this (real) link cannot be used now, or None when it can."""
    now = db.now(session)
    if link.revoked_at is not None:
        return LinkProblem("this upload link has been withdrawn", code="ERR_LINK_REVOKED",
                           report_reference=report.reference)
    if link.expires_at <= now:
        return LinkProblem("this upload link has expired", code="ERR_LINK_EXPIRED",
                           report_reference=report.reference)
    if report.closed_at is not None:
        return LinkProblem("this report is closed", code="ERR_LINK_EXPIRED", report_reference=report.reference)
    if link.used_files >= link.max_files or link.used_bytes >= link.max_bytes:
        return LinkProblem("this upload link has reached its limit", code="ERR_LINK_EXHAUSTED",
                           report_reference=report.reference)
    return None


def check_token(db: Database, session: Session, token: str) -> tuple[UploadLink, Report]:
    """The usable link and its report for ``token``, or ``LinkProblem``."""
    if not token or len(token) > 200:
        raise LinkProblem("this upload link is not valid", code="ERR_LINK_UNKNOWN")
    row = session.exec(  # type: ignore[call-overload]
        select(UploadLink, Report).join(Report, Report.id == UploadLink.report_id)  # type: ignore[arg-type]
        .where(UploadLink.token_hash == hash_token(token))  # type: ignore[arg-type]
    ).first()
    if row is None:
        raise LinkProblem("this upload link is not valid", code="ERR_LINK_UNKNOWN")
    link, report = row
    problem = link_problem(db, session, link, report)
    if problem is not None:
        raise problem
    return link, report


def check_link_id(
    db: Database, session: Session, link_id: str, *, for_update: bool = False
) -> tuple[UploadLink, Report]:
    """Like ``check_token`` for a link already exchanged into an upload session.
    ``for_update`` locks the link row (PostgreSQL) so a quota check and the reservation
    that follows it cannot interleave with another upload's."""
    link = session.get(UploadLink, link_id, with_for_update=for_update)
    if link is None:
        raise LinkProblem("this upload link is not valid", code="ERR_LINK_UNKNOWN")
    report = session.get(Report, link.report_id)
    assert report is not None
    problem = link_problem(db, session, link, report)
    if problem is not None:
        raise problem
    return link, report
