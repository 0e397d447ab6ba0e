"""The database wrapper: SQLite durability settings on every connection, one writer at a
time on SQLite, the database clock (SECURITY_CHECKLIST CF-08, CF-04)."""

from __future__ import annotations

import contextlib
import datetime as dt
import sqlite3
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import text

from storage.db import Database, clock


def _pragmas(db: Database, write: bool) -> tuple[str, int, int, int]:
    with (db.write() if write else db.read()) as s:
        conn = s.connection()
        return (
            conn.execute(text("PRAGMA journal_mode")).scalar_one(),
            conn.execute(text("PRAGMA synchronous")).scalar_one(),
            conn.execute(text("PRAGMA foreign_keys")).scalar_one(),
            conn.execute(text("PRAGMA busy_timeout")).scalar_one(),
        )


def test_every_sqlite_connection_is_wal_with_full_sync(db: Database) -> None:
    if not db.is_sqlite:
        assert db.is_postgresql
        with db.write() as s:
            assert s.exec(text("SHOW transaction_isolation")).scalar_one() == "read committed"  # type: ignore[call-overload]
        return
    # Every connection the pool opens, in this thread or another, must carry the
    # settings, not only the first (synchronous is per connection). Reads held open at
    # once force the pool to open several.
    seen: list[tuple[str, int, int, int]] = []
    for write in (True, False, True):
        seen.append(_pragmas(db, write))
    with db.read() as first, db.read() as second:
        assert first.connection().connection.dbapi_connection is not second.connection().connection.dbapi_connection
        seen.append(_pragmas(db, False))
    thread = threading.Thread(target=lambda: seen.append(_pragmas(db, True)))
    thread.start()
    thread.join()
    # synchronous=2 is FULL: WAL with NORMAL may lose acknowledged commits on power loss.
    assert seen == [("wal", 2, 1, 30000)] * 5


def test_sqlite_write_transaction_holds_the_write_lock_from_its_start(db: Database) -> None:
    if not db.is_sqlite:
        assert db.is_postgresql
        return
    path = db.url.removeprefix("sqlite:///")

    def other_writer_can_begin() -> bool:
        other = sqlite3.connect(path, timeout=0, isolation_level=None)
        try:
            other.execute("BEGIN IMMEDIATE")
            other.execute("ROLLBACK")
            return True
        except sqlite3.OperationalError as exc:
            assert "locked" in str(exc)
            return False
        finally:
            other.close()

    with db.read() as s:
        s.connection().execute(text("SELECT 1"))
        assert other_writer_can_begin()  # readers never block writers (WAL)
    with db.write() as s:
        # Nothing written yet, and still no other writer can start: a read-then-write
        # (ledger head, job claim) cannot be overtaken between its read and its write.
        s.connection().execute(text("SELECT 1"))
        assert not other_writer_can_begin()
    assert other_writer_can_begin()


def test_database_clock_is_aware_utc(db: Database) -> None:
    with db.read() as s:
        now = db.now(s)
        assert clock(s) >= now
    assert now.tzinfo is not None and now.utcoffset() == dt.timedelta(0)
    assert abs(now - dt.datetime.now(dt.UTC)) < dt.timedelta(minutes=5)


def test_sqlite_that_cannot_use_wal_is_refused() -> None:
    # SQLite answers `PRAGMA journal_mode=WAL` with the mode it stays in when it cannot
    # switch; a temporary database (empty file name) is one such case. The wrapper says
    # so instead of carrying on without the durability it promises.
    db = Database("sqlite:///file:?uri=true")
    try:
        with pytest.raises(RuntimeError, match="WAL"), db.read() as s:
            s.connection().execute(text("SELECT 1"))
    finally:
        db.dispose()


def test_a_read_session_refuses_every_kind_of_write_and_changes_nothing(db: Database) -> None:
    # On PostgreSQL reads run in autocommit: a write slipped into db.read() would be
    # committed statement by statement, so it must be refused outright (on both backends).
    from sqlmodel import col, delete, select, update

    from storage import reports
    from storage.db import ReadOnlySession
    from storage.models import Report

    with db.write() as s:
        report = reports.create_report(db, s, "RO-1", "other", actor="test")
    attempts = [
        lambda s: s.add(Report(reference="RO-2", kind="other", title="")),
        lambda s: setattr(s.get(Report, report.id), "title", "changed"),
        lambda s: s.delete(s.get(Report, report.id)),
    ]
    for attempt in attempts:
        with pytest.raises(ReadOnlySession), db.read() as s:
            attempt(s)
            s.flush()
    for statement in (
        update(Report).where(col(Report.id) == report.id).values(title="changed"),
        delete(Report).where(col(Report.id) == report.id),
    ):
        with pytest.raises(ReadOnlySession), db.read() as s:
            s.exec(statement)  # type: ignore[call-overload]
    with db.read() as s:
        rows = s.exec(select(Report)).all()
    assert [(r.reference, r.title) for r in rows] == [("RO-1", report.title)]


def test_a_read_session_runs_select_text_and_refuses_other_sql_text(db: Database) -> None:
    from storage.db import ReadOnlySession

    with db.read() as s:
        assert s.exec(text("SELECT 1")).scalar_one() == 1  # type: ignore[call-overload]
    for sql in ("INSERT INTO organisation (id, name, is_partner, created_at) VALUES ('x', 'x', false, '2026-01-01')",
                "WITH gone AS (DELETE FROM organisation RETURNING id) SELECT count(*) FROM gone",
                "EXPLAIN ANALYZE DELETE FROM organisation", "  update organisation set name = 'y'"):
        with pytest.raises(ReadOnlySession), db.read() as s:
            s.exec(text(sql))  # type: ignore[call-overload]
    with db.read() as s:
        assert s.exec(text("SELECT count(*) FROM organisation")).scalar_one() == 0  # type: ignore[call-overload]


def test_postgresql_idle_connections_are_pinged_and_replaced_when_dead(
    pg_cluster: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # An idle pooled connection is pinged at checkout: the ping must leave no transaction
    # open (a read then switches the connection to autocommit), and a connection the
    # server has dropped (a restart, an idle timeout) must be replaced, not fail a request.
    import storage.db
    from storage.migrate import upgrade

    url = pg_cluster.create_database()
    try:
        upgrade(url)
        database = Database(url)
        monkeypatch.setattr(storage.db, "PING_AFTER_IDLE_SECONDS", 0.0)
        try:
            for _ in range(3):
                with database.write() as s:
                    s.exec(text("SELECT pg_advisory_xact_lock(1)"))  # type: ignore[call-overload]
                with database.read() as s:
                    # autocommit: no transaction block around a read
                    assert s.exec(text("SELECT now() = statement_timestamp()")).scalar_one() is True  # type: ignore[call-overload]
            with database.read() as s:
                pids = [s.exec(text("SELECT pg_backend_pid()")).scalar_one()]  # type: ignore[call-overload]
            with sqlalchemy_connection(url) as admin:
                admin.execute(text("SELECT pg_terminate_backend(pid) FROM unnest(CAST(:p AS int[])) AS pid"), {"p": pids})
            with database.read() as s:
                assert s.exec(text("SELECT pg_backend_pid()")).scalar_one() not in pids  # type: ignore[call-overload]
        finally:
            database.dispose()
    finally:
        pg_cluster.drop_database(url)


@contextlib.contextmanager
def sqlalchemy_connection(url: str) -> Iterator[Any]:
    from sqlalchemy import create_engine
    from sqlalchemy.pool import NullPool

    engine = create_engine(url, poolclass=NullPool, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            yield conn
    finally:
        engine.dispose()
