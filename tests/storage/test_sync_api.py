"""The stores' synchronous API (``storage.blobs.protocol.SyncBlobStore``, issue 17 item
6): what the worker and the CLI call, without an event loop. Run on every backend (the
filesystem store, S3 on moto's server over HTTP, with and without Object Lock); the async
API reads what the sync API wrote and the other way round, so both are one store."""

from __future__ import annotations

import contextlib
import os
import threading

import anyio
import pytest

from storage.blobs import BlobNotFound, InvalidKey, Store, SyncBlobStore, put_bytes, read_all
from tests.fixtures.blobs import sha256

MiB = 1 << 20


@pytest.fixture(params=["filesystem", "s3", "s3-object-lock"])
def blob_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def test_put_read_size_round_trip_with_no_event_loop_and_parts_past_the_s3_minimum(blob_store: Store) -> None:
    assert isinstance(blob_store, SyncBlobStore)
    data = os.urandom(11 * MiB + 3)  # more than one S3 part, then a short last one
    threads_before = {t.name for t in threading.enumerate()}
    key = blob_store.put_sync((data[i : i + MiB] for i in range(0, len(data), MiB)), "derivatives", len(data))
    assert key.startswith("derivatives/")
    assert blob_store.size_sync(key) == len(data)
    assert sha256(b"".join(blob_store.read_sync(key))) == sha256(data)
    assert b"".join(blob_store.read_sync(key, 5, 5 + MiB)) == data[5 : 5 + MiB]
    # The async API sees the same finished object.
    assert sha256(anyio.run(read_all, blob_store, key)) == sha256(data)
    # No loop and no helper thread was started to do it.
    assert {t.name for t in threading.enumerate()} - threads_before == set()


def test_small_and_empty_objects_and_async_written_ones_read_back(blob_store: Store) -> None:
    small = blob_store.put_sync([b"thumb", b"nail"])
    empty = blob_store.put_sync([], "derivatives", 0)
    assert b"".join(blob_store.read_sync(small)) == b"thumbnail"
    assert blob_store.size_sync(empty) == 0 and b"".join(blob_store.read_sync(empty)) == b""
    written_async = anyio.run(put_bytes, blob_store, b"from the async side", "originals")
    assert b"".join(blob_store.read_sync(written_async)) == b"from the async side"
    assert blob_store.describe_sync() == anyio.run(blob_store.describe)


def test_bad_and_unknown_keys_are_refused_like_the_async_api(blob_store: Store) -> None:
    for bad in ("../../etc/passwd", "originals/../../x", "originals/ZZ"):
        with pytest.raises(InvalidKey):
            blob_store.read_sync(bad)  # refused at the call, before any I/O
        with pytest.raises(InvalidKey):
            blob_store.size_sync(bad)
    missing = "originals/" + "0" * 32
    with pytest.raises(BlobNotFound):
        b"".join(blob_store.read_sync(missing))
    with pytest.raises(BlobNotFound):
        blob_store.size_sync(missing)


def test_destroy_and_early_close_through_the_sync_api(blob_store: Store) -> None:
    # Quarantine through the sync API: tests/processing/test_quarantine.py (both stores).
    derivative = blob_store.put_sync([b"poster"])
    with contextlib.closing(blob_store.read_sync(derivative)) as chunks:  # type: ignore[type-var]
        assert next(iter(chunks)) == b"poster"
    assert blob_store.destroy_sync(derivative) is True
    assert blob_store.destroy_sync(derivative) is False
    with pytest.raises(BlobNotFound):
        blob_store.size_sync(derivative)
