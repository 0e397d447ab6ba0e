"""Needs nothing beyond `make test`: SQLite, the filesystem store, `exhibit serve` as shipped.

A surge of citizens (issue 16 item 3). After a major incident or a public appeal,
thousands of witnesses upload phone footage at once over slow mobile links. For each N:

1. A fresh data directory; `exhibit serve --no-worker` exactly as shipped (both doors, the
   default settings: SQLite, the filesystem store, the connection guard's limits). The
   worker is left out: in a scaled deployment it runs on its own nodes, and here it would
   need clamd; the front door is what a surge hits.
2. N citizens arrive over ``--arrival`` seconds (evenly spread), each from one of N/16
   loopback addresses (127.x.y.z; mobile carriers put many phones behind one address).
   Each sends the statement (``POST /u/submission``), creates a tus upload and sends the
   file in ONE long PATCH paced at ``--rate`` (a phone on a slow link), keep-alive.
3. Meanwhile a signed-in officer loads staff pages (the report list and the appeal's
   report page, alternately) on the staff door, one after another.

Printed per N, against targets measured in the same run where they are ratios:
- completed / N, and each upload's time from arrival to the last PATCH's answer divided
  by its transfer time at the paced rate (target: every one <= 1.2);
- the server's memory (RSS of the serve process tree) before the surge and at its peak,
  and the growth per open upload (target: <= 256 KiB);
- the staff pages' p50/p95 alone (before the surge) and during it (target: p95 < 50 ms);
- the CPU seconds the server and this client used during the surge, against the wall
  time times the cores: when the client's share is large, or the two together are far
  below what the cores give, the timings say more about the machine than the server.

    .venv/bin/python benchmarks/surge.py                       # N = 250, 500, 1000, 2000
    .venv/bin/python benchmarks/surge.py --n 1000 --size 1MiB --rate 64KiB --arrival 10

The client runs on the same machine (2 cores here) and costs CPU too; it sends in
``--tick`` steps (default 0.25 s: 16 KiB at a time at 64 KiB/s) to keep its own share small.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import http.client
import json
import os
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from storage.settings import parse_bytes  # noqa: E402

JPEG_HEAD = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00"
PER_ADDRESS = 16
TARGET_RATIO = 1.2
TARGET_KIB_PER_UPLOAD = 256
TARGET_STAFF_P95_MS = 50.0
STATEMENT = json.dumps({"description": "Phone video of the incident from the bridge", "declaration": "accepted",
                        "declaration_version": "2026-11-1"}).encode()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# --- set-up: the appeal's report, its link, an officer's session -----------------------------


@dataclass
class Setup:
    token: str
    report_id: str
    cookie: tuple[str, str]


def prepare(data_dir: Path, public_url: str) -> Setup:
    from reviewer_ui import sessions
    from reviewer_ui.context import ReviewContext, make_templates
    from storage.blobs import open_store
    from storage.db import Database
    from storage.links import create_link
    from storage.migrate import upgrade
    from storage.reports import create_report
    from storage.settings import Settings
    from storage.users import add_user

    settings = Settings(data_dir=data_dir, public_url=public_url)
    upgrade(settings.database_url)
    db = Database(settings.database_url)
    store = open_store(settings)
    try:
        with db.write() as session:
            officer = add_user(db, session, "appeal.officer@force.test", "officer", display_name="Appeal officer",
                               actor="bench")
            officer.mfa_enrolled = True
            session.add(officer)
            report = create_report(db, session, "MIPP/2026/0001", "crime", title="Public appeal", owner_id=officer.id,
                                   actor="bench")
            issued = create_link(db, session, report, public_url=public_url, expires_in_seconds=86400,
                                 max_files=100_000, max_bytes=1 << 40, actor="bench")
        ctx = ReviewContext(settings=settings, db=db, store=store, templates=make_templates())
        with db.write() as session:
            from storage.models import User

            user = session.get(User, officer.id)
            assert user is not None
            cookie = sessions.create(ctx, session, user, mfa_passed=True, client_ip="127.0.0.1", user_agent="bench")
        return Setup(issued.token, report.id, (sessions.cookie_name(settings), cookie))
    finally:
        db.dispose()


# --- the server, as shipped --------------------------------------------------------------------


class Served:
    def __init__(self, data_dir: Path, port: int, staff_port: int) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("EXHIBIT_")}
        env.update({"EXHIBIT_DATA_DIR": str(data_dir), "EXHIBIT_PUBLIC_URL": f"http://127.0.0.1:{port}",
                    "EXHIBIT_LOG_LEVEL": "WARNING"})
        # The server's log goes to a file, read after the run: a pipe nobody drains fills
        # at 64 KiB and then blocks the server on its next log line, mid-surge.
        self.log = data_dir.parent / f"{data_dir.name}.log"
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "exhibit", "serve", "--no-worker", "--port", str(port), "--staff-port",
                 str(staff_port)], cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=log)
        deadline = time.monotonic() + 180
        for p in (port, staff_port):
            while True:
                if self.process.poll() is not None:
                    raise RuntimeError("exhibit serve exited: " + self.log.read_text(errors="replace")[-2000:])
                try:
                    c = http.client.HTTPConnection("127.0.0.1", p, timeout=2)
                    c.request("GET", "/healthz")
                    if c.getresponse().status == 200:
                        c.close()
                        break
                except OSError:
                    pass
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError("exhibit serve did not start")
                time.sleep(0.05)  # readiness poll of a process we just started

    def tree(self) -> list[int]:
        """The serve process and every descendant (the two doors)."""
        children: dict[int, list[int]] = {}
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                try:
                    fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
                except OSError:
                    continue
                children.setdefault(int(fields[1]), []).append(int(entry))
        out, todo = [], [self.process.pid]
        while todo:
            pid = todo.pop()
            out.append(pid)
            todo.extend(children.get(pid, []))
        return out

    def rss_kib(self) -> int:
        total = 0
        for pid in self.tree():
            try:
                for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
            except OSError:
                continue
        return total

    def listener(self, port: int) -> int | None:
        """The process of the tree that listens on ``port`` (which door is which)."""
        inodes = set()
        for table in ("/proc/net/tcp", "/proc/net/tcp6"):
            try:
                lines = Path(table).read_text().splitlines()[1:]
            except OSError:
                continue
            for line in lines:
                cols = line.split()
                if cols[3] == "0A" and int(cols[1].rsplit(":", 1)[1], 16) == port:  # LISTEN
                    inodes.add(f"socket:[{cols[9]}]")
        for pid in self.tree():
            try:
                if any(os.readlink(f"/proc/{pid}/fd/{fd}") in inodes for fd in os.listdir(f"/proc/{pid}/fd")):
                    return pid
            except OSError:
                continue
        return None

    def cpu_seconds(self, pids: list[int] | None = None) -> float:
        """User + system CPU time of ``pids`` (default: the serve process tree) so far."""
        ticks = 0
        for pid in self.tree() if pids is None else pids:
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            ticks += int(fields[11]) + int(fields[12])  # utime, stime
        return ticks / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def problems(self) -> dict[str, int]:
        """Each distinct logged message at WARNING or above, with how often it came."""
        counts: dict[str, int] = {}
        for line in self.log.read_text(errors="replace").splitlines():
            try:
                event = json.loads(line)
                key = f"{event.get('level')} {str(event.get('message')).strip()}"
                if event.get("error"):
                    key += f" ({str(event['error'])[:120]})"
                # The root cause of a traceback: its first exception line.
                cause = next((ln for ln in str(event.get("exception") or "").splitlines()
                              if ln and not ln.startswith((" ", "Traceback", "The above", "During handling"))), "")
                if cause:
                    key += f" ({cause[:160]})"
            except ValueError:
                key = line[:160]
            counts[key] = counts.get(key, 0) + 1
        return counts


# --- the citizens -------------------------------------------------------------------------------


@dataclass
class Citizen:
    index: int
    arrived: float = 0.0
    done: float | None = None
    error: str | None = None


async def _response(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.strip().lower(): v.strip() for k, v in (ln.split(":", 1) for ln in lines[1:] if ":" in ln)}
    body = await reader.readexactly(int(headers.get("content-length", "0")))
    return status, headers, body


_RANDOM: dict[int, bytes] = {}


def _random_bytes(size: int) -> bytes:
    if size not in _RANDOM:
        _RANDOM[size] = os.urandom(size)
    return _RANDOM[size]


async def citizen(c: Citizen, port: int, token: str, size: int, rate: int, tick: float, start: float,
                  delay: float, open_uploads: list[int]) -> None:
    await asyncio.sleep(max(0.0, start + delay - time.monotonic()))  # the arrival schedule
    c.arrived = time.monotonic()
    n = c.index // PER_ADDRESS
    local = f"127.{1 + n // 65536}.{(n // 256) % 256}.{n % 256 or 1}"
    auth = f"Authorization: Bearer {token}\r\nHost: 127.0.0.1\r\n"
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=(local, 0))
    except OSError as exc:
        c.error = f"connect: {exc}"
        return
    try:
        writer.write((f"POST /u/submission HTTP/1.1\r\n{auth}Content-Type: application/json\r\n"
                      f"Content-Length: {len(STATEMENT)}\r\n\r\n").encode() + STATEMENT)
        status, _, body = await _response(reader)
        if status != 201:
            c.error = f"statement {status}: {body[:200]!r}"
            return
        submission = json.loads(body)["id"]
        meta = ",".join(f"{k} {base64.b64encode(v.encode()).decode()}"
                        for k, v in (("submission", submission), ("filename", f"clip{c.index}.jpg"),
                                     ("filetype", "image/jpeg")))
        writer.write((f"POST /u/files/ HTTP/1.1\r\n{auth}Tus-Resumable: 1.0.0\r\nUpload-Length: {size}\r\n"
                      f"Upload-Metadata: {meta}\r\nContent-Length: 0\r\n\r\n").encode())
        status, headers, body = await _response(reader)
        if status != 201:
            c.error = f"create {status}: {body[:200]!r}"
            return
        location = headers["location"]
        if location.startswith("http"):
            location = "/" + location.split("/", 3)[3]
        writer.write((f"PATCH {location} HTTP/1.1\r\n{auth}Tus-Resumable: 1.0.0\r\nUpload-Offset: 0\r\n"
                      f"Content-Type: application/offset+octet-stream\r\nContent-Length: {size}\r\n\r\n").encode())
        open_uploads[0] += 1
        open_uploads[1] = max(open_uploads[1], open_uploads[0])
        try:
            piece = max(1, int(rate * tick))
            # Each file distinct (its index after the JPEG head), the rest random bytes made
            # once: 1 MiB of os.urandom per citizen cost the client 5 to 6 ms of its one
            # event loop each, at the moment other citizens were due to send.
            mark = c.index.to_bytes(8, "big")
            payload = JPEG_HEAD + mark + _random_bytes(size - len(JPEG_HEAD) - len(mark))
            sent, began = 0, time.monotonic()
            while sent < size:
                chunk = payload[sent:sent + piece]
                writer.write(chunk)
                await writer.drain()
                sent += len(chunk)
                # Paced at the link's rate from the start of the body, so a late tick
                # catches up instead of stretching the transfer.
                await asyncio.sleep(max(0.0, began + sent / rate - time.monotonic()))
            status, _, body = await _response(reader)
        finally:
            open_uploads[0] -= 1
        if status != 204:
            c.error = f"patch {status}: {body[:200]!r}"
            return
        c.done = time.monotonic()
    except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
        c.error = f"{type(exc).__name__}: {exc}"
    finally:
        writer.close()


# --- the officer ---------------------------------------------------------------------------------


@dataclass
class Officer:
    port: int
    cookie: tuple[str, str]
    report_id: str
    times_ms: list[float] = field(default_factory=list)
    errors: int = 0

    def load(self, count: int | None, stop: threading.Event | None = None) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        headers = {"Cookie": f"{self.cookie[0]}={self.cookie[1]}", "Accept": "text/html"}
        paths = ("/reports", f"/reports/{self.report_id}")
        i = 0
        while (count is None or i < count) and not (stop is not None and stop.is_set()):
            t0 = time.perf_counter()
            try:
                conn.request("GET", paths[i % 2], headers=headers)
                r = conn.getresponse()
                r.read()
                if r.status != 200:
                    self.errors += 1
                else:
                    self.times_ms.append((time.perf_counter() - t0) * 1000)
            except (OSError, http.client.HTTPException):
                self.errors += 1
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
            i += 1
        conn.close()


def pct(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


# --- one run ---------------------------------------------------------------------------------------


@dataclass
class Result:
    n: int
    completed: int
    errors: list[str]
    ratios: list[float]
    rss_before_kib: int
    rss_peak_kib: int
    peak_open: int
    staff_alone: list[float]
    staff_surge: list[float]
    staff_errors: int
    wall_s: float = 0.0
    server_cpu_s: float = 0.0
    public_cpu_s: float = 0.0
    client_cpu_s: float = 0.0
    server_problems: dict[str, int] = field(default_factory=dict)


def run_one(n: int, size: int, rate: int, arrival: float, tick: float, workdir: Path) -> Result:
    data_dir = Path(tempfile.mkdtemp(prefix=f"surge-{n}-", dir=workdir))
    port, staff_port = free_port(), free_port()
    setup = prepare(data_dir, f"http://127.0.0.1:{port}")
    served = Served(data_dir, port, staff_port)
    try:
        officer = Officer(staff_port, setup.cookie, setup.report_id)
        officer.load(20)  # warm-up: templates compiled, connections open
        officer.times_ms.clear()
        officer.load(200)  # alone: the same run's baseline
        alone = officer.times_ms
        rss_before = served.rss_kib()

        surge_officer = Officer(staff_port, setup.cookie, setup.report_id)
        stop = threading.Event()
        staff = threading.Thread(target=surge_officer.load, args=(None, stop), daemon=True)
        peak = [rss_before]
        sampling = threading.Event()

        def sample() -> None:
            while not sampling.is_set():
                peak[0] = max(peak[0], served.rss_kib())
                sampling.wait(0.25)

        sampler = threading.Thread(target=sample, daemon=True)
        citizens = [Citizen(i) for i in range(n)]
        open_uploads = [0, 0]

        async def surge() -> None:
            start = time.monotonic() + 0.5
            await asyncio.gather(*(citizen(c, port, setup.token, size, rate, tick, start, arrival * i / n, open_uploads)
                                   for i, c in enumerate(citizens)))

        sampler.start()
        staff.start()
        public_pid = served.listener(port)
        public = [public_pid] if public_pid is not None else []
        cpu_before, public_before, wall_before = served.cpu_seconds(), served.cpu_seconds(public), time.monotonic()
        usage_before = resource.getrusage(resource.RUSAGE_SELF)
        asyncio.run(surge())
        usage_after = resource.getrusage(resource.RUSAGE_SELF)
        wall, server_cpu = time.monotonic() - wall_before, served.cpu_seconds() - cpu_before
        public_cpu = served.cpu_seconds(public) - public_before if public else float("nan")
        stop.set()
        sampling.set()
        staff.join(timeout=120)
        sampler.join(timeout=10)
        transfer = size / rate
        ratios = [(c.done - c.arrived) / transfer for c in citizens if c.done is not None]
        errors = [c.error for c in citizens if c.error]
        # This process's CPU (the citizens, the officer, the sampler): on a machine with few
        # cores the client competes with the server, and this says how much.
        client_cpu = (usage_after.ru_utime - usage_before.ru_utime) + (usage_after.ru_stime - usage_before.ru_stime)
        result = Result(n, len(ratios), errors, ratios, rss_before, peak[0], open_uploads[1], alone,
                        surge_officer.times_ms, surge_officer.errors, wall, server_cpu, public_cpu, client_cpu)
    finally:
        served.stop()
        shutil.rmtree(data_dir, ignore_errors=True)
    result.server_problems = served.problems()
    served.log.unlink()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", default="250,500,1000,2000", help="comma-separated numbers of citizens")
    parser.add_argument("--size", default="1MiB")
    parser.add_argument("--rate", default="64KiB", help="each citizen's link, bytes per second")
    parser.add_argument("--arrival", type=float, default=10.0, help="seconds over which the citizens arrive")
    parser.add_argument("--tick", type=float, default=0.25)
    parser.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()))
    args = parser.parse_args()
    size, rate = parse_bytes(args.size), parse_bytes(args.rate)
    # Each citizen is one socket here and one in the server, which inherits this limit.
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    print(f"{size >> 10} KiB per citizen at {rate >> 10} KiB/s (transfer {size / rate:.1f} s), arrivals over "
          f"{args.arrival:.0f} s, {PER_ADDRESS} citizens per address; {os.cpu_count()} cores")
    print(f"{'N':>6}{'done':>7}{'ratio p50':>10}{'p95':>7}{'max':>7}{'open':>6}{'RSS MiB before':>16}{'peak':>7}"
          f"{'KiB/upload':>11}{'staff p50':>10}{'p95 alone':>10}{'p95 surge':>10}  verdict")
    for n in (int(x) for x in args.n.split(",")):
        r = run_one(n, size, rate, args.arrival, args.tick, args.workdir)
        per_upload = (r.rss_peak_kib - r.rss_before_kib) / max(1, r.peak_open)
        worst = max(r.ratios) if r.ratios else float("inf")
        staff_p95 = pct(r.staff_surge, 95)
        verdicts = [
            "all done" if r.completed == n else f"{n - r.completed} FAILED",
            f"ratio {'PASS' if worst <= TARGET_RATIO and r.completed == n else 'MISS'}",
            f"memory {'PASS' if per_upload <= TARGET_KIB_PER_UPLOAD else 'MISS'}",
            f"staff {'PASS' if staff_p95 < TARGET_STAFF_P95_MS and not r.staff_errors else 'MISS'}",
        ]
        print(f"{n:>6}{r.completed:>7}{statistics.median(r.ratios) if r.ratios else float('nan'):>10.2f}"
              f"{pct(r.ratios, 95):>7.2f}{worst:>7.2f}{r.peak_open:>6}{r.rss_before_kib / 1024:>16.1f}"
              f"{r.rss_peak_kib / 1024:>7.1f}{per_upload:>11.1f}{pct(r.staff_surge, 50):>10.1f}"
              f"{pct(r.staff_alone, 95):>10.1f}{staff_p95:>10.1f}  {', '.join(verdicts)}")
        cores = os.cpu_count() or 1
        print(f"       cpu during the surge ({r.wall_s:.1f} s wall, {cores} cores = {r.wall_s * cores:.0f} cpu-s): "
              f"server {r.server_cpu_s:.1f} s, of which the public door {r.public_cpu_s:.1f} s "
              f"({r.public_cpu_s * 1000 / n:.1f} ms per upload), "
              f"client {r.client_cpu_s:.1f} s; the rest went to other processes or idle")
        if r.errors:
            print(f"       first errors: {r.errors[:3]}")
        if r.staff_errors:
            print(f"       staff page errors during the surge: {r.staff_errors}")
        for message, count in sorted(r.server_problems.items(), key=lambda kv: -kv[1])[:5]:
            print(f"       server log: {count} x {message}")
        sys.stdout.flush()
    print(f"load average at the end: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
