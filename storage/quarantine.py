"""Quarantine: an infected original moves to the ``quarantine/`` key prefix, out of reach
of every viewer, download and export path (``BlobStore.read`` refuses those keys), kept
byte-exact: the item row keeps its SHA-256 and fixity still re-hashes it.

Crash-safe in three steps, each idempotent: (1) the store gives the bytes their
quarantine name (a hard link; on S3 a server-side copy, locked like an original); (2)
the row takes the new key and the custody event ``item.quarantined`` is appended, one
transaction; (3) the old name is removed (the store refuses unless the quarantine name
exists). A crash after (1) or (2) is completed by ``quarantine_pending`` in the worker's
housekeeping round. Threat: malware in evidence reaching a reviewer's or a partner's
machine through a download or an export (DESIGN.md section 3: infected items are never
previewed or shared).
"""

from __future__ import annotations

import logging

from sqlalchemy import select
from sqlmodel import col

from storage import ledger
from storage.blobs.keys import split_key
from storage.blobs.protocol import QUARANTINE, SyncBlobStore
from storage.db import Database
from storage.lifecycle import ItemState
from storage.models import EvidenceItem

log = logging.getLogger(__name__)


def quarantine_item(db: Database, store: SyncBlobStore, item_id: str, *, actor: str) -> str | None:
    """Move an infected item's original to quarantine; returns its new key, or None when
    there is nothing to do (not infected, already moved). Blocking (the database and the
    store's sync API): the worker's threads call it; async code through a worker thread."""
    with db.read() as s:
        item = s.get(EvidenceItem, item_id)
        if item is None or item.state != ItemState.INFECTED:
            return None
        key = item.blob_key
    if split_key(key)[0] == QUARANTINE:
        return None
    new_key = store.quarantine_copy_sync(key)
    with db.write() as s:
        query = select(EvidenceItem).where(col(EvidenceItem.id) == item_id)
        if db.is_postgresql:
            query = query.with_for_update()
        row = s.exec(query).scalars().first()  # type: ignore[call-overload]
        if row is None or row.blob_key != key:
            return None
        row.blob_key = new_key
        s.add(row)
        ledger.append(db, s, actor=actor, action="item.quarantined", subject=f"item:{item_id}",
                      report_id=row.report_id, item_id=item_id,
                      detail={"from_key": key, "to_key": new_key, "sha256": row.sha256, "size": row.size,
                              "signature": row.verdict_signature})
    store.quarantine_drop_sync(key)
    log.info("quarantine.moved", extra={"item_id": item_id})
    return new_key


def pending(db: Database) -> list[str]:
    """Infected items whose original is not in quarantine yet (a crash, or an item
    found infected before quarantine existed)."""
    with db.read() as s:
        rows = s.exec(select(EvidenceItem.id, EvidenceItem.blob_key)  # type: ignore[call-overload]
                      .where(col(EvidenceItem.state) == ItemState.INFECTED)).all()
    return [item_id for item_id, key in rows if not key.startswith(f"{QUARANTINE}/")]


def quarantine_pending(db: Database, store: SyncBlobStore, *, actor: str) -> list[str]:
    moved = []
    for item_id in pending(db):
        if quarantine_item(db, store, item_id, actor=actor):
            moved.append(item_id)
    return moved
