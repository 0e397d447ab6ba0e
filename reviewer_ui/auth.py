"""Sign-in (password, then TOTP), first-sign-in MFA enrolment, sign-out.

Flow::

    GET  /login   form: email + password
    POST /login   password checked (Argon2id; the same work for unknown accounts) ->
                  a NEW half-way session (mfa_passed false, 10 minutes) -> /mfa
    GET  /mfa     enrolled: ask for the code; not yet: QR code + secret as text + code
    POST /mfa     code checked, its step never accepted twice -> the half-way session is
                  revoked and a NEW signed-in session issued (session fixation, AC-09)
    POST /logout  session revoked server-side, cookie cleared, Clear-Site-Data (VL-10)
    GET  /reauth?next=/path   step-up: a fresh TOTP code before a sensitive action
    POST /reauth  code checked -> session re-issued (same absolute deadline) -> next

Every evaluated failure counts in the throttle (``reviewer_ui.throttle``, counters in the
database) and is a ``auth.failed`` custody event; a success is ``auth.signed_in`` and
leaves a device cookie (``reviewer_ui.devices``); enrolment is ``auth.mfa_enrolled``;
sign-out is ``auth.signed_out``. Messages never say whether the account exists (AC-07).
A failed password step records a keyed hash of the typed e-mail, never the text: people
type passwords into the e-mail field, and the ledger keeps what it is given forever.
Ten wrong TOTP codes for one account in 24 hours stop codes for it (``auth.totp_locked``)
until the window ends or an admin allows them again.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import logging
from dataclasses import dataclass
from typing import Any

from sqlalchemy import or_
from sqlmodel import Session, col, select, update
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from reviewer_ui import audit, devices, mfa, permissions, sessions
from reviewer_ui import throttle as throttles
from reviewer_ui.context import ReviewContext
from reviewer_ui.context import get as get_ctx
from reviewer_ui.form_errors import FieldError
from reviewer_ui.middleware import client_ip
from reviewer_ui.throttle import Attempt, LoginThrottle
from storage.models import StaffSession, User
from storage.passwords import hash_password, needs_rehash, verify_password

log = logging.getLogger("exhibit.reviewer.auth")

MAX_EMAIL = 320
MAX_PASSWORD = 1024  # Argon2 hashes any length; the cap bounds the work an attacker buys

GENERIC_FAILURE = "The email address or password is not right."
CODE_FAILURE = "That code is not right, or it has already been used. Wait for the next code and try again."
CODES_LOCKED = ("Too many wrong codes for this account. Codes are paused for it; an administrator has been "
                "alerted and can allow them again.")
# The same messages tied to their fields for the error summary and the fields' descriptions
# (WCAG 3.3.1); a failed sign-in marks both fields and never says which was wrong (AC-05).
LOGIN_FAILED = FieldError(GENERIC_FAILURE, "email", also=("password",))
CODE_FAILED = FieldError(CODE_FAILURE, "code")
LOCKED = "locked"  # what a TOTP check returns when the account's codes are paused


def throttle_of(ctx: ReviewContext) -> LoginThrottle:
    found = ctx.extras.get("throttle")
    if not isinstance(found, LoginThrottle):
        found = ctx.extras["throttle"] = LoginThrottle(ctx.db, ctx.secret, ctx.clock)
    return found


def typed_email_digest(secret: bytes, email: str) -> str:
    """What ``auth.failed`` records of a typed e-mail: HMAC-SHA-256 under the server secret.
    Threat: a password typed into the e-mail field would stay in the append-only ledger in
    clear; an unkeyed hash of it could be brute-forced from a copy of the ledger. The same
    typed text gives the same value, so repeated attempts still line up."""
    key = hmac.new(secret, b"exhibit-auth-failed-email-v1", hashlib.sha256).digest()
    return hmac.new(key, email.encode("utf-8", "replace"), hashlib.sha256).hexdigest()


def _attempt(ctx: ReviewContext, request: Request, account: str, client: str) -> Attempt:
    return Attempt(account, client, devices.device_of(request, ctx.settings, ctx.secret, account))


def _check_totp(ctx: ReviewContext, s: Session, request: Request, user_id: str, code: str,
                now: dt.datetime) -> User | str | None:
    """``_consume_code`` behind the per-account TOTP bound, in the caller's write
    transaction: the user, None (wrong code, counted) or ``LOCKED``. The guard row is
    locked for the transaction, so processes racing on one account take turns and the
    bound holds across all of them."""
    if throttles.totp_locked(s, user_id, now):
        return LOCKED
    fresh = _consume_code(ctx, s, request, user_id, code, now)
    if fresh is not None:
        return fresh
    if throttles.totp_failed(s, user_id, now):
        # Reaching the bound is a custody event and alerts admins (banner on /admin/users).
        log.warning("auth.totp_locked", extra={"user_id": user_id, "client": client_ip(request.scope)})
        audit.record_in(ctx, s, request, "auth.totp_locked", subject=f"user:{user_id}", actor="system",
                        detail={"user_id": user_id, "limit": throttles.TOTP_LIMIT,
                                "window_seconds": throttles.TOTP_WINDOW_SECONDS})
    return None


def _state(request: Request) -> dict[str, Any]:
    state: dict[str, Any] = request.scope.setdefault("state", {})
    return state


def _throttled(ctx: ReviewContext, request: Request, template: str, wait: int, **values: Any) -> Response:
    log.warning("auth.throttled", extra={"client": client_ip(request.scope), "wait_seconds": wait})
    minutes = max(1, (wait + 59) // 60)
    return ctx.render(request, template, status_code=429, errors=[
        f"Too many attempts. Wait {minutes} minute{'s' if minutes != 1 else ''} and try again."], **values)


async def _form(request: Request) -> dict[str, str]:
    form = await request.form(max_files=0, max_fields=20, max_part_size=64 * 1024)
    return {k: v for k, v in form.items() if isinstance(v, str)}


# --- pages ----------------------------------------------------------------------------


async def home(request: Request) -> Response:
    await get_ctx(request).check_session()
    state = _state(request)
    if state.get("user") is not None:
        return RedirectResponse("/reports", status_code=303)
    if state.get("pending_user") is not None:
        return RedirectResponse("/mfa", status_code=303)
    if state.get("password_change_user") is not None:
        return RedirectResponse("/account/password", status_code=303)  # a one-time password first
    return RedirectResponse("/login", status_code=303)


async def login_page(request: Request) -> Response:
    ctx = get_ctx(request)
    await ctx.check_session()
    state = _state(request)
    if state.get("user") is not None:
        return RedirectResponse("/", status_code=303)
    return ctx.render(request, "login.html", errors=[], email="")


async def login_submit(request: Request) -> Response:
    ctx = get_ctx(request)
    await ctx.check_session()
    form = await _form(request)
    email = form.get("email", "").strip().lower()[:MAX_EMAIL]
    password = form.get("password", "")[:MAX_PASSWORD]
    if not email or not password:
        # A form sent with a field empty tries no password, so it is neither counted by the
        # throttle nor recorded as a failed sign-in; it is answered field by field (WCAG 3.3.1).
        missing = [FieldError(m, f) for f, m, v in (("email", "Enter your email address", email),
                                                     ("password", "Enter your password", password)) if not v]
        return ctx.render(request, "login.html", status_code=400, errors=missing, email=email)
    client = client_ip(request.scope)
    throttle = throttle_of(ctx)
    attempt = _attempt(ctx, request, email, client)
    wait = await ctx.run_sync(throttle.begin, attempt)
    if wait > 0:
        return _throttled(ctx, request, "login.html", wait, email=email)

    def check() -> User | None:
        with ctx.db.read() as s:
            user = s.exec(select(User).where(User.email == email)).first() if email else None
        ok = verify_password(user.password_hash if user else None, password)
        if user is None or not ok or user.disabled:
            return None
        if user.password_hash and needs_rehash(user.password_hash):
            with ctx.db.write() as s:
                s.exec(update(User).where(col(User.id) == user.id).values(password_hash=hash_password(password)))
        return user

    user: User | None = None
    try:
        user = await ctx.run_sync(check)
    finally:
        await ctx.run_sync(lambda: throttle.end(attempt, failed=user is None))
    if user is None:
        digest = typed_email_digest(ctx.secret, email)
        await audit.record(ctx, request, "auth.failed", subject=f"login:{digest[:32]}", actor="anonymous",
                           detail={"email_hmac": digest, "step": "password", "client": client})
        return ctx.render(request, "login.html", status_code=400, errors=[LOGIN_FAILED], email=email)

    previous = _state(request).get("staff_session")

    def start_half_session() -> str:
        with ctx.db.write() as s:
            if previous is not None:
                sessions.revoke(ctx, s, previous.id)  # signing in again ends the old session
            return sessions.create(ctx, s, user, mfa_passed=False, client_ip=client,
                                   user_agent=request.headers.get("user-agent"))

    value = await ctx.run_sync(start_half_session)
    response = RedirectResponse("/mfa", status_code=303)
    sessions.set_cookie(response, ctx.settings, sessions.cookie_name(ctx.settings), value)
    return response


def _pending(request: Request) -> User | None:
    user = _state(request).get("pending_user")
    return user if isinstance(user, User) else None


def _enrolment_secret(ctx: ReviewContext, user: User) -> str:
    """The TOTP secret of a not-yet-enrolled user, created (sealed) on first need and kept
    until enrolment succeeds, so reloading the page shows the same QR code."""
    if user.totp_secret:
        secret = mfa.unseal(ctx.secret, user.totp_secret, user.id)
        if secret is not None:
            return secret
    secret = mfa.new_secret()
    sealed = mfa.seal(ctx.secret, secret, user.id)
    with ctx.db.write() as s:
        s.exec(update(User).where(col(User.id) == user.id, col(User.mfa_enrolled).is_(False))
               .values(totp_secret=sealed))
    user.totp_secret = sealed
    return secret


def _mfa_page(ctx: ReviewContext, request: Request, user: User, *, status_code: int = 200,
              errors: list[str | FieldError] | None = None) -> Response:
    if user.mfa_enrolled:
        return ctx.render(request, "mfa_verify.html", status_code=status_code, errors=errors or [])
    secret = _enrolment_secret(ctx, user)
    uri = mfa.provisioning_uri(secret, user.email)
    return ctx.render(request, "mfa_enrol.html", status_code=status_code, errors=errors or [],
                      qr=mfa.qr_data_uri(uri), secret=secret, secret_grouped=mfa.group(secret))


def _consume_code(ctx: ReviewContext, s: Session, request: Request, user_id: str, code: str,
                  now: dt.datetime) -> User | None:
    """Check ``code`` against the user's TOTP secret inside the write transaction ``s`` and
    spend its step; the user (enrolment completed if it was pending) or None."""
    fresh = s.get(User, user_id)
    if fresh is None or fresh.disabled or not fresh.totp_secret:
        return None
    secret = mfa.unseal(ctx.secret, fresh.totp_secret, fresh.id)
    step = mfa.matching_step(secret, code, now) if secret else None
    if step is None:
        return None
    enrolled_now = not fresh.mfa_enrolled
    # Single use: the step only moves forward, in one conditional UPDATE, so two requests
    # racing with the same code cannot both pass (AC-08).
    moved = s.exec(update(User).where(
        col(User.id) == fresh.id,
        or_(col(User.last_totp_step).is_(None), col(User.last_totp_step) < step),
    ).values(last_totp_step=step, mfa_enrolled=True))
    if not moved.rowcount:
        return None
    if enrolled_now:
        audit.record_in(ctx, s, request, "auth.mfa_enrolled", subject=f"user:{fresh.id}",
                        actor=fresh.email, detail={"method": "totp"})
    return fresh


async def mfa_page(request: Request) -> Response:
    ctx = get_ctx(request)
    await ctx.check_session()
    if _state(request).get("user") is not None:
        return RedirectResponse("/", status_code=303)
    user = _pending(request)
    if user is None:
        return RedirectResponse("/login", status_code=303)
    return await ctx.run_sync(lambda: _mfa_page(ctx, request, user))


async def mfa_submit(request: Request) -> Response:
    ctx = get_ctx(request)
    await ctx.check_session()
    user = _pending(request)
    half = _state(request).get("staff_session")
    if user is None or half is None:
        return RedirectResponse("/login", status_code=303)
    form = await _form(request)
    code = form.get("code", "")[:20]
    client = client_ip(request.scope)
    throttle = throttle_of(ctx)
    attempt = _attempt(ctx, request, user.email, client)
    wait = await ctx.run_sync(throttle.begin, attempt)
    if wait > 0:
        log.warning("auth.throttled", extra={"client": client, "wait_seconds": wait})
        minutes = max(1, (wait + 59) // 60)
        message = f"Too many attempts. Wait {minutes} minute{'s' if minutes != 1 else ''} and try again."
        return await ctx.run_sync(lambda: _mfa_page(ctx, request, user, status_code=429, errors=[message]))

    now = ctx.clock()

    def verify_and_sign_in() -> str | None:
        """The new cookie value, None when the code is not accepted, or ``LOCKED``."""
        with ctx.db.write() as s:
            fresh = _check_totp(ctx, s, request, user.id, code, now)
            if not isinstance(fresh, User):
                return fresh
            sessions.revoke(ctx, s, half.id)
            value = sessions.create(ctx, s, fresh, mfa_passed=True, client_ip=client,
                                    user_agent=request.headers.get("user-agent"))
            audit.record_in(ctx, s, request, "auth.signed_in", subject=f"user:{fresh.id}", actor=fresh.email,
                            detail={"client": client, "role": str(fresh.role)})
            return value

    value: str | None = None
    try:
        value = await ctx.run_sync(verify_and_sign_in)
    finally:
        await ctx.run_sync(lambda: throttle.end(attempt, failed=value is None))
    if value == LOCKED:
        return await ctx.run_sync(lambda: _mfa_page(ctx, request, user, status_code=429, errors=[CODES_LOCKED]))
    if value is None:
        await audit.record(ctx, request, "auth.failed", subject=f"user:{user.id}", actor=user.email,
                           detail={"email": user.email, "step": "totp", "client": client})
        return await ctx.run_sync(lambda: _mfa_page(ctx, request, user, status_code=400, errors=[CODE_FAILED]))
    await ctx.run_sync(throttle.succeeded, attempt)
    response = RedirectResponse("/", status_code=303)
    sessions.set_cookie(response, ctx.settings, sessions.cookie_name(ctx.settings), value)
    # This browser has now signed in to this account: its device cookie (AC-07).
    devices.set_cookie(response, ctx.settings, devices.issue(ctx.secret, user.email))
    return response


async def logout(request: Request) -> Response:
    ctx = get_ctx(request)
    await ctx.check_session()
    state = _state(request)
    row = state.get("staff_session")
    who = state.get("user") or state.get("pending_user") or state.get("password_change_user")
    if row is not None:
        def end() -> None:
            with ctx.db.write() as s:
                sessions.revoke(ctx, s, row.id)
                if who is not None:
                    audit.record_in(ctx, s, request, "auth.signed_out", subject=f"user:{who.id}", actor=who.email)

        await ctx.run_sync(end)
    response = RedirectResponse("/login", status_code=303)
    sessions.clear_cookie(response, ctx.settings, sessions.cookie_name(ctx.settings))
    sessions.clear_cookie(response, ctx.settings, sessions.pre_cookie_name(ctx.settings))
    # Nothing of the session stays in the browser: cached pages, storage, the session
    # cookies above (VL-10). Not "cookies": that would also drop the device cookie, which
    # must outlive sign-out to keep this browser out of other people's throttles (AC-07).
    response.headers["Clear-Site-Data"] = '"cache", "storage"'
    return response


def safe_next(value: str) -> str:
    """A local path to return to after a step-up; anything else becomes "/" (no open
    redirect to another site)."""
    if not value.startswith("/") or value.startswith("//") or "\\" in value or len(value) > 500:
        return "/"
    return value


async def reauth_page(request: Request) -> Response:
    ctx = get_ctx(request)
    await ctx.check_session()
    permissions.current_user(request)
    return ctx.render(request, "reauth.html", errors=[], next=safe_next(request.query_params.get("next", "/")))


@dataclass(frozen=True)
class StepUp:
    """The outcome of a step-up code: ``cookie`` is the re-issued session's cookie value
    when the code passed; ``wait`` the seconds to wait when throttled."""

    cookie: str | None
    wait: int = 0
    locked: bool = False  # the account's codes are paused (per-account TOTP bound)


async def step_up(request: Request, code: str) -> StepUp:
    """Check a fresh TOTP code for the signed-in user and, when it passes, re-issue the
    session (new cookie, same absolute deadline: AC-09) so that
    ``permissions.recently_verified`` holds for the next few minutes. The rest of this
    request then runs as the new session (its row and CSRF token in ``scope["state"]``),
    so a held action can be carried out in the same request (``reviewer_ui.stepup``).
    Throttled and audited like every code (AC-08)."""
    ctx = get_ctx(request)
    user = permissions.current_user(request)
    state = _state(request)
    row = state["staff_session"]
    client = client_ip(request.scope)
    throttle = throttle_of(ctx)
    attempt = _attempt(ctx, request, user.email, client)
    wait = await ctx.run_sync(throttle.begin, attempt)
    if wait > 0:
        return StepUp(None, wait)
    now = ctx.clock()

    def verify() -> tuple[str, StaffSession] | str | None:
        with ctx.db.write() as s:
            # Behind the per-account TOTP bound like every code: the admin step-up is not
            # a side door around it.
            fresh = _check_totp(ctx, s, request, user.id, code[:20], now)
            if not isinstance(fresh, User):
                return fresh
            sessions.revoke(ctx, s, row.id)
            value = sessions.create(ctx, s, fresh, mfa_passed=True, client_ip=client,
                                    user_agent=request.headers.get("user-agent"), expires_at=row.expires_at)
            audit.record_in(ctx, s, request, "auth.step_up", subject=f"user:{fresh.id}", actor=fresh.email,
                            detail={"client": client})
            new_row = s.get(StaffSession, sessions.session_id(value))
            assert new_row is not None
            return value, new_row

    issued: tuple[str, StaffSession] | str | None = None
    try:
        issued = await ctx.run_sync(verify)
    finally:
        await ctx.run_sync(lambda: throttle.end(attempt, failed=not isinstance(issued, tuple)))
    if issued == LOCKED:
        return StepUp(None, locked=True)
    if not isinstance(issued, tuple):
        await audit.record(ctx, request, "auth.failed", subject=f"user:{user.id}", actor=user.email,
                           detail={"email": user.email, "step": "step-up", "client": client})
        return StepUp(None)
    await ctx.run_sync(throttle.succeeded, attempt)
    value, new_row = issued
    state["staff_session"] = new_row
    state["csrf_token"] = new_row.csrf_token
    return StepUp(value)


def wait_message(wait: int) -> str:
    minutes = max(1, (wait + 59) // 60)
    return f"Too many attempts. Wait {minutes} minute{'s' if minutes != 1 else ''} and try again."


async def reauth_submit(request: Request) -> Response:
    """Step-up: a fresh TOTP code re-issues the session (``step_up``), then back to
    ``next``."""
    ctx = get_ctx(request)
    await ctx.check_session()
    permissions.current_user(request)
    form = await _form(request)
    target = safe_next(form.get("next", "/"))
    result = await step_up(request, form.get("code", ""))
    if result.wait > 0:
        return ctx.render(request, "reauth.html", status_code=429, next=target, errors=[wait_message(result.wait)])
    if result.locked:
        return ctx.render(request, "reauth.html", status_code=429, next=target, errors=[CODES_LOCKED])
    if result.cookie is None:
        return ctx.render(request, "reauth.html", status_code=400, next=target, errors=[CODE_FAILED])
    response = RedirectResponse(target, status_code=303)
    sessions.set_cookie(response, ctx.settings, sessions.cookie_name(ctx.settings), result.cookie)
    return response


def routes(ctx: ReviewContext) -> list[BaseRoute]:
    """Sign-in routes. ``/`` is registered by ``app.py`` after casework's routes, so a
    casework ``/`` (a dashboard) wins."""
    throttle_of(ctx)
    return [
        Route("/login", login_page, methods=["GET"]),
        Route("/login", login_submit, methods=["POST"]),
        Route("/mfa", mfa_page, methods=["GET"]),
        Route("/mfa", mfa_submit, methods=["POST"]),
        Route("/logout", logout, methods=["POST"]),
        Route("/reauth", reauth_page, methods=["GET"]),
        Route("/reauth", reauth_submit, methods=["POST"]),
    ]


def fallback_routes(ctx: ReviewContext) -> list[BaseRoute]:
    return [Route("/", home, methods=["GET"])]
