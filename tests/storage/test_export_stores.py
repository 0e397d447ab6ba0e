"""The export bundle from each real blob store (filesystem and S3 over HTTP via moto),
on SQLite and PostgreSQL: the same bytes in, a bundle that verifies out."""

from __future__ import annotations

import asyncio
import io
import zipfile
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from storage import export, ledger
from storage.blobs.protocol import BlobStore
from storage.bundle_verify import verify_bundle
from storage.db import Database
from storage.models import EvidenceItem
from storage.reports import create_report
from tests.fixtures.evidence import seed_item


def test_bundle_from_each_store_verifies(db: Database, blob_store: BlobStore, tmp_path: Path, tiny_mp4: bytes) -> None:
    with db.write() as session:
        report = create_report(db, session, "RTC/2026/0100", "rtc", title="Collision", actor="test")
    photo = seed_item(db, blob_store, report)
    video = seed_item(db, blob_store, report, media="video", mp4=tiny_mp4, filename="clip.mp4")
    key = Ed25519PrivateKey.generate()
    out = io.BytesIO()
    result = asyncio.run(export.write_bundle(db, blob_store, report.reference, out, key=key, exported_by="test",
                                             reason="court", with_derivatives=True))
    bundle = tmp_path / "b.zip"
    bundle.write_bytes(out.getvalue())
    assert result.size == len(out.getvalue())
    with zipfile.ZipFile(bundle) as zf:
        assert zf.read(f"originals/{photo.item.id}_evidence.jpg") == photo.original
        assert zf.read(f"originals/{video.item.id}_clip.mp4") == video.original
        assert zf.read(f"derivatives/{video.item.id}_proxy.mp4") == video.derivatives["proxy"]
    checked = verify_bundle(bundle, ledger.public_key_b64(key))
    assert checked.ok, checked.problems
    # Another key, pinned: refused.
    assert not verify_bundle(bundle, ledger.public_key_b64(Ed25519PrivateKey.generate())).ok


def test_an_original_that_no_longer_matches_its_hash_stops_the_export(db: Database, fs_blob_store: BlobStore) -> None:
    with db.write() as session:
        report = create_report(db, session, "RTC/2026/0101", "rtc", title="Collision", actor="test")
    seeded = seed_item(db, fs_blob_store, report)
    with db.write() as session:
        row = session.get(EvidenceItem, seeded.item.id)
        assert row is not None
        row.sha256 = "0" * 64  # the bytes in the store are no longer the ones received
    with pytest.raises(export.ExportError) as exc:
        asyncio.run(export.write_bundle(db, fs_blob_store, report.reference, io.BytesIO(),
                                        key=Ed25519PrivateKey.generate(), exported_by="test", reason="court"))
    assert exc.value.code == "ERR_INTEGRITY"
