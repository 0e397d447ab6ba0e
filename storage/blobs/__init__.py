"""Blob stores: where originals and derivatives live.

Owns the ``BlobStore``/``Upload`` contract (``protocol``) and its two backends:
``filesystem`` (the default, under the data directory) and ``s3`` (the only module that
imports boto3; imported only when an ``s3://`` URL asks for it). Must not import
starlette or any app.

``open_store(settings)`` is the one place a backend is chosen, from
``settings.storage_url``: ``file:///abs/path`` or ``s3://bucket/prefix``.
"""

from __future__ import annotations

import logging
from pathlib import Path
from urllib.parse import unquote, urlsplit

from storage.blobs.protocol import (
    NAMESPACES,
    BlobNotFound,
    BlobStore,
    BlobStoreError,
    InvalidKey,
    OffsetMismatch,
    Store,
    SyncBlobStore,
    Upload,
    UploadFinished,
    UploadInfo,
    put_bytes,
    read_all,
)
from storage.settings import Settings

__all__ = [
    "NAMESPACES",
    "BlobNotFound",
    "BlobStore",
    "BlobStoreError",
    "InvalidKey",
    "OffsetMismatch",
    "Store",
    "SyncBlobStore",
    "Upload",
    "UploadFinished",
    "UploadInfo",
    "open_store",
    "put_bytes",
    "read_all",
]

log = logging.getLogger(__name__)


def open_store(settings: Settings) -> Store:
    """Build the blob store ``settings.storage_url`` names, discover its capabilities
    (S3: Object Lock) and log them once as ``blobs.opened``. Blocking (S3 discovery makes
    requests): call it at start-up, or from async code through a worker thread. The
    store has both APIs: async (``BlobStore``) and blocking (``SyncBlobStore``)."""
    url = urlsplit(settings.storage_url)
    capabilities: dict[str, object]
    store: Store
    if url.scheme == "file":
        if url.netloc not in ("", "localhost"):
            raise ValueError("file:// storage URL must be a local absolute path")
        from storage.blobs.filesystem import FilesystemBlobStore

        fs = FilesystemBlobStore(Path(unquote(url.path)))
        store, capabilities = fs, fs.capabilities
    elif url.scheme == "s3":
        if not url.netloc:
            raise ValueError("s3:// storage URL needs a bucket: s3://bucket/prefix")
        from storage.blobs.s3 import S3BlobStore

        s3 = S3BlobStore(
            bucket=url.netloc,
            prefix=url.path.strip("/"),
            endpoint_url=settings.s3_endpoint_url,
            region=settings.s3_region,
            # Short, then raised to the report's retention date (storage.retention):
            # COMPLIANCE retention can be extended, never shortened.
            retention_days=settings.s3_seal_lock_days,
        )
        store, capabilities = s3, s3.capabilities
    else:
        raise ValueError("EXHIBIT_STORAGE_URL must start with file:// or s3://")
    log.info("blobs.opened", extra={"blobs": capabilities})
    return store
