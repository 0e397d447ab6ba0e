"""The worker reaches the blob store through its synchronous API (issue 17 item 6): no
event loop in a thread of its own to drive a store that is synchronous underneath."""

from __future__ import annotations

import hashlib
import os
import threading
from pathlib import Path

from processing.blobs import BlobBridge
from storage.blobs.filesystem import FilesystemBlobStore


def test_the_worker_stores_and_reads_with_no_event_loop_thread(tmp_path: Path) -> None:
    before = set(threading.enumerate())
    bridge = BlobBridge(lambda: FilesystemBlobStore(tmp_path / "blobs"))
    try:
        assert set(threading.enumerate()) == before  # was: a "blob-loop" thread, for the life of the worker
        data = os.urandom(5 << 20)
        source = tmp_path / "proxy.mp4"
        source.write_bytes(data)
        key, sha, size = bridge.put_file(source)
        assert (sha, size) == (hashlib.sha256(data).hexdigest(), len(data))
        assert hashlib.sha256(b"".join(bridge.iter(key))).hexdigest() == sha and bridge.size(key) == size
        stored = bridge.put_many_bytes([b"a", b"bb", b"ccc"])
        assert [(bridge.size(k), s) for k, s, _ in stored] == [(n, hashlib.sha256(d).hexdigest())
                                                              for n, d in ((1, b"a"), (2, b"bb"), (3, b"ccc"))]
        assert set(threading.enumerate()) == before  # the put threads are gone with their work
    finally:
        bridge.close()
