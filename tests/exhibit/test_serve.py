"""`exhibit serve` as an operator runs it: one process, both apps, worker and clamd."""

from __future__ import annotations

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


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    port = _free_port()
    log = tmp_path / "serve.log"
    env = {**os.environ, "EXHIBIT_DATA_DIR": str(tmp_path / "data"), "EXHIBIT_PORT": str(port),
           "EXHIBIT_PUBLIC_URL": f"http://127.0.0.1:{port}"}
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
    served.proc.send_signal(signal.SIGTERM)
    served.proc.wait(timeout=30)
    text = served.log.read_text()
    assert text.count(token) == 1
    assert text.count(password.group(1)) == 1
