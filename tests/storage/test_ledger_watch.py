"""The periodic ledger verifier (issue 11 item 3): it writes signed checkpoints outside the
database and is loud (log, status row, health) when the chain stops verifying, including
after the attack of the issue (edit an event and re-chain the tail, which the chain
alone cannot show) and after a cut tail whose stored checkpoints were deleted too."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from botocore.exceptions import ClientError
from sqlalchemy import text

from storage import ledger
from storage.db import Database
from storage.ledger_watch import LedgerWatch, failing, read_status
from storage.settings import Settings
from tests.fixtures.s3 import REGION
from tests.fixtures.tamper import tamper

if TYPE_CHECKING:
    from types_boto3_s3.client import S3Client


def _append(db: Database, n: int, actor: str = "test") -> None:
    for i in range(n):
        with db.write() as s:
            ledger.append(db, s, actor=actor, action="test.event", subject=f"thing:{i}")


def _settings(tmp_path: Path, db: Database, **changes: object) -> Settings:
    values: dict[str, object] = {"checkpoint_url": f"file://{tmp_path / 'elsewhere'}", **changes}
    return Settings(data_dir=tmp_path / "data", database_url=db.url, **values)  # type: ignore[arg-type]


def test_each_round_writes_a_signed_checkpoint_outside_the_database(db: Database, tmp_path: Path) -> None:
    settings = _settings(tmp_path, db)
    health: dict[str, object] = {}
    watch = LedgerWatch(settings, db, health=health)
    _append(db, 4)
    first = watch.run_once()
    assert first.ok and first.written is not None and first.written["checkpoint"]["seq"] == 4
    files = sorted((tmp_path / "elsewhere").iterdir())
    assert len(files) == 1
    document = json.loads(files[0].read_text())
    key = ledger.public_key_b64(ledger.load_or_create_signing_key(settings.signing_key_file))  # type: ignore[arg-type]
    assert ledger.read_checkpoint(document, trusted_public_key=key)["seq"] == 4
    assert files[0].stat().st_mode & 0o777 == 0o400
    # Nothing new: no new checkpoint. New events: a new one, from the last good one on.
    assert watch.run_once().written is None
    _append(db, 2)
    assert watch.run_once().written["checkpoint"]["seq"] == 6  # type: ignore[index]
    assert len(list((tmp_path / "elsewhere").iterdir())) == 2
    with db.read() as s:
        status = read_status(s)
        assert status is not None and status.ok and status.head_seq == 6 and status.checkpoint_seq == 6
        assert failing(s) == []
    assert health["ledger"]["ok"] is True  # type: ignore[index]


def _rechain_after_editing(db: Database, seq: int) -> None:
    """The issue's attack: edit one event, then recompute every hash from it onwards, so
    the chain verifies again on its own."""
    with db.read() as s:
        events = list(s.exec(text("SELECT seq FROM custody_event ORDER BY seq")).scalars())  # type: ignore[call-overload]
    rows = {e.seq: e for e in ledger.iter_events(db)}
    prev = rows[seq].prev_hash
    new: list[tuple[int, str, str, str]] = []
    for n in events:
        if n < seq:
            continue
        event = rows[n]
        if n == seq:
            event.actor = "forger"
        event.prev_hash = prev
        event.hash = prev = ledger.compute_hash(prev, ledger.event_body(event))
        new.append((n, event.actor, event.prev_hash, event.hash))
    # Move the tail out of the way of the unique constraints, then write it back.
    tamper(db, "UPDATE custody_event SET prev_hash = 'x' || seq, hash = 'y' || seq WHERE seq >= :s", s=seq)
    for n, actor, prev_hash, hash_ in new:
        tamper(db, "UPDATE custody_event SET actor = :a, prev_hash = :p, hash = :h WHERE seq = :n",
               a=actor, p=prev_hash, h=hash_, n=n)


@pytest.mark.parametrize("full", [True, False], ids=["full walk", "incremental"])
def test_an_edited_and_rechained_history_is_found_and_loud(db: Database, tmp_path: Path, full: bool,
                                                           caplog: pytest.LogCaptureFixture) -> None:
    health: dict[str, object] = {}
    watch = LedgerWatch(_settings(tmp_path, db), db, health=health, full_every=1 if full else 1000)
    _append(db, 6)
    assert watch.run_once().ok
    _rechain_after_editing(db, 3)
    assert ledger.verify(db).ok  # the chain alone is fooled
    with caplog.at_level(logging.ERROR, logger="exhibit.ledger"):
        outcome = watch.run_once()
    assert not outcome.ok and outcome.written is None
    assert outcome.result is not None and outcome.result.first_bad_seq == 6  # the event the checkpoint signed
    assert any(r.getMessage().startswith("ledger.verify.failed") for r in caplog.records)
    assert health["ledger"]["ok"] is False  # type: ignore[index]
    with db.read() as s:
        status = read_status(s)
        assert status is not None and not status.ok and status.reason
        assert [f.name for f in failing(s)] == ["ledger"]
    # No checkpoint is ever signed over the forged history.
    assert len(list((tmp_path / "elsewhere").iterdir())) == 1


def test_a_cut_tail_is_found_even_when_the_stored_checkpoints_are_deleted_too(db: Database, tmp_path: Path) -> None:
    watch = LedgerWatch(_settings(tmp_path, db), db)
    _append(db, 6)
    assert watch.run_once().ok
    # Someone with write access to the database cuts the tail and removes the
    # checkpoints it holds: only the copy outside still knows.
    tamper(db, "DELETE FROM custody_event WHERE seq >= 5")
    tamper(db, "DELETE FROM checkpoint")
    _append(db, 1, actor="after the cut")
    outcome = LedgerWatch(_settings(tmp_path, db), db, full_every=1000).run_once()
    assert not outcome.ok and outcome.result is not None and outcome.result.first_bad_seq == 6


def test_a_pinned_key_that_is_not_the_signing_key_is_a_failed_round(db: Database, tmp_path: Path) -> None:
    other = ledger.public_key_b64(ledger.load_or_create_signing_key(tmp_path / "other.pem"))
    outcome = LedgerWatch(_settings(tmp_path, db, ledger_public_key=other), db).run_once()
    assert not outcome.ok and "EXHIBIT_LEDGER_PUBLIC_KEY" in (outcome.reason or "")


def test_checkpoints_go_to_an_object_locked_s3_prefix(db: Database, tmp_path: Path, s3_server: str,
                                                      s3_lock_bucket: str, s3_credentials: None,
                                                      s3_client: S3Client) -> None:
    settings = _settings(tmp_path, db, checkpoint_url=f"s3://{s3_lock_bucket}/ledger", s3_endpoint_url=s3_server,
                         s3_region=REGION, s3_retention_days=30)
    watch = LedgerWatch(settings, db)
    try:
        _append(db, 3)
        written = watch.run_once().written
        assert written is not None
        listed = s3_client.list_objects_v2(Bucket=s3_lock_bucket, Prefix="ledger/")["Contents"]
        assert len(listed) == 1
        key = listed[0]["Key"]
        head = s3_client.head_object(Bucket=s3_lock_bucket, Key=key)
        assert head["ObjectLockMode"] == "COMPLIANCE"
        body = json.loads(s3_client.get_object(Bucket=s3_lock_bucket, Key=key)["Body"].read())
        assert body == written
        # The application's credentials cannot remove it (COMPLIANCE retention).
        with pytest.raises(ClientError):
            s3_client.delete_object(Bucket=s3_lock_bucket, Key=key, VersionId=head["VersionId"])
        # And the next round anchors on it: a cut tail is found.
        tamper(db, "DELETE FROM custody_event WHERE seq >= 3")
        tamper(db, "DELETE FROM checkpoint")
        outcome = watch.run_once()
        assert not outcome.ok and outcome.result is not None and outcome.result.first_bad_seq == 3
    finally:
        watch.stop()


def test_as_a_service_it_runs_at_start_and_stops(db: Database, tmp_path: Path) -> None:
    _append(db, 2)
    watch = LedgerWatch(_settings(tmp_path, db), db, interval=3600).start()
    watch.stop()
    with db.read() as s:
        status = read_status(s)
    assert status is not None and status.ok and status.checkpoint_seq == 2
