"""The worker's access to the blob store: its steps are blocking code (subprocesses,
Pillow, the database), so they call the store's synchronous API
(``storage.blobs.protocol.SyncBlobStore``) directly, in their own thread. No event loop
is involved (issue 17 item 6: there was one, in a thread of its own, only to drive a
store that is synchronous underneath)."""

from __future__ import annotations

import concurrent.futures
import hashlib
from collections.abc import Callable, Iterator
from pathlib import Path

from storage.blobs.protocol import Store
from storage.settings import Settings

PUT_CHUNK_BYTES = 4 << 20
# Small derivatives (thumbnails, posters) stored at once: each is a few fsyncs (or S3
# requests) that mostly wait, so a few run side by side.
PUT_MANY_THREADS = 4


class BlobBridge:
    """The store and the few compound operations the worker's steps need (hash while
    storing a file, store several small objects at once). Thread-safe: the store is."""

    def __init__(self, store_factory: Callable[[], Store]) -> None:
        self.store: Store = store_factory()

    @classmethod
    def from_settings(cls, settings: Settings) -> BlobBridge:
        from storage.blobs import open_store

        return cls(lambda: open_store(settings))

    def iter(self, key: str) -> Iterator[bytes]:
        """The bytes of a finished object (a quarantined one is ``BlobNotFound``)."""
        return self.store.read_sync(key)

    def size(self, key: str) -> int:
        return self.store.size_sync(key)

    def put_file(self, path: Path, namespace: str = "derivatives") -> tuple[str, str, int]:
        """Store a file as a finished object: (key, sha256, size)."""
        digest = hashlib.sha256()
        size = path.stat().st_size

        def chunks() -> Iterator[bytes]:
            with open(path, "rb") as f:
                while chunk := f.read(PUT_CHUNK_BYTES):
                    digest.update(chunk)
                    yield chunk

        key = self.store.put_sync(chunks(), namespace, size)
        return key, digest.hexdigest(), size

    def put_bytes(self, data: bytes, namespace: str = "derivatives") -> tuple[str, str, int]:
        key = self.store.put_sync([data], namespace, len(data))
        return key, hashlib.sha256(data).hexdigest(), len(data)

    def put_many_bytes(self, items: list[bytes], namespace: str = "derivatives") -> list[tuple[str, str, int]]:
        """Store several small objects concurrently, so their fsyncs (S3 round trips)
        overlap: [(key, sha256, size)] in the order given. Threads, not an event loop:
        the store's sync API blocks in the kernel or the network, where the GIL is free."""
        if len(items) <= 1:
            return [self.put_bytes(data, namespace) for data in items]
        with concurrent.futures.ThreadPoolExecutor(min(PUT_MANY_THREADS, len(items)),
                                                   thread_name_prefix="blob-put") as pool:
            return list(pool.map(lambda data: self.put_bytes(data, namespace), items))

    def close(self) -> None:
        self.store.close_sync()
