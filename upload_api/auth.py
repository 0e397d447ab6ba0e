"""Who is uploading: the link exchange, the upload-session cookie, Bearer tokens.

``GET /u/{token}`` swaps the link token for an upload-session cookie and redirects to
``/u/`` so that the token never stays in the address bar, history or a Referer
(SECURITY_CHECKLIST UP-15). The cookie holds an HMAC-signed, expiring reference to the
*link id*, never the token. Scripts may send ``Authorization: Bearer <token>`` instead.

Every /u/ endpoint calls ``current_link``, which re-checks the link in the database on
each request, so revocation and expiry act on the next request (UP-14).
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from typing import TypeVar

import anyio.to_thread
from sqlmodel import Session
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from storage import ledger, links
from storage import throttle as counters
from storage.db import Database
from storage.errors import DomainError, LinkProblem
from storage.models import Report, UploadLink
from upload_api.context import UploadContext
from upload_api.errors import html_errors, status_for
from upload_api.tokens import sign_session, verify_session

log = logging.getLogger("upload_api.auth")

SESSION_SECONDS = 24 * 3600
# How long after its link's end the upload-session cookie still names the link, so that
# the page can say the link has expired (see ``exchange``).
EXPIRED_LINK_NOTICE_SECONDS = 24 * 3600
# Guessing links: after this many failed lookups per client address per window, a bad
# token gets 429 instead of 404 (a good one always opens).
GUESS_LIMIT = 20
GUESS_WINDOW_SECONDS = 600


def cookie_name(ctx: UploadContext) -> str:
    # __Host- binds the cookie to this exact origin, Secure, Path=/ (AC-12).
    return "__Host-exhibit_upload" if ctx.settings.secure_cookies else "exhibit_upload"


class LinkGuard:
    """Failed link look-ups per client address, counted in the database (``storage.throttle``)
    so every process and node shares one allowance.

    Threat: enumerating tokens. 256-bit tokens make guessing hopeless already; past
    ``limit`` failures in ``window`` seconds a bad token is answered 429 and logged, so the
    enumeration is visible. Only failures count and a valid token is always looked up and
    always opens: thousands of citizens share one carrier-NAT address, and one of them
    mistyping links (or an attacker next to them) must not block the others' links. The
    address is the one ``storage.netaddr`` resolved: forwarding headers count only from
    EXHIBIT_TRUSTED_PROXIES, so they cannot be spoofed to dodge the count (AC-15)."""

    def __init__(self, db: Database, secret: bytes, clock: Callable[[], dt.datetime], *,
                 limit: int = GUESS_LIMIT, window: float = GUESS_WINDOW_SECONDS) -> None:
        self.db, self.secret, self.clock = db, secret, clock
        self.limit, self.window = limit, window

    def failed(self, client: str, kind: str = "link") -> bool:
        """Count one failed look-up (``kind``: "link", "api-key") from ``client``; True
        when it is over the limit."""
        now = self.clock()
        key = counters.counter_key(self.secret, f"{kind}-guess", client)
        with self.db.write() as s:
            row = counters.lock(s, [key], now, forget_seconds=int(self.window))[key]
            if (now - row.window_start).total_seconds() > self.window:
                row.failures, row.window_start = 0, now
            counters.fail(row, now)
            return row.failures > self.limit


def link_guard(ctx: UploadContext) -> LinkGuard:
    if ctx.link_guard is None:
        ctx.link_guard = LinkGuard(ctx.db, ctx.secret, ctx.clock)
    return ctx.link_guard


async def guessed_wrong(ctx: UploadContext, request: Request, kind: str) -> bool:
    """Count a failed credential from this request's client (off the event loop); True:
    past the limit, answer 429. Never call it for a credential that was accepted."""
    client = client_address(request)
    over = await anyio.to_thread.run_sync(link_guard(ctx).failed, client, kind)
    if over:
        log.warning("auth.guessing", extra={"client": client, "kind": kind, "request_id": request_id(request)})
    return over


def client_address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def request_id(request: Request) -> str | None:
    value = request.scope.get("state", {}).get("request_id")
    return str(value) if value else None


def bearer_token(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return None


T = TypeVar("T")


def _check(
    ctx: UploadContext, token: str | None, link_id: str | None, then: Callable[[Session, UploadLink], T] | None
) -> tuple[UploadLink, Report, T | None]:
    with ctx.db.read() as session:
        if token is not None:
            link, report = links.check_token(ctx.db, session, token)
        else:
            assert link_id is not None
            link, report = links.check_link_id(ctx.db, session, link_id)
        return link, report, (then(session, link) if then is not None else None)


async def authorise(
    request: Request, ctx: UploadContext, then: Callable[[Session, UploadLink], T] | None = None
) -> tuple[UploadLink, Report, T | None]:
    """The link this request acts for (Bearer token, else the upload-session cookie),
    re-checked in the database on every call, and ``then(session, link)`` run in the
    same read transaction (one thread hop, one connection: the tus hot path). Raises
    ``LinkProblem`` (ERR_NO_SESSION, ERR_LINK_*, ERR_RATE_LIMITED)."""
    token = bearer_token(request)
    if token is None:
        link_id = session_link_id(request, ctx)
        if link_id is None:
            raise LinkProblem("no upload session", code="ERR_NO_SESSION")
        return await anyio.to_thread.run_sync(_check, ctx, None, link_id, then)
    return await _by_token(request, ctx, token, then)


async def _by_token(
    request: Request, ctx: UploadContext, token: str, then: Callable[[Session, UploadLink], T] | None
) -> tuple[UploadLink, Report, T | None]:
    try:
        # Always looked up: a valid token opens whatever others at this address did.
        return await anyio.to_thread.run_sync(_check, ctx, token, None, then)
    except LinkProblem as problem:
        if problem.code == "ERR_LINK_UNKNOWN" and await guessed_wrong(ctx, request, "link"):
            raise LinkProblem("too many attempts", code="ERR_RATE_LIMITED") from problem
        raise


def session_link_id(request: Request, ctx: UploadContext) -> str | None:
    """The link id of the upload-session cookie, without touching the database."""
    value = request.cookies.get(cookie_name(ctx))
    if not value:
        return None
    return verify_session(ctx.secret, value, ctx.clock().timestamp())


async def current_link(request: Request, ctx: UploadContext) -> tuple[UploadLink, Report]:
    """The link (and its report) this request acts for: from a Bearer token, or else the
    upload-session cookie. Raises ``LinkProblem`` (codes ERR_NO_SESSION, ERR_LINK_*,
    ERR_RATE_LIMITED). Re-checked in the database on every call."""
    link, report, _ = await authorise(request, ctx)
    return link, report


def link_problem_page(ctx: UploadContext, problem: LinkProblem) -> HTMLResponse:
    body = ctx.templates.get_template("link_problem.html").render(
        code=problem.code, report_reference=problem.report_reference
    )
    return HTMLResponse(body, status_code=status_for(problem))


def _record_open(ctx: UploadContext, link: UploadLink, rid: str | None) -> None:
    with ctx.db.write() as session:
        ledger.append(
            ctx.db, session, actor=f"citizen:link:{link.id}", action="link.opened",
            subject=f"link:{link.id}", report_id=link.report_id, detail={"link_id": link.id},
            request_id=rid,
        )


def routes(ctx: UploadContext) -> list[BaseRoute]:
    def problem_page(request: Request, error: DomainError) -> Response | None:
        return link_problem_page(ctx, error) if isinstance(error, LinkProblem) else None

    @html_errors(problem_page)
    async def exchange(request: Request) -> Response:
        token = str(request.path_params["token"])
        link, _report, _ = await _by_token(request, ctx, token, None)
        await anyio.to_thread.run_sync(_record_open, ctx, link, request_id(request))
        now = ctx.clock().timestamp()
        # The cookie outlives the link by a day so that a citizen whose link ends while
        # they fill the form is told the truth ("this link has expired", with whom to
        # contact) instead of "open the link again" (issue 17.7). It grants nothing past
        # the link's end: every request re-checks the link in the database (UP-15), and
        # an expired, revoked or used-up link is refused whatever the cookie says.
        expires = int(min(now + SESSION_SECONDS, link.expires_at.timestamp() + EXPIRED_LINK_NOTICE_SECONDS))
        response = RedirectResponse("/u/", status_code=303)
        response.set_cookie(
            cookie_name(ctx),
            sign_session(ctx.secret, link.id, expires),
            max_age=max(0, expires - int(now)),
            path="/",
            secure=ctx.settings.secure_cookies,
            httponly=True,
            samesite="strict",
        )
        return response

    return [Route("/u/{token}", exchange, methods=["GET"])]

