"""Account operations shared by the admin pages and the ``exhibit users`` CLI: disable,
enable, sign out everywhere, reset two-step sign-in, issue a new password.

Each runs inside the caller's ``db.write()`` transaction, ends the account's sessions
where the operation calls for it (SECURITY_CHECKLIST AC-10: the very next request with an
old cookie is anonymous), and appends its custody event in the same transaction.
No request needed: the CLI calls them with ``actor="cli:<os user>"``.
"""

from __future__ import annotations

import datetime as dt
import secrets

from sqlmodel import Session, col, select, update

from storage import ledger
from storage.db import Database
from storage.errors import NotFound
from storage.models import StaffSession, User
from storage.passwords import hash_password


def find_user(session: Session, *, user_id: str | None = None, email: str | None = None) -> User:
    user = session.get(User, user_id) if user_id else None
    if user is None and email:
        user = session.exec(select(User).where(col(User.email) == email.strip().lower())).first()
    if user is None:
        raise NotFound("no such user", code="ERR_USER_NOT_FOUND")
    return user


def end_sessions(session: Session, user_id: str, now: dt.datetime) -> int:
    """Revoke every live session of ``user_id``; how many there were."""
    result = session.exec(update(StaffSession)
                          .where(col(StaffSession.user_id) == user_id, col(StaffSession.revoked_at).is_(None))
                          .values(revoked_at=now))
    return int(result.rowcount or 0)


def _event(db: Database, session: Session, user: User, action: str, actor: str, request_id: str | None,
           **detail: object) -> None:
    ledger.append(db, session, actor=actor, action=action, subject=f"user:{user.id}",
                  detail={"email": user.email, **detail}, request_id=request_id)


def disable(db: Database, session: Session, user: User, *, actor: str, now: dt.datetime,
            request_id: str | None = None) -> int:
    user.disabled = True
    session.add(user)
    ended = end_sessions(session, user.id, now)
    _event(db, session, user, "user.disabled", actor, request_id, sessions_ended=ended)
    return ended


def enable(db: Database, session: Session, user: User, *, actor: str, request_id: str | None = None) -> None:
    user.disabled = False
    session.add(user)
    _event(db, session, user, "user.enabled", actor, request_id)


def sign_out_everywhere(db: Database, session: Session, user: User, *, actor: str, now: dt.datetime,
                        request_id: str | None = None) -> int:
    ended = end_sessions(session, user.id, now)
    _event(db, session, user, "user.signed_out_everywhere", actor, request_id, sessions_ended=ended)
    return ended


def reset_mfa(db: Database, session: Session, user: User, *, actor: str, now: dt.datetime,
              request_id: str | None = None) -> int:
    """A lost phone: the next sign-in (password first) enrols a new authenticator.
    ``last_totp_step`` is kept, so codes already used stay spent."""
    user.totp_secret = None
    user.mfa_enrolled = False
    session.add(user)
    ended = end_sessions(session, user.id, now)
    _event(db, session, user, "user.reset_mfa", actor, request_id, sessions_ended=ended)
    return ended


def new_password(db: Database, session: Session, user: User, *, actor: str, now: dt.datetime,
                 request_id: str | None = None) -> str:
    """Set a random password (returned once, for the caller to show once) and end the
    account's sessions."""
    password = secrets.token_urlsafe(15)  # 120 bits
    user.password_hash = hash_password(password)
    session.add(user)
    ended = end_sessions(session, user.id, now)
    _event(db, session, user, "user.reset_password", actor, request_id, sessions_ended=ended)
    return password
