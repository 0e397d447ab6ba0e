"""How much of a stream the filesystem store holds in memory before it writes, when many
uploads stream at once (issue 16 item 3, SECURITY_CHECKLIST LD-01, LD-10).

Each upload's bytes are gathered into a batch before one ``writev``. A batch of the
store's full size (1 MiB) held by each of a thousand slow phone uploads was most of the
server's memory in the surge benchmark; the process's ``GATHER_BUDGET`` shares a fixed
amount between the uploads streaming now. What is observed here is what the store's own
``observe`` hook sees: the bytes of each batch, just before it is written.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator

import anyio
import pytest

from storage.blobs import read_all
from storage.blobs.filesystem import GATHER_BUDGET, WRITE_BUFFER_BYTES, FilesystemBlobStore

pytestmark = pytest.mark.anyio

KiB = 1 << 10
CHUNK = 16 * KiB  # what a phone at 64 KiB/s sends in a quarter of a second


async def test_many_uploads_streaming_at_once_each_hold_a_share_of_the_budget(
    fs_blob_store: FilesystemBlobStore,
) -> None:
    uploads = 64
    size = WRITE_BUFFER_BYTES  # a small photo: without the budget, held whole until its end
    rounds = size // CHUNK
    # Round r starts once every upload has taken its chunk r - 1: all of them stream at
    # once, as in a surge, however the event loop orders them.
    started = [anyio.Event() for _ in range(rounds + 1)]
    taken = [0] * (rounds + 1)
    started[0].set()
    batches: list[int] = []
    payloads = [bytes([i]) * size for i in range(uploads)]

    async def slow_phone(i: int) -> AsyncIterator[bytes]:
        for r in range(rounds):
            await started[r].wait()
            yield payloads[i][r * CHUNK:(r + 1) * CHUNK]
            taken[r] += 1
            if taken[r] == uploads:
                started[r + 1].set()

    def observe(buffers: list[bytes]) -> None:
        batches.append(sum(map(len, buffers)))

    created = [await fs_blob_store.create("originals", size) for _ in range(uploads)]
    written: list[int] = []

    async def send(i: int) -> None:
        written.append(await created[i].write(0, slow_phone(i), observe))

    async with anyio.create_task_group() as tg:
        for i in range(uploads):
            tg.start_soon(send, i)

    assert written == [size] * uploads
    share = GATHER_BUDGET.total // uploads
    assert share < size  # the budget is what bounds the batches here, not the file size
    # No upload ever held more than its share (and the chunk that crossed it).
    assert max(batches) <= share + CHUNK
    assert sum(batches) == uploads * size
    assert GATHER_BUDGET.active == 0  # every stream gave its share back
    for i, upload in enumerate(created):
        await upload.finish()
        stored = await read_all(fs_blob_store, upload.key)
        assert hashlib.sha256(stored).digest() == hashlib.sha256(payloads[i]).digest()


async def test_one_upload_alone_still_writes_whole_batches(fs_blob_store: FilesystemBlobStore) -> None:
    """The fast path (one phone on Wi-Fi, ``benchmarks/upload.py``): the budget does not
    make a lone stream write more often."""
    size = 3 * WRITE_BUFFER_BYTES
    batches: list[int] = []

    async def fast() -> AsyncIterator[bytes]:
        for _ in range(0, size, CHUNK):
            yield b"x" * CHUNK

    upload = await fs_blob_store.create("originals", size)
    assert await upload.write(0, fast(), lambda buffers: batches.append(sum(map(len, buffers)))) == size
    assert batches == [WRITE_BUFFER_BYTES] * 3
