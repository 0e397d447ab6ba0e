"""Evidence items: creation (the transactional outbox) and read models."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlmodel import Session

from storage import ledger, queue
from storage.db import Database
from storage.errors import NotFound
from storage.lifecycle import ItemState
from storage.models import Derivative, EvidenceItem, Job, Report
from storage.sniff import is_video

PROCESS_JOB = "process_item"


def create_item(
    db: Database,
    session: Session,
    *,
    report_id: str,
    blob_key: str,
    size: int,
    sha256: str,
    submission_id: str | None = None,
    upload_id: str | None = None,
    original_filename: str = "",
    claimed_type: str = "",
    detected_type: str | None = None,
    client_sha256: str | None = None,
    actor: str,
    request_id: str | None = None,
    max_attempts: int = 5,
    detail: dict[str, Any] | None = None,
) -> EvidenceItem:
    """Make a completed upload evidence: the item (state ``received``), its processing
    job and its custody event, all in the caller's transaction. Either all three commit
    or none does, so there is never evidence without its job or its custody record
    (SECURITY_CHECKLIST CF-07)."""
    item = EvidenceItem(
        report_id=report_id,
        submission_id=submission_id,
        upload_id=upload_id,
        blob_key=blob_key,
        size=size,
        sha256=sha256,
        original_filename=original_filename[:255],
        claimed_type=claimed_type[:100],
        detected_type=detected_type,
        client_sha256=client_sha256,
        client_hash_match=(client_sha256 == sha256) if client_sha256 else None,
        state=ItemState.RECEIVED,
    )
    session.add(item)
    session.flush()
    # The caller's extra detail first, the facts of the item over it: the custody event
    # that makes a file evidence must state its true hash and size whatever else a
    # caller adds (a stray "sha256" key must not overwrite them).
    event_detail: dict[str, Any] = {
        **(detail or {}),
        "sha256": sha256,
        "size": size,
        "filename": item.original_filename,
        "claimed_type": item.claimed_type,
        "detected_type": detected_type,
        "submission_id": submission_id,
        "upload_id": upload_id,
    }
    ledger.append(
        db, session, actor=actor, action="item.received", subject=f"item:{item.id}",
        report_id=report_id, item_id=item.id, detail=event_detail, request_id=request_id,
    )
    # A video (by its magic bytes at intake) waits in the video lane, so it never holds
    # a slot photos need (BF-19); the worker re-checks after its own sniff.
    lane = queue.VIDEO_LANE if detected_type and is_video(detected_type) else queue.DEFAULT_LANE
    queue.enqueue(
        session, PROCESS_JOB, item_id=item.id, dedup_key=f"{PROCESS_JOB}:{item.id}",
        max_attempts=max_attempts, now=db.now(session), lane=lane,
    )
    return item


def item_summary(session: Session, item_id: str) -> dict[str, Any]:
    item = session.get(EvidenceItem, item_id)
    if item is None:
        raise NotFound(f"no item {item_id}", code="ERR_ITEM_NOT_FOUND")
    report = session.get(Report, item.report_id)
    derivatives = session.exec(select(Derivative).where(Derivative.item_id == item.id)).scalars().all()  # type: ignore[call-overload, arg-type]
    jobs = session.exec(select(Job).where(Job.item_id == item.id).order_by(Job.id)).scalars().all()  # type: ignore[call-overload, arg-type]
    return {
        "id": item.id,
        "report": report.reference if report else None,
        "state": item.state,
        "reason": item.state_reason,
        "sha256": item.sha256,
        "verified_sha256": item.verified_sha256,
        "size": item.size,
        "filename": item.original_filename,
        "detected_type": item.detected_type,
        "verdict": item.verdict,
        "verdict_signature": item.verdict_signature,
        "signature_db_version": item.signature_db_version,
        "triage": item.triage,
        "received_at": ledger.format_time(item.received_at),
        "metadata": item.media_metadata,
        "derivatives": [
            {
                "kind": d.kind, "mime_type": d.mime_type, "size": d.size, "sha256": d.sha256,
                "input_sha256": d.input_sha256, "tool": d.tool, "tool_version": d.tool_version,
                "argv": d.argv, "width": d.width, "height": d.height,
            }
            for d in derivatives
        ],
        "jobs": [
            {"id": j.id, "kind": j.kind, "lane": j.lane, "state": j.state, "attempts": j.attempts,
             "max_attempts": j.max_attempts, "last_error": j.last_error, "progress": j.progress}
            for j in jobs
        ],
    }


def list_items(session: Session, report_id: str) -> list[EvidenceItem]:
    return list(
        session.exec(  # type: ignore[call-overload]
            select(EvidenceItem).where(EvidenceItem.report_id == report_id).order_by(EvidenceItem.received_at)  # type: ignore[arg-type]
        ).scalars().all()
    )
