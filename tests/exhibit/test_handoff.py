"""Which process a connection goes to (``exhibit.handoff.route_of``): the same decision the
in-process ``Dispatcher`` makes for ``scope["path"]``, taken from the first request line."""

from __future__ import annotations

import pytest

from exhibit.handoff import PEEK_BYTES, route_of
from exhibit.server import is_public_path


@pytest.mark.parametrize(("head", "role"), [
    (b"GET /u/Dsjg-token HTTP/1.1\r\nHost: x\r\n\r\n", "public"),
    (b"PATCH /u/files/abc HTTP/1.1\r\n", "public"),
    (b"POST /api/v1/links HTTP/1.1\r\n", "public"),
    (b"GET /healthz HTTP/1.1\r\n", "public"),
    (b"GET /healthz?probe=1 HTTP/1.1\r\n", "public"),
    (b"GET /u HTTP/1.1\r\n", "public"),
    (b"GET /%75/token HTTP/1.1\r\n", "public"),  # uvicorn decodes it to /u/token
    (b"GET http://exhibit.example/u/token HTTP/1.1\r\n", "public"),  # absolute form
    (b"GET / HTTP/1.1\r\n", "staff"),
    (b"POST /login HTTP/1.1\r\n", "staff"),
    (b"GET /users HTTP/1.1\r\n", "staff"),
    (b"GET /reports?q=/u/ HTTP/1.1\r\n", "staff"),  # the query is not the path
    (b"GET /items/abc/media/proxy HTTP/1.1\r\n", "staff"),
    (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 40 + b"\r\n", "public"),  # TLS hello: junk
    (b"GET /\xff\xfe HTTP/1.1\r\n", "public"),  # not ASCII: junk
    (b"x" * PEEK_BYTES, "public"),  # no request line within the peek: junk
])
def test_a_connection_goes_where_its_first_request_is_served(head: bytes, role: str) -> None:
    assert route_of(head, is_public_path) == role


@pytest.mark.parametrize("head", [b"", b"GE", b"GET", b"GET ", b"GET /u", b"GET /u/tok", b"GET /healthz"])
def test_an_unfinished_request_target_waits_for_more(head: bytes) -> None:
    # "GET /u" may still become "/u/..." (public) or "/users" (staff).
    assert route_of(head, is_public_path) is None
