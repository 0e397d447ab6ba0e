"""Database access: one ``Database`` per process, built from the database URL.

Two kinds of transaction:

* ``db.read()``  for queries only: a deferred transaction on SQLite, autocommit on
  PostgreSQL (each statement its own snapshot, as READ COMMITTED gives anyway). Writes
  through it are refused (``ReadOnlySession``); row locks belong in ``db.write()``.
* ``db.write()`` a transaction that may write. On SQLite it starts with
  ``BEGIN IMMEDIATE``, so there is exactly one writer at a time and a read-then-write
  (the ledger head, a job claim, a quota check) can never be overtaken by another writer
  between its read and its write. On PostgreSQL it is an ordinary READ COMMITTED
  transaction; the code that needs exclusion takes row locks or advisory locks.

SQLite runs with ``journal_mode=WAL`` and ``synchronous=FULL``: an upload we acknowledged
must survive a power cut (SECURITY_CHECKLIST CF-08), and WAL lets the reviewer read
while uploads write. Connections are pooled on both databases.

On SQLite the writers of one process also take turns on a mutex before they begin
(``_writer_turn``): SQLite has one writer anyway, and a writer that finds the database
locked waits in its busy handler, which sleeps and retries (up to 100 ms a sleep) instead
of waking when the lock is free; under a surge of uploads, dozens of threads slept so
while the lock sat free, and writes queued past the busy timeout ("database is locked").
Other processes (the other door, the worker) still meet the busy handler.
"""

from __future__ import annotations

import datetime as dt
import os
import sqlite3
import threading
import time
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Engine, TextClause, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DisconnectionError, OperationalError
from sqlalchemy.pool import QueuePool
from sqlmodel import Session


class Database:
    def __init__(self, url: str, *, echo: bool = False) -> None:
        self.url = url
        parsed = make_url(url)
        self.dialect = parsed.get_backend_name()
        if self.dialect == "sqlite":
            secure_sqlite_file(url, create_dir=False)
            self.engine = _sqlite_engine(url, echo)
        elif self.dialect == "postgresql":
            self.engine = _postgresql_engine(url, echo)
        else:
            raise ValueError(f"unsupported database: {self.dialect}")
        self._write_engine = self.engine.execution_options(exhibit_immediate=True)
        # Reads on PostgreSQL run in autocommit. Under READ COMMITTED every statement
        # takes its own snapshot anyway, so a read transaction buys nothing but its
        # BEGIN and COMMIT, each a round trip to the server (about 1 ms apiece on a small
        # virtual machine, where every round trip wakes another vCPU). A read session
        # refuses ORM writes and non-SELECT SQL text (``_refuse_writes``), so autocommit
        # cannot commit half of something; ``session.connection().execute`` bypasses the
        # ORM and that check, and is for write sessions only.
        self._read_engine = (
            self.engine.execution_options(isolation_level="AUTOCOMMIT") if self.dialect == "postgresql" else self.engine
        )

    @property
    def is_sqlite(self) -> bool:
        return self.dialect == "sqlite"

    @property
    def is_postgresql(self) -> bool:
        return self.dialect == "postgresql"

    @contextmanager
    def read(self) -> Iterator[Session]:
        """A session for queries only: an INSERT, UPDATE or DELETE through it (ORM flush
        or statement) and SQL text other than SELECT or SHOW raise ``ReadOnlySession``
        and change nothing."""
        with Session(self._read_engine, expire_on_commit=False, info={READ_ONLY: True}) as session, session.begin():
            yield session

    @contextmanager
    def write(self) -> Iterator[Session]:
        """A writing transaction: commits when the block ends, rolls back on an error."""
        with _writer_turn(self), Session(self._write_engine, expire_on_commit=False) as session, session.begin():
            yield session

    def now(self, session: Session) -> dt.datetime:
        """The database's clock (UTC). Leases and expiries are computed on it, so that
        workers whose clocks drift apart still agree (SECURITY_CHECKLIST CF-04)."""
        return clock(session)

    def dispose(self) -> None:
        self.engine.dispose()


READ_ONLY = "exhibit_read_only"

# How long a writer waits for SQLite's write lock (busy handler) or for its turn among this
# process's writers, before "database is locked" (a transient fault: 503 and Retry-After).
SQLITE_BUSY_SECONDS = 30

# One turn-taking lock per SQLite database (by URL) for the whole process, shared by every
# ``Database`` opened on it. Re-entrant: a write begun inside another write's block in the
# same thread behaves as it did without it (SQLite decides).
_writer_locks: dict[str, threading.RLock] = {}
_writer_locks_guard = threading.Lock()


def _fresh_writer_locks() -> None:
    # A forked child has only the forking thread: a lock another thread of the parent held
    # at the fork would stay held in the child for ever, and every write there would wait
    # the busy timeout and fail. The child starts with none held (its pool is empty too).
    global _writer_locks_guard
    _writer_locks.clear()
    _writer_locks_guard = threading.Lock()


os.register_at_fork(after_in_child=_fresh_writer_locks)


@contextmanager
def _writer_turn(db: Database) -> Iterator[None]:
    """On SQLite, wait for this process's other writers before beginning (the module
    docstring says why; threat: a surge of uploads queueing writes past the busy timeout,
    SECURITY_CHECKLIST LD-10). On PostgreSQL, nothing: it has row locks and many
    writers."""
    if not db.is_sqlite:
        yield
        return
    with _writer_locks_guard:
        lock = _writer_locks.setdefault(db.url, threading.RLock())
    if not lock.acquire(timeout=SQLITE_BUSY_SECONDS):
        raise OperationalError("BEGIN IMMEDIATE", None, sqlite3.OperationalError("database is locked"))
    try:
        yield
    finally:
        lock.release()


def secure_sqlite_file(url: str, *, create_dir: bool = True) -> None:
    """Create a SQLite database file 0600 in a 0700 directory before SQLite opens it, and
    tighten an existing one that others can read. SQLite gives its -wal and -shm files the
    database file's mode, so they are 0600 too. The threat: another local account reading
    the evidence index, the ledger and password hashes, or writing to the file and
    rewriting history (README, "Custody ledger on SQLite")."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or not parsed.database or parsed.database == ":memory:" \
            or parsed.database.startswith("file:"):
        return
    path = os.path.abspath(parsed.database)
    parent = os.path.dirname(path)
    if not os.path.isdir(parent):
        if not create_dir:
            return  # opening it fails as before: a reading command never creates a home for one
        os.makedirs(parent, mode=0o700, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        for name in (path, f"{path}-wal", f"{path}-shm"):
            try:
                if os.stat(name).st_mode & 0o077:
                    os.chmod(name, 0o600)
            except FileNotFoundError:
                pass
    else:
        os.close(fd)


# SQLite's words for a database that is there but cannot be used just now (another
# writer held the lock past the busy timeout; the file or disk briefly out of reach). Its
# other OperationalErrors (a syntax error, a missing table) are bugs, not faults that pass.
_SQLITE_TRANSIENT = ("database is locked", "database table is locked", "unable to open database file",
                     "disk i/o error")


def is_transient(exc: BaseException) -> bool:
    """Is ``exc`` a database fault that passes (busy, unreachable, restarting), so that the
    right answer is "try again shortly" and not "this request is broken"? Every
    OperationalError of the PostgreSQL driver is (connection refused or lost, admin
    shutdown, serialization failure, deadlock); of SQLite's, only a lock or an unreadable
    file."""
    if not isinstance(exc, OperationalError):
        return False
    orig = getattr(exc, "orig", None)
    if isinstance(orig, sqlite3.Error):
        return str(orig).lower().startswith(_SQLITE_TRANSIENT)
    return True


class ReadOnlySession(RuntimeError):
    """A write was attempted through ``Database.read()``: a bug in the caller."""


@event.listens_for(Session, "before_flush")
def _refuse_flush(session: Session, _context: Any, _instances: Any) -> None:
    if not session.info.get(READ_ONLY):
        return
    # ``dirty`` may hold objects only touched, not changed: refuse only real changes.
    if session.new or session.deleted or any(session.is_modified(obj) for obj in session.dirty):
        raise ReadOnlySession("a read session cannot write; use Database.write()")


@event.listens_for(Session, "do_orm_execute")
def _refuse_writes(state: Any) -> None:
    if not state.session.info.get(READ_ONLY):
        return
    if state.is_insert or state.is_update or state.is_delete:
        raise ReadOnlySession("a read session cannot write; use Database.write()")
    if isinstance(state.statement, TextClause):
        words = state.statement.text.lstrip().split(None, 1)
        if not words or words[0].upper() not in _READ_VERBS:
            raise ReadOnlySession("a read session runs SELECT only; use Database.write()")


# SQL text a read session may run. Not WITH (a PostgreSQL CTE can modify data), not
# EXPLAIN (EXPLAIN ANALYZE runs its statement).
_READ_VERBS = frozenset({"SELECT", "SHOW"})


# The clock as a SQL expression, for queries that read it together with other values.
SQLITE_NOW = "strftime('%Y-%m-%d %H:%M:%f', 'now')"
POSTGRESQL_NOW = "clock_timestamp()"


def clock_value(value: str | dt.datetime) -> dt.datetime:
    """A value of ``SQLITE_NOW`` or ``POSTGRESQL_NOW`` as an aware UTC datetime."""
    if isinstance(value, str):
        return dt.datetime.fromisoformat(value).replace(tzinfo=dt.UTC)
    return value.astimezone(dt.UTC)


def clock(session: Session) -> dt.datetime:
    """The database's clock (UTC), for code that has a session but no ``Database``."""
    now = SQLITE_NOW if session.get_bind().dialect.name == "sqlite" else POSTGRESQL_NOW
    return clock_value(session.exec(text(f"SELECT {now}")).scalar_one())  # type: ignore[call-overload]


def _dispose_in_forked_children(engine: Engine) -> None:
    ref = weakref.ref(engine)

    def after_fork() -> None:
        alive = ref()
        if alive is not None:
            alive.dispose(close=False)

    os.register_at_fork(after_in_child=after_fork)


def _postgresql_engine(url: str, echo: bool) -> Engine:
    engine = create_engine(url, echo=echo, pool_size=10, max_overflow=20)

    # Stale connections (the server restarted, a proxy dropped an idle one) are found by
    # a ping, but only on a connection idle for a while: ``pool_pre_ping`` would pay a
    # round trip on every checkout, i.e. every transaction.
    @event.listens_for(engine, "checkout")
    def _ping_if_idle(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        last = record.info.get("exhibit_checked_in")
        if last is None or time.monotonic() - last < PING_AFTER_IDLE_SECONDS:
            return
        try:
            # The dialect's own ping: it pings in autocommit, so no transaction is left
            # open (a plain SELECT would open one, and switching the connection to
            # AUTOCOMMIT for a read would then be refused).
            engine.dialect.do_ping(dbapi_connection)
        except Exception as exc:
            # The pool discards this connection and checks out (or opens) another.
            raise DisconnectionError("idle connection is gone") from exc

    @event.listens_for(engine, "checkin")
    def _note_checkin(_dbapi_connection: Any, record: Any) -> None:
        record.info["exhibit_checked_in"] = time.monotonic()

    _dispose_in_forked_children(engine)
    return engine


PING_AFTER_IDLE_SECONDS = 10.0


def _sqlite_engine(url: str, echo: bool) -> Engine:
    # A pool of open connections: opening one (with its PRAGMAs) cost 2 to 8 ms, paid two
    # or three times per request when every transaction opened its own (NullPool). A
    # connection is used by one thread at a time (the pool hands it out and takes it
    # back), which is all SQLite asks; ``check_same_thread`` only forbids handing over.
    # Beyond ``pool_size`` there is no cap (overflow connections are closed on return),
    # so a burst of threads never waits on the pool, only on SQLite's own locks.
    engine = create_engine(
        url,
        echo=echo,
        poolclass=QueuePool,
        pool_size=8,
        max_overflow=-1,
        connect_args={"check_same_thread": False, "timeout": SQLITE_BUSY_SECONDS},
    )
    # A forked child must not share its parent's open SQLite connections (their locks
    # and WAL state belong to the parent): it starts with an empty pool.
    _dispose_in_forked_children(engine)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy (below) emit BEGIN itself, so we can choose IMMEDIATE.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            # journal_mode answers with the mode it is in, and stays silently in the old
            # one when it cannot switch (a filesystem without shared memory): then the
            # durability and concurrency this module promises do not hold, so refuse.
            mode = str(cursor.execute("PRAGMA journal_mode=WAL").fetchone()[0]).lower()
            if mode not in ("wal", "memory"):
                raise RuntimeError(f"SQLite refused WAL mode (journal_mode is {mode!r}): {url}")
            cursor.execute("PRAGMA synchronous=FULL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_SECONDS * 1000}")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        if conn.get_execution_options().get("exhibit_immediate"):
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        else:
            conn.exec_driver_sql("BEGIN")

    return engine
