"""A crowded door gives each new connection a small receive buffer (issue 16 item 3,
SECURITY_CHECKLIST LD-10): when a surge of slow uploads sends faster than the door can
serve, the bytes wait in the client (TCP flow control) rather than in the server, whose
memory per open upload the surge benchmark measured at 550 KiB with the kernel's own
buffers. A door with few connections keeps the kernel's (one fast upload stays fast).
"""

from __future__ import annotations

import asyncio
import socket

import pytest

from exhibit.guard import ConnectionGuard

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class _Admitted(asyncio.Protocol):
    def __init__(self, guard: ConnectionGuard, sockets: list[socket.socket], arrived: asyncio.Queue[None]) -> None:
        self.guard, self.sockets, self.arrived = guard, sockets, arrived
        self.conn = None

    def connection_lost(self, exc: Exception | None) -> None:
        if self.conn is not None:
            self.guard.release(self.conn)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.conn = self.guard.admit(transport)
        assert self.conn is not None
        self.sockets.append(transport.get_extra_info("socket"))
        self.arrived.put_nowait(None)


async def test_connections_beyond_the_crowded_mark_get_a_small_receive_buffer() -> None:
    small = 16 << 10
    guard = ConnectionGuard(door="public", per_address=100, total=100, header_timeout=30.0, crowded=3,
                            crowded_rcvbuf=small)
    sockets: list[socket.socket] = []
    arrived: asyncio.Queue[None] = asyncio.Queue()
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: _Admitted(guard, sockets, arrived), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    clients = []
    try:
        for _ in range(6):
            clients.append(await asyncio.open_connection("127.0.0.1", port))
            await arrived.get()  # admitted in the order they connected
        buffers = [s.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF) for s in sockets]
    finally:
        for _reader, writer in clients:
            writer.close()
        server.close()
        await server.wait_closed()
    # Linux reports twice what was set (its bookkeeping overhead).
    assert all(b > 2 * small for b in buffers[:3]), buffers  # the kernel's own
    assert buffers[3:] == [2 * small] * 3, buffers
