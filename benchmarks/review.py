"""Reviewer pages at 100,000 items, alone and while 32 uploads stream in. One run.

    .venv/bin/python benchmarks/review.py [--items 100000] [--requests 200] [--uploads 32]
                                          [--upload-mbps 2] [--backends sqlite,postgresql]
                                          [--scale-out postgresql]

For each database (SQLite in WAL with synchronous=FULL; PostgreSQL 15 in a throwaway
cluster with fsync on):

1. Seed 100,000 evidence items in 10,000 reports (90% images with thumbnail + preview,
   10% videos with proxy + poster + thumbnail; derivative rows point at a few real blobs),
   three custody events per item (300,000 ledger rows), all owned by one officer, by bulk
   inserts; then VACUUM (ANALYZE) and CHECKPOINT (SQLite: a WAL checkpoint), so that no
   timed measure runs into the load's own aftermath.
2. Serve both apps as ``exhibit serve`` does (no worker): two doors, the staff app and
   the public app each in its own process on its own port (``exhibit.server``).
3. As the officer (a real server-side session), over keep-alive HTTP, time:
   - the report list: first page, a deep keyset page, kind filter, "new evidence
     waiting" filter, reference prefix search (mixed, one after another);
   - the item page of random items (each view is an audited custody event: a write);
   - time to first byte of a Range request on a video proxy: a seek at a random offset,
     and (half as many) a stream start (``bytes=0-``, audited, so a write).
4. The same while ``--uploads`` citizens stream files in through ``POST /u/submit`` (a
   separate process; each stream paced at ``--upload-mbps`` MB/s like a phone on 4G),
   sent to the same server's public door.
5. For the backends named by ``--scale-out`` (PostgreSQL by default): the same again with
   the uploads sent to a second public door (``exhibit serve --role public``) on the same
   database and data directory, the shape DESIGN.md section 2 and docker-compose.yml give a
   PostgreSQL deployment (upload nodes on the public network, the staff door on its own
   node). On one machine all
   these processes still share its CPUs.

Prints p50/p95 per measure and against the targets (DESIGN.md section 6: p95 < 50 ms,
first byte < 20 ms), and the ratio loaded/alone.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import hashlib
import http.client
import multiprocessing as mp
import os
import random
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import httpx2 as httpx  # noqa: E402
from sqlalchemy import insert  # noqa: E402

from storage.blobs.filesystem import FilesystemBlobStore  # noqa: E402
from storage.blobs.protocol import put_bytes  # noqa: E402
from storage.db import Database  # noqa: E402
from storage.migrate import upgrade  # noqa: E402
from storage.models import CustodyEvent, Derivative, EvidenceItem, Report, new_id, utcnow  # noqa: E402
from storage.settings import Settings  # noqa: E402

JPEG_HEAD = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00"
KINDS = ("crime", "rtc", "asb", "complaint", "other")
TARGET_P95_MS = 50.0
TARGET_TTFB_MS = 20.0


# --- seeding -------------------------------------------------------------------------------


def make_media(tmp: Path) -> tuple[bytes, bytes]:
    """A 20 s 720p H.264 proxy (faststart) and a JPEG, made with ffmpeg."""
    clip, jpeg = tmp / "proxy.mp4", tmp / "poster.jpg"
    subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-y", "-f", "lavfi",
                    "-i", "testsrc2=size=1280x720:rate=25:duration=20", "-pix_fmt", "yuv420p", "-c:v", "libx264",
                    "-preset", "ultrafast", "-b:v", "2M", "-movflags", "+faststart", str(clip)], check=True)
    subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-y", "-i", str(clip), "-frames:v", "1",
                    "-vf", "scale=640:-2", str(jpeg)], check=True)
    return clip.read_bytes(), jpeg.read_bytes()


@dataclass
class Seeded:
    officer_id: str
    officer_email: str
    report_ids: list[str]
    report_keys: list[tuple[dt.datetime, str]]
    video_ids: list[str]
    item_ids: list[str]
    proxy_size: int


def seed(db: Database, store: FilesystemBlobStore, items: int, media: tuple[bytes, bytes]) -> Seeded:
    from storage.users import add_user

    proxy, jpeg = media
    proxy_key = asyncio.run(put_bytes(store, proxy))
    jpeg_key = asyncio.run(put_bytes(store, jpeg))
    proxy_sha, jpeg_sha = hashlib.sha256(proxy).hexdigest(), hashlib.sha256(jpeg).hexdigest()
    with db.write() as session:
        officer = add_user(db, session, "bench.officer@force.test", "officer", display_name="PC Bench", actor="bench")
        officer_id, officer_email = officer.id, officer.email
    per_report = 10
    n_reports = max(1, items // per_report)
    base = utcnow() - dt.timedelta(days=400)
    reports: list[dict[str, Any]] = []
    item_rows: list[dict[str, Any]] = []
    derivs: list[dict[str, Any]] = []
    video_ids: list[str] = []
    rnd = random.Random(7)
    for r in range(n_reports):
        rid = new_id()
        created = base + dt.timedelta(minutes=50 * r, microseconds=r)
        reports.append({"id": rid, "reference": f"BENCH/{r:06d}", "kind": KINDS[r % len(KINDS)],
                        "title": f"Report {r}", "owner_id": officer_id, "created_at": created})
        for i in range(per_report):
            iid = new_id()
            video = rnd.random() < 0.1
            received = created + dt.timedelta(seconds=i)
            item_rows.append({
                "id": iid, "report_id": rid, "blob_key": proxy_key if video else jpeg_key,
                "size": len(proxy) if video else len(jpeg), "sha256": hashlib.sha256(iid.encode()).hexdigest(),
                "verified_sha256": None, "state": "ready", "verdict": "clean", "signature_db_version": "bench",
                "triage": "pending" if (r % 7 == 0 and i < 2) else "accepted", "progress": 100,
                "received_at": received, "updated_at": received, "original_filename": f"file{i}.{'mp4' if video else 'jpg'}",
                "claimed_type": "video/mp4" if video else "image/jpeg",
                "detected_type": "video/mp4" if video else "image/jpeg",
                "media_metadata": {"ffprobe": {"duration": 20.0, "codec": "h264", "width": 1280, "height": 720}} if video
                else {"exif": {"Make": "Phone", "Model": "X", "DateTimeOriginal": "2026:11:01 08:10:00"},
                      "gps": {"lat": 51.5, "lon": -0.12}},
            })
            common = {"input_sha256": item_rows[-1]["sha256"], "tool": "ffmpeg" if video else "pillow",
                      "tool_version": "5.1", "argv": ["ffmpeg", "-i", "in", "out"], "created_at": received}
            if video:
                video_ids.append(iid)
                derivs.append({"id": new_id(), "item_id": iid, "kind": "proxy", "blob_key": proxy_key,
                               "mime_type": "video/mp4", "size": len(proxy), "sha256": proxy_sha, **common})
                derivs.append({"id": new_id(), "item_id": iid, "kind": "poster", "blob_key": jpeg_key,
                               "mime_type": "image/jpeg", "size": len(jpeg), "sha256": jpeg_sha, **common})
            else:
                derivs.append({"id": new_id(), "item_id": iid, "kind": "preview", "blob_key": jpeg_key,
                               "mime_type": "image/jpeg", "size": len(jpeg), "sha256": jpeg_sha, **common})
            derivs.append({"id": new_id(), "item_id": iid, "kind": "thumbnail", "blob_key": jpeg_key,
                           "mime_type": "image/jpeg", "size": len(jpeg), "sha256": jpeg_sha, **common})
    events: list[dict[str, Any]] = []
    from sqlmodel import col, select

    with db.read() as session:
        head = session.exec(select(CustodyEvent).order_by(col(CustodyEvent.seq).desc()).limit(1)).first()
    seq, prev = (head.seq, head.hash) if head else (0, "0" * 64)
    for row in item_rows:
        for action in ("item.received", "item.clean", "item.ready"):
            seq += 1
            h = hashlib.sha256(f"bench-{seq}".encode()).hexdigest()  # not a valid chain: a benchmark ledger
            events.append({"seq": seq, "at": row["received_at"], "actor": "worker", "action": action,
                           "subject": f"item:{row['id']}", "report_id": row["report_id"], "item_id": row["id"],
                           "detail": {"sha256": row["sha256"]}, "request_id": None, "prev_hash": prev, "hash": h})
            prev = h
    batch = 5000
    with db.write() as session:
        for table, rows in ((Report, reports), (EvidenceItem, item_rows), (Derivative, derivs), (CustodyEvent, events)):
            for start in range(0, len(rows), batch):
                session.execute(insert(table), rows[start:start + batch])
    settle(db)
    return Seeded(officer_id=officer_id, officer_email=officer_email, report_ids=[r["id"] for r in reports],
                  report_keys=[(r["created_at"], r["id"]) for r in reports], video_ids=video_ids,
                  item_ids=[r["id"] for r in item_rows], proxy_size=len(proxy))


def settle(db: Database) -> None:
    """Settle a bulk load before anything is timed, as a database that has been running
    would be (pgbench vacuums after its load for the same reason). Left to themselves,
    the checkpoint the load set off spreads its writes over the next minutes and
    autovacuum visits the new tables, both during the first loaded measure: audited
    pages (a commit with fsync each) then missed their target in the first shape
    measured and met it in the second, the same server set-up a few minutes later."""
    if db.is_postgresql:
        with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql("VACUUM (ANALYZE)")
            conn.exec_driver_sql("CHECKPOINT")
    else:
        with db.engine.connect() as conn:
            conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")


def session_cookie(settings: Settings, db: Database, store: FilesystemBlobStore, officer_id: str) -> tuple[str, str]:
    from reviewer_ui import sessions
    from reviewer_ui.context import ReviewContext, make_templates
    from storage.models import User

    ctx = ReviewContext(settings=settings, db=db, store=store, templates=make_templates())
    with db.write() as session:
        user = session.get(User, officer_id)
        assert user is not None
        value = sessions.create(ctx, session, user, mfa_passed=True, client_ip="127.0.0.1", user_agent="bench")
    return sessions.cookie_name(settings), value


def upload_token(db: Database, settings: Settings) -> str:
    from storage.links import create_link
    from storage.reports import create_report

    with db.write() as session:
        report = create_report(db, session, "BENCH-UPLOADS", "other", actor="bench")
        issued = create_link(db, session, report, public_url=settings.public_url, expires_in_seconds=86400,
                             max_files=1_000_000, max_bytes=1 << 50, actor="bench")
    return issued.token


# --- PostgreSQL ------------------------------------------------------------------------------


class PgCluster:
    def __init__(self, base: Path) -> None:
        from tests.fixtures.ports import free_port as _free_port
        from tests.fixtures.postgres import _pg_bin

        self.base = base
        self.port = _free_port()
        self.as_root = os.geteuid() == 0
        self.data = base / "data"
        sock = base / "sock"
        sock.mkdir(parents=True)
        if self.as_root:
            subprocess.run(["chown", "-R", "postgres", str(base)], check=True)
            os.chmod(base, 0o755)  # noqa: S103 - the postgres user must traverse it
        self._pg_bin = _pg_bin
        self._run(_pg_bin("initdb"), "-D", str(self.data), "-A", "trust", "-U", "postgres", "--no-sync", "-E", "UTF8")
        opts = (f"-p {self.port} -k {sock} -c listen_addresses=127.0.0.1 -c max_connections=200 "
                "-c shared_buffers=256MB")
        self._run(_pg_bin("pg_ctl"), "-D", str(self.data), "-o", opts, "-l", str(base / "log"), "-w", "start")
        import psycopg

        with psycopg.connect(f"host=127.0.0.1 port={self.port} user=postgres dbname=postgres", autocommit=True) as c:
            c.execute('CREATE DATABASE "bench"')
        self.url = f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/bench"

    def _run(self, *argv: str) -> None:
        cmd = (["runuser", "-u", "postgres", "--"] if self.as_root else []) + list(argv)
        subprocess.run(cmd, check=True, capture_output=True, timeout=120)

    def stop(self) -> None:
        subprocess.run((["runuser", "-u", "postgres", "--"] if self.as_root else [])
                       + [self._pg_bin("pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop"],
                       capture_output=True, timeout=60)


# --- the server process -----------------------------------------------------------------------


def serve(data_dir: str, database_url: str, port: int, staff_port: int, role: str) -> None:
    """The server as ``exhibit serve --role <role>`` runs it, without the worker: ``all``
    (both doors, two processes) or ``public`` (an upload node)."""
    from exhibit.server import serve as exhibit_serve

    settings = Settings(data_dir=Path(data_dir), database_url=database_url, host="127.0.0.1", port=port,
                        staff_port=staff_port, public_url=f"http://127.0.0.1:{port}", max_file_bytes=4 << 30,
                        link_max_bytes=1 << 50, log_level="WARNING",
                        # 32 streams and the measuring clients all come from 127.0.0.1.
                        max_connections_per_address=4096)
    exhibit_serve(settings, role=role, with_worker=False)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Server:
    process: subprocess.Popen[bytes]
    base: str  # the staff door (the public door for a ``public`` node)
    public: str

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def start_server(data_dir: Path, database_url: str, role: str = "all") -> Server:
    port, staff_port = free_port(), free_port()
    proc = subprocess.Popen([sys.executable, __file__, "--serve", str(data_dir), database_url, str(port),
                             str(staff_port), role], cwd=ROOT, stdout=subprocess.DEVNULL)
    public = f"http://127.0.0.1:{port}"
    base = f"http://127.0.0.1:{staff_port}" if role == "all" else public
    deadline = time.monotonic() + 180  # two doors, each importing its app, on a busy machine
    while True:
        if proc.poll() is not None:
            raise RuntimeError("server exited")
        try:
            if all(httpx.get(f"{b}/healthz", timeout=2).status_code == 200 for b in {base, public}):
                return Server(proc, base, public)
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            Server(proc, base, public).stop()  # never leave it running behind us
            raise RuntimeError("server did not start")
        time.sleep(0.05)  # readiness poll


# --- the upload load (a separate process) ------------------------------------------------------


def upload_load(port: int, token: str, streams: int, mbps: float, file_mib: int, stop: Any, sent: Any,
                started: Any) -> None:
    chunk = os.urandom(64 << 10)
    size = file_mib << 20
    interval = len(chunk) / (mbps * 1_000_000)
    boundary = "benchboundary" + secrets.token_hex(8)

    def fields() -> bytes:
        out = []
        for name, value in (("description", "Benchmark upload"), ("declaration", "accepted"),
                            ("declaration_version", "v1")):
            out.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n')
        out.append(f'--{boundary}\r\nContent-Disposition: form-data; name="files"; filename="phone.jpg"\r\n'
                   "Content-Type: image/jpeg\r\n\r\n")
        return "".join(out).encode()

    tail = f"\r\n--{boundary}--\r\n".encode()

    def one_stream() -> None:
        while not stop.is_set():
            head = fields() + JPEG_HEAD
            body_len = len(head) + size - len(JPEG_HEAD) + len(tail)
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
            try:
                conn.putrequest("POST", "/u/submit")
                conn.putheader("Authorization", f"Bearer {token}")
                conn.putheader("Accept", "application/json")
                conn.putheader("Content-Type", f"multipart/form-data; boundary={boundary}")
                conn.putheader("Content-Length", str(body_len))
                conn.endheaders()
                conn.send(head)
                left = size - len(JPEG_HEAD)
                next_at = time.monotonic()
                while left > 0 and not stop.is_set():
                    piece = chunk[:min(left, len(chunk))]
                    conn.send(piece)
                    left -= len(piece)
                    with sent.get_lock():
                        sent.value += len(piece)
                    started.set()
                    next_at += interval
                    delay = next_at - time.monotonic()
                    if delay > 0:
                        time.sleep(delay)  # pacing a phone-speed stream
                if left == 0:
                    conn.send(tail)
                    conn.getresponse().read()
            except OSError:
                pass
            finally:
                conn.close()

    threads = [threading.Thread(target=one_stream, daemon=True) for _ in range(streams)]
    for t in threads:
        t.start()
    stop.wait()
    for t in threads:
        t.join(timeout=30)


# --- measuring -----------------------------------------------------------------------------------


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1))))
    return ordered[k]


def timed(fn: Callable[[], None], n: int) -> list[float]:
    out = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t) * 1000)
    return out


def measure(base: str, cookie: tuple[str, str], seeded: Seeded, n: int, rnd: random.Random,
            db: Database, floor_base: str | None = None) -> dict[str, list[float]]:
    from reviewer_ui.reports import encode_cursor
    from storage import ledger

    client = httpx.Client(base_url=base, cookies={cookie[0]: cookie[1]}, timeout=30, follow_redirects=False)
    probe = httpx.Client(base_url=floor_base or base, timeout=30)
    try:
        def ok(r: Any, *codes: int) -> None:
            if r.status_code not in (codes or (200,)):
                raise RuntimeError(f"{r.request.url} -> {r.status_code}")

        def report_list() -> None:
            choice = rnd.randrange(5)
            if choice == 0:
                url = "/reports"
            elif choice == 1:
                at, rid = seeded.report_keys[rnd.randrange(len(seeded.report_keys))]
                url = f"/reports?after={encode_cursor(at, rid)}"
            elif choice == 2:
                url = f"/reports?kind={rnd.choice(KINDS)}"
            elif choice == 3:
                url = "/reports?waiting=1"
            else:
                url = f"/reports?q=BENCH/{rnd.randrange(len(seeded.report_ids) // 100 or 1):04d}"
            ok(client.get(url))

        def item_page() -> None:
            ok(client.get(f"/items/{rnd.choice(seeded.item_ids)}"))

        def report_page() -> None:
            ok(client.get(f"/reports/{rnd.choice(seeded.report_ids)}"))

        ttfb_seek: list[float] = []
        ttfb_start: list[float] = []

        def range_ttfb(start_of_stream: bool) -> None:
            offset = 0 if start_of_stream else rnd.randrange(1, seeded.proxy_size - 1)
            t = time.perf_counter()
            with client.stream("GET", f"/items/{rnd.choice(seeded.video_ids)}/media/proxy",
                               headers={"Range": f"bytes={offset}-"}) as r:
                ok(r, 206)
                # The first chunk as it arrives. (``iter_raw(1)`` made the client slice that
                # chunk, up to 64 KiB, into one-byte objects before returning the first:
                # about 7 ms of the client's own work, counted as the server's first byte.)
                next(r.iter_raw())
                took = (time.perf_counter() - t) * 1000
            (ttfb_start if start_of_stream else ttfb_seek).append(took)

        def floor() -> None:
            # On a connection of its own, like a load balancer's probe: the public door's
            # /healthz, which touches no database (the staff door's counts the queue).
            ok(probe.get("/healthz"))

        def seek() -> None:
            range_ttfb(False)

        def stream_start() -> None:
            range_ttfb(True)

        for fn in (report_list, item_page, report_page, seek, stream_start, floor):  # warm up
            fn()
        ttfb_seek.clear()
        ttfb_start.clear()
        results = {
            "report list": timed(report_list, n),
            "report page": timed(report_page, n // 2),
            "item page": timed(item_page, n),
        }
        # Seeks and stream starts each with samples enough for a p95 (a stream start used
        # to be one Range request in ten: about 20 samples, whose p95 was their maximum).
        timed(seek, n)
        timed(stream_start, n // 2)
        results["range TTFB (seek)"] = ttfb_seek
        results["range TTFB (stream start, audited)"] = ttfb_start

        def durable_append() -> None:
            with db.write() as session:
                ledger.append(db, session, actor="bench", action="bench.baseline", subject="bench")

        # Baselines from the same run: the server's floor (a request that touches no
        # database: the machine's scheduling and HTTP cost under the same load), and one
        # durable custody event (the commit every audited
        # page view and stream start pays: fsync on SQLite with synchronous=FULL).
        results["baseline: one durable ledger append"] = timed(durable_append, n // 2)
        results["baseline: GET /healthz (no database)"] = timed(floor, n // 2)
        results["_loadavg"] = [os.getloadavg()[0]]
        return results
    finally:
        client.close()
        probe.close()


def measure_in_process(settings: Settings, db: Database, store: FilesystemBlobStore, cookie: tuple[str, str],
                       seeded: Seeded, n: int) -> dict[str, list[float]]:
    """The reviewer app's own service time: the same requests through ASGI in this
    process (no sockets, no uploads), to tell the code's cost from the machine's."""
    from reviewer_ui.app import create_app

    app = create_app(settings, db, store)
    rnd = random.Random(5)

    async def run() -> dict[str, list[float]]:
        out: dict[str, list[float]] = {"report list": [], "item page": [], "range TTFB (seek)": []}
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://bench", cookies={cookie[0]: cookie[1]}) as c:
            for i in range(n + 5):
                t = time.perf_counter()
                r = await c.get("/reports" if i % 2 else f"/reports?kind={rnd.choice(KINDS)}")
                took = (time.perf_counter() - t) * 1000
                assert r.status_code == 200
                if i >= 5:
                    out["report list"].append(took)
                t = time.perf_counter()
                r = await c.get(f"/items/{rnd.choice(seeded.item_ids)}")
                took = (time.perf_counter() - t) * 1000
                assert r.status_code == 200
                if i >= 5:
                    out["item page"].append(took)
                t = time.perf_counter()
                async with c.stream("GET", f"/items/{rnd.choice(seeded.video_ids)}/media/proxy",
                                    headers={"Range": f"bytes={rnd.randrange(1, seeded.proxy_size - 1)}-"}) as resp:
                    assert resp.status_code == 206
                    async for _chunk in resp.aiter_raw():
                        break
                    took = (time.perf_counter() - t) * 1000
                if i >= 5:
                    out["range TTFB (seek)"].append(took)
        return out

    return asyncio.run(run())


@dataclass
class Shape:
    label: str
    note: str
    alone: dict[str, list[float]]
    loaded: dict[str, list[float]]
    upload_mb_s: float


@dataclass
class BackendResult:
    backend: str
    seed_seconds: float
    shapes: list[Shape]
    in_process: dict[str, list[float]]


def measure_loaded(base: str, upload_port: int, cookie: tuple[str, str], seeded: Seeded, token: str,
                   args: argparse.Namespace, rnd: random.Random, db: Database,
                   floor_base: str | None = None) -> tuple[dict[str, list[float]], float]:
    """``measure`` while ``args.uploads`` paced citizen uploads stream into the server
    on ``upload_port``; returns the timings and the uploads' total MB/s meanwhile."""
    ctx = mp.get_context("spawn")
    stop, started = ctx.Event(), ctx.Event()
    sent = ctx.Value("q", 0)
    loader = ctx.Process(target=upload_load, args=(upload_port, token, args.uploads, args.upload_mbps, args.file_mib,
                                                    stop, sent, started), daemon=True)
    loader.start()
    try:
        started.wait(60)
        time.sleep(2)  # let all streams ramp up to their pace
        t0, s0 = time.perf_counter(), sent.value
        loaded = measure(base, cookie, seeded, args.requests, rnd, db, floor_base)
        return loaded, (sent.value - s0) / (time.perf_counter() - t0) / 1e6
    finally:
        stop.set()
        loader.join(timeout=60)


def run_backend(backend: str, args: argparse.Namespace, media: tuple[bytes, bytes]) -> BackendResult:
    tmp = Path(tempfile.mkdtemp(prefix=f"exhibit-review-bench-{backend}-"))
    cluster = None
    server = None
    db: Database | None = None
    try:
        if backend == "postgresql":
            os.chmod(tmp, 0o755)  # noqa: S103 - the postgres user must traverse it
            cluster = PgCluster(tmp / "pg")
            url = cluster.url
        else:
            url = f"sqlite:///{tmp / 'exhibit.db'}"
        data_dir = tmp / "data"
        data_dir.mkdir()
        settings = Settings(data_dir=data_dir, database_url=url)
        upgrade(url)
        db = Database(url)
        store = FilesystemBlobStore(data_dir / "blobs")  # where the server's settings look
        t = time.perf_counter()
        seeded = seed(db, store, args.items, media)
        seed_seconds = time.perf_counter() - t
        print(f"[{backend}] seeded {len(seeded.item_ids):,} items in {len(seeded.report_ids):,} reports "
              f"in {seed_seconds:.1f} s", flush=True)
        cookie = session_cookie(settings, db, store, seeded.officer_id)
        token = upload_token(db, settings)
        in_process = measure_in_process(settings, db, store, cookie, seeded, args.requests // 2)
        print(f"[{backend}] in-process measured", flush=True)
        rnd = random.Random(11)
        shapes: list[Shape] = []
        server = start_server(data_dir, url)
        label = backend
        alone = measure(server.base, cookie, seeded, args.requests, rnd, db, server.public)
        port = int(server.public.rsplit(":", 1)[1])
        loaded, upload_mb_s = measure_loaded(server.base, port, cookie, seeded, token, args, rnd, db, server.public)
        note = "exhibit serve as shipped: the staff door and the public door in two processes"
        shapes.append(Shape(label, note, alone, loaded, upload_mb_s))
        print(f"[{label}] measured alone and loaded ({args.uploads} uploads at {upload_mb_s:.1f} MB/s)", flush=True)
        if backend in args.scale_out:
            upload_node = start_server(data_dir, url, "public")
            try:
                node_port = int(upload_node.public.rsplit(":", 1)[1])
                apart, apart_mb_s = measure_loaded(server.base, node_port, cookie, seeded, token, args, rnd, db,
                                                   server.public)
            finally:
                upload_node.stop()
            shapes.append(Shape(f"{backend} apart", "the uploads went to a second server (another node in "
                                "docker-compose.yml) on the same database", alone, apart, apart_mb_s))
            print(f"[{backend} apart] measured ({apart_mb_s:.1f} MB/s)", flush=True)
        server.stop()
        server = None
        return BackendResult(backend, seed_seconds, shapes, in_process)
    finally:
        if server is not None:
            server.stop()
        if db is not None:
            db.dispose()
        if cluster is not None:
            cluster.stop()
        shutil.rmtree(tmp, ignore_errors=True)


def report(results: list[BackendResult], args: argparse.Namespace) -> None:
    print()
    print(f"Reviewer benchmark: {args.items:,} items, {args.requests} requests per measure, "
          f"{args.uploads} concurrent uploads at {args.upload_mbps} MB/s each for 'loaded'")
    header = f"{'backend':<17} {'measure':<36} {'alone p50':>10} {'alone p95':>10} {'loaded p50':>11} {'loaded p95':>11} {'p95 x':>6}  target"
    print(header)
    print("-" * len(header))
    for res in results:
        for shape in res.shapes:
            for name in shape.alone:
                a, b = shape.alone[name], shape.loaded[name]
                if not a or not b or name.startswith("_"):
                    continue
                target = TARGET_TTFB_MS if "TTFB" in name else TARGET_P95_MS
                worst = max(pct(a, 95), pct(b, 95))
                verdict = "ok" if worst < target else "MISSED"
                if name.startswith("baseline"):
                    verdict = "(baseline, no target)"
                print(f"{shape.label:<17} {name:<36} {pct(a, 50):>8.1f}ms {pct(a, 95):>8.1f}ms {pct(b, 50):>9.1f}ms "
                      f"{pct(b, 95):>9.1f}ms {pct(b, 95) / pct(a, 95):>5.2f}x  <{target:.0f} ms {verdict}")
        for name, values in res.in_process.items():
            print(f"{res.backend:<17} {'in-process ASGI: ' + name:<36} {pct(values, 50):>8.1f}ms {pct(values, 95):>8.1f}ms"
                  "   (the app's own service time: no sockets, no uploads)")
        print(f"{res.backend:<17} (seed {res.seed_seconds:.0f} s; {os.cpu_count()} CPUs)")
        for shape in res.shapes:
            print(f"{shape.label:<17} ({shape.note}; uploads streamed {shape.upload_mb_s:.1f} MB/s in total while "
                  f"loaded; 1-min load average {shape.alone['_loadavg'][0]:.1f} alone, "
                  f"{shape.loaded['_loadavg'][0]:.1f} loaded)")


def main() -> None:
    if len(sys.argv) == 7 and sys.argv[1] == "--serve":
        serve(sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]), sys.argv[6])
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--uploads", type=int, default=32)
    parser.add_argument("--upload-mbps", type=float, default=2.0)
    parser.add_argument("--file-mib", type=int, default=16)
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--scale-out", default="postgresql", type=lambda v: {b.strip() for b in v.split(",") if b.strip()},
                        help="backends also measured with the uploads on a node of their own (empty: none)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        media = make_media(Path(tmp))
    results = []
    for backend in [b.strip() for b in args.backends.split(",") if b.strip()]:
        results.append(run_backend(backend, args, media))
        report(results[-1:], args)  # each backend as soon as it is done
    report(results, args)


if __name__ == "__main__":
    main()
