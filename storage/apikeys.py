"""API keys for the force's own systems (the intake API).

A key is 256 bits from the CSPRNG, shown once when it is made (``exhibit apikeys add``);
only its SHA-256 is stored, so a database read does not hand out working keys. Checking
is a lookup by hash (no timing oracle on a secret comparison).

A key is scoped (AC-01): it reaches the reports it created and, when the key has a unit,
the reports of that unit; nothing else. A report outside the scope is answered exactly
as a report that does not exist, so a key cannot learn what other systems or units hold.
"""

from __future__ import annotations

import hashlib
import secrets

from sqlmodel import Session, select

from storage import ledger
from storage.db import Database
from storage.errors import DomainError, NotFound
from storage.models import ApiKey, Report

KEY_PREFIX = "exk_"


def hash_key(plaintext: str) -> str:
    return hashlib.sha256(plaintext.encode("utf-8")).hexdigest()


def add_api_key(
    db: Database, session: Session, name: str, actor: str, *, unit: str | None = None
) -> tuple[ApiKey, str]:
    """A new key named ``name``, scoped to the reports it creates and, with ``unit``, to
    that unit's reports; returns the row and the plaintext (shown once)."""
    name = name.strip()[:200]
    if not name:
        raise DomainError("an API key needs a name", code="ERR_INVALID")
    unit = (unit or "").strip() or None
    if unit is not None and len(unit) > 100:
        raise DomainError("a unit is at most 100 characters", code="ERR_INVALID")
    plaintext = KEY_PREFIX + secrets.token_urlsafe(32)
    key = ApiKey(name=name, key_hash=hash_key(plaintext), created_at=db.now(session), unit=unit)
    session.add(key)
    session.flush()
    ledger.append(db, session, actor=actor, action="apikey.created", subject=f"apikey:{key.id}",
                  detail={"apikey_id": key.id, "name": name, "unit": unit})
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


def in_scope(key: ApiKey, report: Report) -> bool:
    return report.created_by_api_key_id == key.id or (key.unit is not None and report.unit == key.unit)


def report_for_key(session: Session, key: ApiKey, reference: str) -> Report:
    """The report ``reference`` if ``key`` may reach it. Threat (AC-01, IDOR): a key of
    one system reading another's evidence or issuing upload links into its reports.
    Out of scope and missing give one answer (the same code and message), so the
    answer says nothing about which references exist."""
    report = session.exec(select(Report).where(Report.reference == reference)).first()
    if report is None or not in_scope(key, report):
        raise NotFound(f"no report {reference}", code="ERR_REPORT_NOT_FOUND")
    return report
