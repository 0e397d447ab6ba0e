"""The first administrator, for a fresh installation (``make run``).

``ensure_first_admin(db)`` creates ``admin@exhibit.local`` with a random password when no
admin account exists yet, and returns ``(email, password)`` for the caller to print ONCE
(to the terminal of whoever ran ``make run``; never to a log file). It returns ``None``
when an admin already exists, so a restart prints nothing and changes nothing. The admin
enrols TOTP at first sign-in like every other account.
"""

from __future__ import annotations

import secrets

from sqlmodel import col, select

from storage.db import Database
from storage.models import Role, User
from storage.users import add_user

FIRST_ADMIN_EMAIL = "admin@exhibit.local"


def ensure_first_admin(db: Database, email: str = FIRST_ADMIN_EMAIL) -> tuple[str, str] | None:
    password = secrets.token_urlsafe(18)  # 144 bits
    with db.write() as session:
        exists = session.exec(select(User.id).where(col(User.role) == Role.ADMIN.value)).first()
        if exists is not None:
            return None
        user = add_user(db, session, email, Role.ADMIN.value, display_name="First administrator",
                        password=password, actor="system:bootstrap")
        return user.email, password
