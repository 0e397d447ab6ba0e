"""Worker failure handling: outages wait without spending attempts (CF-11, BF-04),
poison jobs go dead with their reason and an explained item (CF-05), and several slots
process a backlog."""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from processing.scanning import ClamdScanner
from processing.worker import run_worker
from storage.lifecycle import TERMINAL, ItemState
from tests.fixtures.media import Media
from tests.processing.conftest import Env


class BrokenClamd:
    """A peer on a unix socket that speaks clamd's framing but answers every INSTREAM
    and FILDES scan with an ERROR (fault injection: what clamd says when it runs out of memory)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(str(path))
        self.sock.listen(8)
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                command = b""
                while not command.endswith(b"\0"):
                    part = conn.recv(1)
                    if not part:
                        break
                    command += part
                if command == b"zVERSION\0":
                    conn.sendall(b"ClamAV 1.4.6\0")
                elif command == b"zINSTREAM\0":
                    while True:
                        size = int.from_bytes(self._exact(conn, 4), "big")
                        if size == 0:
                            break
                        self._exact(conn, size)
                    conn.sendall(b"stream: Can't allocate memory ERROR\0")
                elif command == b"zFILDES\0":
                    _, fds, _, _ = socket.recv_fds(conn, 1, 1)
                    for fd in fds:
                        os.close(fd)
                    conn.sendall(b"fd[5]: Can't allocate memory ERROR\0")

    @staticmethod
    def _exact(conn: socket.socket, n: int) -> bytes:
        data = b""
        while len(data) < n:
            part = conn.recv(n - len(data))
            if not part:
                raise ConnectionError("closed")
            data += part
        return data

    def close(self) -> None:
        self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()
        self.thread.join(timeout=10)


@pytest.fixture
def broken_clamd(tmp_path: Path) -> Iterator[BrokenClamd]:
    server = BrokenClamd(tmp_path / "broken.sock")
    try:
        yield server
    finally:
        server.close()


def _until_terminal(env: Env, item_id: str, timeout: float = 60) -> str:
    deadline = time.monotonic() + timeout
    waiter = threading.Event()
    while time.monotonic() < deadline:
        env.drain()
        state = env.item(item_id)["state"]
        if ItemState(state) in TERMINAL:
            return str(state)
        waiter.wait(0.2)  # the deferred job becomes due after outage_retry_seconds
    raise AssertionError(f"item {item_id} not finished: {env.item(item_id)}")


def test_clamd_down_item_waits_without_spending_attempts_then_drains(env: Env, media: Media, tmp_path: Path) -> None:
    item_id = env.ingest_file(media.jpeg_gps)
    down = ClamdScanner(f"unix://{tmp_path / 'nobody-home.sock'}")
    for _ in range(3):
        env.drain(scanner=down)
        job = env.job(item_id)
        assert job.state == "queued" and job.attempts == 0
        assert "unreachable" in (job.last_error or "")
        item = env.item(item_id)
        assert item["state"] == "scanning" and item["verdict"] is None  # fails closed
        assert item["derivatives"] == []
        # Wait until the deferred job is due again.
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and env.job(item_id).run_after > _db_now(env):
            threading.Event().wait(0.1)
    # clamd is back: the backlog drains.
    assert _until_terminal(env, item_id) == "ready"


def _db_now(env: Env):  # type: ignore[no-untyped-def]
    with env.db.read() as s:
        return env.db.now(s)


def test_scanner_error_reply_retries_then_gives_up_unscannable_with_reason(
    env: Env, media: Media, broken_clamd: BrokenClamd, monkeypatch: pytest.MonkeyPatch
) -> None:
    from storage import queue

    # No backoff wait in the test: two attempts back to back.
    monkeypatch.setattr(queue, "BACKOFF_BASE_SECONDS", 0)
    item_id = env.ingest_file(media.jpeg_gps, max_attempts=2)
    scanner = ClamdScanner(f"unix://{broken_clamd.path}")
    for _ in range(2):
        env.drain(scanner=scanner)
    item = env.item(item_id)
    assert item["state"] == "unscannable", item
    assert "ERROR" in item["reason"] and "2 attempts" in item["reason"]
    assert item["verdict"] is None
    job = env.job(item_id)
    assert job.state == "dead" and "ERROR" in (job.last_error or "")
    assert item["jobs"][0]["state"] == "dead"  # what `exhibit items show` prints


def test_two_slots_process_a_backlog_each_item_once(env: Env, media: Media) -> None:
    ids = [env.ingest_file(p) for p in (media.jpeg_gps, media.png, media.heic, media.dashcam_ts, media.html_jpg)]
    stop = threading.Event()
    thread = threading.Thread(
        target=run_worker, args=(env.settings,),
        kwargs={"concurrency": 2, "stop_event": stop, "scanner": env.scanner, "db": env.db, "poll_seconds": 0.2},
        daemon=True,
    )
    thread.start()
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and not all(ItemState(env.item(i)["state"]) in TERMINAL for i in ids):
            stop.wait(0.2)
    finally:
        stop.set()
        thread.join(timeout=30)
    assert not thread.is_alive()
    states = [env.item(i)["state"] for i in ids]
    assert states == ["ready", "ready", "ready", "ready", "rejected"]
    for i in ids:
        actions = env.actions(i)
        assert sum(a in ("item.ready", "item.rejected") for a in actions) == 1
