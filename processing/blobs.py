"""A synchronous bridge to the async ``BlobStore``: the worker's steps are blocking code
(subprocesses, Pillow, the database), so one event loop in a background thread owns the
store and the steps call into it. Streams are pulled one chunk per round-trip (1 MiB
chunks keep that cost negligible)."""

from __future__ import annotations

import asyncio
import hashlib
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import TypeVar

import anyio.to_thread

from storage.blobs import BlobStore
from storage.settings import Settings

T = TypeVar("T")
PUT_CHUNK_BYTES = 4 << 20


class BlobBridge:
    def __init__(self, store_factory: Callable[[], BlobStore]) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="blob-loop", daemon=True)
        self._thread.start()
        self.store: BlobStore = self.call(self._build(store_factory))

    @classmethod
    def from_settings(cls, settings: Settings) -> BlobBridge:
        from storage.blobs import open_store

        return cls(lambda: open_store(settings))

    @staticmethod
    async def _build(factory: Callable[[], BlobStore]) -> BlobStore:
        # open_store blocks (S3 discovery): keep it off the loop.
        return await anyio.to_thread.run_sync(factory)

    def call(self, coro: Awaitable[T]) -> T:
        async def wrap() -> T:
            return await coro

        return asyncio.run_coroutine_threadsafe(wrap(), self._loop).result()

    def iter(self, key: str) -> Iterator[bytes]:
        stream = self.store.read(key)
        try:
            while True:
                try:
                    chunk = self.call(stream.__anext__())
                except StopAsyncIteration:
                    return
                yield chunk
        finally:
            aclose = getattr(stream, "aclose", None)
            if aclose is not None:
                self.call(aclose())

    def size(self, key: str) -> int:
        return self.call(self.store.size(key))

    def put_file(self, path: Path, namespace: str = "derivatives") -> tuple[str, str, int]:
        """Store a file as a finished object: (key, sha256, size)."""
        digest = hashlib.sha256()
        size = path.stat().st_size

        async def put() -> str:
            upload = await self.store.create(namespace, size)

            async def chunks() -> AsyncIterator[bytes]:
                with open(path, "rb") as f:  # noqa: ASYNC230 - reads go through a thread below
                    while True:
                        chunk = await anyio.to_thread.run_sync(f.read, PUT_CHUNK_BYTES)
                        if not chunk:
                            return
                        digest.update(chunk)
                        yield chunk

            await upload.write(0, chunks())
            await upload.finish()
            return upload.key

        key = self.call(put())
        return key, digest.hexdigest(), size

    def put_bytes(self, data: bytes, namespace: str = "derivatives") -> tuple[str, str, int]:
        return self.put_many_bytes([data], namespace)[0]

    def put_many_bytes(self, items: list[bytes], namespace: str = "derivatives") -> list[tuple[str, str, int]]:
        """Store several small objects concurrently, so their fsyncs overlap:
        [(key, sha256, size)] in the order given."""
        from storage.blobs import put_bytes

        async def one(data: bytes) -> tuple[str, str, int]:
            key = await put_bytes(self.store, data, namespace)
            return key, hashlib.sha256(data).hexdigest(), len(data)

        async def all_() -> list[tuple[str, str, int]]:
            return list(await asyncio.gather(*(one(d) for d in items)))

        return self.call(all_())

    def close(self) -> None:
        try:
            self.call(self.store.close())
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=5)
            self._loop.close()
