"""The worker's background job re-hashes originals on a schedule (issue 14 item 4) and
sweeps what crashes left behind (item 5)."""

from __future__ import annotations

import os
import stat
import tempfile
import threading
import time
from pathlib import Path

import pytest
from sqlalchemy import select

from processing.worker import run_worker
from storage.blobs.filesystem import FilesystemBlobStore
from storage.models import EvidenceItem, FixityCheck
from tests.fixtures.media import Media
from tests.processing.conftest import Env


def _wait_for(predicate: object, timeout: float = 60) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return True
        time.sleep(0.1)
    return False


def test_worker_rehashes_due_originals_and_raises_the_alarm(env: Env, media: Media) -> None:
    clean = env.ingest_file(media.jpeg_gps)
    changed = env.ingest(os.urandom(5000) + media.jpeg_gps.read_bytes())
    env.drain()
    assert env.item(clean)["state"] == "ready"
    before = env.item(changed)["state"]
    with env.db.read() as s:
        row = s.get(EvidenceItem, changed)
        assert row is not None
        key = row.blob_key
    store = FilesystemBlobStore(env.settings.data_dir / "blobs")
    path = store._object_path(key)
    os.chmod(path, stat.S_IRUSR | stat.S_IWUSR)
    with open(path, "r+b") as f:
        f.seek(3)
        f.write(b"X")
    os.chmod(path, stat.S_IRUSR)

    settings = env.settings.replace(fixity_interval_seconds=1, fixity_mb_per_s=1000.0)
    stop = threading.Event()
    thread = threading.Thread(target=run_worker, args=(settings,), kwargs={
        "concurrency": 1, "stop_event": stop, "scanner": env.scanner, "db": env.db, "poll_seconds": 0.2,
        "housekeeping_seconds": 0.2}, daemon=True)
    thread.start()
    try:
        assert _wait_for(lambda: env.item(changed)["state"] == "integrity_alarm"), env.item(changed)
        assert _wait_for(lambda: "ok" in _results(env, clean))
    finally:
        stop.set()
        thread.join(timeout=30)
    assert before in ("ready", "failed", "rejected")
    assert "mismatch" in _results(env, changed)
    assert env.item(clean)["state"] == "ready"
    assert env.actions(changed).count("item.integrity_alarm") == 1


def _results(env: Env, item_id: str) -> list[str]:
    with env.db.read() as s:
        return [c.result for c in s.exec(select(FixityCheck).where(FixityCheck.item_id == item_id)).scalars().all()]  # type: ignore[call-overload, arg-type]


def test_worker_housekeeping_sweeps_old_orphans_and_keeps_fresh_ones(
    env: Env, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    temp_root = tmp_path / "worker-tmp"
    temp_root.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temp_root))
    old = time.time() - 7200
    stale_dir = temp_root / "exhibit-job-stale"
    stale_dir.mkdir()
    (stale_dir / "input").write_bytes(b"copy of an original")
    for p in (stale_dir / "input", stale_dir):
        os.utime(p, (old, old))
    live_dir = temp_root / "exhibit-job-live"
    live_dir.mkdir()
    orphan, _, _ = env.blobs.put_bytes(b"orphan thumbnail")
    fresh, _, _ = env.blobs.put_bytes(b"fresh thumbnail, its row about to commit")
    store = FilesystemBlobStore(env.settings.data_dir / "blobs")
    os.utime(store._object_path(orphan), (old, old))

    settings = env.settings.replace(sweep_grace_seconds=3600)
    stop = threading.Event()
    thread = threading.Thread(target=run_worker, args=(settings,), kwargs={
        "concurrency": 1, "stop_event": stop, "scanner": env.scanner, "db": env.db, "poll_seconds": 0.2,
        "housekeeping_seconds": 0.2}, daemon=True)
    thread.start()
    try:
        assert _wait_for(lambda: not stale_dir.exists() and not store._object_path(orphan).exists())
    finally:
        stop.set()
        thread.join(timeout=30)
    assert live_dir.exists()
    assert env.read_blob(fresh) == b"fresh thumbnail, its row about to commit"
