"""The custody ledger: append, verify, the four kinds of tampering, concurrency, checkpoints."""

from __future__ import annotations

import json
import multiprocessing
import threading
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from storage import ledger
from storage.db import Database
from storage.models import CustodyEvent


def _append_many(db: Database, n: int, actor: str = "test") -> None:
    for i in range(n):
        with db.write() as s:
            ledger.append(db, s, actor=actor, action="test.event", subject=f"thing:{i}", detail={"i": i})


def _tamper(db: Database, sql: str, **params: object) -> None:
    """Change the ledger behind the application's back, as a DBA with direct access
    could: on PostgreSQL that means switching the append-only trigger off first."""
    with db.engine.begin() as conn:
        if db.is_postgresql:
            conn.execute(text("ALTER TABLE custody_event DISABLE TRIGGER USER"))
        conn.execute(text(sql), params)
        if db.is_postgresql:
            conn.execute(text("ALTER TABLE custody_event ENABLE TRIGGER USER"))


def test_chain_of_appended_events_verifies(db: Database) -> None:
    _append_many(db, 5)
    result = ledger.verify(db)
    assert result.ok
    assert result.count == 5
    assert result.head_seq == 5


def test_event_hash_is_sha256_of_previous_hash_and_canonical_json(db: Database) -> None:
    import hashlib

    _append_many(db, 2)
    with db.read() as s:
        events = list(s.exec(text("SELECT seq FROM custody_event ORDER BY seq")).scalars())  # type: ignore[call-overload]
        second = s.get(CustodyEvent, events[1])
        first = s.get(CustodyEvent, events[0])
    assert first is not None and second is not None
    assert first.prev_hash == ledger.GENESIS
    body = ledger.event_body(second)
    expected = hashlib.sha256(
        first.hash.encode() + b"\n" + json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    ).hexdigest()
    assert second.hash == expected


def test_edited_row_is_found(db: Database) -> None:
    _append_many(db, 6)
    _tamper(db, "UPDATE custody_event SET actor = 'someone-else' WHERE seq = 3")
    result = ledger.verify(db)
    assert not result.ok
    assert result.first_bad_seq == 3


def test_deleted_row_is_found(db: Database) -> None:
    _append_many(db, 6)
    _tamper(db, "DELETE FROM custody_event WHERE seq = 4")
    result = ledger.verify(db)
    assert not result.ok
    assert result.first_bad_seq == 4


def test_swapped_rows_are_found(db: Database) -> None:
    _append_many(db, 6)
    # Swap the content of events 2 and 3, keeping the sequence numbers in place.
    cols = "at, actor, action, subject, report_id, item_id, detail, request_id, prev_hash, hash"
    with db.read() as s:
        rows = {r[0]: r[1:] for r in s.exec(text(f"SELECT seq, {cols} FROM custody_event WHERE seq IN (2, 3)")).all()}  # type: ignore[call-overload]  # noqa: S608
    names = [c.strip() for c in cols.split(",")]
    assign = ", ".join(f"{n} = :{n}" for n in names)

    def params(values: tuple[object, ...]) -> dict[str, object]:
        p = dict(zip(names, values, strict=True))
        if isinstance(p["detail"], dict):
            p["detail"] = json.dumps(p["detail"])
        return p

    _tamper(db, "UPDATE custody_event SET prev_hash = 'tmp-prev', hash = 'tmp-hash' WHERE seq = 2")
    _tamper(db, f"UPDATE custody_event SET {assign} WHERE seq = 3", **params(rows[2]))  # noqa: S608
    _tamper(db, f"UPDATE custody_event SET {assign} WHERE seq = 2", **params(rows[3]))  # noqa: S608
    result = ledger.verify(db)
    assert not result.ok
    assert result.first_bad_seq == 2


def test_truncated_tail_is_found_against_a_signed_checkpoint(db: Database, tmp_path: Path) -> None:
    _append_many(db, 6)
    key = ledger.load_or_create_signing_key(tmp_path / "key.pem")
    document = ledger.make_checkpoint(db, key)
    assert document["checkpoint"]["seq"] == 6
    _tamper(db, "DELETE FROM custody_event WHERE seq >= 5")
    # The chain alone still looks whole: a cut tail leaves a valid shorter chain...
    assert ledger.verify(db).ok
    # ...which is why checkpoints exist.
    checkpoint = ledger.read_checkpoint(document, trusted_public_key=ledger.public_key_b64(key))
    result = ledger.verify(db, checkpoint)
    assert not result.ok
    assert result.first_bad_seq == 5


def test_rollback_to_a_rewritten_history_is_found_against_a_checkpoint(db: Database, tmp_path: Path) -> None:
    _append_many(db, 4)
    key = ledger.load_or_create_signing_key(tmp_path / "key.pem")
    document = ledger.make_checkpoint(db, key)
    # Cut the tail and append new events in its place: a valid chain of the same length.
    _tamper(db, "DELETE FROM custody_event WHERE seq >= 3")
    _append_many(db, 2, actor="rewriter")
    assert ledger.verify(db).ok
    result = ledger.verify(db, ledger.read_checkpoint(document))
    assert not result.ok
    assert result.first_bad_seq == 4


def test_forged_checkpoint_is_refused(db: Database, tmp_path: Path) -> None:
    _append_many(db, 3)
    key = ledger.load_or_create_signing_key(tmp_path / "key.pem")
    document = ledger.make_checkpoint(db, key)
    document["checkpoint"]["seq"] = 2
    with pytest.raises(ledger.CheckpointInvalid):
        ledger.read_checkpoint(document)
    other = ledger.load_or_create_signing_key(tmp_path / "other.pem")
    forged = ledger.make_checkpoint(db, other)
    with pytest.raises(ledger.CheckpointInvalid):
        ledger.read_checkpoint(forged, trusted_public_key=ledger.public_key_b64(key))


def test_signing_key_file_is_private(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "ledger.pem"
    ledger.load_or_create_signing_key(path)
    assert path.stat().st_mode & 0o077 == 0


def test_concurrent_appends_from_threads_leave_one_chain(db: Database) -> None:
    errors: list[BaseException] = []

    def worker(name: str) -> None:
        try:
            _append_many(db, 15, actor=name)
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(f"t{i}",)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    result = ledger.verify(db)
    assert result.ok
    assert result.count == 90


def _process_appender(url: str, name: str, n: int) -> None:
    database = Database(url)
    try:
        _append_many(database, n, actor=name)
    finally:
        database.dispose()


def test_concurrent_appends_from_processes_leave_one_chain(db: Database) -> None:
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_process_appender, args=(db.url, f"p{i}", 10)) for i in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
    assert [p.exitcode for p in procs] == [0, 0, 0]
    result = ledger.verify(db)
    assert result.ok
    assert result.count == 30


def test_postgresql_refuses_update_and_delete_of_the_ledger(db: Database) -> None:
    if not db.is_postgresql:
        # SQLite has no triggers guarding the ledger: there, verification is the guard,
        # which the tampering tests above exercise.
        assert db.is_sqlite
        return
    _append_many(db, 2)
    for sql in ("UPDATE custody_event SET actor = 'x' WHERE seq = 1",
                "DELETE FROM custody_event WHERE seq = 2",
                "TRUNCATE custody_event"):
        with pytest.raises(DBAPIError, match="append-only"), db.engine.begin() as conn:
            conn.execute(text(sql))
    assert ledger.verify(db).count == 2


def test_long_and_hostile_detail_is_capped_and_kept_as_data(db: Database) -> None:
    hostile = "evil\r\n\x1b[31m\u202e" + "A" * 100_000
    with db.write() as s:
        event = ledger.append(db, s, actor="test", action="test.event", detail={"filename": hostile})
    assert event.detail is not None
    assert len(event.detail["filename"]) <= ledger.MAX_DETAIL_STRING + 1
    assert event.detail["filename"].startswith("evil\r\n\x1b[31m")
    assert ledger.verify(db).ok
