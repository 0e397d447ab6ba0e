"""`exhibit serve` as an operator runs it: both apps behind one port (a staff process and a
public process, fed by a parent that only routes connections), worker and clamd."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx2 as httpx
import pytest


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Served:
    def __init__(self, proc: subprocess.Popen[str], base: str, log: Path) -> None:
        self.proc = proc
        self.base = base
        self.log = log


@pytest.fixture(params=["split", "one process"])
def served(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Served]:
    yield from _serve(tmp_path, split=request.param == "split")


@pytest.fixture
def served_split(tmp_path: Path) -> Iterator[Served]:
    yield from _serve(tmp_path, split=True)


def _serve(tmp_path: Path, *, split: bool) -> Iterator[Served]:
    port = _free_port()
    log = tmp_path / "serve.log"
    env = {**os.environ, "EXHIBIT_DATA_DIR": str(tmp_path / "data"), "EXHIBIT_PORT": str(port),
           "EXHIBIT_PUBLIC_URL": f"http://127.0.0.1:{port}",
           "EXHIBIT_SERVE_SPLIT": "true" if split else "false"}
    # `exhibit serve` never migrates (only the owner role does, in `exhibit db upgrade`).
    subprocess.run([sys.executable, "-m", "exhibit", "db", "upgrade"], env=env, check=True, capture_output=True,
                   timeout=120)
    with log.open("w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "exhibit", "serve", "--demo"], env=env,
                                stdout=out, stderr=subprocess.STDOUT, text=True)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    try:
        while True:
            assert proc.poll() is None, log.read_text()
            try:
                if httpx.get(f"{base}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "server did not come up:\n" + log.read_text()
            time.sleep(0.1)
        yield Served(proc, base, log)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_serve_runs_both_apps_worker_and_scanner(served: Served) -> None:
    health = httpx.get(f"{served.base}/healthz", timeout=5).json()
    assert health["ok"] is True
    assert health["scanner"]["responding"] is True
    # Only test signatures on this machine: said loudly, never silently.
    assert health["scanner"]["test_signatures_only"] is True
    assert "TEST signatures" in health["scanner"]["warning"]
    assert "/" not in str(health["scanner"].get("address", ""))  # no internal paths on the public app

    text = served.log.read_text()
    link = re.search(r"Upload link\s+(\S+)", text)
    password = re.search(r"Password\s+(\S+)", text)
    assert link and password
    token = link.group(1).rsplit("/", 1)[1]

    # The public app answers /u/...: the demo link is exchanged for a cookie and a clean URL.
    with httpx.Client(base_url=served.base, follow_redirects=False, timeout=10) as client:
        r = client.get(f"/u/{token}")
        assert r.status_code == 303
        assert token not in r.headers["location"]
        assert r.headers["referrer-policy"] == "no-referrer"
        # The staff app answers everything else, starting with its sign-in.
        staff = client.get("/")
        assert staff.status_code in (200, 302, 303, 401)
        assert staff.headers["cache-control"] == "no-store"

    # Neither the token nor the admin password reaches the log beyond the one-time banner.
    data_dir = str(served.log.parent / "data")
    assert _processes_mentioning(data_dir), "clamd should be running under the data directory"
    served.proc.send_signal(signal.SIGTERM)
    assert served.proc.wait(timeout=60) == 0
    text = served.log.read_text()
    assert text.count(token) == 1
    assert text.count(password.group(1)) == 1
    # SIGTERM stops everything it started: no server process, no clamd left behind.
    assert _processes_mentioning(data_dir) == []
    assert _children_of(served.proc.pid) == []


def _processes_mentioning(text: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if text.encode() in (entry / "cmdline").read_bytes():
                    found.append(int(entry.name))
            except OSError:
                pass
    return found


def _children_of(pid: int) -> list[int]:
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def _server_processes(served: Served) -> list[int]:
    """The split server's two children (not multiprocessing's resource tracker)."""
    return [pid for pid in _children_of(served.proc.pid)
            if b"resource_tracker" not in Path(f"/proc/{pid}/cmdline").read_bytes()]


def _answers(base: str, path: str) -> bool:
    try:
        return httpx.get(f"{base}{path}", timeout=3).status_code == 200
    except httpx.TransportError:
        return False


def test_a_stuck_reviewer_does_not_stop_citizens_and_a_stuck_upload_door_does_not_stop_staff(
        served_split: Served) -> None:
    """The split server's point: the public door and the staff reviewer are separate
    processes, so one frozen (or flooded) leaves the other answering."""
    served = served_split
    servers = _server_processes(served)
    assert len(servers) == 2
    frozen_answers = []
    for pid in servers:
        os.kill(pid, signal.SIGSTOP)
        try:
            frozen_answers.append((_answers(served.base, "/healthz"), _answers(served.base, "/login")))
        finally:
            os.kill(pid, signal.SIGCONT)
    # Each freeze stops exactly one side, and not the same one.
    assert sorted(frozen_answers) == [(False, True), (True, False)]
    assert _answers(served.base, "/healthz") and _answers(served.base, "/login")


def test_a_request_line_sent_a_byte_at_a_time_is_still_served(served: Served) -> None:
    request_bytes = b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    with socket.create_connection(("127.0.0.1", int(served.base.rsplit(":", 1)[1])), timeout=10) as s:
        for byte in request_bytes[:20]:
            s.sendall(bytes([byte]))
            time.sleep(0.005)  # a slow client's pace, the input under test
        s.sendall(request_bytes[20:])
        answer = b""
        while chunk := s.recv(65536):
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 200")


def test_a_stuck_reviewer_with_a_backlog_does_not_stall_the_public_door(served_split: Served) -> None:
    """More connections for a frozen staff process than the hand-over channel holds (a few
    hundred): the parent sheds the excess instead of waiting, so citizens still get in."""
    served = served_split
    port = int(served.base.rsplit(":", 1)[1])
    staff = _server_processes(served)
    frozen = None
    for pid in staff:
        os.kill(pid, signal.SIGSTOP)
        if not _answers(served.base, "/login"):
            frozen = pid
            break
        os.kill(pid, signal.SIGCONT)
    assert frozen is not None
    backlog: list[socket.socket] = []
    try:
        for _ in range(600):
            s = socket.create_connection(("127.0.0.1", port), timeout=10)
            s.sendall(b"GET /login HTTP/1.1\r\nHost: x\r\n\r\n")
            backlog.append(s)
        assert _answers(served.base, "/healthz")
    finally:
        os.kill(frozen, signal.SIGCONT)
        for s in backlog:
            s.close()
    assert _answers(served.base, "/login")


def test_serve_runs_the_ledger_verifier_and_writes_checkpoints(served_split: Served, tmp_path: Path) -> None:
    from storage.ledger import read_checkpoint

    checkpoints = tmp_path / "data" / "checkpoints"
    deadline = time.monotonic() + 60
    # Polling a directory: the server has no event to hand us.
    while not (checkpoints.is_dir() and any(checkpoints.iterdir())):
        assert served_split.proc.poll() is None, served_split.log.read_text()
        assert time.monotonic() < deadline, "no checkpoint written:\n" + served_split.log.read_text()
        time.sleep(0.1)
    [path] = list(checkpoints.iterdir())
    assert read_checkpoint(json.loads(path.read_text()))["seq"] >= 1  # --demo appended events
