"""The blob store contract (storage/blobs/protocol.py), run against every backend.

Each test takes ``blob_store`` and so runs on the filesystem store and on S3 (moto's
server over HTTP). Sizes are chosen around S3's 5 MiB minimum part size, which is where
a multipart-backed store has to carry bytes between writes.
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import AsyncIterator

import anyio
import pytest

from storage.blobs import (
    NAMESPACES,
    BlobNotFound,
    BlobStore,
    InvalidKey,
    OffsetMismatch,
    Upload,
    UploadFinished,
    put_bytes,
    read_all,
)
from tests.fixtures.blobs import StoreFactory, StreamBroke, broken_stream, sha256, stream

pytestmark = pytest.mark.anyio

MiB = 1 << 20


@pytest.fixture(params=["filesystem", "s3", "s3-object-lock"])
def blob_backend(request: pytest.FixtureRequest) -> str:
    """Here, unlike elsewhere, S3 also runs on a bucket with Object Lock (and so
    versioning): deleting .part/.info objects there only adds delete markers."""
    return str(request.param)


KEY_SHAPE = re.compile(r"(originals|derivatives|exports|checkpoints)/[0-9a-f]{32}")


async def read_range(store: BlobStore, key: str, start: int = 0, end: int | None = None) -> bytes:
    return b"".join([chunk async for chunk in store.read(key, start, end)])


async def empty() -> AsyncIterator[bytes]:
    return
    yield b""  # pragma: no cover - makes this an async generator


# -- create / info / write / finish / read ------------------------------------------


async def test_create_makes_a_fresh_store_chosen_key(blob_store: BlobStore) -> None:
    first = await blob_store.create("originals", 10)
    second = await blob_store.create("originals", 10)
    assert KEY_SHAPE.fullmatch(first.key) and KEY_SHAPE.fullmatch(second.key)
    assert first.key != second.key
    assert isinstance(first, Upload)
    info = await first.info()
    assert (info.key, info.offset, info.length, info.finished) == (first.key, 0, 10, False)


async def test_create_in_every_namespace_and_unknown_namespace_refused(
    blob_store: BlobStore,
) -> None:
    for namespace in NAMESPACES:
        upload = await blob_store.create(namespace)
        assert upload.key.startswith(f"{namespace}/")
        assert (await upload.info()).length is None
    with pytest.raises(InvalidKey):
        await blob_store.create("../originals")


async def test_write_finish_read_round_trip(blob_store: BlobStore) -> None:
    data = os.urandom(3 * MiB + 123)
    upload = await blob_store.create("originals", len(data))
    assert await upload.write(0, stream(data)) == len(data)
    info = await upload.info()
    assert (info.offset, info.finished) == (len(data), False)
    done = await upload.finish()
    assert (done.offset, done.length, done.finished) == (len(data), len(data), True)
    assert await blob_store.size(upload.key) == len(data)
    assert sha256(await read_all(blob_store, upload.key)) == sha256(data)
    again = await blob_store.get(upload.key)
    assert (await again.info()).finished


async def test_read_ranges_start_end_suffix_and_empty(blob_store: BlobStore) -> None:
    data = os.urandom(2 * MiB + 77)
    key = await put_bytes(blob_store, data, "derivatives")
    size = len(data)
    assert await read_range(blob_store, key, 0) == data
    assert await read_range(blob_store, key, 1000) == data[1000:]
    assert await read_range(blob_store, key, 5, 17) == data[5:17]
    assert await read_range(blob_store, key, MiB - 3, MiB + 5) == data[MiB - 3 : MiB + 5]
    assert await read_range(blob_store, key, size - 100) == data[-100:]  # suffix
    assert await read_range(blob_store, key, size - 1, size) == data[-1:]
    assert await read_range(blob_store, key, 10, 10) == b""
    assert await read_range(blob_store, key, size) == b""
    assert await read_range(blob_store, key, size - 10, size + 1000) == data[-10:]


async def test_many_small_writes_make_the_right_object(blob_store: BlobStore) -> None:
    # Twelve 1 MiB writes: each one is below S3's 5 MiB part minimum.
    data = os.urandom(12 * MiB)
    upload = await blob_store.create("originals", len(data))
    for i in range(12):
        piece = data[i * MiB : (i + 1) * MiB]
        assert await upload.write(i * MiB, stream(piece)) == MiB
        assert (await upload.info()).offset == (i + 1) * MiB
    await upload.finish()
    assert sha256(await read_all(blob_store, upload.key)) == sha256(data)


async def test_large_chunks_and_odd_sizes(blob_store: BlobStore) -> None:
    data = os.urandom(11 * MiB + 1)
    upload = await blob_store.create("originals")
    assert await upload.write(0, stream(data[: 6 * MiB + 1], chunk_size=6 * MiB + 1)) == 6 * MiB + 1
    assert await upload.write(6 * MiB + 1, stream(data[6 * MiB + 1 :], chunk_size=999_983)) == (5 * MiB)
    await upload.finish()
    assert sha256(await read_all(blob_store, upload.key)) == sha256(data)


async def test_many_tiny_chunks(blob_store: BlobStore) -> None:
    data = os.urandom(64 << 10)
    upload = await blob_store.create("derivatives", len(data))
    assert await upload.write(0, stream(data, chunk_size=7)) == len(data)
    await upload.finish()
    assert await read_all(blob_store, upload.key) == data


async def test_zero_length_object(blob_store: BlobStore) -> None:
    upload = await blob_store.create("originals", 0)
    assert await upload.write(0, empty()) == 0
    info = await upload.finish()
    assert (info.offset, info.length, info.finished) == (0, 0, True)
    assert await blob_store.size(upload.key) == 0
    assert await read_all(blob_store, upload.key) == b""
    assert await read_range(blob_store, upload.key, 0, 0) == b""


async def test_put_bytes_and_read_all(blob_store: BlobStore) -> None:
    key = await put_bytes(blob_store, b"thumbnail bytes")
    assert key.startswith("derivatives/")
    assert await read_all(blob_store, key) == b"thumbnail bytes"


# -- offsets and sealing --------------------------------------------------------------


async def test_offset_mismatch_writes_nothing(blob_store: BlobStore) -> None:
    upload = await blob_store.create("originals", 100)
    await upload.write(0, stream(b"a" * 40))
    for wrong in (0, 39, 41, 100):
        with pytest.raises(OffsetMismatch) as caught:
            await upload.write(wrong, stream(b"b" * 10))
        assert (caught.value.expected, caught.value.got) == (40, wrong)
    assert (await upload.info()).offset == 40
    await upload.write(40, stream(b"c" * 60))
    await upload.finish()
    assert await read_all(blob_store, upload.key) == b"a" * 40 + b"c" * 60


async def test_finished_upload_is_sealed(blob_store: BlobStore) -> None:
    upload = await blob_store.create("originals", 5)
    await upload.write(0, stream(b"12345"))
    first = await upload.finish()
    with pytest.raises(UploadFinished):
        await upload.write(5, stream(b"more"))
    with pytest.raises(UploadFinished):
        await upload.terminate()
    assert await upload.finish() == first  # idempotent
    reopened = await blob_store.get(upload.key)
    with pytest.raises(UploadFinished):
        await reopened.write(5, stream(b"more"))
    with pytest.raises(UploadFinished):
        await reopened.terminate()
    assert await read_all(blob_store, upload.key) == b"12345"


async def test_terminate_deletes_an_unfinished_upload(blob_store: BlobStore) -> None:
    upload = await blob_store.create("originals", 6 * MiB)
    await upload.write(0, stream(os.urandom(6 * MiB)))  # a part on S3
    await upload.write(6 * MiB, stream(b"tail"))  # an incomplete part on S3
    await upload.terminate()
    with pytest.raises(BlobNotFound):
        await blob_store.get(upload.key)
    with pytest.raises(BlobNotFound):
        await upload.info()
    with pytest.raises(BlobNotFound):
        await upload.terminate()


async def test_unfinished_upload_is_not_readable(blob_store: BlobStore) -> None:
    upload = await blob_store.create("originals", 10)
    await upload.write(0, stream(b"12345"))
    with pytest.raises(BlobNotFound):
        await read_all(blob_store, upload.key)
    with pytest.raises(BlobNotFound):
        await blob_store.size(upload.key)


async def test_unknown_key_is_not_found(blob_store: BlobStore) -> None:
    unknown = "originals/" + "0" * 32
    with pytest.raises(BlobNotFound):
        await blob_store.get(unknown)
    with pytest.raises(BlobNotFound):
        await read_all(blob_store, unknown)
    with pytest.raises(BlobNotFound):
        await blob_store.size(unknown)


BAD_KEYS = [
    "../x",
    "originals/../../etc/passwd",
    "originals/../derivatives/" + "0" * 32,
    "/etc/passwd",
    "/originals/" + "0" * 32,
    "originals\\..\\..\\x",
    "originals\\" + "0" * 32,
    "originals/" + "0" * 31,
    "originals/" + "0" * 33,
    "originals/" + "A" * 32,
    "originals/" + "0" * 32 + "/",
    "originals/" + "0" * 32 + "\n",
    "originals/" + "0" * 32 + ".json",
    "originals/" + "0" * 32 + ".info",
    "originals/" + "0" * 32 + "\x00",
    "incoming/" + "0" * 32,
    "objects/" + "0" * 32,
    "0" * 32,
    "",
    "originals/%2e%2e%2f" + "0" * 23,
]


async def test_keys_the_store_did_not_make_are_refused(blob_store: BlobStore) -> None:
    # One test over all the keys (a store per key would cost a bucket per key on S3).
    for key in BAD_KEYS:
        with pytest.raises(InvalidKey):
            await blob_store.get(key)
        with pytest.raises(InvalidKey):
            await read_all(blob_store, key)
        with pytest.raises(InvalidKey):
            await read_range(blob_store, key, 0, 10)
        with pytest.raises(InvalidKey):
            await blob_store.size(key)


# -- interrupted streams and resumption -----------------------------------------------


@pytest.mark.parametrize(
    "break_after",
    # S3: below / at / over the 5 MiB part minimum, and past the 8 MiB part size (one part
    # sent during the write, the rest carried). Filesystem: across its 1 MiB batches.
    [0, 1, 64 << 10, 3 * MiB + 17, 5 * MiB, 5 * MiB + 1, 7 * MiB + 3, 8 * MiB + 3],
    ids=["0", "1B", "64KiB", "3MiB+17", "5MiB", "5MiB+1", "7MiB+3", "8MiB+3"],
)
async def test_interrupted_write_keeps_received_bytes_and_resumes(blob_store: BlobStore, break_after: int) -> None:
    data = os.urandom(9 * MiB + 5)
    upload = await blob_store.create("originals", len(data))
    with pytest.raises(StreamBroke):
        await upload.write(0, broken_stream(data, break_after))
    assert (await upload.info()).offset == break_after
    with pytest.raises(OffsetMismatch):
        await upload.write(break_after + 1, stream(data))
    assert await upload.write(break_after, stream(data[break_after:])) == len(data) - break_after
    await upload.finish()
    assert sha256(await read_all(blob_store, upload.key)) == sha256(data)


async def test_observer_sees_exactly_the_stored_bytes_of_each_write(blob_store: BlobStore) -> None:
    # The upload door hashes through ``observe``: across an interrupted write (on S3 its
    # tail is carried into the next write's first part) and a resume, the observer must
    # see every stored byte once, in order, and no carried byte a second time.
    data = os.urandom(13 * MiB + 7)
    upload = await blob_store.create("originals", len(data))
    seen: list[bytes] = []
    threads: set[int] = set()

    def observe(buffers: list[bytes]) -> None:
        threads.add(threading.get_ident())
        seen.extend(bytes(b) for b in buffers)

    broken_at = 3 * MiB + 11
    with pytest.raises(StreamBroke):
        await upload.write(0, broken_stream(data, broken_at), observe)
    assert b"".join(seen) == data[:broken_at]
    await upload.write(broken_at, stream(data[broken_at:]), observe)
    assert b"".join(seen) == data
    assert threading.get_ident() not in threads  # off the event loop
    await upload.finish()
    assert sha256(await read_all(blob_store, upload.key)) == sha256(data)


async def test_repeated_interruptions_below_part_size_accumulate(blob_store: BlobStore) -> None:
    # Three breaks of 2 MiB + a bit: on S3 the carried-over bytes grow past 5 MiB.
    data = os.urandom(10 * MiB)
    upload = await blob_store.create("originals", len(data))
    offset = 0
    for step in (2 * MiB + 1, 2 * MiB + 2, 2 * MiB + 3):
        with pytest.raises(StreamBroke):
            await upload.write(offset, broken_stream(data[offset:], step))
        offset += step
        assert (await upload.info()).offset == offset
    await upload.write(offset, stream(data[offset:]))
    await upload.finish()
    assert sha256(await read_all(blob_store, upload.key)) == sha256(data)


async def test_cancelled_write_keeps_received_bytes(blob_store: BlobStore) -> None:
    data = os.urandom(6 * MiB + 9)
    received = 3 * MiB + 5
    upload = await blob_store.create("originals", len(data))
    all_sent = anyio.Event()

    async def stalls_after_sending() -> AsyncIterator[bytes]:
        async for chunk in stream(data[:received]):
            yield chunk
        all_sent.set()  # the store has taken every chunk and asks for more
        await anyio.sleep_forever()
        yield b""  # pragma: no cover

    async with anyio.create_task_group() as tg:
        tg.start_soon(upload.write, 0, stalls_after_sending())
        await all_sent.wait()
        tg.cancel_scope.cancel()
    assert (await upload.info()).offset == received
    await upload.write(received, stream(data[received:]))
    await upload.finish()
    assert sha256(await read_all(blob_store, upload.key)) == sha256(data)


async def test_a_new_store_instance_sees_the_same_offset(
    blob_store: BlobStore, blob_store_factory: StoreFactory
) -> None:
    # The process that received the first part is gone; a new one resumes the upload.
    data = os.urandom(8 * MiB + 11)
    upload = await blob_store.create("originals", len(data))
    with pytest.raises(StreamBroke):
        await upload.write(0, broken_stream(data, 6 * MiB + 7))
    later = blob_store_factory()
    resumed = await later.get(upload.key)
    info = await resumed.info()
    assert (info.offset, info.length, info.finished) == (6 * MiB + 7, len(data), False)
    await resumed.write(info.offset, stream(data[info.offset :]))
    await resumed.finish()
    third = blob_store_factory()
    assert sha256(await read_all(third, upload.key)) == sha256(data)
    assert (await (await third.get(upload.key)).info()).finished


async def test_describe_names_the_backend(blob_store: BlobStore, blob_backend: str) -> None:
    described = await blob_store.describe()
    assert described["backend"] == blob_backend.removesuffix("-object-lock")
