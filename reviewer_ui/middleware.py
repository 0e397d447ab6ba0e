"""ASGI middleware of the staff app, outermost first:

1. ``SecurityHeaders`` - a request id, and the staff security headers on EVERY response,
   error pages included (it wraps Starlette's own error middleware; SECURITY_CHECKLIST
   VL-01, VL-03, VL-04, VL-05).
2. ``Sessions`` - reads the cookies; does no database work itself. A request without a
   session cookie is anonymous at once: it gets a pre-session cookie that keys its CSRF
   token. A request with one is checked in the handler's own thread hop:
   ``ReviewContext.run_sync`` runs ``PendingSession.resolve`` first (the first hop of the
   request; later hops find it done), which finds the server-side session behind the
   cookie and puts ``user`` (signed in, MFA passed), ``pending_user`` (password passed,
   MFA pending), ``password_change_user`` (both passed, but the password is a one-time
   one), ``staff_session`` and ``csrf_token`` into ``scope["state"]``. One thread hop per
   page or video seek, whatever the path; a handler that never hops sees nobody signed in
   (fail closed), and the cookie changes (a new pre-session cookie, clearing a stale
   session cookie) go out with the response once the check has run.
3. ``CSRF`` - every request that is not GET/HEAD/OPTIONS must carry the synchroniser
   token of its session (form field ``csrf_token`` or header ``X-CSRF-Token``) and, when
   the browser says where it comes from (``Origin``/``Sec-Fetch-Site``), come from this
   origin (AC-06). Without a session cookie the token is compared at once; with one, the
   expected token is in the session row, so this middleware runs the request's session
   check (one thread hop, the handler's hops then find it done) before the handler sees
   a byte of the body. Pure ASGI (no BaseHTTPMiddleware) so media streams pass
   through untouched.
"""

from __future__ import annotations

import hmac
import logging
import secrets
import threading
from collections.abc import Awaitable, Callable, MutableMapping
from http.cookies import CookieError, SimpleCookie
from typing import Any
from urllib.parse import parse_qs, urlsplit

import anyio.to_thread
from sqlalchemy.exc import SQLAlchemyError
from starlette.datastructures import MutableHeaders
from starlette.responses import PlainTextResponse, Response

from reviewer_ui import sessions
from reviewer_ui.context import PENDING, ReviewContext

log = logging.getLogger("exhibit.reviewer")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
REFUSED_TEXT = "This form has expired or did not come from Exhibit. Go back, reload the page and try again."
# Largest urlencoded form body the CSRF check buffers to find the token; reviewer forms
# (notes up to 10,000 characters) are far below it. Larger bodies must send the header.
MAX_FORM_BYTES = 256 << 10

# No inline script or style anywhere (every script and stylesheet is a file under
# /static/); images may be data: URIs (the TOTP enrolment QR code, link QR codes).
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
       "media-src 'self' blob:; connect-src 'self'; font-src 'self'; form-action 'self'; "
       "frame-ancestors 'none'; base-uri 'none'; object-src 'none'")

STATIC_HEADERS: tuple[tuple[str, str], ...] = (
    # Evidence pages must never be kept by a browser or a proxy cache (VL-01).
    ("cache-control", "no-store"),
    ("pragma", "no-cache"),
    ("x-content-type-options", "nosniff"),
    ("referrer-policy", "no-referrer"),
    ("x-frame-options", "DENY"),
    ("cross-origin-opener-policy", "same-origin"),
    # Set on every response, media included: another site cannot embed our images or
    # video with the officer's cookies (VL-05).
    ("cross-origin-resource-policy", "same-origin"),
    ("permissions-policy", "camera=(), microphone=(), geolocation=(), payment=(), usb=()"),
)


def _state(scope: Scope) -> dict[str, Any]:
    state: dict[str, Any] = scope.setdefault("state", {})
    return state


class SecurityHeaders:
    def __init__(self, app: ASGIApp, *, hsts: bool) -> None:
        self.app = app
        self.hsts = hsts

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = secrets.token_hex(12)  # ours, never taken from the client (log forging)
        _state(scope)["request_id"] = request_id

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in STATIC_HEADERS:
                    headers[name] = value
                # A handler may set a STRICTER policy (e.g. `sandbox` on raw media); the
                # default applies to everything else.
                if "content-security-policy" not in headers:
                    headers["content-security-policy"] = CSP
                if self.hsts:
                    headers["strict-transport-security"] = "max-age=31536000; includeSubDomains"
                headers["x-request-id"] = request_id
            await send(message)

        await self.app(scope, receive, send_with_headers)


def _cookies(scope: Scope) -> dict[str, str]:
    raw = b"; ".join(v for k, v in scope.get("headers", []) if k == b"cookie").decode("latin-1")
    jar: SimpleCookie = SimpleCookie()
    try:
        jar.load(raw)
    except CookieError:  # a malformed Cookie header is just "no cookies"
        return {}
    return {k: m.value for k, m in jar.items()}


def _header(scope: Scope, name: bytes) -> str | None:
    for k, v in scope.get("headers", []):
        if k == name:
            return str(v.decode("latin-1"))
    return None


def client_ip(scope: Scope) -> str:
    """The client address: the TCP peer, or for a peer in EXHIBIT_TRUSTED_PROXIES what the
    proxy says (``storage.netaddr.TrustedProxies`` put it in the scope). Forwarding headers
    are never read here, so a client cannot pick its own throttling bucket or audit
    address (AC-15)."""
    client = scope.get("client")
    return str(client[0]) if client else "unknown"



class SessionStoreUnavailable(Exception):
    """The session store could not be read: nobody is let in (AC-16); the app answers 503."""


class CSRFRefused(Exception):
    """The session check found the request's CSRF token wrong (AC-06); the answer is 403."""


def _apply(ctx: ReviewContext, state: dict[str, Any], cookies: dict[str, str], value: str,
           loaded: sessions.Loaded | None) -> tuple[str | None, bool]:
    """Put what the session says into ``state``; return the cookies to change: a new
    pre-session value (anonymous visitors) and whether to clear a stale session cookie."""
    set_pre: str | None = None
    clear_stale = bool(value) and loaded is None
    if loaded is not None:
        state["staff_session"] = loaded.row
        state["csrf_token"] = loaded.row.csrf_token
        if loaded.row.mfa_passed and loaded.user.must_change_password:
            # A one-time password: not signed in until its owner has chosen their own
            # (reviewer_ui.account); every page but that one sends them there.
            state["password_change_user"] = loaded.user
        elif loaded.row.mfa_passed:
            state["user"] = loaded.user
        else:
            state["pending_user"] = loaded.user
    else:
        pre = cookies.get(sessions.pre_cookie_name(ctx.settings), "")
        if not pre or len(pre) > 100:
            pre = sessions.new_cookie_value()
            set_pre = pre
        state["pre_cookie"] = pre
        state["csrf_token"] = sessions.pre_csrf_token(ctx.secret, pre)
    return set_pre, clear_stale


def _load(ctx: ReviewContext, value: str) -> sessions.Loaded | None:
    try:
        return sessions.load(ctx, value) if value else None
    except SQLAlchemyError as exc:
        # The session store is unreachable: nobody is let in, and the answer is a plain
        # 503 with no details (fail closed, SECURITY_CHECKLIST AC-16, VL-09).
        log.error("session.store_unavailable", extra={"error": type(exc).__name__})
        raise SessionStoreUnavailable() from exc


class PendingSession:
    """The session check of one request with a session cookie, waiting for the handler's
    first thread hop (``ReviewContext.run_sync`` calls ``resolve``; blocking, idempotent,
    thread-safe). Until it has run, ``scope["state"]`` says nobody is signed in and the
    CSRF token is empty: a handler that does not hop sees nobody (fail closed)."""

    def __init__(self, ctx: ReviewContext, scope: Scope, cookies: dict[str, str], value: str) -> None:
        self.ctx = ctx
        self.state = _state(scope)
        self.cookies = cookies
        self.value = value
        self.done = False
        # Set by the CSRF middleware for a request that is not GET/HEAD/OPTIONS: the token
        # it carried, compared with the session's once that is read.
        self.csrf_required = False
        self.csrf_given: str | None = None
        self.refused = False
        self.failed = False
        self.cookie_changes: tuple[str | None, bool] = (None, False)
        self._lock = threading.Lock()

    @property
    def needed(self) -> bool:
        """Must ``resolve`` run (again) before anything of this request reads storage?"""
        return not self.done or self.refused

    def resolve(self) -> None:
        with self._lock:
            if self.failed:
                raise SessionStoreUnavailable()
            if not self.done:
                try:
                    loaded = _load(self.ctx, self.value)
                except SessionStoreUnavailable:
                    self.failed = True  # nobody is let in, for the rest of this request (AC-16)
                    raise
                self.cookie_changes = _apply(self.ctx, self.state, self.cookies, self.value, loaded)
                self.done = True
                if self.csrf_required and not _token_ok(str(self.state.get("csrf_token") or ""), self.csrf_given):
                    self.refused = True
                    # A refused request runs as nobody, even if a handler caught the
                    # refusal and carried on (AC-06).
                    for key in ("user", "pending_user", "password_change_user", "staff_session"):
                        self.state[key] = None
            if self.refused:
                raise CSRFRefused()


def _token_ok(expected: str, given: str | None) -> bool:
    return bool(expected) and given is not None and hmac.compare_digest(given.encode(), expected.encode())


def _set_cookies(message: Message, settings: Any, set_pre: str | None, clear_stale: bool) -> None:
    carrier = Response()
    if set_pre is not None:
        sessions.set_cookie(carrier, settings, sessions.pre_cookie_name(settings), set_pre)
    if clear_stale:
        sessions.clear_cookie(carrier, settings, sessions.cookie_name(settings))
    headers = MutableHeaders(scope=message)
    already = {v.split("=", 1)[0] for k, v in headers.items() if k == "set-cookie"}
    for k, v in carrier.raw_headers:
        if k == b"set-cookie" and v.decode("latin-1").split("=", 1)[0] not in already:
            headers.append("set-cookie", v.decode("latin-1"))


class Sessions:
    def __init__(self, app: ASGIApp, ctx: ReviewContext) -> None:
        self.app = app
        self.ctx = ctx

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        settings = self.ctx.settings
        state = _state(scope)
        state["user"] = None
        state["pending_user"] = None
        state["password_change_user"] = None
        state["staff_session"] = None
        if scope.get("path", "").startswith("/static/") and scope["method"] in SAFE_METHODS:
            # Stylesheets and scripts are the same for everyone: no session lookup, so a
            # page's assets cost no database reads.
            state["csrf_token"] = ""
            await self.app(scope, receive, send)
            return
        cookies = _cookies(scope)
        value = cookies.get(sessions.cookie_name(settings), "")
        if not value:
            # No session cookie: anonymous, decided without the database.
            set_pre, _ = _apply(self.ctx, state, cookies, "", None)
            if set_pre is None:
                await self.app(scope, receive, send)
                return

            async def send_with_cookie(message: Message) -> None:
                if message["type"] == "http.response.start":
                    _set_cookies(message, settings, set_pre, False)
                await send(message)

            await self.app(scope, receive, send_with_cookie)
            return
        # A session cookie: checked in the handler's own thread hop (``PendingSession``),
        # so that a page or a video seek costs one hop and one pooled connection, not two;
        # under upload load each hop is a wait for a CPU (benchmarks/review.py). Nothing
        # is read from the session's report or item before the check has run.
        state["csrf_token"] = ""
        pending = PendingSession(self.ctx, scope, cookies, value)

        async def send_resolved(message: Message) -> None:
            if message["type"] == "http.response.start" and pending.done:
                # Checked: apply its cookie changes. Unchecked (an answer that never
                # looked at the session, e.g. an unknown media kind): leave the cookies
                # for the next page to sort out.
                set_pre, clear_stale = pending.cookie_changes
                if set_pre is not None or clear_stale:
                    _set_cookies(message, settings, set_pre, clear_stale)
            await send(message)

        token = PENDING.set(pending)
        try:
            await self.app(scope, receive, send_resolved)
        finally:
            PENDING.reset(token)


def pending_of() -> PendingSession | None:
    """The session check of the request being served (``ReviewContext.run_sync``'s
    ``PENDING``, which ``Sessions`` set around the inner middleware and the handler) if it
    has not run yet, else ``None``."""
    pending = PENDING.get()
    return pending if isinstance(pending, PendingSession) and not pending.done else None


def _same_origin(scope: Scope, origin: str, public_url: str) -> bool:
    parts = urlsplit(origin)
    if not parts.scheme or not parts.netloc:
        return False  # includes the literal "null" of sandboxed/opaque origins
    host = _header(scope, b"host") or ""
    scheme = scope.get("scheme", "http")
    own = {f"{scheme}://{host}".lower()}
    pub = urlsplit(public_url)
    if pub.scheme and pub.netloc:
        own.add(f"{pub.scheme}://{pub.netloc}".lower())
    return f"{parts.scheme}://{parts.netloc}".lower() in own


class CSRF:
    def __init__(self, app: ASGIApp, ctx: ReviewContext) -> None:
        self.app = app
        self.ctx = ctx

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in SAFE_METHODS:
            await self.app(scope, receive, send)
            return
        state = _state(scope)
        # 1. Where does it come from? Browsers send Origin on every cross-site POST and
        #    Sec-Fetch-Site on every request; a mismatch is refused before reading a byte.
        origin = _header(scope, b"origin")
        fetch_site = _header(scope, b"sec-fetch-site")
        # Under our own `Referrer-Policy: no-referrer` browsers serialise the Origin of a
        # same-origin form POST as "null" (Fetch spec); Sec-Fetch-Site still says where it
        # came from, and the token below is still required.
        if origin == "null" and fetch_site == "same-origin":
            origin = None
        if origin is not None and not _same_origin(scope, origin, self.ctx.settings.public_url):
            await self._refuse(scope, receive, send, "origin")
            return
        if fetch_site is not None and fetch_site not in ("same-origin", "none"):
            await self._refuse(scope, receive, send, "fetch-site")
            return
        # 2. The synchroniser token (the cross-site check above alone does not cover old
        #    browsers or same-site subdomains).
        expected = str(state.get("csrf_token") or "")
        given = _header(scope, b"x-csrf-token")
        body: bytes | None = None
        if given is None:
            ctype = (_header(scope, b"content-type") or "").split(";")[0].strip().lower()
            if ctype == "application/x-www-form-urlencoded":
                body = await _read_body(receive, MAX_FORM_BYTES)
                if body is None:
                    await self._refuse(scope, receive, send, "too-large", status=413)
                    return
                values = parse_qs(body.decode("latin-1"), keep_blank_values=True).get("csrf_token", [])
                given = values[0] if len(values) == 1 else None
        pending = pending_of()
        if pending is not None:
            # A session cookie: the expected token is in the session row. The check runs
            # here, in one thread hop, before the handler reads a byte of the body (a
            # forged request is refused before any of it is parsed, AC-06); the handler's
            # own hops then find the session checked. This is the one place outside a
            # handler where the staff app reads the session store.
            pending.csrf_required = True
            pending.csrf_given = given
            try:
                await anyio.to_thread.run_sync(pending.resolve)
            except CSRFRefused:
                await self._refuse(scope, receive, send, "token")
                return
            except SessionStoreUnavailable:
                await PlainTextResponse("Exhibit is unavailable. Try again shortly.", status_code=503)(
                    scope, receive, send)
                return
        elif not _token_ok(expected, given):
            await self._refuse(scope, receive, send, "token")
            return
        if body is None:
            await self.app(scope, receive, send)
            return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send, why: str, status: int = 403) -> None:
        log.warning("csrf.refused", extra={"why": why, "path": scope.get("path", "")[:200]})
        text = REFUSED_TEXT if status == 403 else "Request too large."
        await PlainTextResponse(text, status_code=status)(scope, receive, send)


async def _read_body(receive: Receive, limit: int) -> bytes | None:
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return b"".join(chunks)
