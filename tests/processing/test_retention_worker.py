"""The worker's housekeeping round disposes of due, unheld evidence (issue 14 item 3),
and fixity never raises a false alarm over an original whose disposal is under way."""

from __future__ import annotations

import threading
from pathlib import Path

import anyio
from sqlalchemy import select

from processing.worker import housekeeping_round
from storage import fixity
from storage.blobs import BlobNotFound, read_all
from storage.blobs.filesystem import FilesystemBlobStore
from storage.db import Database
from storage.models import CustodyEvent, Disposal, EvidenceItem, Report, utcnow
from storage.retention import place_hold
from storage.settings import Settings
from tests.storage.test_retention import make_item, make_report, row


def test_the_worker_round_disposes_of_due_unheld_evidence(db: Database, db_url: str, tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data", database_url=db_url)
    store = FilesystemBlobStore(settings.data_dir / "blobs")
    old = make_report(db, "RTC/2010", "rtc", age_days=7 * 365)
    due = make_item(db, store, old)
    held = make_item(db, store, old)
    with db.write() as s:
        place_hold(db, s, s.get(Report, old.id), s.get(EvidenceItem, held), reason="inquest",  # type: ignore[arg-type]
                   actor="test:admin")

    out = housekeeping_round(settings, db, actor="worker:test:housekeeping", stop=threading.Event())

    assert [d["item_id"] for d in out["retention"].disposed] == [due]
    assert out["retention"].held == [held]
    assert row(db, due).state == "purged" and row(db, held).state == "ready"
    try:
        anyio.run(read_all, store, row(db, due).blob_key)
        raise AssertionError("the disposed original is still readable")
    except BlobNotFound:
        pass
    assert anyio.run(read_all, store, row(db, held).blob_key)
    with db.read() as s:
        event = s.exec(select(CustodyEvent).where(CustodyEvent.action == "item.purged")).scalars().one()  # type: ignore[call-overload, arg-type]
    assert event.actor == "worker:test:housekeeping" and "rtc=6y" in event.detail["rule"]


def test_fixity_raises_no_alarm_over_an_original_being_disposed_of(db: Database, tmp_path: Path) -> None:
    store = FilesystemBlobStore(tmp_path / "blobs")
    item_id = make_item(db, store, make_report(db, "CRIME/3", "crime", age_days=7 * 365))
    key = row(db, item_id).blob_key
    with db.write() as s:
        s.add(Disposal(item_id=item_id, rule="test", retain_until=utcnow(), keys=[key], actor="test",
                       started_at=utcnow()))
    anyio.run(store.destroy, key)  # the run was killed right after deleting it

    outcome = anyio.run(lambda: fixity.check_item(db, store, item_id, actor="test:fixity"))

    assert outcome is None
    assert row(db, item_id).state == "ready"
