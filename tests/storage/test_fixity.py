"""Fixity (issue 14 item 4): a re-hash of every original at rest catches a changed byte
and a missing original, raises the alarm once (item state, custody event, admin view)
and passes clean items; on SQLite and PostgreSQL, on the filesystem and S3 (moto).

The tampering is done the way it would happen: behind the application's back, on the
disk (root can chmod a read-only file) or straight in the bucket."""

from __future__ import annotations

import hashlib
import json
import os
import stat
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import anyio
import pytest
from sqlalchemy import select

from exhibit.cli import main as cli_main
from storage import fixity, ledger
from storage.blobs import BlobStore, put_bytes
from storage.blobs.filesystem import FilesystemBlobStore
from storage.db import Database
from storage.items import create_item
from storage.lifecycle import ItemState
from storage.models import CustodyEvent, EvidenceItem, FixityCheck
from storage.reports import create_report
from storage.settings import Settings

if TYPE_CHECKING:
    from types_boto3_s3.client import S3Client


def _ingest(db: Database, store: BlobStore, data: bytes, report_id: str) -> str:
    key = anyio.run(put_bytes, store, data, "originals")
    with db.write() as s:
        return create_item(db, s, report_id=report_id, blob_key=key, size=len(data),
                           sha256=hashlib.sha256(data).hexdigest(), actor="test:upload").id


def _key(db: Database, item_id: str) -> str:
    with db.read() as s:
        item = s.get(EvidenceItem, item_id)
        assert item is not None
        return item.blob_key


def _object_name(settings: Settings, key: str) -> tuple[str, str]:
    url = urlsplit(settings.storage_url)
    return url.netloc, f"{url.path.strip('/')}/{key}"


def _tamper(store: BlobStore, settings: Settings, key: str, request: pytest.FixtureRequest) -> None:
    """Flip one bit of the stored original, behind the store's back."""
    if isinstance(store, FilesystemBlobStore):
        path = store._object_path(key)
        os.chmod(path, stat.S_IRUSR | stat.S_IWUSR)
        with open(path, "r+b") as f:
            f.seek(10)
            byte = f.read(1)
            f.seek(10)
            f.write(bytes([byte[0] ^ 1]))
        os.chmod(path, stat.S_IRUSR)
        return
    client: S3Client = request.getfixturevalue("s3_client")
    bucket, name = _object_name(settings, key)
    data = bytearray(client.get_object(Bucket=bucket, Key=name)["Body"].read())
    data[10] ^= 1
    client.put_object(Bucket=bucket, Key=name, Body=bytes(data))


def _remove(store: BlobStore, settings: Settings, key: str, request: pytest.FixtureRequest) -> None:
    if isinstance(store, FilesystemBlobStore):
        store._object_path(key).unlink()
        return
    client: S3Client = request.getfixturevalue("s3_client")
    bucket, name = _object_name(settings, key)
    client.delete_object(Bucket=bucket, Key=name)


@pytest.fixture
def report_id(db: Database) -> str:
    with db.write() as s:
        return create_report(db, s, "CRIME/9", "crime", actor="test").id


def test_fixity_catches_a_changed_byte_and_a_missing_original_and_passes_clean_items(
    db: Database, blob_store: BlobStore, blob_settings: Settings, report_id: str, request: pytest.FixtureRequest,
) -> None:
    clean = _ingest(db, blob_store, os.urandom(300_000), report_id)
    changed = _ingest(db, blob_store, os.urandom(200_000), report_id)
    gone = _ingest(db, blob_store, os.urandom(1000), report_id)
    _tamper(blob_store, blob_settings, _key(db, changed), request)
    _remove(blob_store, blob_settings, _key(db, gone), request)

    summary = anyio.run(lambda: fixity.run_async(db, blob_store, actor="test:fixity"))
    results = {o.item_id: o.result for o in summary.outcomes}
    assert results == {clean: "ok", changed: "mismatch", gone: "missing"}
    assert (summary.ok, summary.alarms, summary.errors) == (1, 2, 0)

    with db.read() as s:
        states = {i: s.get(EvidenceItem, i).state for i in (clean, changed, gone)}  # type: ignore[union-attr]
        alarmed = sorted(i.id for i in fixity.alarms(s))
        checks = s.exec(select(FixityCheck)).scalars().all()  # type: ignore[call-overload]
        events = s.exec(select(CustodyEvent).where(CustodyEvent.action == "item.integrity_alarm")).scalars().all()  # type: ignore[call-overload, arg-type]
    assert states == {clean: "received", changed: "integrity_alarm", gone: "integrity_alarm"}
    assert alarmed == sorted([changed, gone])
    # Every check is recorded, the clean one with the hash it proved.
    by_item = {c.item_id: c for c in checks}
    assert by_item[clean].result == "ok" and by_item[clean].sha256 == by_item[clean].expected_sha256
    assert by_item[changed].result == "mismatch" and by_item[changed].sha256 != by_item[changed].expected_sha256
    assert by_item[gone].result == "missing" and by_item[gone].sha256 is None
    # The custody event says what was expected and what was found.
    detail = {e.item_id: e.detail for e in events}
    assert detail[changed]["computed"] == by_item[changed].sha256
    assert detail[changed]["expected"] == by_item[changed].expected_sha256
    assert detail[gone]["result"] == "missing"
    assert ledger.verify(db).ok

    # A second run: the alarmed items are not re-alarmed (one event each), the clean
    # one is proved again.
    again = anyio.run(lambda: fixity.run_async(db, blob_store, actor="test:fixity"))
    assert [o.item_id for o in again.outcomes] == [clean]
    with db.read() as s:
        assert len(s.exec(select(CustodyEvent).where(CustodyEvent.action == "item.integrity_alarm")).scalars().all()) == 2  # type: ignore[call-overload, arg-type]


def test_oldest_checked_first_and_due_only(db: Database, blob_store: BlobStore, report_id: str) -> None:
    a = _ingest(db, blob_store, b"a" * 100, report_id)
    b = _ingest(db, blob_store, b"b" * 100, report_id)
    anyio.run(lambda: fixity.run_async(db, blob_store, actor="t", item_ids=[a]))
    # b was never checked (it counts from its receipt, before a's check): b first.
    assert fixity.candidates(db) == [b, a]
    # Only items last checked before the cut-off are due.
    with db.read() as s:
        a_checked = fixity.last_checks(s, a)[0].checked_at
    assert fixity.candidates(db, due_before=a_checked) == [b]


def test_budget_paces_the_reads(db: Database, fs_blob_store: FilesystemBlobStore, report_id: str) -> None:
    # 3 MB at 10 MB/s cannot take less than 0.3 s of the run (a floor, not a timing race).
    item = _ingest(db, fs_blob_store, os.urandom(3_000_000), report_id)
    summary = anyio.run(lambda: fixity.run_async(db, fs_blob_store, actor="t", item_ids=[item], mb_per_s=10))
    assert summary.ok == 1
    assert summary.seconds >= 0.29


def test_cli_fixity_run_exit_codes_and_json(
    db: Database, tmp_path: Path, report_id: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    store = FilesystemBlobStore(tmp_path / "blobs")
    monkeypatch.setenv("EXHIBIT_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("EXHIBIT_DATABASE_URL", db.url)
    monkeypatch.setenv("EXHIBIT_STORAGE_URL", f"file://{tmp_path / 'blobs'}")
    good = _ingest(db, store, os.urandom(5000), report_id)
    bad = _ingest(db, store, os.urandom(5000), report_id)

    assert cli_main(["fixity", "run", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["ok"] == 2 and out["alarms"] == 0

    store._object_path(_key(db, bad)).unlink()
    assert cli_main(["fixity", "run", "--item", good, "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert [i["item_id"] for i in out["items"]] == [good]

    assert cli_main(["fixity", "run", "--json"]) == 1
    out = json.loads(capsys.readouterr().out)
    assert out["alarms"] == 1 and out["standing_alarms"] == [bad]
    assert cli_main(["fixity", "run", "--item", "0" * 32, "--json"]) == 2
    assert json.loads(capsys.readouterr().out)["error"]["code"] == "ERR_ITEM_NOT_FOUND"
    with db.read() as s:
        assert s.get(EvidenceItem, bad).state == ItemState.INTEGRITY_ALARM  # type: ignore[union-attr]
