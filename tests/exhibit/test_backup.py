"""Backup and restore drills (issue 16 item 2), as an operator runs them, through the real
``exhibit`` commands in subprocesses:

* SQLite with the filesystem store: ``exhibit backup`` while the system is running (the
  server process holds the database open, its last commits still in the write-ahead log,
  an upload half done), ``exhibit restore`` into an empty place;
* PostgreSQL (``pg_dump``/``pg_restore``) with S3 (moto's server; the bucket, with
  Object Lock, is kept: it is its own backup), restored into an empty database.

Then, on the restored system: ``exhibit audit verify`` passes against the signed
checkpoint with the pinned key, ``exhibit fixity run`` re-hashes every original and
finds each one intact, and the citizen's unfinished upload resumes where it stopped and
becomes evidence with the right SHA-256."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx2
import pytest
from sqlmodel import select

from storage import ledger
from storage.blobs import open_store
from storage.db import Database
from storage.ledger_watch import LedgerWatch
from storage.models import EvidenceItem
from storage.settings import Settings
from tests.fixtures.evidence import make_jpeg
from tests.fixtures.postgres import PostgresCluster
from tests.fixtures.upload import UploadEnv, make_env

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def exhibit(env: dict[str, str], *argv: str) -> tuple[int, Any]:
    result = subprocess.run([sys.executable, "-m", "exhibit", *argv, "--json"], env=env, capture_output=True,
                            text=True, timeout=600, check=False)
    try:
        return result.returncode, json.loads(result.stdout)
    except ValueError:
        raise AssertionError(f"exit {result.returncode}\n{result.stdout}\n{result.stderr}") from None


def environment(settings: Settings, public_key: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("EXHIBIT_")}
    env.update({"EXHIBIT_DATA_DIR": str(settings.data_dir), "EXHIBIT_DATABASE_URL": settings.database_url,
                "EXHIBIT_STORAGE_URL": settings.storage_url, "EXHIBIT_LEDGER_PUBLIC_KEY": public_key,
                "EXHIBIT_FIXITY_MB_PER_S": "1000"})
    if settings.s3_endpoint_url:
        env["EXHIBIT_S3_ENDPOINT_URL"] = settings.s3_endpoint_url
    return env


def meta(env: UploadEnv) -> str:
    values = {"filename": "a.jpg", "filetype": "image/jpeg", "submission": env.link.submission.id}
    return ",".join(f"{k} {base64.b64encode(v.encode()).decode()}" for k, v in values.items())


def wal_bytes(sqlite_url: str) -> int:
    return os.path.getsize(sqlite_url.split(":///", 1)[1] + "-wal")


TUS = {"Content-Type": "application/offset+octet-stream"}


async def test_backup_of_a_running_system_restores_verifies_and_uploads_resume(
        db: Database, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    postgres = db.is_postgresql
    live_dir = tmp_path / "live"
    if postgres:
        # PostgreSQL + S3: the bucket with Object Lock is kept across the restore.
        base: Settings = request.getfixturevalue("s3_lock_settings")
        settings = base.replace(data_dir=live_dir, database_url=db.url, migration_database_url=db.url,
                                checkpoint_url=f"file://{tmp_path / 'live-checkpoints'}",
                                secret_key_file=None, signing_key_file=None)
    else:
        settings = Settings(data_dir=live_dir, database_url=db.url, storage_url=f"file://{live_dir / 'blobs'}",
                            checkpoint_url=f"file://{tmp_path / 'live-checkpoints'}")
    store = open_store(settings)
    live = make_env(db, tmp_path, store=store, settings=settings)

    photo = make_jpeg(320, 240)
    half = make_jpeg(640, 480, colour=(10, 200, 30))
    cut = len(half) // 2
    async with live.client() as c:
        done = await c.post("/u/files/", headers={"Upload-Length": str(len(photo)), "Upload-Metadata": meta(live),
                                                  **TUS}, content=photo)
        assert done.status_code == 201, done.text
        started = await c.post("/u/files/", headers={"Upload-Length": str(len(half)), "Upload-Metadata": meta(live),
                                                     **TUS}, content=half[:cut])
        assert started.status_code == 201, started.text
    resume_url = started.headers["location"]
    # The ledger verifier has signed the history so far (outside the database as well).
    watch = LedgerWatch(settings, db)
    assert watch.run_once().ok
    assert settings.signing_key_file is not None
    public_key = ledger.public_key_b64(ledger.load_or_create_signing_key(settings.signing_key_file))

    # Back up while the system runs: this process still holds the database open (SQLite:
    # the latest commits are still in the write-ahead log, which a copy of the database
    # file alone would miss).
    if not postgres:
        assert wal_bytes(db.url) > 0
    backup = tmp_path / "backup"
    code, made = exhibit(environment(settings, public_key), "backup", "--out", str(backup))
    assert code == 0, made
    assert made["database"]["kind"] == ("postgresql" if postgres else "sqlite")
    assert (backup / "keys" / "signing_key").stat().st_mode & 0o077 == 0
    # The live system goes on after the backup: none of this is in the backup.
    async with live.client() as c:
        later = await c.post("/u/files/", headers={"Upload-Length": "4", "Upload-Metadata": meta(live), **TUS})
        assert later.status_code == 201

    # Restore into an empty place.
    restored_dir = tmp_path / "restored"
    if postgres:
        cluster: PostgresCluster = request.getfixturevalue("pg_cluster")
        restored_url = cluster.create_database(prefix="restored")
        restored = settings.replace(data_dir=restored_dir, database_url=restored_url,
                                    migration_database_url=restored_url,
                                    checkpoint_url=f"file://{tmp_path / 'restored-checkpoints'}",
                                    secret_key_file=None, signing_key_file=None)
    else:
        restored = Settings(data_dir=restored_dir, storage_url=f"file://{restored_dir / 'blobs'}",
                            checkpoint_url=f"file://{tmp_path / 'restored-checkpoints'}")
    env = environment(restored, public_key)
    code, put_back = exhibit(env, "restore", "--from", str(backup))
    assert code == 0, put_back
    # Never over something that exists.
    code, refused = exhibit(env, "restore", "--from", str(backup))
    assert code == 2 and refused["error"]["code"] == "ERR_RESTORE_TARGET"

    code, verified = exhibit(env, "audit", "verify")
    assert code == 0, verified
    assert verified["ok"] is True and verified["checkpoint_source"] == "database"
    code, fixity = exhibit(env, "fixity", "run")
    assert code == 0, fixity
    assert fixity["checked"] == 1 and fixity["ok"] == 1 and fixity["alarms"] == 0

    # The citizen's phone comes back and finishes the upload on the restored system.
    restored_db = Database(restored.database_url)
    try:
        again = make_env(restored_db, tmp_path / "again", store=open_store(restored), settings=restored)
        headers = {"Authorization": f"Bearer {live.link.token}", "Tus-Resumable": "1.0.0"}
        async with httpx2.AsyncClient(transport=httpx2.ASGITransport(app=again.app), base_url="http://testserver",
                                      headers=headers) as c:
            head = await c.head(resume_url)
            assert head.status_code == 200, head.text
            offset = int(head.headers["upload-offset"])
            assert offset == cut
            rest = await c.patch(resume_url, headers={"Upload-Offset": str(offset), **TUS}, content=half[offset:])
            assert rest.status_code == 204, rest.text
        with restored_db.read() as s:
            hashes = sorted(i.sha256 for i in s.exec(select(EvidenceItem)).all())
        assert hashes == sorted([hashlib.sha256(photo).hexdigest(), hashlib.sha256(half).hexdigest()])
    finally:
        restored_db.dispose()
        if postgres:
            cluster.drop_database(restored_url)


def test_pg_env_keeps_tls_settings_and_the_urls_query(monkeypatch: pytest.MonkeyPatch) -> None:
    # A backup must not connect more weakly than the server does: sslmode, the pinned CA and
    # a socket directory given in the URL, and the operator's PGSSL* variables, all reach libpq.
    from exhibit.cli_ops import _pg_env

    monkeypatch.setenv("PGSSLROOTCERT", "/etc/exhibit/ca.pem")
    monkeypatch.setenv("PGSERVICE", "someone-else")
    env = _pg_env("postgresql+psycopg://owner:s3cret@/exhibit?sslmode=require&host=/run/postgresql"
                  "&sslcert=/etc/exhibit/client.pem")
    assert env["PGSSLMODE"] == "require" and env["PGHOST"] == "/run/postgresql"
    assert env["PGSSLROOTCERT"] == "/etc/exhibit/ca.pem" and env["PGSSLCERT"] == "/etc/exhibit/client.pem"
    assert env["PGUSER"] == "owner" and env["PGPASSWORD"] == "s3cret" and env["PGDATABASE"] == "exhibit"
    assert "PGSERVICE" not in env  # other PG* variables could point elsewhere than the URL


def _small_backup(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """A real SQLite system with one blob file and a checkpoint, backed up by `exhibit backup`."""
    live = tmp_path / "live"
    settings = Settings(data_dir=live, database_url=f"sqlite:///{live / 'exhibit.db'}",
                        storage_url=f"file://{live / 'blobs'}", checkpoint_url=f"file://{tmp_path / 'cps'}")
    env = environment(settings, "")
    env.pop("EXHIBIT_LEDGER_PUBLIC_KEY")
    env["EXHIBIT_CHECKPOINT_URL"] = settings.checkpoint_url
    upgraded = subprocess.run([sys.executable, "-m", "exhibit", "db", "upgrade"], env=env, capture_output=True,
                              text=True, timeout=300, check=False)
    assert upgraded.returncode == 0, upgraded.stderr
    (live / "blobs" / "originals").mkdir(parents=True)
    (live / "blobs" / "originals" / "ab12").write_bytes(b"evidence bytes")
    (tmp_path / "cps").mkdir()
    (tmp_path / "cps" / "0001.json").write_text("{}")
    backup = tmp_path / "backup"
    code, made = exhibit(env, "backup", "--out", str(backup))
    assert code == 0, made
    target = tmp_path / "restored"
    restore_env = environment(Settings(data_dir=target, storage_url=f"file://{target / 'blobs'}",
                                       checkpoint_url=f"file://{tmp_path / 'restored-cps'}"), "")
    restore_env.pop("EXHIBIT_LEDGER_PUBLIC_KEY")
    restore_env["EXHIBIT_CHECKPOINT_URL"] = f"file://{tmp_path / 'restored-cps'}"
    return backup, restore_env


def _nothing_written(tmp_path: Path) -> bool:
    target = tmp_path / "restored"
    return not (target / "exhibit.db").exists() and not (target / "blobs").exists() \
        and not (tmp_path / "restored-cps").exists()


@pytest.mark.parametrize("tamper", ["absolute_path", "dotdot_path", "symlink_in_blobs", "changed_byte"])
def test_a_tampered_backup_is_refused_before_anything_is_written(tmp_path: Path, tamper: str) -> None:
    # Restore often runs as root: a tampered manifest or backup must not make it copy
    # /etc/... or write through a link, nor restore changed evidence.
    backup, env = _small_backup(tmp_path)
    manifest_path = backup / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    secret_file = tmp_path / "outside-secret"
    secret_file.write_text("not for the backup")
    if tamper == "absolute_path":
        manifest["checkpoints"]["dir"] = str(tmp_path / "cps")
    elif tamper == "dotdot_path":
        manifest["blobs"]["sha256"]["../../outside-secret"] = hashlib.sha256(b"not for the backup").hexdigest()
    elif tamper == "symlink_in_blobs":
        (backup / "blobs" / "originals" / "cd34").symlink_to(secret_file)
    else:
        original = backup / "blobs" / "originals" / "ab12"
        original.chmod(0o600)
        original.write_bytes(b"evidence bytez")
    manifest_path.write_text(json.dumps(manifest))
    code, refused = exhibit(env, "restore", "--from", str(backup))
    assert code == 2 and refused["error"]["code"] == "ERR_BACKUP_INVALID", refused
    assert _nothing_written(tmp_path)


def test_restore_refuses_a_checkpoint_directory_that_is_not_empty_before_writing(tmp_path: Path) -> None:
    backup, env = _small_backup(tmp_path)
    (tmp_path / "restored-cps").mkdir()
    (tmp_path / "restored-cps" / "other-history.json").write_text("{}")
    code, refused = exhibit(env, "restore", "--from", str(backup))
    assert code == 2 and refused["error"]["code"] == "ERR_RESTORE_TARGET", refused
    assert not (tmp_path / "restored" / "exhibit.db").exists()
    code, done = exhibit(env | {"EXHIBIT_CHECKPOINT_URL": f"file://{tmp_path / 'fresh-cps'}"},
                         "restore", "--from", str(backup))
    assert code == 0, done
    assert (tmp_path / "restored" / "blobs" / "originals" / "ab12").read_bytes() == b"evidence bytes"


def test_a_backup_of_a_missing_database_says_so_and_creates_nothing(tmp_path: Path) -> None:
    # A typo in EXHIBIT_DATA_DIR must not leave an empty database (or backup) behind.
    data = tmp_path / "no-such-install"
    env = {k: v for k, v in os.environ.items() if not k.startswith("EXHIBIT_")}
    env["EXHIBIT_DATA_DIR"] = str(data)
    code, refused = exhibit(env, "backup", "--out", str(tmp_path / "backup"))
    assert code == 2 and refused["error"]["code"] == "ERR_NO_DATABASE", refused
    assert not (data / "exhibit.db").exists() and not (tmp_path / "backup").exists()
