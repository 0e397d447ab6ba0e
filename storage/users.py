"""Staff and partner accounts and organisations."""

from __future__ import annotations

import datetime as dt
import re

from sqlalchemy import func, select
from sqlmodel import Session, col

from storage import ledger
from storage.db import Database
from storage.errors import Conflict, Invalid
from storage.models import Organisation, Role, StaffSession, User
from storage.password_policy import check as check_password
from storage.passwords import hash_password

EMAIL_RE = re.compile(r"^[^@\s]{1,64}@[^@\s]{1,255}$")


def get_or_create_org(db: Database, session: Session, name: str, *, is_partner: bool, actor: str) -> Organisation:
    org = session.exec(select(Organisation).where(Organisation.name == name)).scalars().first()  # type: ignore[call-overload, arg-type]
    if org is not None:
        return org  # type: ignore[no-any-return]
    org = Organisation(name=name[:200], is_partner=is_partner)
    session.add(org)
    session.flush()
    ledger.append(db, session, actor=actor, action="org.created", subject=f"org:{org.id}",
                  detail={"name": org.name, "is_partner": is_partner})
    return org


def add_user(
    db: Database,
    session: Session,
    email: str,
    role: str,
    *,
    org_name: str | None = None,
    display_name: str = "",
    password: str | None = None,
    unit: str | None = None,
    must_change_password: bool = False,
    actor: str,
) -> User:
    email = email.strip().lower()
    if not EMAIL_RE.match(email):
        raise Invalid("not an email address", code="ERR_EMAIL_INVALID")
    try:
        role = Role(role)
    except ValueError:
        raise Invalid(f"role must be one of {', '.join(r.value for r in Role)}", code="ERR_ROLE_INVALID") from None
    if role is Role.PARTNER and not org_name:
        raise Invalid("a partner belongs to an organisation: give --org", code="ERR_ORG_REQUIRED")
    if password is not None and not must_change_password:
        # A password a person chose: the policy (storage.password_policy). A one-time one
        # the system made is random, and its owner replaces it at first sign-in.
        check_password(password, email=email)
    if session.exec(select(User.id).where(User.email == email)).first():  # type: ignore[call-overload]
        raise Conflict(f"user {email} already exists", code="ERR_USER_EXISTS")
    org = get_or_create_org(db, session, org_name, is_partner=role is Role.PARTNER, actor=actor) if org_name else None
    if org is not None and org.is_partner != (role is Role.PARTNER):
        # A share granted to a partner organisation reaches every member of it: a member
        # of staff must not sit in one, and a partner must not sit in the force's own
        # organisation (where no share could ever name them by organisation).
        kind = "a partner organisation" if org.is_partner else "not a partner organisation"
        raise Invalid(f"{org.name} is {kind}: a {role} cannot belong to it", code="ERR_ORG_KIND_MISMATCH")
    user = User(
        email=email,
        role=role,
        org_id=org.id if org else None,
        display_name=display_name[:200] or email,
        password_hash=hash_password(password) if password else None,
        unit=unit,
        must_change_password=must_change_password and password is not None,
    )
    session.add(user)
    session.flush()
    ledger.append(db, session, actor=actor, action="user.created", subject=f"user:{user.id}",
                  detail={"email": email, "role": str(role), "org": org_name, "unit": unit,
                          "one_time_password": user.must_change_password})
    return user


def accounts_with_sessions(session: Session, now: dt.datetime) -> list[tuple[User, str | None, int]]:
    """Every account, by e-mail, with its organisation's name and its live sessions (not
    revoked, not expired at ``now``): the admin page's and ``exhibit users list``'s table."""
    rows = session.exec(select(User, Organisation.name).join(  # type: ignore[call-overload]
        Organisation, col(Organisation.id) == col(User.org_id), isouter=True).order_by(col(User.email))).all()
    live = live_sessions(session, [u.id for u, _ in rows], now)
    return [(u, org, live.get(u.id, 0)) for u, org in rows]


def live_sessions(session: Session, user_ids: list[str], now: dt.datetime) -> dict[str, int]:
    """user id -> how many of its sessions are live at ``now``."""
    if not user_ids:
        return {}
    rows = session.exec(
        select(StaffSession.user_id, func.count())  # type: ignore[call-overload]
        .where(col(StaffSession.user_id).in_(user_ids), col(StaffSession.revoked_at).is_(None),
               col(StaffSession.expires_at) > now)
        .group_by(col(StaffSession.user_id))).all()
    return {uid: int(n) for uid, n in rows}
