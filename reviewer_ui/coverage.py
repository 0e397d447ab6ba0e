"""Which evidence bytes a staff session has already been audited for (AU-03, AU-10;
i11 item 5: "every read of evidence bytes is covered by a custody event").

The rule the media route applies, whatever the ``Range`` header says:

* A session's first read of an item's viewer media (preview, proxy) writes a
  ``media.stream`` custody event before the first byte; its later segments (a video's
  seeks, ``bytes=1-`` included) are covered by that event and write none. Before this,
  only a request starting at byte 0 was audited, so ``Range: bytes=1-`` took all but one
  byte of the media with no event.
* Thumbnails and posters are covered by the audited page view that showed them (the
  report grid's ``report.viewed`` or the item page's ``item.viewed``, which call
  ``page_showed``). Fetched without such a view in this session, they are audited
  themselves like a stream start.

The record is per process and per app (``ctx.extras``), keyed by the session's row id (a
hash of the cookie, never the cookie). Losing it (a restart, another process, an entry
pushed out of the bounded table) only means one more event, never one fewer: a read that
is not found here is always audited first.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Iterable

from starlette.requests import Request

from reviewer_ui import context

# (session, item, kind) triples held, each as a 16-byte digest (about 150 bytes an entry
# with the table's own overhead: 15 MB at most); the least recently used go first.
MAX_ENTRIES = 100_000
EXTRAS_KEY = "media_coverage"


def _digest(key: tuple[str, str, str]) -> bytes:
    return hashlib.blake2b("\x00".join(key).encode(), digest_size=16).digest()


class Coverage:
    """A bounded, thread-safe set of (session id, item id, kind) already audited."""

    def __init__(self, max_entries: int = MAX_ENTRIES) -> None:
        self._seen: OrderedDict[bytes, None] = OrderedDict()
        self._lock = threading.Lock()
        self._max = max_entries

    def covered(self, key: tuple[str, str, str]) -> bool:
        digest = _digest(key)
        with self._lock:
            if digest in self._seen:
                self._seen.move_to_end(digest)
                return True
            return False

    def discard(self, keys: Iterable[tuple[str, str, str]]) -> None:
        digests = [_digest(key) for key in keys]
        with self._lock:
            for digest in digests:
                self._seen.pop(digest, None)

    def add(self, keys: Iterable[tuple[str, str, str]]) -> None:
        digests = [_digest(key) for key in keys]
        with self._lock:
            for digest in digests:
                self._seen[digest] = None
                self._seen.move_to_end(digest)
            while len(self._seen) > self._max:
                self._seen.popitem(last=False)


def _coverage(request: Request) -> Coverage:
    extras = context.get(request).extras
    found = extras.get(EXTRAS_KEY)
    if not isinstance(found, Coverage):
        found = extras.setdefault(EXTRAS_KEY, Coverage())
    return found


def session_key(request: Request) -> str | None:
    """The id of this request's staff session, or None (not signed in)."""
    row = request.scope.get("state", {}).get("staff_session")
    ident = getattr(row, "id", None)
    return str(ident) if ident else None


def page_showed(request: Request, item_ids: Iterable[str], kinds: Iterable[str]) -> None:
    """Called right after an audited page view's custody event: the ``kinds`` (thumbnail,
    poster) of ``item_ids`` that the page shows are covered by that event."""
    session = session_key(request)
    if session is None:
        return
    kinds = tuple(kinds)
    _coverage(request).add((session, item_id, kind) for item_id in item_ids for kind in kinds)


def is_covered(request: Request, item_id: str, kind: str) -> bool:
    """True when this session's read of ``kind`` of ``item_id`` already has its event."""
    session = session_key(request)
    return session is not None and _coverage(request).covered((session, item_id, kind))


def mark(request: Request, item_id: str, kind: str) -> None:
    """Record that the custody event for this session's read was written."""
    session = session_key(request)
    if session is not None:
        _coverage(request).add([(session, item_id, kind)])


def forget(request: Request, item_id: str, kinds: Iterable[str]) -> None:
    """A new visit (an audited page view) starts: the next read of ``kinds`` is a new
    stream start with its own event (i15 item 4: "watched it" is per visit, not once per
    session)."""
    session = session_key(request)
    if session is not None:
        _coverage(request).discard((session, item_id, kind) for kind in kinds)
