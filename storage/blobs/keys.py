"""Blob keys: made by the store, checked on the way back in.

A key is ``<namespace>/<32 lowercase hex>``: a namespace from ``protocol.NAMESPACES`` and
128 bits from the CSPRNG. Every backend makes keys with ``new_key`` and checks every key
it is handed with ``split_key`` before any I/O.
"""

from __future__ import annotations

import re
import secrets

from storage.blobs.protocol import NAMESPACES, InvalidKey

# Threat: path traversal and key injection through a key handed back to the store
# (tusd b20e725f, tus-java-server #90/#95, supabase/storage #1039). Only the exact shape
# the store generates is accepted: a known namespace, one slash, 32 lowercase hex digits.
# fullmatch, so no trailing newline, NUL, suffix or second slash gets through.
_KEY_RE = re.compile(r"(?P<ns>" + "|".join(NAMESPACES) + r")/(?P<hex>[0-9a-f]{32})")


def new_key(namespace: str) -> str:
    """A fresh key in ``namespace``. Threat: a client choosing or guessing a storage key;
    keys come from here and nowhere else."""
    if namespace not in NAMESPACES:
        raise InvalidKey("unknown blob namespace")
    return f"{namespace}/{secrets.token_hex(16)}"


def split_key(key: str) -> tuple[str, str]:
    """``(namespace, hex)`` of a key this store could have made; ``InvalidKey`` otherwise."""
    match = _KEY_RE.fullmatch(key) if isinstance(key, str) else None
    if match is None:
        raise InvalidKey("invalid blob key")
    return match["ns"], match["hex"]
