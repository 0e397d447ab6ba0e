"""API keys for the force's own systems (the intake API).

A key is 256 bits from the CSPRNG, shown once when it is made (``exhibit apikeys add``);
only its SHA-256 is stored, so a database read does not hand out working keys. Checking
is a lookup by hash (no timing oracle on a secret comparison).
"""

from __future__ import annotations

import hashlib
import secrets

from sqlmodel import Session, select

from storage import ledger
from storage.db import Database
from storage.errors import DomainError, NotFound
from storage.models import ApiKey

KEY_PREFIX = "exk_"


def hash_key(plaintext: str) -> str:
    return hashlib.sha256(plaintext.encode("utf-8")).hexdigest()


def add_api_key(db: Database, session: Session, name: str, actor: str) -> tuple[ApiKey, str]:
    """A new key named ``name``; returns the row and the plaintext (shown once)."""
    name = name.strip()[:200]
    if not name:
        raise DomainError("an API key needs a name", code="ERR_INVALID")
    plaintext = KEY_PREFIX + secrets.token_urlsafe(32)
    key = ApiKey(name=name, key_hash=hash_key(plaintext), created_at=db.now(session))
    session.add(key)
    session.flush()
    ledger.append(db, session, actor=actor, action="apikey.created", subject=f"apikey:{key.id}",
                  detail={"apikey_id": key.id, "name": name})
    return key, plaintext


def revoke_api_key(db: Database, session: Session, key_id: str, actor: str) -> ApiKey:
    key = session.get(ApiKey, key_id)
    if key is None:
        raise NotFound("no such API key", code="ERR_NOT_FOUND")
    if key.revoked_at is None:
        key.revoked_at = db.now(session)
        session.add(key)
        ledger.append(db, session, actor=actor, action="apikey.revoked", subject=f"apikey:{key.id}",
                      detail={"apikey_id": key.id, "name": key.name})
    return key


def check_api_key(session: Session, plaintext: str) -> ApiKey:
    """The live key for ``plaintext``, or ``DomainError`` ERR_API_KEY (one answer for
    unknown and revoked keys)."""
    if not plaintext or len(plaintext) > 200 or not plaintext.startswith(KEY_PREFIX):
        raise DomainError("invalid API key", code="ERR_API_KEY")
    key = session.exec(select(ApiKey).where(ApiKey.key_hash == hash_key(plaintext))).first()
    if key is None or key.revoked_at is not None:
        raise DomainError("invalid API key", code="ERR_API_KEY")
    return key


def list_api_keys(session: Session) -> list[ApiKey]:
    return list(session.exec(select(ApiKey).order_by(ApiKey.created_at)).all())  # type: ignore[arg-type]
