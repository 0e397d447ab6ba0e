"""The server secret: 32 random bytes in a file readable only by the service account.

Used as an HMAC key (upload-session cookies, receipt/status tokens). Created on first
start; rotating it (deleting the file) invalidates every upload session and status link,
nothing else.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

SECRET_BYTES = 32


def load_or_create_secret(path: Path) -> bytes:
    """Read the secret at ``path``, creating it (mode 0600, parent 0700) when missing.

    Creation is ``O_EXCL`` so two processes starting at once agree on one secret: the
    loser reads the winner's file. A file of the wrong size is an error, never silently
    replaced (that would log out every citizen mid-upload)."""
    path = Path(path)
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        pass
    else:
        try:
            tmp = secrets.token_bytes(SECRET_BYTES)
            os.write(fd, tmp)
            os.fsync(fd)
        finally:
            os.close(fd)
    for _ in range(50):
        data = path.read_bytes()
        if len(data) == SECRET_BYTES:
            return data
        if data:
            break
        # Another process created it a moment ago and has not written it yet.
        os.sched_yield()
    raise ValueError(f"secret file {path} does not hold {SECRET_BYTES} bytes")
