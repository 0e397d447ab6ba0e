"""The custody ledger: append, verify, the four kinds of tampering, concurrency, checkpoints."""

from __future__ import annotations

import datetime as dt
import json
import threading
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlmodel import col, select

from storage import ledger
from storage.db import Database, ReadOnlySession
from storage.models import CustodyEvent
from tests.fixtures.processes import race
from tests.fixtures.tamper import tamper


def _append_many(db: Database, n: int, actor: str = "test") -> None:
    for i in range(n):
        with db.write() as s:
            ledger.append(db, s, actor=actor, action="test.event", subject=f"thing:{i}", detail={"i": i})


def _tamper(db: Database, sql: str, **params: object) -> None:
    """Change the ledger behind the application's back, as a DBA with direct access could."""
    tamper(db, sql, **params)


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
    # Three processes released together from a barrier, each appending ten events.
    assert race(_process_appender, [(db.url, f"p{i}", 10) for i in range(3)]) == [0, 0, 0]
    result = ledger.verify(db)
    assert result.ok
    assert result.count == 30


def test_the_database_refuses_update_and_delete_of_the_ledger_and_its_checkpoints(db: Database, tmp_path: Path) -> None:
    # On both databases, even for the owner: a careless script or a bug in the app
    # cannot rewrite history or a checkpoint (AU-08). The runtime role's grants are
    # tested in tests/storage/test_db_roles.py.
    _append_many(db, 2)
    ledger.make_checkpoint(db, ledger.load_or_create_signing_key(tmp_path / "key.pem"))
    statements = ["UPDATE custody_event SET actor = 'x' WHERE seq = 1",
                  "DELETE FROM custody_event WHERE seq = 2",
                  "DELETE FROM custody_event",
                  "UPDATE checkpoint SET seq = 1",
                  "DELETE FROM checkpoint"]
    if db.is_postgresql:
        statements += ["TRUNCATE custody_event", "TRUNCATE checkpoint"]
    for sql in statements:
        with pytest.raises(DBAPIError, match="append-only"), db.engine.begin() as conn:
            conn.execute(text(sql))
    assert ledger.verify(db).count == 2
    with db.read() as s:
        assert s.exec(text("SELECT seq FROM checkpoint")).all() == [(2,)]  # type: ignore[call-overload]


def test_long_and_hostile_detail_is_capped_and_kept_as_data(db: Database) -> None:
    hostile = "evil\r\n\x1b[31m\u202e" + "A" * 100_000
    with db.write() as s:
        event = ledger.append(db, s, actor="test", action="test.event", detail={"filename": hostile})
    assert event.detail is not None
    assert len(event.detail["filename"]) <= ledger.MAX_DETAIL_STRING + 1
    assert event.detail["filename"].startswith("evil\r\n\x1b[31m")
    assert ledger.verify(db).ok


def _hashes(db: Database) -> dict[int, str]:
    with db.read() as s:
        return dict(s.exec(text("SELECT seq, hash FROM custody_event")).all())  # type: ignore[call-overload]


def test_forged_row_below_the_chain_is_found(db: Database) -> None:
    _append_many(db, 3)
    # A row with seq 0 sorts before event 1; a verifier that starts at seq 1 never sees it.
    _tamper(db, "INSERT INTO custody_event (seq, at, actor, action, subject, detail, prev_hash, hash) "
                "VALUES (0, :at, 'forger', 'item.purged', '', '{}', :p, :h)",
            at=dt.datetime(2026, 1, 1, tzinfo=dt.UTC), p="f" * 64, h="e" * 64)
    result = ledger.verify(db)
    assert not result.ok
    assert result.first_bad_seq == 0


def test_forged_row_inserted_into_the_chain_is_found(db: Database) -> None:
    _append_many(db, 5)
    hashes = _hashes(db)
    # Make room at seq 3 (through negative numbers: seq is the primary key), then insert a
    # forged event there with a correct hash, linked to event 2, and re-link the old event
    # 3 (now 4) to it so that the unique constraint on prev_hash is satisfied.
    _tamper(db, "UPDATE custody_event SET seq = -seq WHERE seq >= 3")
    _tamper(db, "UPDATE custody_event SET seq = 1 - seq WHERE seq < 0")
    forged = CustodyEvent(seq=3, at=dt.datetime(2026, 1, 1, tzinfo=dt.UTC), actor="forger", action="item.purged",
                          subject="", detail={}, prev_hash=hashes[2], hash="")
    forged.hash = ledger.compute_hash(hashes[2], ledger.event_body(forged))
    _tamper(db, "UPDATE custody_event SET prev_hash = :h WHERE seq = 4", h=forged.hash)
    _tamper(db, "INSERT INTO custody_event (seq, at, actor, action, subject, detail, prev_hash, hash) "
                "VALUES (3, :at, 'forger', 'item.purged', '', '{}', :p, :h)",
            at=forged.at, p=forged.prev_hash, h=forged.hash)
    result = ledger.verify(db)
    assert not result.ok
    # The forged event is self-consistent; the first provably wrong row is the one the
    # forger had to change to make room for it.
    assert result.first_bad_seq == 4


def test_inserted_row_is_named_when_the_next_row_links_past_it() -> None:
    # A DBA who dropped the unique constraint can insert without touching the next row:
    # that row then links past the forged one, which is named as the first bad seq.
    at = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    events: list[CustodyEvent] = []
    prev = ledger.GENESIS
    for seq in (1, 2, 3):
        e = CustodyEvent(seq=seq, at=at, actor="a", action="x", subject="", detail={}, prev_hash=prev, hash="")
        e.hash = ledger.compute_hash(prev, ledger.event_body(e))
        events.append(e)
        prev = e.hash
    forged = CustodyEvent(seq=2, at=at, actor="forger", action="x", subject="", detail={},
                          prev_hash=events[0].hash, hash="")
    forged.hash = ledger.compute_hash(events[0].hash, ledger.event_body(forged))
    shifted = [events[0], forged] + [
        CustodyEvent(**{**e.model_dump(), "seq": e.seq + 1}) for e in events[1:]
    ]
    result = ledger.verify_events(shifted)
    assert not result.ok
    assert result.first_bad_seq == 2
    assert "inserted" in (result.reason or "")


def test_hostile_strings_and_odd_numbers_never_block_an_append(db: Database) -> None:
    # A lone surrogate (valid in JSON, not in UTF-8), NUL (refused by PostgreSQL text),
    # NaN and infinity (not JSON): none may make the custody append fail.
    with db.write() as s:
        ledger.append(db, s, actor="cli:bad\x00actor\ud800", action="test.event", subject="s\x00",
                      request_id="req\x00\udfff",
                      detail={"title": "collision \ud83d on A38\x00", "\udc80key": [float("nan"), float("inf")]})
    assert ledger.verify(db).ok


def test_numbers_and_timestamps_survive_the_round_trip(db: Database) -> None:
    # The hash is computed before the row is written and recomputed from what the
    # database gives back: the two must agree byte for byte after a reload.
    detail = {"floats": [0.1, 1e16, 1e-7, -0.0, 1.5e300, 2.5], "ints": [2**70, -(2**63), 0], "ok": True,
              "none": None, "nested": {"b": [1, {"c": "ü"}], "a": "→"}}
    for _ in range(3):
        with db.write() as s:
            ledger.append(db, s, actor="test", action="test.event", detail=detail)
    fresh = Database(db.url)
    try:
        assert ledger.verify(fresh).ok
        if fresh.is_postgresql:
            # Another session time zone on the server changes how timestamps come back,
            # never the instant, so never the hash.
            with fresh.engine.begin() as conn:
                name = conn.execute(text("SELECT current_database()")).scalar_one()
                conn.execute(text(f'ALTER DATABASE "{name}" SET timezone TO \'Asia/Kolkata\''))
            fresh.dispose()
            with fresh.write() as s:
                ledger.append(fresh, s, actor="test", action="test.event", detail=detail)
            assert ledger.verify(fresh).ok
    finally:
        fresh.dispose()


def test_checkpoint_is_not_signed_over_a_broken_ledger(db: Database, tmp_path: Path) -> None:
    _append_many(db, 4)
    _tamper(db, "UPDATE custody_event SET actor = 'someone-else' WHERE seq = 2")
    key = ledger.load_or_create_signing_key(tmp_path / "key.pem")
    with pytest.raises(ledger.LedgerBroken) as info:
        ledger.make_checkpoint(db, key)
    assert info.value.result.first_bad_seq == 2
    with db.read() as s:
        assert s.exec(text("SELECT count(*) FROM checkpoint")).scalar_one() == 0  # type: ignore[call-overload]


def test_checkpoints_taken_during_appends_are_consistent(db: Database, tmp_path: Path) -> None:
    key = ledger.load_or_create_signing_key(tmp_path / "key.pem")
    stop = threading.Event()
    errors: list[BaseException] = []

    def appender() -> None:
        try:
            while not stop.is_set():
                _append_many(db, 1, actor="busy")
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    thread = threading.Thread(target=appender)
    thread.start()
    try:
        documents = [ledger.make_checkpoint(db, key) for _ in range(5)]
    finally:
        stop.set()
        thread.join()
    assert errors == []
    for document in documents:
        body = ledger.read_checkpoint(document, trusted_public_key=ledger.public_key_b64(key))
        assert body["count"] == body["seq"]
        assert ledger.verify(db, body).ok


def test_checkpoint_with_a_count_that_differs_is_refused(db: Database, tmp_path: Path) -> None:
    _append_many(db, 3)
    head = ledger.verify(db)
    body = {"seq": head.head_seq, "hash": head.head_hash, "count": head.count + 1, "at": "2026-01-01T00:00:00.000000Z"}
    result = ledger.verify(db, body)
    assert not result.ok
    assert result.first_bad_seq == 3


def test_checkpoint_of_the_empty_ledger_verifies(db: Database, tmp_path: Path) -> None:
    key = ledger.load_or_create_signing_key(tmp_path / "key.pem")
    body = ledger.read_checkpoint(ledger.make_checkpoint(db, key))
    assert body["seq"] == 0 and body["hash"] == ledger.GENESIS
    assert ledger.verify(db, body).ok
    _append_many(db, 2)
    assert ledger.verify(db, body).ok


def test_events_are_chained_when_their_transaction_commits_in_the_order_appended(db: Database) -> None:
    _append_many(db, 1)
    with db.write() as s:
        first = ledger.append(db, s, actor="test", action="test.first")
        second = ledger.append(db, s, actor="test", action="test.second")
    assert (first.seq, second.seq) == (2, 3)
    assert second.prev_hash == first.hash
    assert first.at <= second.at
    with db.read() as s:
        stored = {e.seq: e.action for e in s.exec(select(CustodyEvent))}
    assert stored == {1: "test.event", 2: "test.first", 3: "test.second"}
    assert ledger.verify(db).ok


def test_events_of_a_rolled_back_transaction_vanish_with_it(db: Database) -> None:
    with pytest.raises(RuntimeError), db.write() as s:
        ledger.append(db, s, actor="test", action="test.undone")
        raise RuntimeError("the change failed")
    _append_many(db, 1)
    result = ledger.verify(db)
    assert result.ok
    assert result.count == 1


def test_appending_in_a_read_session_is_refused_at_once(db: Database) -> None:
    # A read session never commits: an event appended there would be lost silently.
    with pytest.raises(ReadOnlySession), db.read() as s:
        ledger.append(db, s, actor="test", action="test.lost")


def test_an_appender_does_not_hold_up_others_until_it_commits(db: Database) -> None:
    """An upload completing appends its events and then goes on updating its own rows;
    meanwhile every other appender (an officer's audited page view) must not wait for it.
    On PostgreSQL the chain's lock is taken only at commit. (On SQLite one writer at a
    time is the database's own rule, so there the second writer does wait.)"""
    appended = threading.Event()
    other_done = threading.Event()
    errors: list[BaseException] = []

    def long_transaction() -> None:
        try:
            with db.write() as s:
                # Start the transaction now (on SQLite: BEGIN IMMEDIATE, the write lock):
                # ``append`` itself sends nothing before commit, so without this the other
                # writer could take SQLite's lock first and the order below would be a race.
                s.connection()
                ledger.append(db, s, actor="upload", action="test.completed")
                appended.set()
                if db.is_postgresql:
                    # Still inside the transaction: the other appender finishes first.
                    other_done.wait(timeout=20)
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    thread = threading.Thread(target=long_transaction)
    thread.start()
    assert appended.wait(timeout=20)
    with db.write() as s:
        ledger.append(db, s, actor="officer", action="test.viewed")
    other_done.set()
    thread.join(timeout=30)
    assert errors == []
    with db.read() as s:
        order = [e.action for e in s.exec(select(CustodyEvent).order_by(col(CustodyEvent.seq)))]
    if db.is_postgresql:
        assert order == ["test.viewed", "test.completed"]
    else:
        assert order == ["test.completed", "test.viewed"]
    assert ledger.verify(db).ok
