"""``exhibit serve``: the composition root. Two doors, one per trust level.

* The **public door** (``--role public``): the upload app only (``/u/…``, ``/api/…``,
  ``/healthz`` that says "ok" and nothing else), on ``EXHIBIT_HOST``:``EXHIBIT_PORT``.
  This is what faces the internet. It never needs the ledger signing key; its one
  background duty, expiring unfinished uploads, is a task of the app's lifespan on the
  door's own event loop (``upload_api.app.housekeeping``), cancelled at shutdown.
* The **staff door** (``--role staff``): the reviewer app only, on
  ``EXHIBIT_STAFF_HOST``:``EXHIBIT_STAFF_PORT`` (127.0.0.1 by default), with the detailed
  ``/healthz`` (scanner, signatures, worker, queue). Unless ``--no-worker``, the staff
  process also runs the staff-side background services (``start_staff_services``): the
  processing worker, a supervised clamd, the ledger verifier.
* ``--role all`` (the default, and ``make run``): a small supervisor that starts the two
  doors as two processes and stops both on SIGTERM/SIGINT; if one dies it stops the
  other and exits 3, for the service manager to restart.

Threat answered (SECURITY_CHECKLIST AC-17, issue 11 item 2): the staff UI, ``/login`` and
``/admin`` reachable on the public door. Each door serves only its own app, in its own
process, on its own listener; a path of the other app is a 404 before any app code runs
(``OnlyPaths``), so a staff route added tomorrow cannot leak onto the public door. Each
door runs under a plain ``uvicorn.Server(uvicorn.Config(...))`` with the connection guard
of ``exhibit.guard`` (header deadline, idle keep-alive, per-address and total caps).

Two processes also keep a flood of citizen uploads from slowing officers' pages (they
share no event loop, GIL or thread pool; ``benchmarks/review.py``).
"""

from __future__ import annotations

import asyncio
import json
import logging
import multiprocessing
import multiprocessing.connection
import os
import resource
import signal
import threading
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from storage.blobs import open_store
from storage.blobs.protocol import BlobStore, Store
from storage.db import Database
from storage.migrate import open_current
from storage.settings import Settings

log = logging.getLogger("exhibit.server")

Scope = MutableMapping[str, Any]
ASGIApp = Callable[[Scope, Callable[[], Awaitable[Any]], Callable[[Any], Awaitable[None]]], Awaitable[None]]

ROLES = ("public", "staff", "all")
DOORS = ("public", "staff")
PUBLIC_PREFIXES = ("/u/", "/api/")
PUBLIC_EXACT = ("/u", "/api")
# Each door answers its own: "ok" on the public one, details on the staff one; /readyz
# names parts and ok/failing on the public door, adds details on the staff one.
SHARED = ("/healthz", "/readyz")
# How often the public door expires unfinished uploads past their time (issue 11).
EXPIRY_SECONDS = 60.0
FD_RESERVE = 256  # descriptors kept for the database, the store, clamd and logs


def is_public_path(path: str) -> bool:
    """Whether ``path`` (decoded, as in ``scope["path"]``) belongs to the public app."""
    return path in PUBLIC_EXACT or path.startswith(PUBLIC_PREFIXES)


class OnlyPaths:
    """404 for every path that belongs to the other door (AC-17). The app behind it would
    give its own answer (the staff app redirects unknown paths to its sign-in, telling a
    stranger that a staff UI lives here); this answers the same bare 404 for all of them."""

    def __init__(self, app: ASGIApp, door: str) -> None:
        self.app = app
        self.door = door

    def _allowed(self, path: str) -> bool:
        if path in SHARED:
            return True
        return is_public_path(path) == (self.door == "public")

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and not self._allowed(scope.get("path", "")):
            await send({"type": "http.response.start", "status": 404,
                        "headers": [(b"content-type", b"text/plain; charset=utf-8"), (b"content-length", b"10"),
                                    (b"cache-control", b"no-store"), (b"x-content-type-options", b"nosniff")]})
            await send({"type": "http.response.body", "body": b"Not found."})
            return
        await self.app(scope, receive, send)


class StaffHealth:
    """The staff door's ``/healthz``: the detailed status (scanner and signatures, worker,
    queue) that the public must not see (issue 11 item 5: signature details help an
    attacker time a sample); everything else goes to the staff app."""

    def __init__(self, app: ASGIApp, health: dict[str, Any], db: Database) -> None:
        self.app = app
        self.health = health
        self.db = db

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope.get("path") != "/healthz":
            await self.app(scope, receive, send)
            return
        body = json.dumps({"ok": True, "door": "staff", **self.health, "queue": await _queue(self.db)},
                          default=str).encode()
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                                (b"cache-control", b"no-store"), (b"x-content-type-options", b"nosniff")]})
        await send({"type": "http.response.body", "body": body if scope.get("method") != "HEAD" else b""})


async def _queue(db: Database) -> dict[str, Any]:
    """Jobs by state, for the staff health page."""
    from sqlalchemy import text

    def count() -> dict[str, Any]:
        try:
            with db.read() as session:
                rows = session.exec(text("SELECT state, COUNT(*) FROM job GROUP BY state")).all()  # type: ignore[call-overload]
            return {str(state): int(n) for state, n in rows}
        except Exception as exc:  # health must answer even when the database does not
            return {"error": type(exc).__name__}

    return await asyncio.to_thread(count)


def prepare(settings: Settings) -> tuple[Database, Store]:
    settings.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    # The server never migrates (AU-08): an older schema is refused with a plain instruction.
    db = open_current(settings.database_url)
    store = open_store(settings)
    return db, store


def _raise_fd_limit() -> int:
    """Raise this process's open-file limit to its hard limit (the caps, not the kernel,
    should be what refuses a flood) and return it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard > soft:
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 65536)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass
    return soft


def uvicorn_config(app: Any, settings: Settings, door: str, *, guard: Any | None = None) -> Any:
    """The one ``uvicorn.Config`` of a door (public uvicorn API only)."""
    import uvicorn

    from exhibit.guard import ConnectionGuard, GuardedApp, guarded_protocol
    from exhibit.logs import RequestContext

    if guard is None:
        limit = _raise_fd_limit()
        guard = ConnectionGuard(door=door, per_address=settings.max_connections_per_address,
                                total=max(1, min(settings.max_connections, limit - FD_RESERVE)),
                                header_timeout=float(settings.header_timeout_seconds))
        log.info("serve.limits", extra={
            "door": door, "per_address": guard.per_address, "total": guard.total, "open_files": limit,
            "header_timeout_seconds": guard.header_timeout, "keepalive_timeout_seconds": settings.keepalive_timeout_seconds})
    host, port = (settings.host, settings.port) if door == "public" else (settings.staff_host, settings.staff_port)
    return uvicorn.Config(
        GuardedApp(RequestContext(app), guard), host=host, port=port, http=guarded_protocol(guard),
        log_level=settings.log_level.lower(),
        # Our JSON logging (exhibit.logs), not uvicorn's own handlers.
        log_config=None,
        # Client addresses from X-Forwarded-For are only honoured from a proxy we trust
        # (none by default), so nobody can spoof an address to dodge rate limits (AC-15),
        # or the connection caps.
        proxy_headers=False, server_header=False, date_header=True,
        # No access log: its request line would carry /u/<token> before the exchange
        # redirects it away (DESIGN §7: never a token in a log). The apps log their own
        # events without secrets.
        access_log=False,
        # Idle keep-alive connections close (LD-09); the header deadline is the guard's.
        timeout_keep_alive=max(1, int(settings.keepalive_timeout_seconds)),
        h11_max_incomplete_event_size=64 * 1024,
        backlog=2048, lifespan="on",
    )


def build_door(settings: Settings, db: Database, store: BlobStore, door: str, *,
               health: dict[str, Any], scans: bool = False) -> tuple[ASGIApp, Any]:
    """The ASGI app a door serves, and the upload app's context (for housekeeping).
    ``scans``: this process scans (the staff side runs the worker), so clamd is one of
    the parts its /readyz names."""
    from exhibit.readiness import Readiness, ReadyEndpoint
    from upload_api.app import create_app as create_public_app

    readiness = Readiness(settings, db, store, door, scans=scans or bool(settings.clamd_address))
    if door == "public":
        public = create_public_app(settings, db, store, housekeeping_seconds=EXPIRY_SECONDS)
        return OnlyPaths(ReadyEndpoint(public, readiness), "public"), public.state.ctx
    from reviewer_ui.app import create_app as create_staff_app

    staff = create_staff_app(settings, db, store)
    from exhibit.metrics import MetricsEndpoint, allow_check

    # /metrics and the details of /readyz: staff door only, and only for
    # EXHIBIT_METRICS_ALLOW (exhibit.metrics; AC-17).
    door_app = MetricsEndpoint(ReadyEndpoint(StaffHealth(staff, health, db), readiness, allow_check(settings)),
                               settings, db)
    return OnlyPaths(door_app, "staff"), None


def start_staff_services(settings: Settings, db: Database, store: BlobStore, stop: threading.Event,
                         health: dict[str, Any]) -> Callable[[], None]:
    """THE place where staff-side background services start: the processing worker, a
    supervised clamd and the periodic ledger verifier (it holds the signing key). Only
    the staff role runs them (and ``exhibit worker``), never the public role: the public
    door holds no scanner, no worker and no signing key. Returns the function that stops
    them all.

    Threads, justified: the worker and clamd's supervisor are blocking code (subprocesses,
    Pillow, the database) that must not run on the staff door's event loop; they share
    nothing with it but the health dict. Expiring uploads is not here: it is the public
    app's lifespan task, on the loop that owns the uploads' context."""
    from exhibit.services import start_background_services, start_ledger_watch

    threads = start_background_services(settings, stop, health)
    watch = start_ledger_watch(settings, health)

    def stop_all() -> None:
        stop.set()
        watch.stop()
        for t in threads:
            t.join(timeout=30)

    return stop_all


def run_until_signalled(server: Any) -> None:
    """``server.run()`` that returns on SIGTERM, so the caller's cleanup runs. uvicorn
    re-raises the signal that stopped it once it has shut down; with SIGTERM's default
    action that killed the process before its ``finally``: the worker was not stopped and
    the clamd we started was left running with nobody to stop it."""
    previous = signal.signal(signal.SIGTERM, lambda _signum, _frame: None)
    try:
        server.run()
    finally:
        signal.signal(signal.SIGTERM, previous)


def serve(settings: Settings, *, role: str = "all", with_worker: bool = True, demo: bool = False) -> int:
    """``exhibit serve``. ``with_worker``: the staff role also runs the worker and clamd."""
    if role not in ROLES:
        raise ValueError(f"--role must be one of {', '.join(ROLES)}")
    db, store = prepare(settings)
    description = store.describe_sync()
    log.info("storage.ready", extra={"storage": description})
    if demo:
        from exhibit.demo import ensure_demo

        ensure_demo(settings, db)
    if role == "all":
        db.dispose()  # the supervisor serves nothing; each door opens its own pool
        return supervise(settings, with_worker=with_worker)
    return serve_door(settings, db, store, role, backend=description.get("backend"), with_services=with_worker)


def serve_door(settings: Settings, db: Database, store: BlobStore, door: str, *, backend: object,
               with_services: bool, server_class: Callable[[Any], Any] | None = None) -> int:
    """Serve one door until signalled, then stop what it started."""
    import uvicorn

    if door == "public":
        # The internet-facing process never holds the ledger's signing key: taken over, it
        # must not be able to sign a forged history (AU-06).
        from storage.ledger import forbid_signing_key

        forbid_signing_key()
    health: dict[str, Any] = {"storage": {"backend": backend}}
    stop = threading.Event()
    stop_services: Callable[[], None] = stop.set
    app, _ctx = build_door(settings, db, store, door, health=health, scans=door == "staff" and with_services)
    if door == "staff" and with_services:
        stop_services = start_staff_services(settings, db, store, stop, health)
    host, port = (settings.host, settings.port) if door == "public" else (settings.staff_host, settings.staff_port)
    log.info("serve.door", extra={"door": door, "address": f"http://{host}:{port}", "pid": os.getpid()})
    try:
        run_until_signalled((server_class or uvicorn.Server)(uvicorn_config(app, settings, door)))
    finally:
        stop_services()
        db.dispose()
    return 0


def _door_process(door: str, settings: Settings, with_services: bool) -> None:
    """A child of the supervisor: one door."""
    from exhibit.logs import configure

    configure(settings)
    # Out of the terminal's process group: Ctrl-C reaches the supervisor alone, which
    # stops both doors in order (SIGTERM) instead of racing them.
    os.setpgrp()
    db = Database(settings.database_url)
    store = open_store(settings)
    backend = store.describe_sync().get("backend")
    raise SystemExit(serve_door(settings, db, store, door, backend=backend, with_services=with_services))


def supervise(settings: Settings, *, with_worker: bool) -> int:
    """``--role all``: both doors as two processes. Returns when signalled (0) or when a
    door dies (3: the other is stopped too; the service manager restarts the lot)."""
    spawn = multiprocessing.get_context("spawn")
    stopping = threading.Event()
    wake_r, wake_w = multiprocessing.Pipe(duplex=False)

    def on_signal(signum: int, _frame: Any) -> None:
        stopping.set()
        try:
            wake_w.send(signum)
        except OSError:
            pass

    old = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
    children: dict[str, Any] = {}
    try:
        for door in DOORS:
            process = spawn.Process(target=_door_process, name=f"exhibit-{door}",
                                    args=(door, settings, with_worker and door == "staff"))
            process.start()
            children[door] = process
        print(f"Exhibit public door  http://{settings.host}:{settings.port}  (citizens: /u/…, intake API /api/…)\n"
              f"Exhibit staff door   http://{settings.staff_host}:{settings.staff_port}  "
              "(reviewers and admins; keep it off the internet)", flush=True)
        sentinels = {p.sentinel: door for door, p in children.items()}
        while not stopping.is_set():
            ready = multiprocessing.connection.wait([*sentinels, wake_r])
            for item in ready:
                died = sentinels.get(item) if isinstance(item, int) else None
                if died is not None and not stopping.is_set():
                    log.error("serve.door_died", extra={"door": died, "exitcode": children[died].exitcode})
                    return 3
        return 0
    finally:
        for s, handler in old.items():
            signal.signal(s, handler)
        _stop(children.values())
        wake_r.close()
        wake_w.close()


def _stop(processes: Any) -> None:
    running = [p for p in processes if p.is_alive()]
    for p in running:
        p.terminate()  # SIGTERM: uvicorn finishes in-flight requests
    for p in running:
        p.join(timeout=30)
        if p.is_alive():
            p.kill()
            p.join()


def run_worker_forever(settings: Settings, *, concurrency: int, lanes: list[str] | None = None) -> int:
    from exhibit.services import run_worker_process

    settings.data_dir.mkdir(parents=True, exist_ok=True)
    stop = threading.Event()

    def on_signal(signum: int, _frame: Any) -> None:
        log.info("worker.stopping", extra={"signal": signum})
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    return run_worker_process(settings, concurrency=concurrency, stop=stop, lanes=lanes)
