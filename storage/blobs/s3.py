"""S3 blob store (being written): placeholder so the factory type-checks."""

from __future__ import annotations

from collections.abc import AsyncIterator

from storage.blobs.protocol import Upload


class S3BlobStore:
    def __init__(
        self,
        *,
        bucket: str,
        prefix: str,
        endpoint_url: str | None,
        region: str,
        retention_days: int,
    ) -> None:
        raise NotImplementedError("S3 blob store not available yet")

    @property
    def capabilities(self) -> dict[str, object]:
        raise NotImplementedError

    async def create(self, namespace: str = "originals", length: int | None = None) -> Upload:
        raise NotImplementedError

    async def get(self, key: str) -> Upload:
        raise NotImplementedError

    def read(self, key: str, start: int = 0, end: int | None = None) -> AsyncIterator[bytes]:
        raise NotImplementedError

    async def size(self, key: str) -> int:
        raise NotImplementedError

    async def describe(self) -> dict[str, object]:
        raise NotImplementedError

    async def close(self) -> None:
        raise NotImplementedError
