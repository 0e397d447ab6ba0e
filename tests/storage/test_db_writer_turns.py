"""Writers of one process take turns before they begin on SQLite (issue 16 item 3,
SECURITY_CHECKLIST LD-10).

SQLite has one writer at a time; a writer that finds the database locked waits in SQLite's
busy handler, which sleeps and polls (up to 100 ms a sleep) rather than waking when the
lock is free. Under a surge of uploads dozens of threads slept so, and writes queued past
the busy timeout into "database is locked". ``Database.write`` now waits for the
process's other writers before it begins, so it never meets the busy handler because of
its own process.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from sqlalchemy import event, text
from sqlalchemy.exc import OperationalError

import storage.db
from storage.db import Database, is_transient


def _hold_a_write_and_start_another(db: Database, wait_for_second: float) -> tuple[bool, list[str]]:
    """A holds a begun write transaction while B asks for one. Returns whether B began
    while A was still open, and the order of begins and commits."""
    order: list[str] = []
    a_open = threading.Event()
    b_began = threading.Event()
    errors: list[BaseException] = []
    names = {}

    # Just before a statement goes to the database: on SQLite the first is BEGIN
    # (IMMEDIATE), so "begins" means the transaction was asked of the database, whether or
    # not its lock was free.
    @event.listens_for(db.engine, "before_cursor_execute")
    def began(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        name = names.get(threading.get_ident())
        if name is not None and f"{name} begins" not in order:
            order.append(f"{name} begins")
            if name == "B":
                b_began.set()

    def a() -> None:
        names[threading.get_ident()] = "A"
        try:
            with db.write() as s:
                s.connection().execute(text("SELECT 1"))
                a_open.set()
                b_began.wait(timeout=wait_for_second)
                order.append("A commits")
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    def b() -> None:
        names[threading.get_ident()] = "B"
        try:
            assert a_open.wait(timeout=20)
            with db.write() as s:
                s.connection().execute(text("SELECT 1"))
        except BaseException as exc:
            errors.append(exc)

    try:
        threads = [threading.Thread(target=a), threading.Thread(target=b)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
    finally:
        event.remove(db.engine, "before_cursor_execute", began)
    assert errors == []
    return order.index("B begins") < order.index("A commits"), order


def test_sqlite_writers_of_one_process_take_turns_before_they_begin(db: Database) -> None:
    if db.is_sqlite:
        # B waits for its turn before it begins, never inside SQLite's busy handler (A
        # waits a bounded 2 s for a begin that must not come).
        overlapped, order = _hold_a_write_and_start_another(db, wait_for_second=2.0)
        assert not overlapped, order
        assert order == ["A begins", "A commits", "B begins"]
    else:
        # PostgreSQL has many writers and row locks: nobody waits for a turn.
        assert db.is_postgresql
        overlapped, order = _hold_a_write_and_start_another(db, wait_for_second=20.0)
        assert overlapped, order


def test_a_writer_that_gets_no_turn_in_time_is_told_the_database_is_busy(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Waiting for a turn is bounded like SQLite's own busy wait, and ends in the same
    transient fault (a 503 with Retry-After at the doors), never a hang."""
    if not db.is_sqlite:
        assert db.is_postgresql
        return
    monkeypatch.setattr(storage.db, "SQLITE_BUSY_SECONDS", 0.2)
    with _another_thread_writing(db):
        with pytest.raises(OperationalError) as raised, db.write() as s:
            s.connection().execute(text("SELECT 1"))
        assert "database is locked" in str(raised.value)
        assert is_transient(raised.value)
    with db.write() as s:  # and the turn is free again afterwards
        s.connection().execute(text("SELECT 1"))


def test_a_child_forked_while_another_thread_writes_can_write(db: Database) -> None:
    """A process forked while one of its parent's threads held its turn (the forkserver of
    the worker, a test harness) must not inherit that turn held for ever: the child's
    writes would wait the busy timeout and fail with "database is locked"."""
    if not db.is_sqlite:
        assert db.is_postgresql
        return
    with _another_thread_writing(db):
        pid = os.fork()
        if pid == 0:  # the child: its own connection, a turn of its own
            code = 1
            try:
                storage.db.SQLITE_BUSY_SECONDS = 2  # a held turn would fail within 2 s
                child = Database(db.url)
                turn = storage.db._writer_turn(child)
                turn.__enter__()  # must not wait for the parent's writer
                turn.__exit__(None, None, None)
                code = 0
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0


@contextmanager
def _another_thread_writing(db: Database) -> Iterator[None]:
    """While the block runs, another thread of this process is inside ``db.write()``."""
    holding = threading.Event()
    done = threading.Event()

    def hold() -> None:
        with db.write() as s:
            s.connection().execute(text("SELECT 1"))
            holding.set()
            done.wait(timeout=60)

    holder = threading.Thread(target=hold)
    holder.start()
    try:
        assert holding.wait(timeout=20)
        yield
    finally:
        done.set()
        holder.join(timeout=30)
