"""Secrets on disk are private (issue 11 item 3, SECURITY_CHECKLIST AU-06): the signing
key, the server secret, the SQLite database and its -wal/-shm files are 0600 in a 0700
directory, whatever the umask; and a process that declared it must never hold the
signing key (the public door) cannot load it."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

from sqlalchemy import text

from storage import ledger
from storage.db import Database
from storage.migrate import upgrade
from storage.secrets import load_or_create_secret


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_sqlite_database_wal_and_shm_are_created_private(tmp_path: Path) -> None:
    old = os.umask(0o022)  # the usual umask: files 0644 unless created otherwise
    try:
        data = tmp_path / "data"
        url = f"sqlite:///{data / 'exhibit.db'}"
        upgrade(url)
        db = Database(url)
        try:
            with db.write() as s:
                ledger.append(db, s, actor="test", action="test.event")
            with db.read() as s:
                assert s.exec(text("SELECT count(*) FROM custody_event")).scalar_one() == 1  # type: ignore[call-overload]
            files = {p.name: _mode(p) for p in data.iterdir()}
        finally:
            db.dispose()
    finally:
        os.umask(old)
    assert _mode(data) == 0o700
    assert {"exhibit.db", "exhibit.db-wal", "exhibit.db-shm"} <= set(files)
    assert {name: mode for name, mode in files.items() if name.startswith("exhibit.db")} == {
        "exhibit.db": 0o600, "exhibit.db-wal": 0o600, "exhibit.db-shm": 0o600}


def test_an_existing_readable_database_is_tightened(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'exhibit.db'}"
    upgrade(url)
    (tmp_path / "exhibit.db").chmod(0o644)
    Database(url).dispose()
    assert _mode(tmp_path / "exhibit.db") == 0o600


def test_key_files_are_private_in_a_private_directory(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        ledger.load_or_create_signing_key(tmp_path / "keys" / "ledger.pem")
        load_or_create_secret(tmp_path / "secrets" / "secret")
    finally:
        os.umask(old)
    assert _mode(tmp_path / "keys") == 0o700 and _mode(tmp_path / "keys" / "ledger.pem") == 0o600
    assert _mode(tmp_path / "secrets") == 0o700 and _mode(tmp_path / "secrets" / "secret") == 0o600


FORBIDDEN = """
import sys
from pathlib import Path
from storage import ledger
ledger.forbid_signing_key()
try:
    ledger.load_or_create_signing_key(Path(sys.argv[1]))
except ledger.SigningKeyForbidden:
    sys.exit(7)
sys.exit(0)
"""


def test_a_process_that_forbade_the_signing_key_cannot_load_or_create_it(tmp_path: Path) -> None:
    # Its own process: the declaration lasts for the life of the process.
    existing = tmp_path / "keys" / "ledger.pem"
    ledger.load_or_create_signing_key(existing)
    for path in (existing, tmp_path / "keys" / "new.pem"):
        proc = subprocess.run([sys.executable, "-c", FORBIDDEN, str(path)], capture_output=True, text=True,
                              timeout=60, check=False)
        assert proc.returncode == 7, proc.stderr
    assert not (tmp_path / "keys" / "new.pem").exists()
