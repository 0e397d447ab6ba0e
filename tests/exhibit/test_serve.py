"""`exhibit serve` as an operator runs it: two doors (a public one for citizens, a staff one
for reviewers) in two processes, the worker and clamd on the staff side. Real subprocess,
real sockets (issue 11 item 2, SECURITY_CHECKLIST AC-17, LD-09)."""

from __future__ import annotations

import io
import json
import os
import re
import resource
import select
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx2 as httpx
import pyotp
import pytest

from exhibit.guard import LOG_INTERVAL
from tests.fixtures.ports import free_port

CSRF_RE = re.compile(r'name="csrf_token" value="([^"]+)"')



@dataclass
class Served:
    proc: subprocess.Popen[str]
    public: str
    staff: str
    out: Path
    err: Path
    env: dict[str, str] = field(default_factory=dict)

    @property
    def public_port(self) -> int:
        return int(self.public.rsplit(":", 1)[1])

    @property
    def staff_port(self) -> int:
        return int(self.staff.rsplit(":", 1)[1])

    def log_lines(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.err.read_text().splitlines() if line.strip()]

    def demo(self) -> tuple[str, str]:
        text = self.out.read_text()
        link = re.search(r"Upload link\s+(\S+)", text)
        password = re.search(r"Password\s+(\S+)", text)
        assert link and password, text
        return link.group(1), password.group(1)


def _serve(tmp_path: Path, database_url: str | None = None, *, role: str = "all",
           **extra_env: str) -> Iterator[Served]:
    port, staff_port = free_port(), free_port()
    out, err = tmp_path / "serve.out", tmp_path / "serve.err"
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("EXHIBIT_")},
           "EXHIBIT_DATA_DIR": str(tmp_path / "data"), "EXHIBIT_PORT": str(port),
           "EXHIBIT_STAFF_PORT": str(staff_port), "EXHIBIT_PUBLIC_URL": f"http://127.0.0.1:{port}", **extra_env}
    if database_url:
        env["EXHIBIT_DATABASE_URL"] = database_url
    # The ledger work makes `serve` refuse an unmigrated database: upgrade first, as an
    # operator (and `make run`) does.
    subprocess.run([sys.executable, "-m", "exhibit", "db", "upgrade"], env=env, check=True, capture_output=True)
    with out.open("w") as o, err.open("w") as e:
        proc = subprocess.Popen([sys.executable, "-m", "exhibit", "serve", "--demo", "--role", role], env=env,
                                stdout=o, stderr=e, text=True)
    served = Served(proc, f"http://127.0.0.1:{port}", f"http://127.0.0.1:{staff_port}", out, err, env)
    # Only a guard against a hang: each poll ends as soon as the doors answer. A start-up
    # (imports, both doors, the worker and clamd) has taken over 90 s on a loaded machine
    # (tests/browser/conftest.py gives its servers 300 s too); 120 s was too near that.
    deadline = time.monotonic() + 300
    try:
        doors = {"all": (served.public, served.staff), "public": (served.public,), "staff": (served.staff,)}[role]
        for base in doors:
            while True:
                assert proc.poll() is None, err.read_text()
                try:
                    if httpx.get(f"{base}/healthz", timeout=2).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert time.monotonic() < deadline, "server did not come up:\n" + err.read_text()
                time.sleep(0.1)  # polling a readiness endpoint: there is no event to await
        # Still ours: a server of another test run that took the port first would have
        # answered the polls while this one failed to bind and exited.
        assert proc.poll() is None, err.read_text()
        yield served
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    yield from _serve(tmp_path_factory.mktemp("serve"))


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


# -- the two doors ------------------------------------------------------------------------------


def test_public_health_says_only_ok_and_the_staff_door_has_the_details(served: Served) -> None:
    """Issue 11 item 5: which signatures the scanner has tells an attacker which samples
    would pass; the public door says "ok" and nothing else."""
    public = httpx.get(f"{served.public}/healthz", timeout=5)
    assert public.json() == {"ok": True}
    assert "clamav" not in public.text.lower() and "signature" not in public.text.lower()

    staff = httpx.get(f"{served.staff}/healthz", timeout=5).json()
    assert staff["ok"] is True
    assert staff["scanner"]["responding"] is True
    # Only test signatures on this machine: said loudly, never silently.
    assert staff["scanner"]["test_signatures_only"] is True
    assert "TEST signatures" in staff["scanner"]["warning"]
    assert "ClamAV" in staff["scanner"]["signatures"]
    assert staff["worker"]["alive"] is True
    assert isinstance(staff["queue"], dict)


def test_each_door_serves_its_own_app(served: Served) -> None:
    link, _password = served.demo()
    token = link.rsplit("/", 1)[1]
    assert link.startswith(served.public + "/u/")
    with httpx.Client(base_url=served.public, follow_redirects=False, timeout=10) as citizen:
        r = citizen.get(f"/u/{token}")
        assert r.status_code == 303
        assert token not in r.headers["location"]
        assert r.headers["referrer-policy"] == "no-referrer"
    with httpx.Client(base_url=served.staff, follow_redirects=False, timeout=10) as officer:
        r = officer.get("/login")
        assert r.status_code == 200 and "password" in r.text.lower()
        assert r.headers["cache-control"] == "no-store"
    text = served.out.read_text()
    assert served.public in text and served.staff in text  # the demo output names both doors


def _route_probes(app: Any) -> list[tuple[str, str]]:
    """(method, path) for every route of a Starlette app: path parameters filled in."""
    from starlette.routing import Mount, Route

    probes = []
    for route in app.routes:
        if isinstance(route, Mount):
            probes.append(("GET", route.path.rstrip("/") + "/app.css"))
        elif isinstance(route, Route):
            path = re.sub(r"\{[^}]+\}", "0000000000000000000000000000000000000000000", route.path)
            for method in sorted(route.methods or {"GET"}):
                probes.append((method, path))
    return probes


def test_every_staff_route_is_404_on_the_public_door_and_every_public_route_on_the_staff_door(
        served: Served, tmp_path: Path) -> None:
    """AC-17, route by route: the apps themselves are listed, so a route added later is
    walked too."""
    from reviewer_ui.app import create_app as create_staff_app
    from storage.blobs import open_store
    from storage.db import Database
    from storage.settings import Settings
    from upload_api.app import create_app as create_public_app

    settings = Settings(data_dir=tmp_path)
    db = Database(settings.database_url)
    try:
        staff_probes = _route_probes(create_staff_app(settings, db, open_store(settings)))
        public_probes = _route_probes(create_public_app(settings, db, open_store(settings)))
    finally:
        db.dispose()
    staff_probes = [p for p in staff_probes if p[1] != "/healthz"]
    public_probes = [p for p in public_probes if p[1] != "/healthz"]
    assert ("GET", "/login") in staff_probes and any(p.startswith("/admin") for _m, p in staff_probes)
    assert any(p.startswith("/u/") for _m, p in public_probes) and any(p.startswith("/api/") for _m, p in public_probes)

    answers = {}
    for base, probes in ((served.public, staff_probes), (served.staff, public_probes)):
        with httpx.Client(base_url=base, follow_redirects=False, timeout=10) as client:
            for method, path in probes:
                answers[(base, method, path)] = client.request(method, path).status_code
    wrong = {k: v for k, v in answers.items() if v != 404}
    assert wrong == {}
    # The probes do reach something on the right door (they are real routes).
    with httpx.Client(base_url=served.staff, follow_redirects=False, timeout=10) as client:
        assert client.get("/login").status_code == 200
    with httpx.Client(base_url=served.public, follow_redirects=False, timeout=10) as client:
        assert client.get("/api/v1/openapi.json").status_code == 200


def test_the_staff_door_binds_loopback_by_default(served: Served) -> None:
    assert "EXHIBIT_STAFF_HOST" not in served.env
    # What the kernel says the staff door listens on: loopback only (works on a machine
    # with no other address, where a connection attempt from outside proves nothing).
    assert _listening_addresses(served.staff_port) == {"127.0.0.1"}
    other = _other_local_address()
    if other is not None:
        with pytest.raises(OSError):
            socket.create_connection((other, served.staff_port), timeout=3).close()


def _listening_addresses(port: int) -> set[str]:
    """The local IPv4/IPv6 addresses a TCP socket listens on at ``port`` (Linux /proc)."""
    found: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except FileNotFoundError:
            continue
        for line in lines:
            local, state = line.split()[1], line.split()[3]
            address, port_hex = local.split(":")
            if state != "0A" or int(port_hex, 16) != port:  # 0A: LISTEN
                continue
            raw = bytes.fromhex(address)
            if len(raw) == 4:
                found.add(socket.inet_ntop(socket.AF_INET, raw[::-1]))
            else:  # four little-endian 32-bit words
                words = b"".join(raw[i:i + 4][::-1] for i in range(0, 16, 4))
                found.add(socket.inet_ntop(socket.AF_INET6, words))
    return found


def _other_local_address() -> str | None:
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect(("192.0.2.1", 9))  # no packet is sent: this only picks a route
            address = str(s.getsockname()[0])
    except OSError:
        return None
    return None if address.startswith("127.") else address


def _answers(base: str, path: str, timeout: float = 30) -> bool:
    try:
        return httpx.get(f"{base}{path}", timeout=timeout).status_code == 200
    except httpx.TransportError:
        return False


def _answers_while_one_is_stopped(served: Served) -> tuple[bool, bool]:
    """(the public door answered, the staff door answered), both asked at once. A stopped
    process never answers, so no wait tells a stopped door from a slow one; the door that
    runs may be slow on a loaded machine (a fixed 3 s each once failed it). So the first
    answer may take up to a minute, and the other door then gets ten times as long as that
    one took (at least 3 s): a door that runs answers within that, a stopped one never."""
    asks = {"public": (served.public, "/healthz"), "staff": (served.staff, "/login")}
    pool = ThreadPoolExecutor(max_workers=2)
    started = time.monotonic()
    futures = {pool.submit(_answers, base, path, 60): door for door, (base, path) in asks.items()}
    try:
        done, _ = wait(futures, timeout=60, return_when=FIRST_COMPLETED)
        if done:
            wait(futures, timeout=max(3.0, 10 * (time.monotonic() - started)))
        answered = {futures[f]: f.done() and f.result() for f in futures}
    finally:
        pool.shutdown(wait=False)  # the stopped door's request ends when it is continued
    return answered["public"], answered["staff"]


def test_a_frozen_staff_door_does_not_stop_citizens_and_a_frozen_public_door_does_not_stop_staff(
        served: Served) -> None:
    """The doors are separate processes: one stopped (or flooded) leaves the other answering."""
    doors = [pid for pid in _children_of(served.proc.pid)
             if b"resource_tracker" not in Path(f"/proc/{pid}/cmdline").read_bytes()]
    assert len(doors) == 2
    frozen_answers = []
    for pid in doors:
        os.kill(pid, signal.SIGSTOP)
        try:
            frozen_answers.append(_answers_while_one_is_stopped(served))
        finally:
            os.kill(pid, signal.SIGCONT)
    # Each freeze stops exactly one door, and not the same one.
    assert sorted(frozen_answers) == [(False, True), (True, False)]
    assert _answers(served.public, "/healthz") and _answers(served.staff, "/login")


@pytest.mark.parametrize("role", ["public", "staff"])
def test_one_role_serves_one_door(tmp_path: Path, role: str) -> None:
    """`--role public` is an upload node: the public door, and no staff door, worker or
    clamd. `--role staff`: the staff door (with the worker and clamd), and no public door."""
    gen = _serve(tmp_path, role=role)
    served = next(gen)
    try:
        mine, other = (served.public, served.staff) if role == "public" else (served.staff, served.public)
        assert httpx.get(f"{mine}/healthz", timeout=5).status_code == 200
        with pytest.raises(httpx.TransportError):
            httpx.get(f"{other}/healthz", timeout=3)
        clamd = _processes_mentioning(str(tmp_path / "data" / "clamd"))
        if role == "public":
            assert clamd == []
            assert httpx.get(f"{mine}/login", timeout=5).status_code == 404
            assert "worker" not in httpx.get(f"{mine}/healthz", timeout=5).text
        else:
            assert clamd
            assert httpx.get(f"{mine}/healthz", timeout=5).json()["worker"]["alive"] is True
            assert httpx.get(f"{mine}/u/x", timeout=5).status_code == 404
    finally:
        gen.close()


@pytest.mark.parametrize("door", ["public", "staff"])
def test_an_idle_keep_alive_connection_is_closed(served: Served, door: str) -> None:
    """EXHIBIT_KEEPALIVE_TIMEOUT (5 s by default; it was 30 s): an idle connection after a
    response is closed by the server, well inside the 15 s this waits for it."""
    port = served.public_port if door == "public" else served.staff_port
    with socket.create_connection(("127.0.0.1", port), timeout=15) as s:
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        answer = b""
        while b"\r\n\r\n" not in answer:
            answer += s.recv(65536)
        assert answer.startswith(b"HTTP/1.1 200")
        try:
            while s.recv(65536):  # the rest of the body, then the server's close
                pass
            closed = True
        except TimeoutError:
            closed = False
    assert closed


@pytest.mark.parametrize("door", ["public", "staff"])
def test_a_header_block_that_never_ends_is_cut_off_by_size(served: Served, door: str) -> None:
    """httptools, uvicorn's parser here, has no header size limit: 4 MiB of one header at
    line speed would be buffered for the whole header deadline. The guard cuts it."""
    port = served.public_port if door == "public" else served.staff_port
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: ")
        try:
            for _ in range(64):
                s.sendall(b"a" * 65536)
            cut = s.recv(1) == b""
        except TimeoutError:
            cut = False  # still open, still buffering
        except OSError:
            cut = True  # reset by the server
    assert cut
    assert _answers(served.public, "/healthz") and _answers(served.staff, "/login")


# -- JSON logs ----------------------------------------------------------------------------------


def test_log_lines_are_json_with_request_id_and_fields(served: Served) -> None:
    """Issue 11 item 5: the fields of a refusal (who, why) reach the log, with the request
    id the client was shown."""
    r = httpx.post(f"{served.staff}/login", data={"email": "x@y.z", "password": "hunter2-typed-here"},
                   headers={"Cookie": "exhibit_session=cookie-secret-value", "Authorization": "Bearer abcdefgh"},
                   timeout=10)
    assert r.status_code == 403
    request_id = r.headers["x-request-id"]
    deadline = time.monotonic() + 10
    while True:
        lines = served.log_lines()  # every line parses: one JSON object per line
        refused = [line for line in lines if line["message"] == "csrf.refused"]
        if refused or time.monotonic() > deadline:
            break
        time.sleep(0.1)  # the child writes its stderr on its own schedule
    assert refused, served.err.read_text()[-3000:]
    line = refused[-1]
    assert line["request_id"] == request_id
    assert line["why"] and line["path"] == "/login"
    assert line["client_address"] == "127.0.0.1"  # who was refused
    assert {"time", "level", "logger", "message"} <= set(line)
    text = served.err.read_text()
    for secret in ("hunter2-typed-here", "cookie-secret-value", "abcdefgh"):
        assert secret not in text


# -- slow and flooding clients ----------------------------------------------------------------


@pytest.fixture
def flooded_server(tmp_path: Path, db_url: str) -> Iterator[Served]:
    yield from _serve(tmp_path, db_url, EXHIBIT_HEADER_TIMEOUT="3s", EXHIBIT_LOG_LEVEL="INFO")


def _half_open(port: int, count: int, source: str) -> list[socket.socket]:
    sockets = []
    for _ in range(count):
        s = socket.socket()
        s.bind((source, 0))
        s.settimeout(10)
        try:
            s.connect(("127.0.0.1", port))
            s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")  # and never the blank line
        except OSError:
            pass  # refused or reset: the server shed it, which is the point
        sockets.append(s)
    return sockets


def _sign_in(base: str, email: str, password: str, source: str) -> None:
    transport = httpx.HTTPTransport(local_address=source)
    with httpx.Client(base_url=base, transport=transport, follow_redirects=False, timeout=30) as client:
        page = client.get("/login")
        token = CSRF_RE.search(page.text)
        assert token, page.text
        r = client.post("/login", data={"email": email, "password": password, "csrf_token": token.group(1)})
        assert r.status_code == 303 and r.headers["location"] == "/mfa", r.text
        page = client.get("/mfa")
        secret = re.search(r'data-secret="([A-Z2-7]+)"', page.text)
        token = CSRF_RE.search(page.text)
        assert secret and token, page.text
        r = client.post("/mfa", data={"code": pyotp.TOTP(secret.group(1)).now(), "csrf_token": token.group(1)})
        assert r.status_code == 303, r.text
        assert client.get("/reports").status_code == 200


def _jpeg() -> bytes:
    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", (64, 48), (200, 30, 30)).save(out, "JPEG")
    return out.getvalue()


def _upload(base: str, link: str, source: str) -> None:
    transport = httpx.HTTPTransport(local_address=source)
    with httpx.Client(transport=transport, follow_redirects=False, timeout=60) as citizen:
        assert citizen.get(link).status_code == 303
        r = citizen.post(
            f"{base}/u/submit",
            data={"description": "The van went through the red light.", "occurred_at": "Monday 08:10",
                  "location": "Station Road", "declaration": "accepted", "declaration_version": "v1"},
            files=[("files", ("photo.jpg", _jpeg(), "image/jpeg"))],
            headers={"Accept": "application/json"},
        )
        assert r.status_code in (200, 201), r.text


def test_a_flood_of_half_open_sockets_from_one_address_does_not_keep_others_out(flooded_server: Served) -> None:
    """LD-09: 2,000 half-open sockets from 127.0.0.1 on each door; from 127.0.0.2 a staff
    sign-in and a citizen upload still succeed, the flood is logged once per address, and
    a connection whose headers trickle is closed at the header deadline."""
    served = flooded_server
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 8192), hard))
    link, password = served.demo()
    flood: list[socket.socket] = []
    try:
        flood_started = time.monotonic()
        flood += _half_open(served.public_port, 2000, "127.0.0.1")
        flood += _half_open(served.staff_port, 2000, "127.0.0.1")
        flood_seconds = time.monotonic() - flood_started

        _sign_in(served.staff, "admin@exhibit.example", password, "127.0.0.2")
        _upload(served.public, link, "127.0.0.2")

        # A request whose headers trickle in, a byte at a time, is cut off at the header
        # deadline (3 s here) although it keeps sending.
        for port in (served.public_port, served.staff_port):
            with socket.socket() as slow:
                slow.bind(("127.0.0.3", 0))
                slow.connect(("127.0.0.1", port))
                slow.sendall(b"GET /healthz HTTP/1.1\r\n")
                closed = False
                for byte in b"X-Padding: " + b"a" * 200:  # 200 s at this pace, far past the deadline
                    try:
                        slow.sendall(bytes([byte]))
                    except OSError:
                        closed = True
                        break
                    # Pace of a slow client (the input), and wait for the close (the event).
                    poller = select.poll()  # not select(): 4,000 sockets are open here
                    poller.register(slow, select.POLLIN)
                    if poller.poll(1000):
                        try:
                            closed = slow.recv(1024) == b""
                        except OSError:
                            closed = True
                        if closed:
                            break
                assert closed, f"a trickling connection was held open on port {port}"
    finally:
        for s in flood:
            s.close()
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))

    lines = served.log_lines()
    refusals = [line for line in lines if line["message"] == "connection.refused"
                and line["client_address"] == "127.0.0.1" and line["reason"] == "too many connections from this address"]
    # Who and why, once per door per LOG_INTERVAL: not one line per socket. Normally the
    # flood lasts seconds (one line a door); on a slow machine it may outlast the interval,
    # and a line per interval it lasted is still the rule kept.
    doors = [line["door"] for line in refusals]
    assert sorted(set(doors)) == ["public", "staff"], refusals
    lines_allowed = 1 + int(flood_seconds // LOG_INTERVAL)
    assert all(doors.count(door) <= lines_allowed for door in ("public", "staff")), (refusals, flood_seconds)
    assert not any(line.get("client_address") == "127.0.0.2" for line in lines
                   if line["message"] == "connection.refused")


def test_sigterm_stops_both_doors_the_worker_and_clamd(tmp_path: Path) -> None:
    gen = _serve(tmp_path)
    served = next(gen)
    try:
        data_dir = str(tmp_path / "data")
        assert _processes_mentioning(data_dir), "clamd should be running under the data directory"
        doors = _children_of(served.proc.pid)
        assert doors
        served.proc.send_signal(signal.SIGTERM)
        assert served.proc.wait(timeout=60) == 0
        assert _processes_mentioning(data_dir) == []
        assert all(not Path(f"/proc/{pid}").exists() or b"exhibit" not in Path(f"/proc/{pid}/cmdline").read_bytes()
                   for pid in doors)
        _link, password = served.demo()
        assert password not in served.err.read_text()  # shown once, on stdout, never logged
    finally:
        gen.close()


def test_serve_runs_the_ledger_verifier_and_writes_checkpoints(served: Served) -> None:
    """The periodic ledger verifier runs on the staff side (it holds the signing key; the
    public door never does)."""
    from storage.ledger import read_checkpoint

    checkpoints = Path(served.env["EXHIBIT_DATA_DIR"]) / "checkpoints"
    deadline = time.monotonic() + 60
    # Polling a directory: the server has no event to hand us.
    while not (checkpoints.is_dir() and any(checkpoints.iterdir())):
        assert served.proc.poll() is None, served.err.read_text()
        assert time.monotonic() < deadline, "no checkpoint written:\n" + served.err.read_text()
        time.sleep(0.1)
    [path] = list(checkpoints.iterdir())
    assert read_checkpoint(json.loads(path.read_text()))["seq"] >= 1  # --demo appended events
