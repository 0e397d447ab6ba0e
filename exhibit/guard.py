"""Connection guard for both doors (SECURITY_CHECKLIST LD-09): slow and idle clients are
cut off, and one address cannot take every connection.

Threats: a slow-loris (sockets that send ``GET /`` and then a byte now and then, or
nothing) holds server sockets forever; a flood of half-open sockets from one address
fills every slot, so nobody else, staff or citizen, gets in (issue 11: about 1,030
silent sockets reset every new connection, and nothing was logged).

How, and why this way: uvicorn takes the class that speaks HTTP on each connection as
``uvicorn.Config(http=...)``. ``guarded_protocol`` returns such a class: a thin
``asyncio.Protocol`` that counts connections per peer address and in total when the
connection is made, refuses (503, then close) beyond the caps, and otherwise hands
every event to uvicorn's own protocol class (``AutoHTTPProtocol``) unchanged. Nothing of
uvicorn is copied or patched, and the check runs before a single byte is parsed.
The alternatives were worse: a front process that peeks and passes sockets (what this
replaces) has its own slots to starve; ``limit_concurrency`` is one global cap that a
single address fills.

The header deadline: ``GuardedApp`` (ASGI, outermost) tells the guard when a request
starts (uvicorn calls the app once the headers are parsed) and when it ends. A connection
with no request in progress is closed ``header_timeout`` seconds after it connected or
after its last response ended: a trickled request line or header block never holds a
socket longer than that. Idle keep-alive connections are closed sooner by uvicorn's own
``timeout_keep_alive``. Request bodies have their own idle limit in the upload app
(``EXHIBIT_UPLOAD_IDLE_TIMEOUT``).

Bytes sent before a request is being served are capped too (``MAX_HEAD_BYTES``): a header
block that never ends is cut off by size as well as by time.

Refusals are logged once per address per ``LOG_INTERVAL`` seconds with the count since
the last line, never one line per socket (a flood must not flood the log too).
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from typing import Any

from uvicorn.protocols.http.auto import AutoHTTPProtocol

log = logging.getLogger("exhibit.guard")

LOG_INTERVAL = 60.0
# Bytes a connection may send while no request of it is being served: the request line and
# headers, plus at most one read of body that came with them. uvicorn's httptools parser
# sets no limit of its own on header size (``h11_max_incomplete_event_size`` applies to h11
# only), so without this a client could grow a process's memory for the whole header
# deadline at line speed.
MAX_HEAD_BYTES = 1 << 20
NOTED_MAX = 10_000  # addresses remembered for rate-limited logging before old ones go
# Beyond this many open connections, each new one gets a small kernel receive buffer
# (``CROWDED_RCVBUF``). Threat (SECURITY_CHECKLIST LD-10, LD-01, UP-05): a surge of slow
# uploads that the door cannot serve as fast as they send. Each socket then has bytes
# waiting, and each read takes up to 256 KiB of them (asyncio's read size) into the
# process, where uvicorn buffers a body up to 64 KiB before it stops reading: measured at
# 1,000 mobile uploads on 2 busy cores, 550 KiB of memory per open upload with the
# default buffers, 382 KiB with reads capped at 64 KiB (benchmarks/surge.py). A small
# buffer makes the client wait instead (TCP flow control; a phone at 64 KiB/s needs a few
# KiB of window), and bounds the kernel's memory per socket too (autotuning grows it to
# megabytes). A few connections (one fast upload, the staff door) keep the kernel's own.
CROWDED_CONNECTIONS = 64
CROWDED_RCVBUF = 64 << 10
REFUSAL = (b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\nContent-Length: 12\r\n"
           b"Connection: close\r\nRetry-After: 10\r\n\r\nTry again.\r\n")

Scope = MutableMapping[str, Any]
ASGIApp = Callable[[Scope, Callable[[], Awaitable[Any]], Callable[[Any], Awaitable[None]]], Awaitable[None]]


@dataclass
class _Conn:
    transport: asyncio.Transport
    address: str
    in_request: int = 0
    head_bytes: int = 0
    deadline: asyncio.TimerHandle | None = None


@dataclass
class ConnectionGuard:
    """Counts and deadlines for one door (one process, one event loop)."""

    door: str
    per_address: int
    total: int
    header_timeout: float
    crowded: int = CROWDED_CONNECTIONS
    crowded_rcvbuf: int = CROWDED_RCVBUF
    per_peer: dict[str, int] = field(default_factory=dict)
    conns: dict[tuple[str, int], _Conn] = field(default_factory=dict)
    _refused: dict[tuple[str, str], int] = field(default_factory=dict)
    _last_logged: dict[tuple[str, str], float] = field(default_factory=dict)

    @property
    def open_connections(self) -> int:
        return len(self.conns)

    def admit(self, transport: asyncio.Transport) -> _Conn | None:
        peer = transport.get_extra_info("peername")
        address, port = (str(peer[0]), int(peer[1])) if isinstance(peer, tuple) and len(peer) >= 2 else ("unix", 0)
        why = None
        if len(self.conns) >= self.total:
            why = "too many connections in total"
        elif self.per_peer.get(address, 0) >= self.per_address:
            why = "too many connections from this address"
        if why is not None:
            self._note(address, why)
            return None
        conn = _Conn(transport, address)
        self.conns[(address, port)] = conn
        self.per_peer[address] = self.per_peer.get(address, 0) + 1
        if len(self.conns) > self.crowded:
            sock = transport.get_extra_info("socket")
            if sock is not None:
                try:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, self.crowded_rcvbuf)
                except OSError:
                    pass  # advice: without it the caps above still hold
        self._arm(conn)
        return conn

    def release(self, conn: _Conn) -> None:
        if conn.deadline is not None:
            conn.deadline.cancel()
        peer = conn.transport.get_extra_info("peername")
        key = (conn.address, int(peer[1])) if isinstance(peer, tuple) and len(peer) >= 2 else (conn.address, 0)
        if self.conns.pop(key, None) is not None:
            left = self.per_peer.get(conn.address, 1) - 1
            if left > 0:
                self.per_peer[conn.address] = left
            else:
                self.per_peer.pop(conn.address, None)

    def request_started(self, client: Any) -> None:
        conn = self._find(client)
        if conn is not None:
            conn.in_request += 1
            conn.head_bytes = 0
            if conn.deadline is not None:
                conn.deadline.cancel()
                conn.deadline = None

    def request_ended(self, client: Any) -> None:
        conn = self._find(client)
        if conn is not None:
            conn.in_request = max(0, conn.in_request - 1)
            if conn.in_request == 0:
                conn.head_bytes = 0
                self._arm(conn)

    def received(self, conn: _Conn, size: int) -> bool:
        """Count bytes that arrive while no request is being served; False (and the
        connection is aborted) past ``MAX_HEAD_BYTES``."""
        if conn.in_request:
            return True
        conn.head_bytes += size
        if conn.head_bytes <= MAX_HEAD_BYTES:
            return True
        self._note(conn.address, "request headers too large")
        conn.transport.abort()
        return False

    def _find(self, client: Any) -> _Conn | None:
        if isinstance(client, (tuple, list)) and len(client) >= 2:
            return self.conns.get((str(client[0]), int(client[1])))
        return None

    def _arm(self, conn: _Conn) -> None:
        if conn.deadline is not None:
            conn.deadline.cancel()
        conn.deadline = asyncio.get_running_loop().call_later(self.header_timeout, self._expire, conn)

    def _expire(self, conn: _Conn) -> None:
        conn.deadline = None
        if conn.in_request == 0 and not conn.transport.is_closing():
            self._note(conn.address, "no complete request headers in time")
            conn.transport.abort()  # a slow-loris gets no graceful goodbye

    def _note(self, address: str, why: str) -> None:
        """Log a refusal or cut-off: who and why, once per address and reason per interval."""
        key = (address, why)
        if len(self._last_logged) > NOTED_MAX:  # many addresses: forget those logged long ago
            cutoff = time.monotonic() - LOG_INTERVAL
            for old in [k for k, t in self._last_logged.items() if t < cutoff]:
                del self._last_logged[old]
                self._refused.pop(old, None)
        self._refused[key] = self._refused.get(key, 0) + 1
        now = time.monotonic()
        if now - self._last_logged.get(key, -LOG_INTERVAL) >= LOG_INTERVAL:
            count = self._refused.pop(key)
            self._last_logged[key] = now
            log.warning("connection.refused", extra={
                "door": self.door, "client_address": address, "reason": why, "connections": count,
                "interval_seconds": LOG_INTERVAL, "open_from_address": self.per_peer.get(address, 0),
                "open_total": len(self.conns)})


def guarded_protocol(guard: ConnectionGuard) -> type[asyncio.Protocol]:
    """The class to pass as ``uvicorn.Config(http=...)``: uvicorn's own HTTP protocol
    behind ``guard``'s admission check."""

    class GuardedProtocol(asyncio.Protocol):
        def __init__(self, **kwargs: Any) -> None:
            self._inner: Any = AutoHTTPProtocol(**kwargs)
            self._conn: _Conn | None = None

        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            assert isinstance(transport, asyncio.Transport)
            self._conn = guard.admit(transport)
            if self._conn is None:
                transport.write(REFUSAL)
                transport.close()
                return
            self._inner.connection_made(transport)

        def connection_lost(self, exc: Exception | None) -> None:
            if self._conn is not None:
                guard.release(self._conn)
                self._inner.connection_lost(exc)

        def data_received(self, data: bytes) -> None:
            if self._conn is not None and guard.received(self._conn, len(data)):
                self._inner.data_received(data)

        def eof_received(self) -> bool | None:
            if self._conn is not None:
                result: bool | None = self._inner.eof_received()
                return result
            return None

        def pause_writing(self) -> None:
            if self._conn is not None:
                self._inner.pause_writing()

        def resume_writing(self) -> None:
            if self._conn is not None:
                self._inner.resume_writing()

    return GuardedProtocol


class GuardedApp:
    """Outermost ASGI layer: tells the guard when each request starts and ends."""

    def __init__(self, app: ASGIApp, guard: ConnectionGuard) -> None:
        self.app = app
        self.guard = guard

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        client = scope.get("client")
        self.guard.request_started(client)
        try:
            await self.app(scope, receive, send)
        finally:
            self.guard.request_ended(client)
