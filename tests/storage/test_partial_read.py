"""Reading the stored prefix of an *unfinished* upload (issue 17 item 4, DESIGN §4).

A node that meets an upload without its hash state (another node received the earlier
PATCHes, or this one restarted) rebuilds the state from the bytes already stored. That
needs ``read_partial`` on every store: the filesystem store reads its incoming file; the
S3 store reads the staged copies of the multipart upload's parts and the carried
``.part`` (parts of a multipart upload cannot be read back before it completes).
Every backend: filesystem, S3 and S3 with Object Lock (moto's server over HTTP).
"""

from __future__ import annotations

import os

import pytest

from storage.blobs import BlobNotFound, BlobStore, BlobStoreError, read_all
from storage.blobs.protocol import PartialReader
from tests.fixtures.blobs import StoreFactory, StreamBroke, broken_stream, sha256, stream

pytestmark = pytest.mark.anyio

MiB = 1 << 20


@pytest.fixture(params=["filesystem", "s3", "s3-object-lock"])
def blob_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


async def partial(store: BlobStore, key: str, start: int, end: int) -> bytes:
    assert isinstance(store, PartialReader)
    return b"".join([chunk async for chunk in store.read_partial(key, start, end)])


async def test_every_store_reads_the_prefix_of_an_unfinished_upload(
    blob_store: BlobStore, blob_store_factory: StoreFactory
) -> None:
    # Breaks below S3's part minimum (carried in .part), past the 8 MiB part size (one part
    # sent, the rest carried), then another part: the prefix spans parts and the carry.
    data = os.urandom(21 * MiB + 13)
    upload = await blob_store.create("originals", len(data))
    offset = 0
    for step in (3 * MiB + 7, 9 * MiB + 1, 8 * MiB + 5):
        with pytest.raises(StreamBroke):
            await upload.write(offset, broken_stream(data[offset:], step))
        offset += step
        # Another process's view: nothing shared in memory with the writer.
        other = blob_store_factory()
        assert await partial(other, upload.key, 0, offset) == data[:offset]
    # Ranges inside the prefix, across the part boundaries.
    for start, end in [(0, 1), (5, 5), (3 * MiB, 12 * MiB + 9), (8 * MiB - 1, 8 * MiB + 1), (offset - 3, offset)]:
        assert await partial(blob_store, upload.key, start, end) == data[start:end]
    await upload.write(offset, stream(data[offset:]))
    await upload.finish()
    assert sha256(await read_all(blob_store, upload.key)) == sha256(data)


async def test_a_range_past_the_stored_prefix_is_an_error_not_a_short_read(blob_store: BlobStore) -> None:
    # A short read would let a caller hash fewer bytes than it believes it covers.
    data = os.urandom(2 * MiB)
    upload = await blob_store.create("originals", 4 * MiB)
    await upload.write(0, stream(data))
    with pytest.raises(BlobStoreError):
        await partial(blob_store, upload.key, 0, len(data) + 1)
    with pytest.raises(BlobNotFound):
        await partial(blob_store, "originals/" + "0" * 32, 0, 1)
    await upload.terminate()
    with pytest.raises(BlobNotFound):
        await partial(blob_store, upload.key, 0, 1)
