"""Upload rows: every transaction and custody event of the upload pipeline.

The pipeline itself (``upload_api.ingest``) moves bytes and calls these, each one
database transaction, synchronous (call from a worker thread):

- ``insert_upload``: reserve the declared length against the link's quotas, create the
  ``Upload`` row (state ``open``) and its ``upload.started`` event. Nothing here is
  evidence.
- ``save_progress``: the offset and sniffed type after bytes became durable.
- ``admit``: the last word before the blob is sealed (the link re-checked under row
  locks, UP-14; multipart quotas).
- ``make_evidence``: in ONE transaction the upload row becomes ``complete``, the
  evidence item (state ``received``), its processing job and its custody event are
  created (``storage.items.create_item``) and the link's used counters move. A second
  completion finds the row complete and returns the same item (and the unique
  ``evidence_item.upload_id`` is the last line of defence: UP-17).
- ``end_upload``: an unfinished upload refused, terminated or expired: reservation
  released, custody event with the reason.
- ``record_client_sha256``: the browser's own hash, recorded and compared, never trusted.

A refusal decided inside a transaction that must also *record* it (``admit``,
``make_evidence``) is returned, not raised: raising inside ``db.write()`` would roll back
the very row update and custody event that record it.
"""

from __future__ import annotations

import datetime as dt
import hmac
import re
from typing import Any

from sqlalchemy import func, update
from sqlmodel import Session, col, select

from storage import items, ledger
from storage.db import Database
from storage.errors import DomainError, Invalid, NotFound
from storage.links import check_link_id, link_problem
from storage.models import EvidenceItem, Report, Upload, UploadLink, UploadState
from storage.sniff import ALLOWED_TYPES
from storage.submissions import submission_of_link
from storage.untrusted import clean_filename, clean_text


class Refused(DomainError):
    """An upload the pipeline will not take (type, size, quota, state). ``code`` says
    why; ``upload_api.errors`` maps it to a status and a citizen's sentence."""


# -- quotas ------------------------------------------------------------------------------


def open_files(session: Session, link_id: str) -> int:
    count = session.exec(
        select(func.count()).select_from(Upload).where(Upload.link_id == link_id, Upload.state == UploadState.OPEN)
    ).one()
    return int(count)


def check_quota(session: Session, link: UploadLink, length: int | None, max_file_bytes: int) -> None:
    """Refuse (before any byte is stored) what would exceed the file size limit or the
    link's quotas: files committed + uploads open < max_files; bytes committed + bytes
    reserved by open uploads + this length <= max_bytes (UP-18, BF-16)."""
    if length is not None and length > max_file_bytes:
        raise Refused("file too large", code="ERR_TOO_LARGE")
    if link.used_files + open_files(session, link.id) >= link.max_files:
        raise Refused("file quota reached", code="ERR_QUOTA_FILES")
    if link.used_bytes + link.reserved_bytes + (length or 0) > link.max_bytes:
        raise Refused("byte quota reached", code="ERR_QUOTA_BYTES")


def remaining_bytes(link: UploadLink) -> int:
    return max(0, link.max_bytes - link.used_bytes - link.reserved_bytes)


def remaining_bytes_of(db: Database, link_id: str) -> int:
    with db.read() as session:
        link = session.get(UploadLink, link_id)
        assert link is not None
        return remaining_bytes(link)


# -- opening -----------------------------------------------------------------------------


def precheck_upload(
    db: Database, link_id: str, *, submission_id: str | None, length: int | None, max_file_bytes: int
) -> None:
    """The cheap refusal before the blob is created. No row lock here: a read cannot hold
    one past its statement (autocommit on PostgreSQL), and ``insert_upload`` repeats
    every check under the lock."""
    with db.read() as session:
        link, _ = check_link_id(db, session, link_id)
        check_quota(session, link, length, max_file_bytes)
        if submission_id is not None:
            submission_of_link(session, link, submission_id)


def insert_upload(
    db: Database,
    link_id: str,
    *,
    blob_key: str,
    submission_id: str | None,
    length: int | None,
    filename: str,
    filetype: str,
    max_file_bytes: int,
    expiry_seconds: int,
    actor: str,
    request_id: str | None,
) -> Upload:
    """The ``Upload`` row of a created blob, with its reservation and ``upload.started``,
    under the link's row lock (the quota checks again: UP-18)."""
    with db.write() as session:
        link, _ = check_link_id(db, session, link_id, for_update=True)
        check_quota(session, link, length, max_file_bytes)
        now = db.now(session)
        row = Upload(
            link_id=link.id,
            submission_id=submission_id,
            blob_key=blob_key,
            length=length,
            offset=0,
            state=UploadState.OPEN,
            filename=clean_filename(filename) if filename else "",
            filetype=clean_text(filetype, 100),
            expires_at=now + dt.timedelta(seconds=expiry_seconds),
            created_at=now,
        )
        session.add(row)
        link.reserved_bytes += length or 0
        session.add(link)
        session.flush()
        ledger.append(
            db, session, actor=actor, action="upload.started", subject=f"upload:{row.id}",
            report_id=link.report_id,
            detail={"upload_id": row.id, "length": length, "submission_id": submission_id,
                    "filename": row.filename},
            request_id=request_id,
        )
        return row


# -- progress ----------------------------------------------------------------------------


def save_progress(db: Database, upload_id: str, offset: int, detected_type: str | None, expiry_seconds: int) -> None:
    """Once per PATCH, after the store reported the bytes durable: the offset, the
    sniffed type, the expiry pushed back. Monotonic (an update that arrives late never
    moves the offset back), so it may run off the request's critical path."""
    with db.write() as session:
        now = db.now(session)
        session.exec(
            update(Upload)
            .where(col(Upload.id) == upload_id, col(Upload.state) == UploadState.OPEN, col(Upload.offset) <= offset)
            .values(
                offset=offset,
                detected_type=func.coalesce(Upload.detected_type, detected_type),
                expires_at=now + dt.timedelta(seconds=expiry_seconds),
            )
        )


# -- reading -----------------------------------------------------------------------------


def get_upload(db: Database, upload_id: str) -> Upload:
    with db.read() as session:
        row = session.get(Upload, upload_id)
        if row is None:
            raise NotFound("no such upload", code="ERR_UPLOAD_NOT_FOUND")
        return row


def item_for_upload(db: Database, upload_id: str) -> EvidenceItem:
    with db.read() as session:
        return session.exec(select(EvidenceItem).where(EvidenceItem.upload_id == upload_id)).one()


# -- completion --------------------------------------------------------------------------


def admit(db: Database, upload_id: str, size: int, actor: str, request_id: str | None) -> Refused | None:
    """The last word before an upload is sealed: under row locks on the upload and its
    link, is the link still usable, and (multipart) do the quotas take this file?

    Threat (UP-14): a link revoked, expired or whose report was closed while its bytes
    were streaming would otherwise still yield evidence, since authorisation happened
    when the request began. This check and a revocation are serialised by the link row
    lock (PostgreSQL; SQLite has one writer): a revocation that commits first refuses the
    upload, one that commits after finds it already admitted, as if it had come a moment
    later. A multipart file's size is reserved here, so no other upload can take the
    quota between this check and the commit. A refusal is recorded (row ``refused``,
    custody event with the reason) and *returned*: raising would roll that back."""
    with db.write() as session:
        up = session.get(Upload, upload_id, with_for_update=True)
        if up is None or up.state != UploadState.OPEN:
            return None  # completed or ended meanwhile: the commit step says which
        link = session.get(UploadLink, up.link_id, with_for_update=True)
        assert link is not None
        report = session.get(Report, link.report_id)
        assert report is not None
        code = message = ""
        problem = link_problem(db, session, link, report)
        if problem is not None and problem.code != "ERR_LINK_EXHAUSTED":
            # (Exhausted is the quotas' business: an open upload's reservation already
            # counts against them, and the multipart check below is exact.)
            code, message = problem.code, problem.message
        elif up.length is None and link.used_files >= link.max_files:
            code, message = "ERR_QUOTA_FILES", "file quota reached"
        elif up.length is None and link.used_bytes + link.reserved_bytes + size > link.max_bytes:
            code, message = "ERR_QUOTA_BYTES", "byte quota reached"
        if code:
            _close_row(db, session, up, link, UploadState.REFUSED, actor, request_id, {"reason": code},
                       received=size)
            return Refused(message, code=code)
        if up.length is None:
            up.length = size
            link.reserved_bytes += size
            session.add(up)
            session.add(link)
        return None


def make_evidence(
    db: Database,
    upload_id: str,
    *,
    size: int,
    sha256: str,
    detected_type: str | None,
    max_attempts: int,
    actor: str,
    request_id: str | None,
) -> EvidenceItem | Refused:
    """The sealed upload becomes evidence, in one transaction, exactly once (see the
    module docstring). A type that could not be sniffed while streaming is refused and
    recorded here (returned)."""
    with db.write() as session:
        up = session.get(Upload, upload_id, with_for_update=True)
        assert up is not None
        if up.state == UploadState.COMPLETE:
            existing = session.exec(select(EvidenceItem).where(EvidenceItem.upload_id == upload_id)).one()
            return existing
        link = session.get(UploadLink, up.link_id, with_for_update=True)
        assert link is not None
        reserved = up.length or 0
        if up.state != UploadState.OPEN:
            raise Refused("upload is gone", code="ERR_UPLOAD_GONE")
        if detected_type is None or detected_type not in ALLOWED_TYPES:
            # Only reachable when the sniff could not run while streaming (state
            # lost before the first bytes were seen): refused, never evidence.
            _close_row(db, session, up, link, UploadState.REFUSED, actor, request_id,
                       {"reason": "ERR_UNSUPPORTED_TYPE"}, received=size)
            return Refused("file type not accepted", code="ERR_UNSUPPORTED_TYPE")
        if up.length is not None and size != up.length:
            raise Refused("upload is not complete", code="ERR_OFFSET_MISMATCH")
        item = items.create_item(
            db, session,
            report_id=link.report_id,
            blob_key=up.blob_key,
            size=size,
            sha256=sha256,
            submission_id=up.submission_id,
            upload_id=up.id,
            original_filename=up.filename,
            claimed_type=up.filetype,
            detected_type=detected_type,
            client_sha256=up.client_sha256,
            actor=actor,
            request_id=request_id,
            max_attempts=max_attempts,
        )
        now = db.now(session)
        up.state = UploadState.COMPLETE
        up.offset = size
        up.length = size
        up.sha256 = sha256
        up.detected_type = detected_type
        up.completed_at = now
        link.used_files += 1
        link.used_bytes += size
        link.reserved_bytes = max(0, link.reserved_bytes - reserved)
        session.add(up)
        session.add(link)
        if up.client_sha256:
            _record_client_hash(db, session, item, up.client_sha256, actor, request_id)
        return item


# -- ending an unfinished upload ---------------------------------------------------------


def _close_row(
    db: Database, session: Session, up: Upload, link: UploadLink, state: UploadState,
    actor: str, request_id: str | None, detail: dict[str, Any], *, received: int = 0,
) -> None:
    """End ``up`` as ``state`` and record it. ``received``: the bytes the store holds, when
    the row may not know them yet (the last PATCH completes without a progress write
    first), so the record counts every byte received."""
    up.offset = max(up.offset, received)
    up.state = state
    up.completed_at = db.now(session)
    link.reserved_bytes = max(0, link.reserved_bytes - (up.length or 0))
    session.add(up)
    session.add(link)
    ledger.append(
        db, session, actor=actor, action=f"upload.{state.value}", subject=f"upload:{up.id}",
        report_id=link.report_id, detail={"upload_id": up.id, "offset": up.offset, **detail},
        request_id=request_id,
    )


def end_upload(
    db: Database, upload_id: str, state: UploadState, *, actor: str, request_id: str | None,
    detail: dict[str, Any] | None = None,
) -> Upload | None:
    """Mark an open upload ``state`` (refused, terminated, expired), release its
    reservation and record why. None when it was not open (nothing to do); the caller
    deletes the bytes of the row returned."""
    with db.write() as session:
        up = session.get(Upload, upload_id, with_for_update=True)
        if up is None or up.state != UploadState.OPEN:
            return None
        link = session.get(UploadLink, up.link_id, with_for_update=True)
        assert link is not None
        _close_row(db, session, up, link, state, actor, request_id, detail or {})
        return up


def due_for_expiry(db: Database, limit: int) -> list[str]:
    """Unfinished uploads past their ``expires_at`` (database clock)."""
    with db.read() as session:
        now = db.now(session)
        return list(session.exec(
            select(Upload.id).where(Upload.state == UploadState.OPEN, col(Upload.expires_at) < now).limit(limit)
        ).all())


# -- client hash -------------------------------------------------------------------------


def _record_client_hash(
    db: Database, session: Session, item: EvidenceItem, client_sha256: str, actor: str, request_id: str | None
) -> None:
    item.client_sha256 = client_sha256
    item.client_hash_match = hmac.compare_digest(client_sha256, item.sha256)
    session.add(item)
    ledger.append(
        db, session, actor=actor, action="item.client_hash", subject=f"item:{item.id}",
        report_id=item.report_id, item_id=item.id,
        detail={"client_sha256": client_sha256, "sha256": item.sha256,
                "result": "match" if item.client_hash_match else "mismatch"},
        request_id=request_id,
    )


_HEX64 = re.compile(r"[0-9a-f]{64}")


def record_client_sha256(
    db: Database, link: UploadLink, upload_id: str, client_sha256: str, *, actor: str, request_id: str | None
) -> dict[str, Any]:
    """The browser's own SHA-256 of a file it sent. Recorded, never trusted: the custody
    ledger says whether it matches ours. Only for this link's uploads (UP-09)."""
    client_sha256 = (client_sha256 or "").strip().lower()
    if not _HEX64.fullmatch(client_sha256):
        raise Invalid("sha256 must be 64 hex digits", code="ERR_INVALID")
    with db.write() as session:
        up = session.get(Upload, upload_id, with_for_update=True)
        if up is None or up.link_id != link.id:
            raise NotFound("no such upload", code="ERR_UPLOAD_NOT_FOUND")
        if up.client_sha256 and up.client_sha256 != client_sha256:
            raise Invalid("a different hash was already recorded", code="ERR_CONFLICT")
        up.client_sha256 = client_sha256
        session.add(up)
        item = session.exec(select(EvidenceItem).where(EvidenceItem.upload_id == upload_id)).first()
        if item is None:
            # Not complete yet: completion records the comparison.
            return {"match": None, "sha256": None}
        if item.client_sha256 != client_sha256 or item.client_hash_match is None:
            _record_client_hash(db, session, item, client_sha256, actor, request_id)
        return {"match": bool(item.client_hash_match), "sha256": item.sha256}
