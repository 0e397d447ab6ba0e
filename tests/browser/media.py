"""Files for the browser to send: real files on disk (Playwright's set_input_files reads
them from disk; large in-memory blobs are unreliable), with their SHA-256."""

from __future__ import annotations

import hashlib
import random
from pathlib import Path

# Enough of each format for the server's magic-byte sniffer; the rest is noise. The
# upload app does not decode files (the worker does, and it is not running here).
JPEG_HEAD = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00"
MP4_HEAD = b"\x00\x00\x00\x18ftypisom\x00\x00\x02\x00isomiso2"


def write_file(path: Path, size: int, *, head: bytes, seed: int = 0) -> str:
    """Write ``size`` bytes (``head`` then pseudo-random) to ``path``; returns the SHA-256."""
    rng = random.Random(seed)
    digest = hashlib.sha256()
    with path.open("wb") as f:
        first = head[:size]
        f.write(first)
        digest.update(first)
        left = size - len(first)
        while left > 0:
            block = rng.randbytes(min(left, 1 << 20))
            f.write(block)
            digest.update(block)
            left -= len(block)
    return digest.hexdigest()


def jpeg(path: Path, size: int = 200_000, seed: int = 0) -> str:
    return write_file(path, size, head=JPEG_HEAD, seed=seed)


def mp4(path: Path, size: int, seed: int = 0) -> str:
    return write_file(path, size, head=MP4_HEAD, seed=seed)
