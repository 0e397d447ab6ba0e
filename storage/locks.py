"""One writer per upload: the ``Locker`` contract and its three implementations, after
tusd's ``handler.Locker`` (an optional ability chosen once at start-up by a composer).

Threat (SECURITY_CHECKLIST CF-03): two requests appending to one upload at once would
interleave their bytes in the blob and corrupt the hash and the evidence. The handler
takes the upload's lock before it reads the store's offset and holds it for the whole
PATCH (or completion, termination, expiry); a caller that does not get it changes
nothing and answers 423.

Every locker first takes an in-process slot (shared by every thread and event loop of
the process: the expiry sweep runs in another thread), then a lock across processes:

- ``AdvisoryLocker`` (PostgreSQL): ``pg_try_advisory_lock`` on a dedicated connection
  held for the whole request, so that several nodes sharing the database never write
  one upload at once; released when the request ends, or by the server if the node dies.
- ``FileLocker`` (SQLite file): a POSIX record lock on one byte of a lock file next to
  the database. SQLite deployments are one machine, but ``exhibit serve`` runs a public
  and a staff process on it that may both be handed a PATCH of the same upload; the
  kernel drops the lock of a process that dies.
- ``ProcessLocker`` (in-memory SQLite): the database lives in this process only.

``make_locker(db)`` picks one; ``upload_api.app.create_app`` calls it once.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import AbstractAsyncContextManager
from typing import Protocol

import anyio
import anyio.to_thread
from sqlalchemy import Connection, text
from sqlalchemy.engine import make_url

from storage.db import Database


class Locker(Protocol):
    """Non-blocking, exclusive, per upload id. Never waits for another holder: a second
    writer is a client retrying too early or an attacker, and either way is told 423."""

    def hold(self, upload_id: str) -> AbstractAsyncContextManager[bool]:
        """Yields True when this caller is the one writer until the block ends, False
        when someone else is (the caller then changes nothing). Released on every exit,
        cancellation included."""
        ...

    def held_here(self, upload_id: str) -> bool:
        """Whether a caller in this process holds the upload now (tests, diagnostics)."""
        ...


# The in-process slots, keyed by (database URL, upload id): one set for the whole
# process, whichever locker or app asks.
_mutex = threading.Lock()
_held: set[tuple[str, str]] = set()


@contextlib.contextmanager
def _process_slot(db: Database, upload_id: str) -> Iterator[bool]:
    key = (db.url, upload_id)
    with _mutex:
        got = key not in _held
        if got:
            _held.add(key)
    try:
        yield got
    finally:
        if got:
            with _mutex:
                _held.discard(key)


def advisory_key(upload_id: str) -> int:
    # 60 bits of the (random, hex) upload id: a signed bigint with no sign trouble, and
    # the byte offset in the SQLite lock file.
    return int(upload_id[:15], 16)


class ProcessLocker:
    """In-process only: for a database no other process can open (in-memory SQLite)."""

    name = "process"

    def __init__(self, db: Database) -> None:
        self.db = db

    def held_here(self, upload_id: str) -> bool:
        with _mutex:
            return (self.db.url, upload_id) in _held

    @contextlib.asynccontextmanager
    async def hold(self, upload_id: str) -> AsyncIterator[bool]:
        with _process_slot(self.db, upload_id) as got:
            yield got


class FileLocker(ProcessLocker):
    """SQLite on a file: a POSIX record lock on one byte of ``<database>.upload-locks``."""

    name = "sqlite-file"
    _files: dict[str, int] = {}

    def __init__(self, db: Database, path: str) -> None:
        super().__init__(db)
        self.lock_path = f"{os.path.abspath(path)}.upload-locks"

    def _fd(self) -> int:
        with _mutex:
            fd = self._files.get(self.lock_path)
            if fd is None:
                # Opened once per process and never closed: POSIX record locks belong to
                # the process, and closing *any* descriptor of the file would drop them
                # all, including those other threads hold. Between threads of this
                # process the in-process slot already gives the exclusion.
                fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
                self._files[self.lock_path] = fd
            return fd

    @contextlib.asynccontextmanager
    async def hold(self, upload_id: str) -> AsyncIterator[bool]:
        with _process_slot(self.db, upload_id) as got:
            if not got:
                yield False
                return
            fd = self._fd()
            offset = advisory_key(upload_id)
            try:
                fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, offset)
            except OSError as exc:
                if exc.errno not in (errno.EAGAIN, errno.EACCES):
                    raise
                yield False  # another process is writing this upload
                return
            try:
                yield True
            finally:
                fcntl.lockf(fd, fcntl.LOCK_UN, 1, offset)


class AdvisoryLocker(ProcessLocker):
    """PostgreSQL: a session-level advisory lock on a dedicated connection."""

    name = "postgresql-advisory"

    def try_lock(self, upload_id: str) -> Connection | None:
        """The connection holding the upload's advisory lock, or None when another
        session (another node) holds it. Blocking: call in a worker thread."""
        conn = self.db.engine.connect()
        try:
            got = conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": advisory_key(upload_id)}).scalar_one()
            conn.commit()
        except Exception:
            conn.close()
            raise
        if not got:
            conn.close()
            return None
        return conn

    @staticmethod
    def unlock(conn: Connection, upload_id: str) -> None:
        try:
            conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": advisory_key(upload_id)})
            conn.commit()
        finally:
            conn.close()

    @contextlib.asynccontextmanager
    async def hold(self, upload_id: str) -> AsyncIterator[bool]:
        with _process_slot(self.db, upload_id) as got:
            if not got:
                yield False
                return
            conn = await anyio.to_thread.run_sync(self.try_lock, upload_id)
            if conn is None:
                yield False
                return
            try:
                yield True
            finally:
                with anyio.CancelScope(shield=True):
                    await anyio.to_thread.run_sync(self.unlock, conn, upload_id)


def make_locker(db: Database) -> Locker:
    """The composer: the locker this database needs, chosen once at start-up."""
    if not db.is_sqlite:
        return AdvisoryLocker(db)
    path = make_url(db.url).database
    if not path or path == ":memory:" or path.startswith("file:"):
        return ProcessLocker(db)
    return FileLocker(db, path)
