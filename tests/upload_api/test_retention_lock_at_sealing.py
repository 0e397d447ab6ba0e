"""At sealing, an original on an Object Lock bucket is locked until its report's
retention date (issue 14 item 4), not for a fixed 2,555 days nor only the short seal
lock: a real tus upload against moto's S3 server."""

from __future__ import annotations

import base64
import datetime as dt
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import pytest
from sqlmodel import select

from storage import retention
from storage.blobs import open_store
from storage.blobs.s3 import S3BlobStore
from storage.db import Database
from storage.models import EvidenceItem, ObjectLock, Report
from storage.settings import Settings
from tests.fixtures.upload import jpeg_bytes, make_env

if TYPE_CHECKING:
    from types_boto3_s3.client import S3Client

pytestmark = pytest.mark.anyio


async def test_a_sealed_original_is_locked_until_its_report_retention_date(
    db: Database, tmp_path: Path, s3_lock_settings: Settings, s3_client: S3Client,
) -> None:
    settings = s3_lock_settings.replace(s3_seal_lock_days=1)
    store = open_store(settings)
    assert isinstance(store, S3BlobStore) and store.object_lock
    try:
        env = make_env(db, tmp_path, store=store, settings=settings)
        data = jpeg_bytes(200_000, 3)
        meta = {"filename": "scene.jpg", "filetype": "image/jpeg", "submission": env.link.submission.id}
        async with env.client() as c:
            r = await c.post("/u/files/", headers={
                "Upload-Length": str(len(data)),
                "Upload-Metadata": ",".join(f"{k} {base64.b64encode(v.encode()).decode()}" for k, v in meta.items())})
            assert r.status_code == 201, r.text
            r = await c.patch(r.headers["location"], content=data, headers={
                "Upload-Offset": "0", "Content-Type": "application/offset+octet-stream"})
            assert r.status_code == 204, r.text
        with db.read() as s:
            item = s.exec(select(EvidenceItem)).one()
            report = s.get(Report, item.report_id)
            assert report is not None
            expected = retention.retention_of(s, retention.Policy.from_settings(settings), report).until
            lock = s.get(ObjectLock, item.id)
        url = urlsplit(settings.storage_url)
        head = s3_client.head_object(Bucket=url.netloc, Key=f"{url.path.strip('/')}/{item.blob_key}")
        assert abs((head["ObjectLockRetainUntilDate"] - expected).total_seconds()) < 2
        assert expected > dt.datetime.now(dt.UTC) + dt.timedelta(days=365)  # "other": two years
        assert lock is not None and lock.applied_until is not None and lock.applied_hold is False
    finally:
        store.close_sync()
