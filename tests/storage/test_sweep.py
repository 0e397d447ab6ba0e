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
