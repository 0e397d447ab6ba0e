"""One page view per visit, and the success message after a change (i15 items 4 and 5).

Post/redirect/get: after a triage, a note, a tag or a share the browser is sent back to
the item page with a 303. Before this module that GET wrote a second ``item.viewed``,
so an auditor could not tell "opened the page" from "the page came back after a form".

A change handler calls ``landed(request, item_id, message)`` right after its own custody
event committed. That leaves a one-shot mark, server-side, for *this* session and item:
the next GET of the item page by the same session takes it (``take``), shows the message
in a status region, and writes no ``item.viewed`` - the page is the answer to the change
whose event was just written. The mark is never in the URL or a cookie: a client cannot
forge or replay it to read an item without an event (AU-03), and each change sets one
mark, consumed once.

Per process and bounded, like ``reviewer_ui.coverage``: a mark lost (a restart, another
process, pushed out) only means one more ``item.viewed``, never one fewer.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict

from starlette.requests import Request

from reviewer_ui import context, coverage

MAX_ENTRIES = 10_000
EXTRAS_KEY = "visit_marks"


class Marks:
    """A bounded, thread-safe map of (session, page) -> a one-shot message."""

    def __init__(self, max_entries: int = MAX_ENTRIES) -> None:
        self._marks: OrderedDict[bytes, str] = OrderedDict()
        self._lock = threading.Lock()
        self._max = max_entries

    @staticmethod
    def _key(session_id: str, page: str) -> bytes:
        return hashlib.blake2b(f"{session_id}\x00{page}".encode(), digest_size=16).digest()

    def put(self, session_id: str, page: str, message: str) -> None:
        key = self._key(session_id, page)
        with self._lock:
            self._marks[key] = message
            self._marks.move_to_end(key)
            while len(self._marks) > self._max:
                self._marks.popitem(last=False)

    def take(self, session_id: str, page: str) -> str | None:
        with self._lock:
            return self._marks.pop(self._key(session_id, page), None)


def _marks(request: Request) -> Marks:
    extras = context.get(request).extras
    found = extras.get(EXTRAS_KEY)
    if not isinstance(found, Marks):
        found = extras.setdefault(EXTRAS_KEY, Marks())
    return found


def landed(request: Request, page: str, message: str) -> None:
    """After a change whose custody event committed: the next GET of ``page`` (e.g.
    ``item:<id>``) by this session shows ``message`` and is not a new view."""
    session = coverage.session_key(request)
    if session is not None:
        _marks(request).put(session, page, message)


def take(request: Request, page: str) -> str | None:
    """The message left for this session's GET of ``page``, once; None for a new visit."""
    session = coverage.session_key(request)
    return _marks(request).take(session, page) if session is not None else None
