"""A stall is not the end of an upload (issue 17.3).

A phone on a train stops sending in the middle of a PATCH for longer than the server's
idle timeout. The server cuts the request off (UP-05: a slow body must not hold a
connection and the upload lock for ever) and keeps what arrived; the answer must be one
that tus-js-client and the page's upload.js retry, so that the same upload carries on
from the kept offset and the receipt's SHA-256 is the file's. tus-js-client treats any 4xx
but 409, 423 and 429 as final: the old answer, 408, ended the upload ("Not sent").

Chromium's offline emulation cannot stall a request already in flight, so the page talks
to the server through a small loopback proxy that the test controls: once, it passes the
first part of a PATCH body on and then swallows the rest, so that the browser has sent
its whole request and waits for the answer while the server hears nothing.
"""

from __future__ import annotations

import socket
import threading
from pathlib import Path

import pytest
from playwright.sync_api import Browser, expect
from sqlmodel import select

from storage.db import Database
from storage.models import EvidenceItem, Upload, UploadState
from tests.browser.conftest import new_context
from tests.browser.media import mp4
from tests.browser.test_resume import receipt_facts, start_sending
from tests.fixtures.upload_server import UploadServer, make_upload_link

pytestmark = pytest.mark.browser

STALL_AFTER_BYTES = 3 << 20


class StallingProxy:
    """Plain TCP relay 127.0.0.1:port -> upstream. The first connection that carries more
    than ``stall_after`` bytes towards the server stalls there, once: the bytes after
    that are read from the browser and dropped, and the server's answer is recorded in
    ``answer`` and passed back."""

    def __init__(self, upstream_port: int, stall_after: int) -> None:
        self.upstream_port = upstream_port
        self.stall_after = stall_after
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.stalled = threading.Event()
        self.answered = threading.Event()
        self.answer = b""
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return  # closed
            upstream = socket.create_connection(("127.0.0.1", self.upstream_port))
            with self._lock:
                self._sockets += [client, upstream]
            stalling = threading.Event()
            threading.Thread(target=self._up, args=(client, upstream, stalling), daemon=True).start()
            threading.Thread(target=self._down, args=(upstream, client, stalling), daemon=True).start()

    def _up(self, client: socket.socket, upstream: socket.socket, stalling: threading.Event) -> None:
        sent = 0
        try:
            while data := client.recv(1 << 16):
                if stalling.is_set():
                    continue  # swallowed: the server hears nothing more on this request
                with self._lock:
                    stall_now = not self.stalled.is_set() and sent + len(data) > self.stall_after
                    if stall_now:
                        self.stalled.set()
                        stalling.set()
                if stall_now:
                    upstream.sendall(data[: self.stall_after - sent])
                    continue
                upstream.sendall(data)
                sent += len(data)
        except OSError:
            pass
        finally:
            _shut(upstream, socket.SHUT_WR)

    def _down(self, upstream: socket.socket, client: socket.socket, stalling: threading.Event) -> None:
        try:
            while data := upstream.recv(1 << 16):
                if stalling.is_set() and not self.answered.is_set():
                    self.answer = data
                    self.answered.set()
                client.sendall(data)
        except OSError:
            pass
        finally:
            _shut(client, socket.SHUT_WR)

    def close(self) -> None:
        self.listener.close()
        with self._lock:
            for s in self._sockets:
                s.close()


def _shut(s: socket.socket, how: int) -> None:
    try:
        s.shutdown(how)
    except OSError:
        pass


def test_a_stall_longer_than_the_idle_timeout_is_retried_and_the_upload_finishes(
    chromium: Browser, tmp_path: Path
) -> None:
    server = UploadServer(data_dir=tmp_path / "data", env={"EXHIBIT_UPLOAD_IDLE_TIMEOUT": "1s"})
    server.data_dir.mkdir()
    server.start()
    proxy = StallingProxy(server.port, STALL_AFTER_BYTES)
    context = new_context(chromium)
    db = Database(server.settings.database_url)
    try:
        link_url, _ = make_upload_link(server.data_dir, base_url=proxy.base_url)
        video = tmp_path / "train.mp4"
        expected = mp4(video, 6 * 1000 * 1000, seed=5)
        page = context.new_page()
        start_sending(page, link_url, video)

        # The server gave up on the stalled PATCH after its idle timeout, with a status
        # the clients retry (tusd answers its read timeout with 500 too).
        assert proxy.answered.wait(60), "the server never answered the stalled PATCH"
        assert proxy.answer.startswith(b"HTTP/1.1 500"), proxy.answer[:200]

        sha, match = receipt_facts(page)
        assert (sha, match) == (expected, "yes")
        expect(page.locator("#receipt-files > li")).to_have_count(1)
        with db.read() as s:
            uploads = s.exec(select(Upload)).all()
            items = s.exec(select(EvidenceItem)).all()
        # The same upload carried on from the kept offset: one upload, one item.
        assert [u.state for u in uploads] == [UploadState.COMPLETE]
        assert [i.sha256 for i in items] == [expected]
    finally:
        context.close()
        db.dispose()
        proxy.close()
        server.stop()
