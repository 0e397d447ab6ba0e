"""The public upload app: composition root of ``upload_api``.

``create_app(settings, db, store)`` builds the one ``UploadContext`` and the routes of
every module (links, tus, multipart, receipts, intake, pages). Every response passes
through ``SecurityHeaders``: the headers a public, hostile-facing door needs, set in one
place so that no route can forget them.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import secrets
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from storage.blobs.protocol import BlobStore
from storage.db import Database
from storage.models import utcnow
from storage.netaddr import TrustedProxies, parse_networks
from storage.secrets import load_or_create_secret
from storage.settings import Settings
from upload_api import auth, errors, ingest, intake, multipart, pages, receipts, tus
from upload_api.context import STATIC_DIR, UploadContext, make_templates

log = logging.getLogger("upload_api")

# Threats: XSS through anything we render (no inline script/style at all; hash-wasm needs
# WebAssembly compilation, which 'wasm-unsafe-eval' allows without allowing eval), our
# pages framed by another site (clickjacking), the link token leaking through Referer
# (UP-15), content sniffing of JSON/uploads (VL-04).
CSP = (
    "default-src 'self'; script-src 'self' 'wasm-unsafe-eval'; style-src 'self'; "
    "img-src 'self' data: blob:; media-src 'self' blob:; connect-src 'self'; worker-src 'self' blob:; "
    "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
SECURITY_HEADERS: list[tuple[bytes, bytes]] = [
    (b"referrer-policy", b"no-referrer"),
    (b"x-content-type-options", b"nosniff"),
    (b"content-security-policy", CSP.encode()),
    (b"x-frame-options", b"DENY"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"cross-origin-resource-policy", b"same-origin"),
    (b"permissions-policy", b"camera=(self), microphone=(), geolocation=()"),
]
STATIC_PREFIX = "/u/static/"


class SecurityHeaders:
    """Pure ASGI middleware (no body buffering, so uploads stay streamed): security
    headers on every response, ``Cache-Control: no-store`` on everything but static
    assets (receipts and pages carry citizen data: no shared or browser caching, UP-15/
    VL-01), and a request id (``scope["state"]["request_id"]``, ``X-Request-Id``)."""

    def __init__(self, app: ASGIApp, *, hsts: bool) -> None:
        self.app = app
        self.hsts = hsts

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = secrets.token_hex(8)
        scope.setdefault("state", {})["request_id"] = request_id
        static = scope.get("path", "").startswith(STATIC_PREFIX)

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [
                    (k, v) for k, v in message.get("headers", [])
                    if k.lower() not in _OURS
                ]
                headers.extend(SECURITY_HEADERS)
                headers.append((b"x-request-id", request_id.encode()))
                headers.append((b"cache-control", b"public, max-age=3600" if static else b"no-store"))
                if self.hsts:
                    headers.append((b"strict-transport-security", b"max-age=63072000; includeSubDomains"))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)


_OURS = {k for k, _ in SECURITY_HEADERS} | {b"cache-control", b"x-request-id", b"strict-transport-security"}


def request_id(request: Request) -> str:
    value = request.scope.get("state", {}).get("request_id")
    return str(value) if value else secrets.token_hex(8)


def create_app(
    settings: Settings,
    db: Database,
    store: BlobStore,
    *,
    clock: Callable[[], dt.datetime] | None = None,
    health: dict[str, Any] | None = None,
    secret: bytes | None = None,
    housekeeping_seconds: float | None = None,
) -> Starlette:
    """The upload API. ``secret`` defaults to the file ``settings.secret_key_file``
    (created on first start); ``clock`` to UTC now; ``health`` is a dict the server's
    background services keep up to date, shown by /healthz. ``housekeeping_seconds``:
    expire unfinished uploads that often, in a task of the app's lifespan (``exhibit
    serve`` sets it; None, the default for tests and embedding: no background task)."""
    assert settings.secret_key_file is not None
    ctx = UploadContext(
        settings=settings,
        db=db,
        store=store,
        templates=make_templates(),
        secret=secret if secret is not None else load_or_create_secret(settings.secret_key_file),
        clock=clock or utcnow,
        health=health if health is not None else {},
    )
    return build(ctx, housekeeping_seconds=housekeeping_seconds)


async def housekeeping(ctx: UploadContext, interval: float) -> None:
    """Expire unfinished uploads past their time, every ``interval`` seconds, until
    cancelled. A task on the app's own event loop: the context, its locker and its
    in-flight cache belong to this loop, so no other thread or loop touches them (issue 17
    item 6; it was a thread calling ``asyncio.run`` on them). An upload being written
    right now holds its lock (CF-03) and is skipped until the next round."""
    while True:
        await asyncio.sleep(interval)
        try:
            await ingest.expire_uploads(ctx)
        except Exception:  # the database away for a moment: the next round retries
            log.exception("housekeeping.failed")


def build(ctx: UploadContext, *, housekeeping_seconds: float | None = None) -> Starlette:
    async def healthz(request: Request) -> Response:
        # "ok" and nothing else: the scanner, its signatures and the worker are the staff
        # door's business (issue 11 item 5: which signatures are loaded tells an attacker
        # which samples would pass).
        return JSONResponse({"ok": True})

    # Order matters: specific paths first (``/u/receipt/{t}.json`` before the pages'
    # ``/u/receipt/{t}``), the link exchange ``GET /u/{token}`` last of all.
    routes: list[BaseRoute] = [Route("/healthz", healthz, methods=["GET", "HEAD"])]
    routes += receipts.routes(ctx)
    routes += tus.routes(ctx)
    routes += multipart.routes(ctx)
    routes += intake.routes(ctx)
    routes += pages.routes(ctx)
    routes.append(Mount("/u/static", app=StaticFiles(directory=STATIC_DIR), name="static"))
    routes += auth.routes(ctx)

    @asynccontextmanager
    async def lifespan(app_: Starlette) -> AsyncIterator[None]:
        task: asyncio.Task[None] | None = None
        if housekeeping_seconds is not None:
            task = asyncio.create_task(housekeeping(ctx, housekeeping_seconds), name="upload-housekeeping")
        app_.state.housekeeping = task
        try:
            yield
        finally:
            if task is not None:
                # Cancelled at shutdown: a round cut short leaves every upload either
                # expired (its transaction committed) or open until the next start.
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        # A graceful stop (SIGTERM, a deploy) writes the progress updates still in
        # flight before the loop goes away, instead of dropping them with the process.
        await ingest.settle(ctx)

    # One error path: every handler raises, these turn errors into the one JSON shape
    # (or a citizen's page, for page routes): upload_api.errors.
    app = Starlette(routes=routes, lifespan=lifespan, exception_handlers=errors.EXCEPTION_HANDLERS, middleware=[
        # First: every part below sees the real client address (AC-15).
        Middleware(TrustedProxies, trusted=parse_networks(ctx.settings.trusted_proxies)),
        Middleware(SecurityHeaders, hsts=ctx.settings.secure_cookies),
    ])
    app.state.ctx = ctx
    # UP-15: Starlette's redirect_slashes answers ``GET /u/<token>/`` with a redirect to
    # ``/u/<token>``: the link token echoed in a Location header, into the browser's
    # history, proxies' logs and the next Referer. No path of the public door is reached
    # by adding or removing a slash, so an unmatched path is a plain 404.
    app.router.redirect_slashes = False
    return app
