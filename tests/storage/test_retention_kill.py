"""kill -9 during a disposal (issue 14 item 3), on SQLite and PostgreSQL, on the
filesystem and S3: whatever step the process dies at, the item is either untouched, or
marked as being disposed of (its ``disposal`` row names the rule and every key) and the
next run completes it; it is never purged without its bytes gone, nor stripped of bytes
with no record of why. Exactly one ``item.purged`` event in the end, and the ledger
verifies."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import anyio
import pytest
from sqlalchemy import select

from storage import ledger, retention
from storage.blobs import BlobStore
from storage.db import Database
from storage.models import CustodyEvent, Disposal, EvidenceItem
from storage.settings import Settings
from tests.storage.test_retention import exists, make_item, make_report, row

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("step", ["intent-written", "deleted:0", "deleted:2", "bytes-gone"])
def test_a_disposal_killed_at_any_step_is_completed_by_the_next_run(
    db: Database, db_url: str, blob_store: BlobStore, blob_settings: Settings, step: str, tmp_path: Path,
) -> None:
    report = make_report(db, "CRIME/KILL", "crime", age_days=7 * 365)
    item_id = make_item(db, blob_store, report, derivatives=2)
    with db.read() as s:
        item = s.get(EvidenceItem, item_id)
        assert item is not None
        keys = [k for k in retention._keys_of(s, item) if anyio.run(exists, blob_store, k)]
    assert len(keys) == 3

    config = {"data_dir": str(tmp_path / "child"), "database_url": db_url, "storage_url": blob_settings.storage_url,
              "s3_endpoint_url": blob_settings.s3_endpoint_url or "", "step": step}
    proc = subprocess.Popen([sys.executable, "-m", "tests.storage.retention_child", json.dumps(config)],
                            cwd=ROOT, stdout=subprocess.PIPE, env=os.environ.copy())
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().decode().strip()  # blocks until the child is at the step
        assert line == f"AT {step}", line
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=60)
        if proc.stdout is not None:
            proc.stdout.close()
    assert proc.returncode == -signal.SIGKILL

    # What the crash left: never purged before its bytes are gone; bytes gone only with
    # a disposal row that says why.
    left = row(db, item_id)
    with db.read() as s:
        disposal = s.get(Disposal, item_id)
        purged_events = s.exec(select(CustodyEvent).where(CustodyEvent.action == "item.purged")).scalars().all()  # type: ignore[call-overload, arg-type]
    present = [k for k in keys if anyio.run(exists, blob_store, k)]
    assert left.state != "purged" and purged_events == []
    assert disposal is not None and disposal.finished_at is None and set(keys) <= set(disposal.keys or [])
    assert "crime=6y" in disposal.rule
    order = disposal.keys or []
    done = {"intent-written": 0, "bytes-gone": len(order)}.get(step, int(step.split(":")[-1]) + 1 if ":" in step else 0)
    assert present == [k for k in keys if k not in order[:done]]

    # The next run completes it.
    again = anyio.run(lambda: retention.run_async(db, blob_store, retention.Policy.from_settings(blob_settings),
                                                  actor="test:run"))
    assert again.resumed == [item_id] and [d["item_id"] for d in again.disposed] == [item_id]
    assert row(db, item_id).state == "purged"
    assert not [k for k in keys if anyio.run(exists, blob_store, k)]
    with db.read() as s:
        events = s.exec(select(CustodyEvent).where(CustodyEvent.action == "item.purged")).scalars().all()  # type: ignore[call-overload, arg-type]
        finished = s.get(Disposal, item_id)
    assert len(events) == 1 and events[0].actor == "child:run"
    assert finished is not None and finished.finished_at is not None
    assert ledger.verify(db).ok
