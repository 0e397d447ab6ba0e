"""The sweep (issue 14 item 5) on both stores and both databases: orphan derivative
blobs and unfinished uploads with no row go once older than the grace period; a
derivative a row names, and every original, stay."""

from __future__ import annotations

import datetime as dt
import hashlib
import os
from pathlib import Path

import anyio
import pytest

from storage import fixity, sweep
from storage.blobs import BlobNotFound, BlobStore, InvalidKey, put_bytes, read_all
from storage.db import Database
from storage.items import create_item
from storage.models import Derivative, utcnow
from storage.reports import create_report
from tests.fixtures.blobs import stream

GRACE = 3600


def _later() -> dt.datetime:
    return utcnow() + dt.timedelta(seconds=2 * GRACE)


async def _incoming(store: BlobStore, namespace: str, data: bytes) -> str:
    upload = await store.create(namespace, len(data) * 2)
    await upload.write(0, stream(data))
    return upload.key


def test_sweep_removes_orphans_and_never_an_original(db: Database, blob_store: BlobStore, tmp_path: Path) -> None:
    with db.write() as s:
        report_id = create_report(db, s, "CRIME/5", "crime", actor="test").id
    original = os.urandom(6000)
    original_key = anyio.run(put_bytes, blob_store, original, "originals")
    with db.write() as s:
        item_id = create_item(db, s, report_id=report_id, blob_key=original_key, size=len(original),
                              sha256=hashlib.sha256(original).hexdigest(), actor="test").id
    kept_key = anyio.run(put_bytes, blob_store, b"thumbnail", "derivatives")
    with db.write() as s:
        s.add(Derivative(item_id=item_id, kind="thumbnail", blob_key=kept_key, mime_type="image/jpeg", size=9,
                         sha256="0" * 64, input_sha256="0" * 64, tool="t", tool_version="1"))
    orphan_key = anyio.run(put_bytes, blob_store, b"orphan preview", "derivatives")
    loose_original = anyio.run(put_bytes, blob_store, b"an original no row names", "originals")
    incoming_original = anyio.run(_incoming, blob_store, "originals", b"half an upload")
    incoming_derivative = anyio.run(_incoming, blob_store, "derivatives", b"half a proxy")
    temp_root = tmp_path / "tmp"
    (temp_root / "exhibit-job-abc").mkdir(parents=True)
    (temp_root / "exhibit-job-abc" / "input").write_bytes(original)
    (temp_root / "exhibit-job-abc" / "input").chmod(0o400)
    (temp_root / "unrelated").mkdir()

    # Inside the grace period nothing goes (work in flight).
    fresh = anyio.run(lambda: sweep.sweep_async(db, blob_store, grace_seconds=GRACE, temp_root=temp_root,
                                                dry_run=False))
    assert (fresh.orphan_derivatives, fresh.orphan_uploads, fresh.work_dirs) == ([], [], [])
    # A dry run lists and removes nothing.
    dry = anyio.run(lambda: sweep.sweep_async(db, blob_store, grace_seconds=GRACE, temp_root=temp_root,
                                              dry_run=True, now=_later()))
    assert dry.orphan_derivatives == [orphan_key]
    assert sorted(dry.orphan_uploads) == sorted([incoming_original, incoming_derivative])
    assert anyio.run(read_all, blob_store, orphan_key) == b"orphan preview"

    done = anyio.run(lambda: sweep.sweep_async(db, blob_store, grace_seconds=GRACE, temp_root=temp_root,
                                               dry_run=False, now=_later()))
    assert done.errors == []
    assert done.orphan_derivatives == [orphan_key]
    assert sorted(done.orphan_uploads) == sorted([incoming_original, incoming_derivative])
    assert done.work_dirs == [str(temp_root / "exhibit-job-abc")]
    assert done.unreferenced_originals == [loose_original]  # reported, kept
    with pytest.raises(BlobNotFound):
        anyio.run(read_all, blob_store, orphan_key)
    for key in (incoming_original, incoming_derivative):
        with pytest.raises(BlobNotFound):
            anyio.run(blob_store.get, key)
    assert not (temp_root / "exhibit-job-abc").exists() and (temp_root / "unrelated").exists()
    # What rows point to, and every original, are intact.
    assert anyio.run(read_all, blob_store, kept_key) == b"thumbnail"
    assert anyio.run(read_all, blob_store, loose_original) == b"an original no row names"
    proof = anyio.run(lambda: fixity.run_async(db, blob_store, actor="test"))
    assert [(o.item_id, o.result) for o in proof.outcomes] == [(item_id, "ok")]
    # And the store itself refuses to remove a finished original.
    remove = blob_store.sweep_remove  # type: ignore[attr-defined]
    with pytest.raises(InvalidKey):
        anyio.run(lambda: remove(original_key, finished=True))


def test_cli_sweep_dry_run_lists_then_sweep_removes(
    db: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    import json

    from exhibit.cli import main as cli_main
    from storage.blobs.filesystem import FilesystemBlobStore

    store = FilesystemBlobStore(tmp_path / "blobs")
    monkeypatch.setenv("EXHIBIT_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("EXHIBIT_DATABASE_URL", db.url)
    monkeypatch.setenv("EXHIBIT_STORAGE_URL", f"file://{tmp_path / 'blobs'}")
    monkeypatch.setenv("EXHIBIT_SWEEP_GRACE", "1h")
    orphan = anyio.run(put_bytes, store, b"orphan", "derivatives")
    fresh = anyio.run(put_bytes, store, b"fresh orphan", "derivatives")
    old = (utcnow() - dt.timedelta(hours=2)).timestamp()
    os.utime(store._object_path(orphan), (old, old))
    temp_root = tmp_path / "tmp"
    temp_root.mkdir()

    assert cli_main(["sweep", "--dry-run", "--temp-root", str(temp_root), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["orphan_derivatives"] == [orphan] and out["removed"] == 0
    assert anyio.run(read_all, store, orphan) == b"orphan"

    assert cli_main(["sweep", "--temp-root", str(temp_root), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["orphan_derivatives"] == [orphan] and out["removed"] == 1
    with pytest.raises(BlobNotFound):
        anyio.run(read_all, store, orphan)
    assert anyio.run(read_all, store, fresh) == b"fresh orphan"  # inside the grace period


def test_s3_multipart_upload_without_its_info_is_swept(db: Database, s3_settings: object, s3_client: object) -> None:
    from storage.blobs import open_store
    from storage.settings import Settings

    assert isinstance(s3_settings, Settings)
    store = open_store(s3_settings)
    try:
        bucket = s3_settings.storage_url.split("/")[2]
        name = "exhibit/originals/" + "ab" * 16
        # A crash right after CreateMultipartUpload: no .info was written.
        s3_client.create_multipart_upload(Bucket=bucket, Key=name)  # type: ignore[attr-defined]
        report = anyio.run(lambda: sweep.sweep_async(db, store, grace_seconds=GRACE, temp_root=None,
                                                     dry_run=False, now=_later()))
        assert report.orphan_uploads == ["originals/" + "ab" * 16]
        left = s3_client.list_multipart_uploads(Bucket=bucket).get("Uploads", [])  # type: ignore[attr-defined]
        assert left == []
    finally:
        anyio.run(store.close)
