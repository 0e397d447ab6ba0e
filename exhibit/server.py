"""The all-in-one server (``exhibit serve``): the composition root.

Two ASGI apps of two trust levels, chosen by path (``Dispatcher``): ``/u/…``, ``/api/…``
and ``/healthz`` go to the public upload app; everything else goes to the staff reviewer
app. In a scaled deployment these run as separate services on separate networks
(docker-compose.yml); here they share a port for the embedded default, served by two
processes (``exhibit.handoff``: a staff one and a public one, each connection routed by
its first request) or, with ``EXHIBIT_SERVE_SPLIT=false``, by one.

It also runs the processing worker and a supervised clamd (in the public process).
"""

from __future__ import annotations

import asyncio
import logging
import signal
import threading
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from storage.blobs import open_store
from storage.blobs.protocol import BlobStore
from storage.db import Database
from storage.errors import DomainError
from storage.migrate import SchemaOutOfDate, check_schema
from storage.settings import Settings

log = logging.getLogger("exhibit.server")

Scope = MutableMapping[str, Any]
ASGIApp = Callable[[Scope, Callable[[], Awaitable[Any]], Callable[[Any], Awaitable[None]]], Awaitable[None]]

PUBLIC_PREFIXES = ("/u/", "/api/")
PUBLIC_EXACT = ("/u", "/api", "/healthz")


def is_public_path(path: str) -> bool:
    """Whether ``path`` (decoded, as in ``scope["path"]``) belongs to the public app. The
    split server's parent routes connections with this same rule (``exhibit.handoff``)."""
    return path in PUBLIC_EXACT or path.startswith(PUBLIC_PREFIXES)


class Dispatcher:
    """Route by path prefix to the public or the staff app. Lifespan events go to both."""

    def __init__(self, public: ASGIApp, staff: ASGIApp) -> None:
        self.public = public
        self.staff = staff

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await _lifespan_both(self.public, self.staff, receive, send)
            return
        if is_public_path(scope.get("path", "")):
            await self.public(scope, receive, send)
        else:
            await self.staff(scope, receive, send)


async def _lifespan_both(a: ASGIApp, b: ASGIApp, receive: Any, send: Any) -> None:
    """Run both apps' lifespans: start both, then stop both when the server stops."""
    started: list[asyncio.Queue[Any]] = []
    tasks: list[asyncio.Future[None]] = []
    replies: asyncio.Queue[Any] = asyncio.Queue()
    for app in (a, b):
        inbox: asyncio.Queue[Any] = asyncio.Queue()
        started.append(inbox)

        async def app_send(message: Any) -> None:
            await replies.put(message)

        tasks.append(asyncio.ensure_future(app({"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}},
                                             inbox.get, app_send)))
    message = await receive()  # lifespan.startup
    for inbox in started:
        await inbox.put(message)
    for _ in started:
        reply = await replies.get()
        if reply["type"].endswith(".failed"):
            await send(reply)
            return
    await send({"type": "lifespan.startup.complete"})
    message = await receive()  # lifespan.shutdown
    for inbox in started:
        await inbox.put(message)
    for _ in started:
        await replies.get()
    await asyncio.gather(*tasks, return_exceptions=True)
    await send({"type": "lifespan.shutdown.complete"})


def build_app(settings: Settings, db: Database, store: BlobStore, *, health: dict[str, Any] | None = None) -> Dispatcher:
    from reviewer_ui.app import create_app as create_staff_app
    from upload_api.app import create_app as create_public_app

    public = create_public_app(settings, db, store, health=health)
    staff = create_staff_app(settings, db, store)
    return Dispatcher(public, staff)


def expire_uploads_task(app: Dispatcher) -> Callable[[], object]:
    """Housekeeping: remove unfinished uploads past their expiry (with custody events)."""
    from upload_api.ingest import expire_uploads

    ctx = app.public.state.ctx  # type: ignore[attr-defined]
    return lambda: asyncio.run(expire_uploads(ctx))


def prepare(settings: Settings) -> tuple[Database, BlobStore]:
    settings.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    # The server never migrates: it runs as the runtime role, which owns nothing and
    # cannot (AU-08); `exhibit db upgrade` runs as the owner. An older schema is refused
    # with a plain instruction.
    db = Database(settings.database_url)
    try:
        with db.read() as session:
            check_schema(session.connection())
    except SchemaOutOfDate as exc:
        db.dispose()
        raise DomainError(str(exc), code=exc.code) from None
    store = open_store(settings)
    return db, store


def uvicorn_config(app: Any, settings: Settings) -> Any:
    import uvicorn

    return uvicorn.Config(
        app, host=settings.host, port=settings.port, log_level=settings.log_level.lower(),
        # Client addresses from X-Forwarded-For are only honoured from a proxy we trust
        # (none by default), so nobody can spoof an address to dodge rate limits (AC-15).
        proxy_headers=False, server_header=False, date_header=True,
        # No access log: its request line would carry /u/<token> before the exchange
        # redirects it away (DESIGN §7: never a token in a log). The apps log their own
        # events without secrets.
        access_log=False,
        timeout_keep_alive=30, h11_max_incomplete_event_size=64 * 1024,
    )


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


def serve(settings: Settings, *, with_worker: bool = True, demo: bool = False) -> int:
    db, store = prepare(settings)
    description = asyncio.run(store.describe())
    log.info("storage.ready", extra={"storage": description})
    if demo:
        from exhibit.demo import ensure_demo

        ensure_demo(settings, db)
    # The periodic ledger verifier (it holds the signing key) runs beside the worker, in
    # this process: in the split server that is the parent, which serves no request, so
    # the public door never holds the key (it forbids it, AU-06).
    from exhibit.services import start_ledger_watch

    watch = start_ledger_watch(settings) if with_worker else None
    try:
        if settings.serve_split:
            from exhibit.handoff import serve_split

            db.dispose()  # the parent serves nothing; each child opens its own pool
            return serve_split(settings, with_worker=with_worker, is_public=is_public_path)
        return _serve_one_process(settings, db, store, description, with_worker=with_worker)
    finally:
        if watch is not None:
            watch.stop()


def _serve_one_process(settings: Settings, db: Database, store: BlobStore, description: dict[str, Any], *,
                       with_worker: bool) -> int:
    import uvicorn

    serve_app(settings, db, store, description.get("backend"), with_worker=with_worker, server_class=uvicorn.Server)
    return 0


def serve_app(settings: Settings, db: Database, store: BlobStore, backend: object, *, with_worker: bool,
              server_class: Callable[[Any], Any]) -> None:
    """Build the app, start the worker, clamd and housekeeping when ``with_worker``, serve
    with ``server_class(config)`` until signalled, then stop everything it started."""
    health: dict[str, Any] = {"storage": {"backend": backend}}
    stop = threading.Event()
    threads: list[threading.Thread] = []
    app = build_app(settings, db, store, health=health)
    if with_worker:
        from exhibit.services import start_background_services

        threads = start_background_services(settings, stop, health, [expire_uploads_task(app)])
    try:
        run_until_signalled(server_class(uvicorn_config(app, settings)))
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=30)
        db.dispose()


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
