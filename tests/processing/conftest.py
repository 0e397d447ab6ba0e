"""Helpers for the processing tests: a real database (SQLite and PostgreSQL through
``db``), a filesystem blob store, the session's real clamd, and items created the way
the upload API creates them (``storage.items.create_item``: item + job + custody event
in one transaction)."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from processing.blobs import BlobBridge
from processing.clamd_manager import ClamdManager
from processing.pipeline import Hook
from processing.scanning import Scanner
from processing.worker import JOB_KIND, run_one
from storage import queue
from storage.db import Database
from storage.items import create_item, item_summary
from storage.models import CustodyEvent, Derivative, Job
from storage.reports import create_report
from storage.settings import Settings

LEASE_SECONDS = 3


@dataclass
class Env:
    settings: Settings
    db: Database
    blobs: BlobBridge
    scanner: Scanner
    report_id: str
    stop: threading.Event = field(default_factory=threading.Event)

    def ingest(self, data: bytes, filename: str = "upload.bin", *, max_attempts: int = 5) -> str:
        key, sha, size = self.blobs.put_bytes(data, "originals")
        with self.db.write() as s:
            item = create_item(
                self.db, s, report_id=self.report_id, blob_key=key, size=size, sha256=sha,
                original_filename=filename, claimed_type="application/octet-stream", actor="test:upload",
                max_attempts=max_attempts,
            )
            return item.id

    def ingest_file(self, path: Path, **kw: Any) -> str:
        return self.ingest(path.read_bytes(), path.name, **kw)

    def drain(self, *, hook: Hook | None = None, scanner: Scanner | None = None, owner: str = "test-worker") -> int:
        """Run every job that is due, one after another, in this thread."""
        ran = 0
        while True:
            claim = queue.claim(self.db, owner, kinds=[JOB_KIND], lease_seconds=LEASE_SECONDS)
            if claim is None:
                return ran
            run_one(self.db, self.blobs, scanner or self.scanner, claim, lease_seconds=LEASE_SECONDS,
                    stop=self.stop, hook=hook, outage_retry_seconds=1)
            ran += 1

    def item(self, item_id: str) -> dict[str, Any]:
        with self.db.read() as s:
            return item_summary(s, item_id)

    def derivatives(self, item_id: str) -> list[Derivative]:
        with self.db.read() as s:
            return list(s.exec(select(Derivative).where(Derivative.item_id == item_id)).scalars().all())  # type: ignore[call-overload, arg-type]

    def actions(self, item_id: str) -> list[str]:
        with self.db.read() as s:
            rows = s.exec(select(CustodyEvent).where(CustodyEvent.item_id == item_id).order_by(CustodyEvent.seq)).scalars().all()  # type: ignore[call-overload, arg-type]
            return [e.action for e in rows]

    def events(self, item_id: str, action: str) -> list[dict[str, Any]]:
        with self.db.read() as s:
            rows = s.exec(select(CustodyEvent).where(CustodyEvent.item_id == item_id, CustodyEvent.action == action).order_by(CustodyEvent.seq)).scalars().all()  # type: ignore[call-overload, arg-type]
            return [dict(e.detail or {}) for e in rows]

    def job(self, item_id: str) -> Job:
        with self.db.read() as s:
            return s.exec(select(Job).where(Job.item_id == item_id)).scalars().one()  # type: ignore[call-overload, arg-type, no-any-return]

    def read_blob(self, key: str) -> bytes:
        return b"".join(self.blobs.iter(key))


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def env(db: Database, tmp_path: Path, clamd: ClamdManager) -> Iterator[Env]:
    settings = Settings(
        data_dir=tmp_path, database_url=db.url, storage_url=f"file://{tmp_path / 'blobs'}",
        clamd_address=clamd.address, job_lease_seconds=LEASE_SECONDS,
    )
    blobs = BlobBridge.from_settings(settings)
    with db.write() as s:
        report = create_report(db, s, "RTC/1", "rtc", actor="test")
        report_id = report.id
    try:
        yield Env(settings, db, blobs, clamd.scanner(), report_id)
    finally:
        blobs.close()
