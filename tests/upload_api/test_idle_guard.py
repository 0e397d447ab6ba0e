"""UP-05: a body that stops arriving is cut off after the idle timeout, and only then.

``streaming.idle_guarded`` watches each stream with one timer; these tests pin what that
timer may and may not do: a slow but steady phone is never cut off, time the server
spends storing between chunks is not the client's idleness, a stall is cut off with
``IdleTimeout`` (answered 500, which clients retry), and somebody else's cancellation stays a cancellation.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import pytest
from sqlmodel import select

from storage.db import Database
from storage.models import EvidenceItem, Upload, UploadState
from tests.fixtures.upload import LiveServer, jpeg_bytes, make_env
from upload_api.streaming import IdleTimeout, idle_guarded

pytestmark = pytest.mark.anyio


async def paced(n: int, gap: float) -> AsyncIterator[bytes]:
    """A client sending ``n`` chunks, one every ``gap`` seconds."""
    for i in range(n):
        await anyio.sleep(gap)
        yield bytes([i]) * 10


async def stalls_after(n: int) -> AsyncIterator[bytes]:
    for i in range(n):
        yield bytes([i]) * 10
    await anyio.Event().wait()  # the phone lost its signal for good
    yield b"never"


async def test_a_slow_steady_stream_longer_than_the_timeout_is_not_cut_off() -> None:
    started = time.monotonic()
    got = [c async for c in idle_guarded(paced(8, 0.05), idle_seconds=0.2)]
    assert len(got) == 8
    assert time.monotonic() - started > 0.2  # longer in all than one idle period


async def test_time_spent_storing_between_chunks_is_not_idleness() -> None:
    got = []
    async for chunk in idle_guarded(paced(3, 0), idle_seconds=0.1):
        got.append(chunk)
        await anyio.sleep(0.25)  # the consumer (a batch being stored) takes its time
    assert len(got) == 3


async def test_a_stalled_stream_is_cut_off_after_what_arrived() -> None:
    got = []
    started = time.monotonic()
    with pytest.raises(IdleTimeout):
        async for chunk in idle_guarded(stalls_after(2), idle_seconds=0.2):
            got.append(chunk)
    assert len(got) == 2
    assert 0.2 <= time.monotonic() - started < 5
    # The task is not left cancelled: it goes on to answer the client.
    task = asyncio.current_task()
    assert task is not None and task.cancelling() == 0
    await anyio.sleep(0.01)


async def test_bytes_that_came_while_the_whole_process_stalled_are_not_idleness() -> None:
    """The server process stalls (a GC pause, a loaded host) for longer than the idle
    timeout while the client keeps sending. When the loop runs again it reads the client's
    bytes and, in the same turn, the late timer finds the wait over-long: the client was
    not idle, and is not cut off. The stall is real (the loop blocked in ``time.sleep``)
    and the bytes come through a real socket, so the order of events is the loop's own."""
    loop = asyncio.get_running_loop()
    reader, writer = socket.socketpair()
    reader.setblocking(False)

    def stall() -> None:
        writer.send(b"b")  # the client sends ...
        time.sleep(0.5)  # ... while the server does nothing for longer than the timeout

    async def sends_during_a_stall() -> AsyncIterator[bytes]:
        yield b"a"
        loop.call_soon(stall)
        yield await loop.sock_recv(reader, 1)

    try:
        got = [c async for c in idle_guarded(sends_during_a_stall(), idle_seconds=0.2)]
    finally:
        reader.close()
        writer.close()
    assert got == [b"a", b"b"]


async def test_a_cancellation_from_elsewhere_is_not_turned_into_a_timeout() -> None:
    with anyio.move_on_after(0.1) as scope:
        async for _chunk in idle_guarded(stalls_after(1), idle_seconds=30):
            pass
    assert scope.cancelled_caught  # the caller's own deadline, not IdleTimeout
    await anyio.sleep(0.01)


def test_a_stalled_form_is_cut_off_and_becomes_nothing(db: Database, tmp_path: Path) -> None:
    """The citizen's browser form stops halfway: cut off after the idle timeout, the upload is
    refused and no evidence item exists (a form is not resumable; tus is)."""
    env = make_env(db, tmp_path, upload_idle_timeout_seconds=0.5)
    boundary = "xYzZY"
    head = (f'--{boundary}\r\nContent-Disposition: form-data; name="declaration"\r\n\r\naccepted\r\n'
            f'--{boundary}\r\nContent-Disposition: form-data; name="files"; filename="a.jpg"\r\n'
            f"Content-Type: image/jpeg\r\n\r\n").encode() + jpeg_bytes(100_000)
    with LiveServer(env.app) as server, socket.create_connection(("127.0.0.1", server.port), timeout=20) as s:
        s.sendall(
            f"POST /u/submit HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {env.link.token}\r\n"
            f"Accept: application/json\r\nContent-Type: multipart/form-data; boundary={boundary}\r\n"
            f"Content-Length: {len(head) + 1_000_000}\r\n\r\n".encode() + head
        )
        answer = s.recv(4096)  # blocks until the server gives up on the body
    assert answer.startswith(b"HTTP/1.1 500"), answer[:200]
    with env.db.read() as session:
        assert session.exec(select(EvidenceItem)).all() == []
        assert [u.state for u in session.exec(select(Upload)).all()] == [UploadState.REFUSED]
