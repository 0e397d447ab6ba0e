"""One port, two server processes: the staff reviewer and the public upload door.

Why: in one interpreter the two apps share a GIL, an event loop and a thread pool. Under
32 citizen uploads the reviewer's p95 rose from about 20 ms to 60-120 ms, against 40-57 ms
with the uploads in another process (``benchmarks/review.py``, all-in-one against
apart). A flood on the public door, honest or hostile, must not slow officers down.

How: the parent owns the listening socket and does nothing else. It accepts a connection,
peeks at its first request line (``MSG_PEEK``: nothing is consumed) and passes the socket
to the staff or the public process over a Unix socket (``SCM_RIGHTS``). Each child runs
uvicorn over the *complete* app (``exhibit.server.Dispatcher``), so every request on a
kept-alive connection is answered correctly wherever it landed; the first request line
only decides where the work runs. State that must hold across the two processes already
lives in the database (sessions, links, quotas, jobs, the ledger) or in locks that span
processes (``upload_api.ingest.UploadLocks``); sign-in and token-guess throttles are per
process, as they are per node in a scaled deployment (README).

The parent never reads a byte of a request: a client that sends no complete request line
within ``FIRST_LINE_SECONDS`` is closed (a slow-loris holding the parent's slots), and at
most ``MAX_WAITING`` connections wait for theirs.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import selectors
import signal
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

import uvicorn

from storage.settings import Settings

log = logging.getLogger("exhibit.handoff")

ROLES = ("staff", "public")
PEEK_BYTES = 4096
FIRST_LINE_SECONDS = 10.0
MAX_WAITING = 1024
START_SECONDS = 120.0
RESTARTS_PER_MINUTE = 3


def route_of(head: bytes, is_public: Callable[[str], bool]) -> str | None:
    """``"public"`` or ``"staff"`` for a connection whose first bytes are ``head``, or
    ``None`` while its request target is incomplete. The path is decoded as uvicorn
    decodes it for ``scope["path"]``, so this agrees with ``Dispatcher``. Anything that is
    not a request line goes to the public process: junk stays off the staff side."""
    line, crlf, _ = head.partition(b"\n")
    parts = line.rstrip(b"\r").split(b" ")
    if len(parts) < 3 and not crlf and len(head) < PEEK_BYTES:
        return None  # "GET /u" could still become "/u/…" or "/users"
    if len(parts) < 2:
        return "public"
    target = parts[1].split(b"?", 1)[0].split(b"#", 1)[0]
    if target.startswith((b"http://", b"https://")):  # absolute form
        target = b"/" + target.split(b"/", 3)[3] if target.count(b"/") >= 3 else b"/"
    try:
        path = unquote(target.decode("ascii"))
    except UnicodeDecodeError:
        return "public"
    return "public" if is_public(path) else "staff"


# -- the parent -------------------------------------------------------------------------------


@dataclass
class _Child:
    role: str
    process: Any = None
    channel: socket.socket | None = None
    started: list[float] = field(default_factory=list)


def serve_split(settings: Settings, *, with_worker: bool, is_public: Callable[[str], bool]) -> int:
    """Run the parent: start both children, hand them connections, restart one that
    dies (at most ``RESTARTS_PER_MINUTE`` times a minute), stop both on SIGTERM/SIGINT.
    Returns the exit status."""
    listener = socket.create_server((settings.host, settings.port), backlog=2048)
    listener.setblocking(False)
    wake_r, wake_w = socket.socketpair()
    wake_r.setblocking(False)
    wake_w.setblocking(False)
    stopping = threading.Event()

    def on_signal(signum: int, _frame: Any) -> None:
        stopping.set()
        try:
            wake_w.send(b"x")
        except OSError:
            pass

    old = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
    spawn = multiprocessing.get_context("spawn")
    children = {role: _Child(role) for role in ROLES}
    try:
        for child in children.values():
            if not _start(spawn, child, settings, with_worker, stopping):
                return 3
        log.info("serve.listening", extra={"host": settings.host, "port": settings.port, "processes": list(ROLES)})
        print(f"Exhibit listening on http://{settings.host}:{settings.port} "
              "(staff reviewer and public upload door in two processes)", flush=True)
        return _dispatch(listener, wake_r, children, settings, with_worker, is_public, stopping, spawn)
    finally:
        for s, handler in old.items():
            signal.signal(s, handler)
        listener.close()
        _stop_children(children.values())
        wake_r.close()
        wake_w.close()


def _start(spawn: Any, child: _Child, settings: Settings, with_worker: bool, stopping: threading.Event) -> bool:
    """Start ``child`` and wait until it says it is serving. False if it could not.
    ``with_worker``: the public child runs the worker, clamd and housekeeping."""
    parent_end, child_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    process = spawn.Process(target=_child_main, name=f"exhibit-{child.role}",
                            args=(child.role, settings, child_end, with_worker and child.role == "public"),
                            daemon=False)
    process.start()
    child_end.close()
    child.process, child.channel = process, parent_end
    child.started = [t for t in child.started if time.monotonic() - t < 60] + [time.monotonic()]
    parent_end.settimeout(1.0)
    deadline = time.monotonic() + START_SECONDS
    while time.monotonic() < deadline and not stopping.is_set():
        try:
            if parent_end.recv(16) == b"ready":
                # Never wait on a child: one that is stuck (or stopped) must not stall the
                # other's connections behind it in this one loop. A full channel sheds the
                # connection instead (``_look``).
                parent_end.setblocking(False)
                return True
            break  # the child closed its end: it failed to start
        except TimeoutError:
            if not process.is_alive():
                break
    log.error("serve.child_failed_to_start", extra={"role": child.role, "exitcode": process.exitcode})
    return False


def _dispatch(listener: socket.socket, wake: socket.socket, children: dict[str, _Child], settings: Settings,
              with_worker: bool, is_public: Callable[[str], bool], stopping: threading.Event, spawn: Any) -> int:
    sel = selectors.DefaultSelector()
    sel.register(listener, selectors.EVENT_READ, "listen")
    sel.register(wake, selectors.EVENT_READ, "wake")
    waiting: dict[socket.socket, float] = {}  # connection -> deadline for its first line
    parked: dict[socket.socket, float] = {}   # partial first line: looked at again shortly
    try:
        while not stopping.is_set():
            for key, _events in sel.select(timeout=0.05 if parked else 0.5):
                if key.data == "wake":
                    _drain(wake)
                elif key.data == "listen":
                    _accept(listener, sel, waiting)
                else:
                    _look(key.fileobj, sel, waiting, parked, children, is_public)  # type: ignore[arg-type]
            now = time.monotonic()
            for conn in list(parked):
                if parked[conn] <= now:  # look again: more of the line may have come
                    del parked[conn]
                    sel.register(conn, selectors.EVENT_READ, "conn")
            for conn, deadline in list(waiting.items()):
                if deadline <= now:
                    _drop(conn, sel, waiting, parked)
            for child in children.values():
                if child.process is not None and not child.process.is_alive() and not stopping.is_set():
                    log.error("serve.child_died", extra={"role": child.role, "exitcode": child.process.exitcode})
                    if child.channel is not None:
                        child.channel.close()
                    if len(child.started) >= RESTARTS_PER_MINUTE and time.monotonic() - child.started[0] < 60:
                        log.error("serve.giving_up", extra={"role": child.role})
                        return 3
                    if not _start(spawn, child, settings, with_worker, stopping):
                        return 3
        return 0
    finally:
        for conn in list(waiting):
            _drop(conn, sel, waiting, parked)
        sel.close()


def _drain(sock: socket.socket) -> None:
    try:
        while sock.recv(64):
            pass
    except OSError:
        pass


def _accept(listener: socket.socket, sel: selectors.BaseSelector, waiting: dict[socket.socket, float]) -> None:
    for _ in range(64):
        try:
            conn, _addr = listener.accept()
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:  # EMFILE and the like: shed, and say so
            log.warning("serve.accept_failed", extra={"error": str(exc)})
            return
        if len(waiting) >= MAX_WAITING:
            conn.close()  # the oldest keep their place; a flood of silent sockets does not grow
            continue
        conn.setblocking(False)
        waiting[conn] = time.monotonic() + FIRST_LINE_SECONDS
        sel.register(conn, selectors.EVENT_READ, "conn")


def _look(conn: socket.socket, sel: selectors.BaseSelector, waiting: dict[socket.socket, float],
          parked: dict[socket.socket, float], children: dict[str, _Child], is_public: Callable[[str], bool]) -> None:
    try:
        head = conn.recv(PEEK_BYTES, socket.MSG_PEEK)
    except (BlockingIOError, InterruptedError):
        return
    except OSError:
        head = b""
    if not head:  # closed before a word
        _drop(conn, sel, waiting, parked)
        return
    role = route_of(head, is_public)
    if role is None:
        # Level-triggered: the peeked bytes stay readable, so stop watching this socket
        # for a moment instead of spinning on it.
        sel.unregister(conn)
        parked[conn] = time.monotonic() + 0.02
        return
    sel.unregister(conn)
    del waiting[conn]
    channel = children[role].channel
    try:
        if channel is None:
            raise OSError("no process")
        socket.send_fds(channel, [b"c"], [conn.fileno()])
    except BlockingIOError:
        log.warning("serve.handoff_shed", extra={"role": role, "why": "the process is not taking connections"})
    except OSError as exc:
        log.warning("serve.handoff_failed", extra={"role": role, "error": str(exc)})
    finally:
        conn.close()  # the child holds its own descriptor now


def _drop(conn: socket.socket, sel: selectors.BaseSelector, waiting: dict[socket.socket, float],
          parked: dict[socket.socket, float]) -> None:
    waiting.pop(conn, None)
    if parked.pop(conn, None) is None:
        try:
            sel.unregister(conn)
        except (KeyError, ValueError):
            pass
    conn.close()


def _stop_children(children: Any) -> None:
    running = [c for c in children if c.process is not None and c.process.is_alive()]
    for child in running:
        child.process.terminate()  # SIGTERM: uvicorn finishes in-flight requests
    for child in running:
        child.process.join(timeout=30)
        if child.process.is_alive():
            child.process.kill()
            child.process.join()
    for child in children:
        if child.channel is not None:
            child.channel.close()


# -- a child ----------------------------------------------------------------------------------


def _child_main(role: str, settings: Settings, channel: socket.socket, with_worker: bool) -> None:
    """One server process: the whole app under uvicorn, fed connections by the parent.
    ``with_worker``: also the processing worker, clamd and housekeeping (the public
    process runs them: its ``/healthz`` reports on them)."""
    from exhibit.server import serve_app
    from storage.blobs import open_store
    from storage.db import Database

    logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    # Out of the terminal's process group: Ctrl-C reaches the parent alone, which stops
    # both children in order (SIGTERM) instead of racing them.
    os.setpgrp()
    if role == "public":
        # The internet-facing process never holds the ledger's signing key (AU-06).
        from storage.ledger import forbid_signing_key

        forbid_signing_key()
    db = Database(settings.database_url)
    store = open_store(settings)
    backend = asyncio.run(store.describe()).get("backend")
    serve_app(settings, db, store, backend, with_worker=with_worker,
              server_class=lambda config: HandedServer(config, channel))


class HandedServer(uvicorn.Server):
    """uvicorn without a listening socket of its own: connections arrive over
    ``channel`` from the parent, and are served exactly as accepted ones are."""

    def __init__(self, config: uvicorn.Config, channel: socket.socket) -> None:
        super().__init__(config)
        self._channel = channel
        self._adopting: set[asyncio.Task[Any]] = set()

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=[])  # lifespan (both apps), no listener
        loop = asyncio.get_running_loop()
        config = self.config

        def protocol() -> asyncio.Protocol:
            # What uvicorn's own startup gives ``create_server``.
            return config.http_protocol_class(  # type: ignore[call-arg]
                config=config, server_state=self.server_state, app_state=self.lifespan.state, _loop=loop)

        channel = self._channel

        def on_readable() -> None:
            while True:
                try:
                    data, fds, _flags, _addr = socket.recv_fds(channel, 16, 16)
                except (BlockingIOError, InterruptedError):
                    return
                except OSError:
                    data, fds = b"", []
                if not data and not fds:  # the parent is gone: finish what we have
                    loop.remove_reader(channel.fileno())
                    self.should_exit = True
                    return
                for fd in fds:
                    conn = socket.socket(fileno=fd)
                    conn.setblocking(False)
                    task = loop.create_task(self._adopt(loop, protocol, conn))
                    self._adopting.add(task)
                    task.add_done_callback(self._adopting.discard)

        channel.setblocking(False)
        loop.add_reader(channel.fileno(), on_readable)
        channel.send(b"ready")

    async def _adopt(self, loop: asyncio.AbstractEventLoop, protocol: Callable[[], asyncio.Protocol],
                     conn: socket.socket) -> None:
        try:
            await loop.connect_accepted_socket(protocol, conn)
        except OSError:
            conn.close()

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        try:
            asyncio.get_running_loop().remove_reader(self._channel.fileno())
        except (OSError, ValueError):
            pass
        await super().shutdown(sockets=sockets)
