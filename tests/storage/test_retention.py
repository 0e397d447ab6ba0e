"""Retention, legal hold and disposal (issue 14 items 1-3), on SQLite and PostgreSQL, on
the filesystem and S3 (moto over HTTP): what falls due and why; a run destroys every
byte of due, unheld evidence (original, derivatives, quarantine copy, unfinished upload
under its name) and keeps the record; a hold wins over any date until an admin
releases it with a reason."""

from __future__ import annotations

import datetime as dt
import hashlib
import os
from typing import Any
from urllib.parse import urlsplit

import anyio
import pytest
from sqlalchemy import select

from storage import ledger, retention
from storage.blobs import BlobNotFound, BlobStore, put_bytes
from storage.db import Database
from storage.errors import Conflict, Invalid, NotFound
from storage.items import create_item
from storage.models import CustodyEvent, Derivative, Disposal, EvidenceItem, Report, utcnow
from storage.reports import create_report
from storage.settings import Settings

POLICY = retention.Policy.from_settings(Settings(retention_by_kind="crime=6y,asb=3y", retention_default="2y",
                                                 retention_declined="90d"))
NOW = utcnow()


def make_report(db: Database, ref: str, kind: str, *, age_days: int) -> Report:
    with db.write() as s:
        report = create_report(db, s, ref, kind, actor="test")
        report.created_at = NOW - dt.timedelta(days=age_days)
        s.add(report)
        s.flush()
        s.expunge(report)
        return report


def make_item(db: Database, store: BlobStore | None, report: Report, *, state: str = "ready",
              triage: str = "pending", age_days: int = 0, derivatives: int = 0,
              metadata: dict[str, Any] | None = None) -> str:
    data = os.urandom(20_000)
    key = anyio.run(put_bytes, store, data, "originals") if store is not None else f"originals/{os.urandom(16).hex()}"
    with db.write() as s:
        item = create_item(db, s, report_id=report.id, blob_key=key, size=len(data),
                           sha256=hashlib.sha256(data).hexdigest(), actor="test:upload")
        item.state, item.triage = state, triage
        item.received_at = NOW - dt.timedelta(days=age_days)
        item.media_metadata = metadata
        s.add(item)
        for n in range(derivatives):
            dkey = anyio.run(put_bytes, store, os.urandom(3000), "derivatives") if store else f"derivatives/{n:032x}"
            s.add(Derivative(item_id=item.id, kind=f"kind{n}", blob_key=dkey, mime_type="image/jpeg", size=3000,
                             sha256="0" * 64, input_sha256=item.sha256, tool="test", tool_version="1"))
        return item.id


def row(db: Database, item_id: str) -> EvidenceItem:
    with db.read() as s:
        item = s.get(EvidenceItem, item_id)
        assert item is not None
        s.expunge(item)
        return item


async def exists(store: BlobStore, key: str) -> bool:
    reader: Any = getattr(store, "read_quarantined", store.read)
    try:
        [chunk async for chunk in reader(key)]
    except BlobNotFound:
        return False
    return True


def test_due_list_follows_the_kind_the_set_date_and_declined_items(db: Database) -> None:
    old_crime = make_report(db, "CRIME/OLD", "crime", age_days=6 * 365 + 5)
    young_crime = make_report(db, "CRIME/NEW", "crime", age_days=30)
    asb = make_report(db, "ASB/1", "asb", age_days=3 * 365 - 10)  # due in about 9 days
    other = make_report(db, "OTHER/1", "other", age_days=2 * 365 + 2)  # the default, 2y
    a = make_item(db, None, old_crime)
    b = make_item(db, None, young_crime)
    declined = make_item(db, None, young_crime, triage="declined", age_days=91)
    c = make_item(db, None, asb)
    d = make_item(db, None, other)

    with db.read() as s:
        due_now = {x.item_id: x for x in retention.due(s, POLICY)}
        due_in_30 = {x.item_id for x in retention.due(s, POLICY, within_seconds=30 * 86400)}
    assert set(due_now) == {a, declined, d}
    assert b not in due_now and c not in due_now
    assert due_in_30 == {a, declined, d, c}
    assert "crime=6y" in due_now[a].rule
    assert "EXHIBIT_RETENTION_DEFAULT" in due_now[d].rule and "other=2y" in due_now[d].rule
    assert "DECLINED" in due_now[declined].rule

    # A date set by a person governs every item of the report, declined ones too.
    with db.write() as s:
        report = s.get(Report, young_crime.id)
        assert report is not None
        retention.set_retention(db, s, POLICY, report, NOW + dt.timedelta(days=400), reason="appeal lodged",
                                actor="test:admin")
        old = s.get(Report, old_crime.id)
        assert old is not None
        retention.set_retention(db, s, POLICY, old, NOW + dt.timedelta(days=10), reason="review in ten days",
                                actor="test:admin")
    with db.read() as s:
        due_now2 = {x.item_id for x in retention.due(s, POLICY)}
        events = s.exec(select(CustodyEvent).where(CustodyEvent.action == "report.retention_set")).scalars().all()  # type: ignore[call-overload, arg-type]
    assert due_now2 == {d}
    assert [e.detail["reason"] for e in events] == ["appeal lodged", "review in ten days"]
    assert events[0].actor == "test:admin"

    # No reason, no change; an officer (allow_shorten=False) cannot bring a date forward.
    with db.write() as s:
        report = s.get(Report, young_crime.id)
        assert report is not None
        with pytest.raises(Invalid):
            retention.set_retention(db, s, POLICY, report, NOW, reason="  ", actor="test")
        with pytest.raises(Invalid) as refused:
            retention.set_retention(db, s, POLICY, report, NOW, reason="tidy up", actor="test:officer",
                                    allow_shorten=False)
        assert refused.value.code == "ERR_RETENTION_SHORTEN"
        retention.set_retention(db, s, POLICY, report, NOW + dt.timedelta(days=800), reason="longer",
                                actor="test:officer", allow_shorten=False)


def test_run_destroys_every_byte_of_due_unheld_evidence_and_keeps_the_record(
    db: Database, blob_store: BlobStore,
) -> None:
    old = make_report(db, "CRIME/2001", "crime", age_days=7 * 365)
    due_item = make_item(db, blob_store, old, derivatives=2,
                         metadata={"exif": {"Make": "TestCam", "GPSInfo": {"lat": 51.5}}, "width": 320})
    held_item = make_item(db, blob_store, old, derivatives=1)
    report_held = make_report(db, "CRIME/2002", "crime", age_days=7 * 365)
    under_report_hold = make_item(db, blob_store, report_held)
    fresh = make_item(db, blob_store, make_report(db, "CRIME/2026", "crime", age_days=1))
    processing = make_item(db, blob_store, old, state="processing")
    keys_of = {}
    with db.read() as s:
        for item_id in (due_item, held_item):
            item = s.get(EvidenceItem, item_id)
            assert item is not None
            keys_of[item_id] = [k for k in retention._keys_of(s, item) if anyio.run(exists, blob_store, k)]
    assert len(keys_of[due_item]) == 3 and len(keys_of[held_item]) == 2  # original + derivatives

    with db.write() as s:
        item = s.get(EvidenceItem, held_item)
        assert item is not None
        retention.place_hold(db, s, s.get(Report, old.id), item, reason="civil claim pending",  # type: ignore[arg-type]
                             actor="test:officer")
        retention.place_hold(db, s, s.get(Report, report_held.id), None, reason="IOPC investigation",  # type: ignore[arg-type]
                             actor="test:admin")

    dry = anyio.run(lambda: retention.run_async(db, blob_store, POLICY, actor="test:run", dry_run=True))
    assert [d["item_id"] for d in dry.disposed] == [due_item]
    assert anyio.run(exists, blob_store, keys_of[due_item][0])  # a dry run changes nothing

    result = anyio.run(lambda: retention.run_async(db, blob_store, POLICY, actor="test:run"))
    assert [d["item_id"] for d in result.disposed] == [due_item]
    assert sorted(result.held) == sorted([held_item, under_report_hold])
    assert result.deferred == [{"item_id": processing, "state": "processing"}]
    assert result.refused == [] and result.errors == []

    # Every byte of the disposed item is gone, in every namespace it had.
    for key in keys_of[due_item]:
        assert not anyio.run(exists, blob_store, key), key
    # Held, fresh and still-processing evidence is intact.
    for item_id in (held_item, under_report_hold, fresh, processing):
        assert anyio.run(exists, blob_store, row(db, item_id).blob_key)
        assert row(db, item_id).state != "purged"
    for key in keys_of[held_item]:
        assert anyio.run(exists, blob_store, key)

    # The record stays: hashes, size, the rule, the custody event, a summary of metadata.
    purged = row(db, due_item)
    assert purged.state == "purged" and len(purged.sha256) == 64 and purged.size == 20_000
    assert purged.media_metadata == {"purged_summary": {"width": 320, "Make": "TestCam"}}
    with db.read() as s:
        event = s.exec(select(CustodyEvent).where(CustodyEvent.action == "item.purged")).scalars().one()  # type: ignore[call-overload, arg-type]
        disposal = s.get(Disposal, due_item)
        derivative_rows = s.exec(select(Derivative).where(Derivative.item_id == due_item)).scalars().all()  # type: ignore[call-overload, arg-type]
    assert event.item_id == due_item and "crime=6y" in event.detail["rule"]
    assert event.detail["sha256"] == purged.sha256 and event.detail["from"] == "ready"
    assert disposal is not None and disposal.finished_at is not None
    assert len(derivative_rows) == 2  # their hashes stay in the record
    assert ledger.verify(db).ok

    # A second run does nothing more; releasing the hold (an admin, a reason) lets it go.
    again = anyio.run(lambda: retention.run_async(db, blob_store, POLICY, actor="test:run"))
    assert again.disposed == []
    with db.write() as s:
        report = s.get(Report, old.id)
        item = s.get(EvidenceItem, held_item)
        assert report is not None and item is not None
        with pytest.raises(Invalid):
            retention.release_hold(db, s, report, item, reason="", actor="test:admin")
        with pytest.raises(NotFound):
            retention.release_hold(db, s, report, None, reason="no report hold here", actor="test:admin")
        released = retention.release_hold(db, s, report, item, reason="claim settled", actor="test:admin")
        assert released[0].released_by == "test:admin"
        assert [h["item_id"] for h in retention.list_holds(s)] == [None]  # the report hold stays live
    after = anyio.run(lambda: retention.run_async(db, blob_store, POLICY, actor="test:run"))
    assert [d["item_id"] for d in after.disposed] == [held_item]
    for key in keys_of[held_item]:
        assert not anyio.run(exists, blob_store, key)
    # A purged item cannot be held any more.
    with db.write() as s:
        report = s.get(Report, old.id)
        item = s.get(EvidenceItem, held_item)
        with pytest.raises(Conflict):
            retention.place_hold(db, s, report, item, reason="too late", actor="test:admin")  # type: ignore[arg-type]


def test_a_quarantined_original_and_an_unfinished_upload_under_its_name_are_destroyed_too(
    db: Database, blob_store: BlobStore, blob_settings: Settings, request: pytest.FixtureRequest,
) -> None:
    from storage import quarantine
    from storage.blobs.filesystem import FilesystemBlobStore

    old = make_report(db, "ASB/1999", "asb", age_days=4 * 365)
    infected = make_item(db, blob_store, old, state="infected")
    moved = quarantine.quarantine_item(db, blob_store, infected, actor="test")
    assert moved is not None and moved.startswith("quarantine/")
    _, hexpart = moved.split("/")
    # Leftovers of an upload under the original's name, made behind the store's back.
    if isinstance(blob_store, FilesystemBlobStore):
        stray = blob_store._incoming_path(f"originals/{hexpart}")
        stray.parent.mkdir(parents=True, exist_ok=True)
        stray.write_bytes(b"x" * 1000)
    else:
        client = request.getfixturevalue("s3_client")
        url = urlsplit(blob_settings.storage_url)
        name = f"{url.path.strip('/')}/originals/{hexpart}"
        client.create_multipart_upload(Bucket=url.netloc, Key=name)
        assert client.list_multipart_uploads(Bucket=url.netloc).get("Uploads")

    result = anyio.run(lambda: retention.run_async(db, blob_store, POLICY, actor="test:run"))
    assert [d["item_id"] for d in result.disposed] == [infected]
    for key in (moved, f"originals/{hexpart}"):
        assert not anyio.run(exists, blob_store, key)
    if isinstance(blob_store, FilesystemBlobStore):
        assert not stray.exists()
    else:
        assert not client.list_multipart_uploads(Bucket=url.netloc).get("Uploads")
        versions = client.list_object_versions(Bucket=url.netloc, Prefix=url.path.strip("/"))
        assert not versions.get("Versions")


def test_the_due_list_says_which_items_a_live_hold_keeps(db: Database) -> None:
    """``retention due`` (the admin page and the CLI) flags exactly the items a live hold
    keeps: an item's own hold, its report's hold; not a sibling of a held item, nor an
    item whose hold was released."""
    first = make_report(db, "CRIME/3001", "crime", age_days=7 * 365)
    own_hold, sibling, released = (make_item(db, None, first) for _ in range(3))
    second = make_report(db, "CRIME/3002", "crime", age_days=7 * 365)
    under_report_hold = make_item(db, None, second)
    with db.write() as s:
        report = s.get(Report, first.id)
        assert report is not None
        for item_id in (own_hold, released):
            retention.place_hold(db, s, report, s.get(EvidenceItem, item_id), reason="civil claim pending",
                                 actor="test:officer")
        retention.release_hold(db, s, report, s.get(EvidenceItem, released), reason="claim settled",
                               actor="test:admin")
        retention.place_hold(db, s, s.get(Report, second.id), None, reason="IOPC investigation",  # type: ignore[arg-type]
                             actor="test:admin")
    with db.read() as s:
        held = {x.item_id: x.held for x in retention.due(s, POLICY)}
    assert held == {own_hold: True, sibling: False, released: False, under_report_hold: True}
