"""Needs (installed by itself): a throwaway venv with tussi, tuspyserver and uvicorn from PyPI.

Upload throughput: Exhibit's tus and multipart doors against ``durable`` (the baseline,
DESIGN.md §6), a body-discarding ASGI app, tussi and tuspyserver, all on 127.0.0.1, one
run, same machine.

    .venv/bin/python benchmarks/upload.py                # 1 GiB, 8 MiB chunks, 16 x 64 MiB
    .venv/bin/python benchmarks/upload.py --peers none   # without the peers
    .venv/bin/python benchmarks/upload.py --peers /tmp/bench-venv/bin/python

``--peers auto`` (the default) makes the peers' venv in the work directory with uv (the
project's own ``.tools/bin/uv`` or one on PATH) the first time; ``--peers PYTHON`` uses a
Python that has ``tussi``, ``tuspyserver`` and ``uvicorn``; ``--peers none`` skips them.

The target (issue 16 item 4): no server that keeps the receipt hash and the no-loss
guarantee can approach a body-discarding app on this machine, so Exhibit is measured
against ``durable``, a server that hashes (SHA-256) and fdatasyncs each request's bytes
inline before answering, with no framework: at least 0.9x ``durable`` on one 1 GiB stream
and on 16 x 64 MiB, and fewer server CPU-seconds per GiB than tuspyserver, which neither
hashes nor syncs. The last lines say PASS or MISS for each.

Each server is its own process (``upload.py serve KIND``), started fresh per scenario so
its peak RSS (VmHWM) is that scenario's. The client is the same for every server: one
keep-alive connection per upload, bodies sent with ``sendfile`` from a file in the page
cache, so the client costs next to nothing. Prints MB/s (10^6 bytes/s, median of
``--rounds`` interleaved rounds), the ratio to the discard app, and peak server RSS.

The discard app and the peers give context: the ratio to discard shows the price of a
hashed, durable upload on this machine, the peers what other tus servers cost.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
JPEG_HEAD = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00"


# -- servers (run in their own processes) ------------------------------------------------


def minimal_tus_app(sink_for: Any = None) -> Any:
    """Speaks just enough tus (and takes any POST) to be driven like the others. Each
    request's body goes to ``sink_for(name)`` (``write(bytes)``, then ``close()`` before
    the answer), or nowhere."""
    offsets: dict[str, int] = {}
    counter = [0]

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        method, path = scope["method"], scope["path"]
        name = path if method == "PATCH" else f"/files/{counter[0] + 1}"
        sink = sink_for(name) if sink_for is not None else None
        size = 0
        try:
            while True:
                message = await receive()
                body = message.get("body", b"")
                if body and sink is not None:
                    sink.write(body)
                size += len(body)
                if not message.get("more_body"):
                    break
        finally:
            if sink is not None:
                sink.close()
        headers = [(b"tus-resumable", b"1.0.0"), (b"content-length", b"0")]
        if method == "POST" and path.startswith("/files"):
            counter[0] += 1
            offsets[name] = 0
            headers.append((b"location", name.encode()))
            status = 201
        elif method == "PATCH":
            offsets[path] = offsets.get(path, 0) + size
            headers.append((b"upload-offset", str(offsets[path]).encode()))
            status = 204
        else:
            status = 204
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": b""})

    return app


def discard_app() -> Any:
    """Throws every body byte away."""
    return minimal_tus_app()


def durable_app(data_dir: Path) -> Any:
    """The discard app plus the two things the target asks of an upload and the peers
    skip: SHA-256 of every byte and an fdatasync before the answer. No framework, no
    threads, no database: what hashing and durability cost a server on this machine when
    nothing else is done: the baseline Exhibit's target is set against (DESIGN.md §6). It
    hashes, writes and syncs inline on the event loop, one request at a time, which is
    what one core does for concurrent streams too."""
    import hashlib

    data_dir.mkdir(parents=True, exist_ok=True)
    hashes: dict[str, Any] = {}

    class Sink:
        def __init__(self, name: str) -> None:
            self.digest = hashes.setdefault(name, hashlib.sha256())
            self.fd = os.open(data_dir / name.replace("/", "_"), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)

        def write(self, body: bytes) -> None:
            self.digest.update(body)
            written = os.lseek(self.fd, 0, os.SEEK_END)
            os.write(self.fd, body)
            # Writeback started at once, as Exhibit's filesystem store does.
            os.posix_fadvise(self.fd, written, len(body), os.POSIX_FADV_DONTNEED)

        def close(self) -> None:
            try:
                os.fdatasync(self.fd)
            finally:
                os.close(self.fd)

    return minimal_tus_app(Sink)


def exhibit_app(data_dir: Path) -> tuple[Any, dict[str, str]]:
    sys.path.insert(0, str(ROOT))
    from storage import links, reports, submissions
    from storage.blobs import open_store
    from storage.db import Database
    from storage.migrate import upgrade
    from storage.settings import Settings
    from upload_api.app import create_app

    settings = Settings(data_dir=data_dir, max_file_bytes=4 << 30, link_max_bytes=64 << 30, log_level="WARNING")
    data_dir.mkdir(parents=True, exist_ok=True)
    upgrade(settings.database_url)
    db = Database(settings.database_url)
    store = open_store(settings)
    with db.write() as session:
        report = reports.create_report(db, session, "BENCH-1", "other", actor="bench")
        issued = links.create_link(db, session, report, public_url=settings.public_url, expires_in_seconds=86400,
                                   max_files=10_000, max_bytes=64 << 30, actor="bench")
        sub = submissions.create_submission(db, session, issued.link, declaration_accepted=True, actor="bench")
    return (create_app(settings, db, store), settings), {"token": issued.token, "submission": sub.id}


def tussi_app(data_dir: Path) -> Any:
    from tussi import TUSApp
    from tussi.storage import FilesystemStorage

    data_dir.mkdir(parents=True, exist_ok=True)
    tus = TUSApp(FilesystemStorage(data_dir / "uploads"), completed_dir=data_dir / "done", max_size=8 << 30)

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await tus(scope, receive, send)

    return app


def tuspyserver_app(data_dir: Path) -> Any:
    from fastapi import FastAPI
    from tuspyserver import create_tus_router

    app = FastAPI()
    app.include_router(create_tus_router(prefix="files", files_dir=str(data_dir / "files"), max_size=8 << 30))
    return app


def serve(kind: str, port: int, data_dir: Path) -> None:
    import uvicorn

    info: dict[str, str] = {}
    if kind == "discard":
        app = discard_app()
    elif kind == "durable":
        app = durable_app(data_dir / "files")
    elif kind == "exhibit":
        (app, settings), info = exhibit_app(data_dir)
    elif kind == "tussi":
        app = tussi_app(data_dir)
    elif kind == "tuspyserver":
        app = tuspyserver_app(data_dir)
    else:
        raise SystemExit(f"unknown server {kind}")
    sock = socket.socket()
    sock.bind(("127.0.0.1", port))
    print(json.dumps({"port": sock.getsockname()[1], **info}), flush=True)
    if kind == "exhibit":
        # Exhibit's public door as `exhibit serve --role public` configures it: the same
        # uvicorn settings and connection guard (exhibit.server, exhibit.guard).
        from exhibit.server import OnlyPaths, uvicorn_config

        config = uvicorn_config(OnlyPaths(app, "public"), settings, "public")
    else:
        config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off",
                                h11_max_incomplete_event_size=64 * 1024)
    uvicorn.Server(config).run(sockets=[sock])


class Server:
    def __init__(self, kind: str, python: str, workdir: Path) -> None:
        self.kind = kind
        self.dir = Path(tempfile.mkdtemp(prefix=f"{kind}-", dir=workdir))
        env = {k: v for k, v in os.environ.items() if not k.startswith("EXHIBIT_")}
        self.process = subprocess.Popen(
            [python, str(Path(__file__).resolve()), "serve", kind, "--port", "0", "--dir", str(self.dir)],
            stdout=subprocess.PIPE, env=env, cwd=str(self.dir),
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError(f"{kind} server did not start")
        self.info = json.loads(line)
        self.port = int(self.info["port"])
        self._wait_listening()

    def _wait_listening(self) -> None:
        for _ in range(500):
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.01)
        raise RuntimeError("server not listening")

    def peak_rss_mib(self) -> float:
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
        return float("nan")

    def cpu_seconds(self) -> float:
        """User + system CPU the server process (all its threads) has used so far."""
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


# -- client ----------------------------------------------------------------------------


class Connection:
    """HTTP/1.1 keep-alive over a plain socket; bodies go out with sendfile."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buffer = b""

    def request(self, method: str, path: str, headers: dict[str, str], *, fd: int | None = None,
                offset: int = 0, count: int = 0, prefix: bytes = b"", suffix: bytes = b"") -> tuple[int, dict[str, str]]:
        body_len = len(prefix) + count + len(suffix)
        lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", f"Content-Length: {body_len}"]
        lines += [f"{k}: {v}" for k, v in headers.items()]
        self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode() + prefix)
        sent = 0
        while sent < count:
            assert fd is not None
            n = os.sendfile(self.sock.fileno(), fd, offset + sent, count - sent)
            if n == 0:
                raise RuntimeError("sendfile sent nothing")
            sent += n
        if suffix:
            self.sock.sendall(suffix)
        return self._response()

    def _response(self) -> tuple[int, dict[str, str]]:
        while b"\r\n\r\n" not in self.buffer:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise RuntimeError("connection closed")
            self.buffer += chunk
        head, self.buffer = self.buffer.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        headers = {k.strip().lower(): v.strip() for k, v in (line.split(":", 1) for line in lines[1:])}
        if headers.get("transfer-encoding", "").lower() == "chunked":
            while b"0\r\n\r\n" not in self.buffer:
                self.buffer += self.sock.recv(65536)
            self.buffer = self.buffer.split(b"0\r\n\r\n", 1)[1]
        else:
            length = int(headers.get("content-length", "0"))
            while len(self.buffer) < length:
                self.buffer += self.sock.recv(65536)
            self.buffer = self.buffer[length:]
        return status, headers

    def close(self) -> None:
        self.sock.close()


def tus_upload(server: Server, path: Path, size: int, chunk: int) -> None:
    files = "/u/files/" if server.kind == "exhibit" else "/files/"
    auth = {"Authorization": f"Bearer {server.info['token']}"} if server.kind == "exhibit" else {}
    meta = {"filename": "bench.jpg", "filetype": "image/jpeg"}
    if server.kind == "exhibit":
        meta["submission"] = server.info["submission"]
    encoded = ",".join(f"{k} {base64.b64encode(v.encode()).decode()}" for k, v in meta.items())
    conn = Connection(server.port)
    fd = os.open(path, os.O_RDONLY)
    try:
        status, headers = conn.request("POST", files, {**auth, "Tus-Resumable": "1.0.0", "Upload-Length": str(size),
                                                       "Upload-Metadata": encoded})
        if status != 201:
            raise RuntimeError(f"{server.kind}: create -> {status}")
        location = headers["location"]
        if location.startswith("http"):
            location = "/" + location.split("/", 3)[3]
        offset = 0
        while offset < size:
            n = min(chunk, size - offset)
            status, headers = conn.request(
                "PATCH", location, {**auth, "Tus-Resumable": "1.0.0", "Upload-Offset": str(offset),
                                    "Content-Type": "application/offset+octet-stream"},
                fd=fd, offset=offset, count=n)
            if status != 204:
                raise RuntimeError(f"{server.kind}: PATCH at {offset} -> {status}")
            offset += n
    finally:
        os.close(fd)
        conn.close()


def multipart_upload(server: Server, path: Path, size: int) -> None:
    boundary = "----exhibitbench7MA4YWxkTrZu0gW"
    fields = {"declaration": "accepted", "submission": server.info.get("submission", "")}
    prefix = b"".join(
        f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode() for k, v in fields.items()
    ) + (f'--{boundary}\r\nContent-Disposition: form-data; name="files"; filename="bench.jpg"\r\n'
         f"Content-Type: image/jpeg\r\n\r\n").encode()
    suffix = f"\r\n--{boundary}--\r\n".encode()
    auth = {"Authorization": f"Bearer {server.info['token']}"} if server.kind == "exhibit" else {}
    conn = Connection(server.port)
    fd = os.open(path, os.O_RDONLY)
    try:
        status, _ = conn.request("POST", "/u/submit" if server.kind == "exhibit" else "/submit",
                                 {**auth, "Content-Type": f"multipart/form-data; boundary={boundary}",
                                  "Accept": "application/json"},
                                 fd=fd, count=size, prefix=prefix, suffix=suffix)
        if status not in (201, 204):
            raise RuntimeError(f"{server.kind}: multipart -> {status}")
    finally:
        os.close(fd)
        conn.close()


PEER_VERSIONS = ("import importlib.metadata as m; print(', '.join(f'{p} {m.version(p)}' "
                 "for p in ('tussi', 'tuspyserver', 'uvicorn')))")


def peer_python(workdir: Path) -> str:
    """The peers' Python: a venv in ``workdir`` made once with uv from PyPI (never in the
    project's own environment: the peers pull their own framework versions)."""
    venv = workdir / "exhibit-bench-peers"
    python = venv / "bin" / "python"
    if python.exists() and subprocess.run([str(python), "-c", PEER_VERSIONS], capture_output=True).returncode == 0:
        return str(python)
    uv = ROOT / ".tools" / "bin" / "uv"
    uv_cmd = str(uv) if uv.exists() else shutil.which("uv")
    if uv_cmd is None:
        raise SystemExit("the peers need uv (scripts/bootstrap.sh installs it into .tools/), or pass --peers none")
    print(f"making the peers' venv at {venv} (tussi, tuspyserver, uvicorn from PyPI)")
    subprocess.run([uv_cmd, "venv", "-q", "--python", sys.executable, str(venv)], check=True)
    subprocess.run([uv_cmd, "pip", "install", "-q", "--python", str(python), "tussi", "tuspyserver", "uvicorn"],
                   check=True)
    return str(python)


def make_file(path: Path, size: int) -> None:
    if path.exists() and path.stat().st_size == size:
        return
    with open(path, "wb") as f:
        f.write(JPEG_HEAD)
        left = size - len(JPEG_HEAD)
        block = os.urandom(64 << 20)
        while left > 0:
            n = min(left, len(block))
            f.write(block[:n])
            left -= n


def run(kind: str, python: str, workdir: Path, scenario: str, path: Path, size: int, chunk: int,
        concurrent: int = 1) -> tuple[float, float, float]:
    """(MB/s, peak RSS MiB, server CPU seconds per GiB received)."""
    server = Server(kind, python, workdir)
    try:
        cpu_before = server.cpu_seconds()
        start = time.perf_counter()
        if scenario == "tus":
            if concurrent == 1:
                tus_upload(server, path, size, chunk)
            else:
                errors: list[BaseException] = []

                def one() -> None:
                    try:
                        tus_upload(server, path, size, chunk)
                    except BaseException as exc:
                        errors.append(exc)

                threads = [threading.Thread(target=one) for _ in range(concurrent)]
                for t in threads:
                    t.start()
                for t in threads:
                    t.join()
                if errors:
                    raise errors[0]
        else:
            multipart_upload(server, path, size)
        elapsed = time.perf_counter() - start
        cpu = (server.cpu_seconds() - cpu_before) / (size * concurrent / (1 << 30))
        return size * concurrent / elapsed / 1e6, server.peak_rss_mib(), cpu
    finally:
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="cmd")
    s = sub.add_parser("serve")
    s.add_argument("kind")
    s.add_argument("--port", type=int, default=0)
    s.add_argument("--dir", type=Path, required=True)
    parser.add_argument("--size", type=int, default=1 << 30)
    parser.add_argument("--chunk", type=int, default=8 << 20)
    parser.add_argument("--concurrent", type=int, default=16)
    parser.add_argument("--concurrent-size", type=int, default=64 << 20)
    parser.add_argument("--peers", default="auto",
                        help="auto (make a venv with uv), none, or a Python with tussi, tuspyserver and uvicorn")
    parser.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()))
    parser.add_argument("--rounds", type=int, default=3,
                        help="every server runs once per round, interleaved; the median is reported")
    args = parser.parse_args()
    if args.cmd == "serve":
        serve(args.kind, args.port, args.dir)
        return

    ours = sys.executable
    args.workdir.mkdir(parents=True, exist_ok=True)
    big = args.workdir / f"exhibit-bench-{args.size}.bin"
    small = args.workdir / f"exhibit-bench-{args.concurrent_size}.bin"
    make_file(big, args.size)
    make_file(small, args.concurrent_size)
    servers = [("discard", ours), ("durable", ours), ("exhibit", ours)]
    peers = peer_python(args.workdir) if args.peers == "auto" else None if args.peers == "none" else args.peers
    if peers:
        servers += [("tussi", peers), ("tuspyserver", peers)]
        print("peers: " + subprocess.run([peers, "-c", PEER_VERSIONS], capture_output=True, text=True,
                                         check=True).stdout.strip())
    else:
        print("peers skipped (--peers none)")
    print(f"file {args.size / (1 << 20):.0f} MiB, tus chunks {args.chunk / (1 << 20):.0f} MiB; "
          f"concurrent {args.concurrent} x {args.concurrent_size / (1 << 20):.0f} MiB")
    samples: dict[tuple[str, str], list[tuple[float, float, float]]] = {}
    # Interleaved rounds: a machine whose load drifts (shared CI, other jobs) hits every
    # server alike, and the median of each is compared.
    for _round in range(args.rounds):
        for scenario in ("tus", "multipart", "tus-concurrent"):
            for kind, python in servers:
                if scenario == "multipart" and kind not in ("discard", "durable", "exhibit"):
                    continue
                if scenario == "tus-concurrent":
                    sample = run(kind, python, args.workdir, "tus", small, args.concurrent_size, args.chunk,
                                 args.concurrent)
                else:
                    sample = run(kind, python, args.workdir, scenario, big, args.size, args.chunk)
                samples.setdefault((scenario, kind), []).append(sample)
    # Flat memory: the same upload at 1/16 of the size, for the peak RSS only.
    small_rss = run("exhibit", ours, args.workdir, "tus", small, args.concurrent_size, args.chunk)[1]
    print(f"load average at the end: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    results = {key: (statistics.median(v[0] for v in values), max(v[1] for v in values),
                     statistics.median(v[2] for v in values))
               for key, values in samples.items()}
    # CPU s/GiB is what the server spent per GiB received, whatever the machine's load:
    # the figure to compare when other work shares the cores.
    # The spread of the rounds beside the median: on a shared or noisy machine (a VM whose
    # host or kernel steals a core now and then) one median hides how far runs disagree.
    print(f"{'scenario':<16}{'server':<13}{'MB/s':>9}{'rounds min-max':>17}{'x discard':>11}"
          f"{'peak RSS MiB':>14}{'CPU s/GiB':>11}")
    for (scenario, kind), (rate, rss, cpu) in results.items():
        base = results[(scenario, "discard")][0]
        rates = [v[0] for v in samples[(scenario, kind)]]
        spread = f"{min(rates):.0f}-{max(rates):.0f}"
        print(f"{scenario:<16}{kind:<13}{rate:>9.1f}{spread:>17}{rate / base:>11.2f}{rss:>14.1f}{cpu:>11.2f}")
    print("target: exhibit >= 0.9 x durable (sha256 + fdatasync inline, no framework)")
    for scenario in ("tus", "tus-concurrent", "multipart"):
        ratio = results[(scenario, "exhibit")][0] / results[(scenario, "durable")][0]
        print(f"  {scenario:<16} exhibit / durable = {ratio:.2f}  {'PASS' if ratio >= 0.9 else 'MISS'}")
    if ("tus", "tuspyserver") in results:
        print("target: exhibit CPU s/GiB < tuspyserver's (which neither hashes nor syncs)")
        for scenario in ("tus", "tus-concurrent"):
            mine, theirs = results[(scenario, "exhibit")][2], results[(scenario, "tuspyserver")][2]
            print(f"  {scenario:<16} exhibit {mine:.2f} vs tuspyserver {theirs:.2f} CPU s/GiB  "
                  f"{'PASS' if mine < theirs else 'MISS'}")
    for scenario in ("tus", "tus-concurrent"):
        ours_rate = results[(scenario, "exhibit")][0]
        for peer in ("tussi", "tuspyserver"):
            if (scenario, peer) in results:
                print(f"{scenario}: exhibit / {peer} = {ours_rate / results[(scenario, peer)][0]:.2f}")
    print(f"exhibit peak RSS: {results[('tus', 'exhibit')][1]:.1f} MiB for {args.size >> 20} MiB, "
          f"{small_rss:.1f} MiB for {args.concurrent_size >> 20} MiB")


if __name__ == "__main__":
    main()
