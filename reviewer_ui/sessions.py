"""Server-side staff sessions (SECURITY_CHECKLIST AC-09, AC-10, AC-11, AC-12).

The cookie holds 256 random bits; the ``StaffSession`` row is keyed by the SHA-256 of
that value, so a database read (a backup, a SQL injection elsewhere) hands out no live
cookie. Everything about a session is decided on the server on every request:

* logout, account disable and an admin "sign out everywhere" set ``revoked_at``: the very
  next request with that cookie is anonymous (AC-10);
* idle timeout: ``last_seen_at`` older than ``settings.session_idle_minutes``; absolute
  timeout: ``expires_at`` = creation + ``settings.session_absolute_hours`` (AC-11), both
  judged on ``ctx.clock()``;
* a session only counts as signed in once the TOTP step passed (``mfa_passed``); the
  half-way session after the password has its own short lifetime
  (``PENDING_MFA_SECONDS``) and is replaced by a NEW session (new cookie) when MFA passes,
  as the pre-sign-in cookie never becomes the signed-in one (session fixation, AC-09).

Cookies: ``__Host-exhibit_session`` (``__Host-`` demands Secure, Path=/ and no Domain, so
a sibling subdomain cannot plant or overwrite it) when the app is served over https
(``settings.secure_cookies``), else ``exhibit_session`` for plain-http development;
always HttpOnly (no script reads it), SameSite=Strict (never sent on a cross-site
request), Path=/, no Domain, no Max-Age (the server decides when it ends).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import secrets
from dataclasses import dataclass

from sqlalchemy import update
from sqlmodel import Session, col, select
from starlette.responses import Response

from reviewer_ui.context import ReviewContext
from storage.models import StaffSession, User
from storage.settings import Settings

PENDING_MFA_SECONDS = 10 * 60
# last_seen_at is written at most this often: a write per request would serialise every
# page view behind SQLite's single writer. The idle timeout can thus end a session up to
# this much early, never late.
TOUCH_EVERY_SECONDS = 30


def cookie_name(settings: Settings) -> str:
    return "__Host-exhibit_session" if settings.secure_cookies else "exhibit_session"


def pre_cookie_name(settings: Settings) -> str:
    """The anonymous cookie that keys the sign-in form's CSRF token (login CSRF)."""
    return "__Host-exhibit_pre" if settings.secure_cookies else "exhibit_pre"


def new_cookie_value() -> str:
    return secrets.token_urlsafe(32)  # 256 bits from the OS CSPRNG


def session_id(cookie_value: str) -> str:
    return hashlib.sha256(cookie_value.encode("utf-8")).hexdigest()


def pre_csrf_token(secret: bytes, pre_cookie: str) -> str:
    """CSRF token for anonymous forms: HMAC of the pre-session cookie under the server
    secret (a signed double-submit token; an attacker cannot mint one for a cookie they
    cannot read)."""
    return hmac.new(secret, b"csrf-pre:" + pre_cookie.encode("utf-8"), hashlib.sha256).hexdigest()


def set_cookie(response: Response, settings: Settings, name: str, value: str) -> None:
    response.set_cookie(name, value, path="/", secure=settings.secure_cookies, httponly=True, samesite="strict")


def clear_cookie(response: Response, settings: Settings, name: str) -> None:
    response.delete_cookie(name, path="/", secure=settings.secure_cookies, httponly=True, samesite="strict")


@dataclass(frozen=True)
class Loaded:
    row: StaffSession
    user: User


def create(ctx: ReviewContext, session: Session, user: User, *, mfa_passed: bool,
           client_ip: str | None, user_agent: str | None, expires_at: dt.datetime | None = None) -> str:
    """Insert a new session for ``user`` inside the caller's write transaction and return
    the cookie value (shown to the browser once, never stored). ``expires_at`` caps the
    absolute deadline (a step-up keeps the deadline of the session it replaces)."""
    now = ctx.clock()
    lifetime = (dt.timedelta(hours=ctx.settings.session_absolute_hours) if mfa_passed
                else dt.timedelta(seconds=PENDING_MFA_SECONDS))
    deadline = now + lifetime if expires_at is None else min(now + lifetime, expires_at)
    value = new_cookie_value()
    session.add(StaffSession(
        id=session_id(value), user_id=user.id, csrf_token=secrets.token_urlsafe(32), mfa_passed=mfa_passed,
        created_at=now, last_seen_at=now, expires_at=deadline,
        client_ip=(client_ip or "")[:64] or None, user_agent=(user_agent or "")[:300] or None,
    ))
    session.flush()
    return value


def is_live(ctx: ReviewContext, row: StaffSession, user: User, now: dt.datetime) -> bool:
    """The single rule for "this session may be used now"."""
    if row.revoked_at is not None or user.disabled:
        return False
    if now >= row.expires_at:
        return False  # absolute timeout
    return now - row.last_seen_at < dt.timedelta(minutes=ctx.settings.session_idle_minutes)  # idle timeout


def load(ctx: ReviewContext, cookie_value: str) -> Loaded | None:
    """The live session behind ``cookie_value`` and its user, or ``None``. Refreshes
    ``last_seen_at`` (at most every ``TOUCH_EVERY_SECONDS``). Blocking: call off the loop."""
    if not cookie_value or len(cookie_value) > 100:
        return None
    sid = session_id(cookie_value)
    now = ctx.clock()
    with ctx.db.read() as s:
        found = s.exec(select(StaffSession, User).join(User, col(User.id) == col(StaffSession.user_id))
                       .where(col(StaffSession.id) == sid)).first()
    row, user = found if found is not None else (None, None)
    if row is None or user is None or not is_live(ctx, row, user, now):
        return None
    if (now - row.last_seen_at).total_seconds() >= TOUCH_EVERY_SECONDS:
        with ctx.db.write() as s:
            s.exec(update(StaffSession).where(col(StaffSession.id) == sid)
                   .values(last_seen_at=now))
        row.last_seen_at = now
    return Loaded(row=row, user=user)


def revoke(ctx: ReviewContext, session: Session, sid: str) -> None:
    """End one session at once (logout; the half-way session once MFA passed)."""
    session.exec(update(StaffSession).where(col(StaffSession.id) == sid, col(StaffSession.revoked_at).is_(None))
                 .values(revoked_at=ctx.clock()))


def revoke_all(ctx: ReviewContext, session: Session, user_id: str) -> int:
    """End every session of ``user_id`` at once (sign out everywhere, account disabled).
    Returns how many were live."""
    result = session.exec(update(StaffSession)
                          .where(col(StaffSession.user_id) == user_id, col(StaffSession.revoked_at).is_(None))
                          .values(revoked_at=ctx.clock()))
    return int(result.rowcount or 0)
