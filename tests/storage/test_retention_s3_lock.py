"""S3 Object Lock follows retention and holds (issue 14 item 4), on moto's S3 server with
an Object Lock bucket, on SQLite and PostgreSQL: an original is sealed with a short lock,
then locked until its report's retention date; a later date extends the lock
(PutObjectRetention), an earlier one never shortens it; a legal hold here is an Object
Lock legal hold there; and a disposal the lock still forbids is reported, with the
reason, and leaves the item intact."""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import anyio
from sqlalchemy import select

from storage import retention
from storage.blobs import open_store, read_all
from storage.blobs.s3 import S3BlobStore
from storage.db import Database
from storage.models import Disposal, EvidenceItem, Report, utcnow
from storage.settings import Settings
from tests.storage.test_retention import make_item, make_report, row

if TYPE_CHECKING:
    from types_boto3_s3.client import S3Client


def head(client: S3Client, settings: Settings, key: str) -> dict[str, Any]:
    url = urlsplit(settings.storage_url)
    return dict(client.head_object(Bucket=url.netloc, Key=f"{url.path.strip('/')}/{key}"))


def close_to(a: dt.datetime, b: dt.datetime) -> bool:
    return abs((a - b).total_seconds()) < 2


def test_the_lock_follows_the_retention_date_and_the_hold(
    db: Database, s3_lock_settings: Settings, s3_client: S3Client,
) -> None:
    settings = s3_lock_settings.replace(s3_seal_lock_days=1)
    policy = retention.Policy.from_settings(settings)
    store = open_store(settings)
    assert isinstance(store, S3BlobStore) and store.object_lock
    try:
        report = make_report(db, "CRIME/LOCK", "crime", age_days=10)
        item_id = make_item(db, store, report)
        key = row(db, item_id).blob_key
        sealed = head(s3_client, settings, key)["ObjectLockRetainUntilDate"]
        assert sealed < utcnow() + dt.timedelta(days=2)  # the short seal lock, not 2,555 days

        # The run applies the report's date: created + 6 years for a crime.
        out = anyio.run(lambda: retention.run_async(db, store, policy, actor="test:run"))
        assert out.locks_applied == 1 and out.errors == []
        with db.read() as s:
            expected = retention.retention_of(s, policy, s.get(Report, report.id)).until  # type: ignore[arg-type]
        assert close_to(head(s3_client, settings, key)["ObjectLockRetainUntilDate"], expected)

        # A later date extends the lock at once; an earlier one never shortens it.
        later = utcnow().replace(microsecond=0) + dt.timedelta(days=7 * 365)
        with db.write() as s:
            retention.set_retention(db, s, policy, s.get(Report, report.id), later, reason="appeal",  # type: ignore[arg-type]
                                    actor="test:admin")
        anyio.run(retention.apply_now, db, store, policy)
        assert close_to(head(s3_client, settings, key)["ObjectLockRetainUntilDate"], later)

        # A hold sets the Object Lock legal hold; its release clears it.
        with db.write() as s:
            retention.place_hold(db, s, s.get(Report, report.id), s.get(EvidenceItem, item_id),  # type: ignore[arg-type]
                                 reason="litigation", actor="test:admin")
        anyio.run(retention.apply_now, db, store, policy)
        assert head(s3_client, settings, key).get("ObjectLockLegalHoldStatus") == "ON"
        with db.write() as s:
            retention.release_hold(db, s, s.get(Report, report.id), s.get(EvidenceItem, item_id),  # type: ignore[arg-type]
                                   reason="settled", actor="test:admin")
        anyio.run(retention.apply_now, db, store, policy)
        assert head(s3_client, settings, key).get("ObjectLockLegalHoldStatus") == "OFF"

        # A date in the past: due, but the lock still forbids the purge. Reported, intact.
        with db.write() as s:
            retention.set_retention(db, s, policy, s.get(Report, report.id), utcnow() - dt.timedelta(days=1),  # type: ignore[arg-type]
                                    reason="order to destroy", actor="test:admin")
        refused = anyio.run(lambda: retention.run_async(db, store, policy, actor="test:run"))
        assert refused.disposed == []
        assert [r["item_id"] for r in refused.refused] == [item_id]
        assert "Object Lock" in refused.refused[0]["reason"] and "retains it until" in refused.refused[0]["reason"]
        assert close_to(head(s3_client, settings, key)["ObjectLockRetainUntilDate"], later)
        assert row(db, item_id).state == "ready"
        assert anyio.run(read_all, store, key)
        with db.read() as s:
            assert s.exec(select(Disposal)).first() is None  # type: ignore[call-overload]
    finally:
        store.close_sync()


def test_a_lock_that_refuses_a_deletion_mid_disposal_is_reported_not_skipped(
    db: Database, s3_lock_settings: Settings, s3_client: S3Client,
) -> None:
    """A race: the pre-check found nothing protecting the original, then someone put an
    Object Lock legal hold on it behind our back (the hook runs between the disposal
    row and the first delete). The store's refusal is reported; nothing was deleted, the
    disposal is dropped and the item is untouched; the next run reports it again."""
    # A store that does not use Object Lock itself (seal lock 0), on a lock-enabled bucket.
    settings = s3_lock_settings.replace(s3_seal_lock_days=0)
    policy = retention.Policy.from_settings(settings)
    store = open_store(settings)
    assert isinstance(store, S3BlobStore) and not store.object_lock
    try:
        report = make_report(db, "CRIME/RACE", "crime", age_days=7 * 365)
        item_id = make_item(db, store, report, derivatives=1)
        key = row(db, item_id).blob_key
        url = urlsplit(settings.storage_url)

        def hold_behind_our_back(step: str) -> None:
            if step == "intent-written":
                s3_client.put_object_legal_hold(Bucket=url.netloc, Key=f"{url.path.strip('/')}/{key}",
                                                LegalHold={"Status": "ON"})

        out = anyio.run(lambda: retention.run_async(db, store, policy, actor="test:run", hook=hold_behind_our_back))
        assert out.disposed == [] and [r["item_id"] for r in out.refused] == [item_id]
        assert "refused the deletion" in out.refused[0]["reason"]
        assert row(db, item_id).state == "ready"
        assert anyio.run(read_all, store, key)
        with db.read() as s:
            assert s.get(Disposal, item_id) is None
        second = anyio.run(lambda: retention.run_async(db, store, policy, actor="test:run"))
        assert [r["item_id"] for r in second.refused] == [item_id] and second.disposed == []
    finally:
        store.close_sync()
