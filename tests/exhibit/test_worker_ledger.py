"""`exhibit worker` runs the periodic ledger verifier (issue 11 item 3): started as an
operator starts it, it writes a signed checkpoint of the chain outside the database and
records the outcome where the admin page reads it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from storage import ledger
from storage.db import Database
from storage.ledger_watch import read_status


def test_exhibit_worker_writes_signed_checkpoints(tmp_path: Path) -> None:
    data = tmp_path / "data"
    elsewhere = tmp_path / "checkpoints"
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("EXHIBIT_")},
           "EXHIBIT_DATA_DIR": str(data), "EXHIBIT_CHECKPOINT_URL": f"file://{elsewhere}",
           "EXHIBIT_LOG_LEVEL": "WARNING"}
    exhibit = [sys.executable, "-m", "exhibit"]
    subprocess.run([*exhibit, "db", "upgrade"], env=env, check=True, capture_output=True, timeout=120)
    subprocess.run([*exhibit, "reports", "create", "W-1", "--kind", "other"], env=env, check=True,
                   capture_output=True, timeout=120)
    log = tmp_path / "worker.log"
    with log.open("w") as out:
        proc = subprocess.Popen([*exhibit, "worker"], env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        # Polling a directory: the worker process has no event to hand us.
        while not (elsewhere.is_dir() and any(elsewhere.iterdir())):
            assert proc.poll() is None, log.read_text()
            assert time.monotonic() < deadline, "no checkpoint written:\n" + log.read_text()
            time.sleep(0.1)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
    assert proc.returncode == 0, log.read_text()
    [path] = list(elsewhere.iterdir())
    key = ledger.public_key_b64(ledger.load_or_create_signing_key(data / "keys" / "ledger-ed25519.pem"))
    assert ledger.read_checkpoint(json.loads(path.read_text()), trusted_public_key=key)["seq"] == 1
    db = Database(f"sqlite:///{data / 'exhibit.db'}")
    try:
        with db.read() as s:
            status = read_status(s)
            assert status is not None and status.ok and status.checkpoint_seq == 1
    finally:
        db.dispose()
