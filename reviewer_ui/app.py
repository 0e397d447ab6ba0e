"""The staff app: ``create_app(settings, db, store, *, clock=None) -> Starlette``.

The composition root of reviewer_ui. Builds the ``ReviewContext`` and wraps the routes
(sign-in and MFA from ``auth``, admin pages from ``admin``, everything about reports and
evidence from ``casework``) in the staff middleware (``reviewer_ui.middleware``): security
headers and a request id on every response, server-side sessions, CSRF on every
state-changing request.

Exceptions any handler may raise (see ``permissions``):

* ``permissions.LoginRequired`` -> 303 to /login for pages, 401 for anything else;
* ``permissions.Denied``        -> ``permissions.deny``: the uniform 404 + access.denied;
* ``audit.AuditUnavailable``    -> 503 (fail closed);
* ``middleware.SessionStoreUnavailable`` -> 503 (AC-16): raised by the session check in a
  handler's first thread hop (``ReviewContext.run_sync``);
* anything else                 -> a generic 500 page with the request id, no details
  (SECURITY_CHECKLIST VL-09).
"""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy.exc import OperationalError
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Mount
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp

from reviewer_ui import account, admin, audit_desk, auth, casework, permissions, share_receipts
from reviewer_ui.audit import AuditUnavailable
from reviewer_ui.context import STATIC_DIR, Clock, ReviewContext, make_templates
from reviewer_ui.middleware import CSRF, SecurityHeaders, Sessions, SessionStoreUnavailable
from storage.blobs.protocol import BlobStore
from storage.db import Database, is_transient
from storage.models import utcnow
from storage.netaddr import TrustedProxies, parse_networks
from storage.secrets import load_or_create_secret
from storage.settings import Settings

log = logging.getLogger("exhibit.reviewer")


class ReviewerApp(Starlette):
    """Starlette with the staff middleware around EVERYTHING, Starlette's own error
    middleware included, so that even a 500 carries no-store, the CSP and nosniff."""

    ctx: ReviewContext

    def build_middleware_stack(self) -> ASGIApp:
        inner = super().build_middleware_stack()
        ctx = self.state.ctx
        app = SecurityHeaders(Sessions(CSRF(inner, ctx), ctx), hsts=ctx.settings.secure_cookies)
        # Outermost: every part below sees the real client address (AC-15).
        return TrustedProxies(app, parse_networks(ctx.settings.trusted_proxies))


def create_app(settings: Settings, db: Database, store: BlobStore, *, clock: Clock | None = None) -> Starlette:
    assert settings.secret_key_file is not None
    ctx = ReviewContext(
        settings=settings, db=db, store=store, templates=make_templates(), clock=clock or utcnow,
        secret=load_or_create_secret(settings.secret_key_file),
    )
    routes: list[BaseRoute] = [
        *auth.routes(ctx),
        *admin.routes(ctx),
        *account.routes(ctx),
        *casework.routes(ctx),
        *audit_desk.routes(),
        *share_receipts.routes(),
        *auth.fallback_routes(ctx),
        Mount("/static", app=StaticFiles(directory=str(STATIC_DIR)), name="static"),
    ]

    async def login_required(request: Request, exc: Exception) -> Response:
        accept = request.headers.get("accept", "*/*")
        if request.method in ("GET", "HEAD") and ("text/html" in accept or "*/*" in accept):
            state = request.scope.get("state", {})
            if state.get("password_change_user") is not None:
                return RedirectResponse(account.PATH, status_code=303)  # a one-time password first
            pending = state.get("pending_user") is not None
            return RedirectResponse("/mfa" if pending else "/login", status_code=303)
        return PlainTextResponse("Sign in first.", status_code=401)

    async def denied(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, permissions.Denied)
        return await permissions.deny(request, exc.subject, report_id=exc.report_id, item_id=exc.item_id,
                                      reason=exc.reason)

    async def audit_unavailable(request: Request, exc: Exception) -> Response:
        return PlainTextResponse("The audit trail is unavailable, so this action was not performed. "
                                 f"Reference {request.state.request_id}.", status_code=503)

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        if exc.status_code == 404:
            await ctx.check_session()  # the page shows who is signed in and their CSRF token
            return permissions.not_found_response(request)
        return PlainTextResponse(exc.detail, status_code=exc.status_code, headers=exc.headers)

    async def server_error(request: Request, exc: Exception) -> Response:
        rid = request.scope.get("state", {}).get("request_id", "")
        log.error("reviewer.error", extra={"request_id": rid, "error": type(exc).__name__})
        return PlainTextResponse(f"Something went wrong. Reference {rid}.", status_code=500)

    async def session_store_unavailable(request: Request, exc: Exception) -> Response:
        return PlainTextResponse("Exhibit is unavailable. Try again shortly.", status_code=503)

    async def database_unavailable(request: Request, exc: Exception) -> Response:
        # The database is busy or out of reach: a passing fault, answered 503 with
        # Retry-After (not a 500 "something went wrong"); the driver's words stay in the
        # log (VL-09). Nothing half-done is kept: the transaction rolled back.
        if not is_transient(exc):
            raise exc  # a bug, not a passing fault: the 500 page
        rid = request.scope.get("state", {}).get("request_id", "")
        log.error("reviewer.database_unavailable", extra={"request_id": rid, "error": type(exc).__name__})
        return PlainTextResponse("Exhibit is busy or briefly unavailable. Try again in a few seconds.",
                                 status_code=503, headers={"Retry-After": "5"})

    handlers: dict[Any, Any] = {
        SessionStoreUnavailable: session_store_unavailable,
        OperationalError: database_unavailable,
        permissions.LoginRequired: login_required,
        permissions.Denied: denied,
        AuditUnavailable: audit_unavailable,
        HTTPException: http_error,
        500: server_error,
    }
    app = ReviewerApp(routes=routes, exception_handlers=handlers, debug=False)
    app.state.ctx = ctx
    app.ctx = ctx
    return app
