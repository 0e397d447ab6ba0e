"""Account operations shared by the admin pages and the ``exhibit users`` CLI: disable,
enable, sign out everywhere, reset two-step sign-in, issue a new password, set a password,
change a role or a unit; and a person changing their own password.

Each runs inside the caller's ``db.write()`` transaction, ends the account's sessions
where the operation calls for it (SECURITY_CHECKLIST AC-10: the very next request with an
old cookie is anonymous), and appends its custody event in the same transaction.
No request needed: the CLI calls them with ``actor="cli:<os user>"``.
"""

from __future__ import annotations

import datetime as dt
import secrets

from sqlmodel import Session, col, select, update

from storage import ledger, password_policy
from storage.db import Database
from storage.errors import Invalid, NotFound
from storage.models import Organisation, Role, StaffSession, User
from storage.passwords import hash_password, verify_password


def find_user(session: Session, *, user_id: str | None = None, email: str | None = None) -> User:
    user = session.get(User, user_id) if user_id else None
    if user is None and email:
        user = session.exec(select(User).where(col(User.email) == email.strip().lower())).first()
    if user is None:
        raise NotFound(f"no user {email}" if email else "no such user", code="ERR_USER_NOT_FOUND")
    return user


def end_sessions(session: Session, user_id: str, now: dt.datetime, *, keep: str | None = None) -> int:
    """Revoke every live session of ``user_id`` (but ``keep``, a session id); how many
    there were."""
    where = [col(StaffSession.user_id) == user_id, col(StaffSession.revoked_at).is_(None)]
    if keep is not None:
        where.append(col(StaffSession.id) != keep)
    result = session.exec(update(StaffSession).where(*where).values(revoked_at=now))
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
    password = one_time_password()
    set_password(db, session, user, password, actor=actor, now=now, one_time=True, request_id=request_id)
    return password


def one_time_password() -> str:
    """A random password for an admin to hand over once: 120 bits from the OS CSPRNG."""
    return secrets.token_urlsafe(15)


def set_password(db: Database, session: Session, user: User, password: str, *, actor: str, now: dt.datetime,
                 one_time: bool, request_id: str | None = None) -> int:
    """An admin sets the account's password: a ``one_time`` one (made by the system, which
    the owner must replace at their next sign-in) or one given to them, held to the policy.
    Either way the account's sessions end: whoever signed in with the old password is out
    (AC-10). The password itself is never in the event."""
    if not one_time:
        password_policy.check(password, email=user.email)
    user.password_hash = hash_password(password)
    user.must_change_password = one_time
    session.add(user)
    ended = end_sessions(session, user.id, now)
    _event(db, session, user, "user.reset_password", actor, request_id, sessions_ended=ended, one_time=one_time)
    return ended


def change_own_password(db: Database, session: Session, user: User, new: str, *, keep_session: str | None,
                        now: dt.datetime, request_id: str | None = None) -> int:
    """The account's owner replaces their password (the caller has checked the current
    one and the second factor). The policy applies, and the new one must differ from the
    current one (else a one-time password would simply be typed again). Every other session
    of the account ends: someone who knew the old password and signed in elsewhere is out."""
    password_policy.check(new, email=user.email)
    if verify_password(user.password_hash, new):
        raise Invalid("Choose a password different from the one you have now", code="ERR_PASSWORD_UNCHANGED")
    was_one_time = user.must_change_password
    user.password_hash = hash_password(new)
    user.must_change_password = False
    session.add(user)
    ended = end_sessions(session, user.id, now, keep=keep_session)
    _event(db, session, user, "user.password_changed", user.email, request_id, sessions_ended=ended,
           replaced_one_time=was_one_time)
    return ended


def set_role(db: Database, session: Session, user: User, role: str, *, actor: str, now: dt.datetime,
             request_id: str | None = None) -> bool:
    """Change the account's role; its sessions end, so the new role starts with a new
    sign-in. False when it already had that role (nothing changes, no event)."""
    try:
        new = Role(role)
    except ValueError:
        raise Invalid(f"role must be one of {', '.join(r.value for r in Role)}", code="ERR_ROLE_INVALID") from None
    if new is Role.PARTNER and not user.org_id:
        raise Invalid("a partner belongs to an organisation: add the account again with --org",
                      code="ERR_ORG_REQUIRED")
    org = session.get(Organisation, user.org_id) if user.org_id else None
    if org is not None and org.is_partner != (new is Role.PARTNER):
        # A share to a partner organisation reaches every member of it (storage.users).
        kind = "a partner organisation" if org.is_partner else "not a partner organisation"
        raise Invalid(f"{org.name} is {kind}: a {new.value} cannot belong to it", code="ERR_ORG_KIND_MISMATCH")
    old = str(user.role)
    if old == new.value:
        return False
    user.role = new.value
    session.add(user)
    ended = end_sessions(session, user.id, now)
    _event(db, session, user, "user.role_changed", actor, request_id, sessions_ended=ended, **{"from": old, "to": new.value})
    return True


def set_unit(db: Database, session: Session, user: User, unit: str | None, *, actor: str,
             request_id: str | None = None) -> bool:
    """Put the account in ``unit`` (None: no unit). False when nothing changes."""
    unit = (unit or "").strip()[:100] or None
    if user.unit == unit:
        return False
    old = user.unit
    user.unit = unit
    session.add(user)
    _event(db, session, user, "user.unit_changed", actor, request_id, **{"from": old, "to": unit})
    return True
