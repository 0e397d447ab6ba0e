"""Issue 13's round trip, on both databases and both stores (the filesystem and S3 through
moto's server): a phone photo and a phone video come in as the upload API files them,
the real worker (real clamd, ffprobe, ffmpeg) makes them ready, and the bundle exported
from that store checks with ``sha256sum -c`` and ``verify-bundle``: the originals byte for
byte, the derivatives the worker made with the argv it recorded, and the custody events
the worker wrote."""

from __future__ import annotations

import asyncio
import io
import json
import subprocess
import zipfile
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from processing.blobs import BlobBridge
from processing.clamd_manager import ClamdManager
from storage import export, ledger
from storage.blobs import open_store
from storage.bundle_verify import verify_bundle
from storage.db import Database
from storage.reports import create_report
from storage.settings import Settings
from tests.fixtures.media import Media
from tests.processing.conftest import LEASE_SECONDS, Env


def test_uploaded_evidence_made_ready_by_the_worker_exports_and_verifies(
    db: Database, blob_settings: Settings, clamd: ClamdManager, media: Media, tmp_path: Path,
) -> None:
    settings = blob_settings.replace(database_url=db.url, clamd_address=clamd.address,
                                     job_lease_seconds=LEASE_SECONDS)
    blobs = BlobBridge.from_settings(settings)
    store = open_store(settings)
    try:
        with db.write() as s:
            report_id = create_report(db, s, "RTC/2026/0777", "rtc", actor="test").id
        env = Env(settings, db, blobs, clamd.scanner(), report_id)
        photo = env.ingest_file(media.jpeg_gps)
        clip = env.ingest_file(media.rotated_mov)
        env.drain()
        assert env.item(photo)["state"] == "ready" and env.item(clip)["state"] == "ready"

        key = Ed25519PrivateKey.generate()
        out = io.BytesIO()
        result = asyncio.run(export.write_bundle(db, store, "RTC/2026/0777", out, key=key, exported_by="test",
                                                 reason="CPS file", with_derivatives=True))
    finally:
        blobs.close()
        close = getattr(store, "close_sync", None)
        if close is not None:
            close()
    bundle = tmp_path / "bundle.zip"
    bundle.write_bytes(out.getvalue())
    unzipped = tmp_path / "unzipped"
    with zipfile.ZipFile(bundle) as zf:
        zf.extractall(unzipped)
    check = subprocess.run(["sha256sum", "-c", "SHA256SUMS"], cwd=unzipped, capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    verified = verify_bundle(bundle, ledger.public_key_b64(key))
    assert verified.ok, verified.problems
    assert sorted(result.items) == sorted([photo, clip])

    manifest = json.loads((unzipped / "manifest.json").read_text())
    by_id = {i["id"]: i for i in manifest["items"]}
    assert (unzipped / by_id[photo]["file"]).read_bytes() == media.read("jpeg_gps")
    assert (unzipped / by_id[clip]["file"]).read_bytes() == media.read("rotated_mov")
    proxy = next(d for d in by_id[clip]["derivatives"] if d["kind"] == "proxy")
    # How to make it again: the program by name, the worker's arguments, no server paths.
    assert proxy["tool"] == "ffmpeg" and proxy["argv"][0] == "ffmpeg" and "file:input" in proxy["argv"]
    assert not any(a.startswith("/") for a in proxy["argv"]) and proxy["file"]
    assert proxy["input_sha256"] == by_id[clip]["sha256_at_ingest"]
    # The worker's own events are in the trail, in full.
    events = [json.loads(line) for line in (unzipped / "custody/events.jsonl").read_text().splitlines()]
    actions = {(e.get("item_id"), e.get("action")) for e in events if not e.get("elided")}
    for item_id in (photo, clip):
        assert {(item_id, "item.verified"), (item_id, "item.ready")} <= actions
