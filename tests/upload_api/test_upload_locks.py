"""One writer per upload across processes (SECURITY_CHECKLIST CF-03): ``exhibit serve``
runs a staff and a public process on one database, and either may be handed a PATCH."""

from __future__ import annotations

import contextlib
import subprocess
import sys
import textwrap
from collections.abc import Iterator

import anyio
import pytest

from storage.db import Database
from storage.locks import make_locker

pytestmark = pytest.mark.anyio

HOLDER = textwrap.dedent("""
    import sys, anyio
    from storage.db import Database
    from storage.locks import make_locker

    async def main():
        async with make_locker(Database(sys.argv[1])).hold(sys.argv[2]) as got:
            print("held" if got else "refused", flush=True)
            sys.stdin.readline()  # hold until told (or killed)

    anyio.run(main)
""")

UPLOAD = "a1b2c3d4e5f60718293a4b5c6d7e8f90"
OTHER = "0f1e2d3c4b5a69788796a5b4c3d2e1f0"


@contextlib.contextmanager
def _holder(db: Database) -> Iterator[subprocess.Popen[str]]:
    """Another process in the middle of a PATCH of UPLOAD: it holds the lock until told."""
    with subprocess.Popen([sys.executable, "-c", HOLDER, db.url, UPLOAD], stdin=subprocess.PIPE,
                          stdout=subprocess.PIPE, text=True) as proc:
        assert proc.stdout is not None
        try:
            assert proc.stdout.readline().strip() == "held"
            yield proc
        finally:
            proc.kill()


def _release(proc: subprocess.Popen[str]) -> None:
    assert proc.stdin is not None
    proc.stdin.write("release\n")
    proc.stdin.flush()
    assert proc.wait(timeout=30) == 0


async def _try(db: Database, upload_id: str) -> bool:
    async with make_locker(db).hold(upload_id) as got:
        return got


async def test_another_process_writing_an_upload_keeps_this_one_out_until_it_is_done(db: Database) -> None:
    with _holder(db) as holder:
        assert await _try(db, UPLOAD) is False  # 423: someone else is appending
        assert await _try(db, OTHER) is True  # other uploads are not held up
        _release(holder)
        assert await _try(db, UPLOAD) is True


async def test_a_writer_process_that_dies_does_not_hold_the_upload(db: Database) -> None:
    with _holder(db) as holder:
        assert await _try(db, UPLOAD) is False  # it does hold the upload
        holder.kill()  # kill -9 mid-PATCH: the kernel (or PostgreSQL) drops its lock
        holder.wait(timeout=30)
        if db.is_sqlite:
            assert await _try(db, UPLOAD) is True  # the kernel dropped it at exit
            return
        # PostgreSQL ends the dead client's backend asynchronously (no event to wait on):
        # retry for a bounded time.
        for _ in range(600):
            if await _try(db, UPLOAD):
                return
            await anyio.sleep(0.05)
        pytest.fail("the dead writer's advisory lock was still held after 30 s")


async def test_two_writers_in_one_process_are_one_too_many(db: Database) -> None:
    async with make_locker(db).hold(UPLOAD) as first:
        assert first is True
        assert await _try(db, UPLOAD) is False
    assert await _try(db, UPLOAD) is True
