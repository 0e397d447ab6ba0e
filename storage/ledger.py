"""The custody ledger: an append-only, hash-chained record of every event.

Each event's hash is ``SHA-256(prev_hash || "\\n" || canonical_json(event))`` where the
event is ``{seq, at, actor, action, subject, report_id, item_id, detail, request_id}``
and canonical JSON is sorted keys, no whitespace, UTF-8 (``canonical_json``). The first
event's ``prev_hash`` is ``GENESIS`` (64 zeros). Anyone can recompute the chain from an
export with nothing but SHA-256 and a JSON encoder.

A chain alone cannot show that its tail was cut off, so ``write_checkpoint`` signs the
head ``{seq, hash, count, at}`` with an Ed25519 key; ``verify`` against a checkpoint
file finds truncation and rollback too (SECURITY_CHECKLIST AU-04, AU-05).

Concurrency: appends are serialised, so two appenders can never both extend the same
head (a fork). On SQLite every writing transaction is ``BEGIN IMMEDIATE`` (one writer);
on PostgreSQL the events of a transaction are chained when it commits, under a
transaction-scoped advisory lock taken then (``append`` says why). In both, the unique
constraints on ``prev_hash`` and ``hash`` are the last line of defence.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import math
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from sqlalchemy import event as sa_event
from sqlalchemy import select, text
from sqlmodel import Session

from storage.db import READ_ONLY, SQLITE_NOW, Database, ReadOnlySession, clock_value
from storage.models import Checkpoint, CustodyEvent

GENESIS = "0" * 64
# Arbitrary constant naming the ledger's advisory lock on PostgreSQL.
LEDGER_LOCK_ID = 0x45584849  # "EXHI"
MAX_DETAIL_STRING = 2000
# PostgreSQL: lock, head and clock in one round trip (migration 0006 says why a function).
_LOCKED_HEAD_PG = text("SELECT head_seq, head_hash, now FROM exhibit_ledger_head(:k)")
# SQLite: the writing transaction already holds the database's one write lock.
_HEAD_SQLITE = text(
    "SELECT (SELECT seq FROM custody_event ORDER BY seq DESC LIMIT 1),"  # noqa: S608 - constants only
    f" (SELECT hash FROM custody_event ORDER BY seq DESC LIMIT 1), {SQLITE_NOW}"
)


def canonical_json(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def format_time(at: dt.datetime) -> str:
    return at.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def event_body(event: CustodyEvent) -> dict[str, Any]:
    return {
        "seq": event.seq,
        "at": format_time(event.at),
        "actor": event.actor,
        "action": event.action,
        "subject": event.subject,
        "report_id": event.report_id,
        "item_id": event.item_id,
        "detail": event.detail or {},
        "request_id": event.request_id,
    }


def compute_hash(prev_hash: str, body: dict[str, Any]) -> str:
    return hashlib.sha256(prev_hash.encode("ascii") + b"\n" + canonical_json(body)).hexdigest()


_SURROGATE = re.compile("[\ud800-\udfff]")


def _text(value: str) -> str:
    """A string every part of the ledger can carry. A lone surrogate (``json.loads``
    accepts ``"\\ud800"`` from any client) cannot be encoded as UTF-8, so it would make
    ``canonical_json`` raise and the custody append fail: a hostile title or filename
    must not be able to block the evidence it comes with (SECURITY_CHECKLIST AU-09)."""
    return _SURROGATE.sub("\ufffd", value)


def _column(value: str, limit: int) -> str:
    """A value for a plain text column: PostgreSQL text refuses NUL, so it is replaced."""
    return _text(value).replace("\x00", "\ufffd")[:limit]


def _cap(value: Any, depth: int = 0) -> Any:
    """Length-cap detail values: a 1 MB filename must not become a 1 MB ledger row
    (SECURITY_CHECKLIST AU-09). Control characters survive as JSON escapes. NaN and
    infinities become strings: they are not JSON, PostgreSQL's json type refuses them,
    and a float read from a file's metadata must not make the append fail."""
    if isinstance(value, str):
        value = _text(value)
        return value if len(value) <= MAX_DETAIL_STRING else value[:MAX_DETAIL_STRING] + "…"
    if isinstance(value, dict) and depth < 5:
        return {_text(str(k))[:100]: _cap(v, depth + 1) for k, v in list(value.items())[:100]}
    if isinstance(value, list | tuple) and depth < 5:
        return [_cap(v, depth + 1) for v in list(value)[:100]]
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if value is None or isinstance(value, bool | int | float):
        return value
    return _cap(str(value), depth)


def _locked_head(session: Session) -> tuple[int | None, str | None, dt.datetime]:
    """(seq, hash) of the ledger's last event (None, None when empty) and the database
    clock, read while this transaction holds the right to append."""
    if session.get_bind().dialect.name == "postgresql":
        seq, hash_, now = session.connection().execute(_LOCKED_HEAD_PG, {"k": LEDGER_LOCK_ID}).one()
    else:
        seq, hash_, now = session.connection().execute(_HEAD_SQLITE).one()
    return seq, hash_, clock_value(now)


# Events appended in a transaction wait here until it commits (see ``append``).
_PENDING = "exhibit_ledger_pending"


def append(
    db: Database,
    session: Session,
    *,
    actor: str,
    action: str,
    subject: str = "",
    report_id: str | None = None,
    item_id: str | None = None,
    detail: dict[str, Any] | None = None,
    request_id: str | None = None,
) -> CustodyEvent:
    """Append one event inside the caller's writing transaction (``db.write()``), so the
    event commits or rolls back with the change it records.

    The event is chained (seq, time, hash) and inserted when the transaction commits,
    after everything else it does: the right to extend the chain (PostgreSQL: an
    advisory lock held until commit) is then held for one statement, one INSERT and the
    commit, not for the rest of a long transaction. Every appender in the system queues
    on that lock, so an upload completing must not hold it while it updates its own rows
    (a burst of completions would otherwise stall every audited page view behind them).
    The returned event has its seq, time and hash once the transaction has committed.
    Inside a savepoint the event is chained at once, as a savepoint can roll back on its
    own."""
    if session.info.get(READ_ONLY):
        # A read session never commits: the event would vanish without a word.
        raise ReadOnlySession("custody events are appended in Database.write()")
    event = CustodyEvent(
        seq=0,
        at=dt.datetime.fromtimestamp(0, dt.UTC),
        actor=_column(actor, 200),
        action=_column(action, 64),
        subject=_column(subject, 100),
        report_id=report_id,
        item_id=item_id,
        detail=_cap(detail or {}),
        request_id=_column(request_id, 64) if request_id else None,
        prev_hash="",
        hash="",
    )
    if session.in_nested_transaction():
        _chain(session, [event])
    else:
        session.info.setdefault(_PENDING, []).append(event)
    return event


def _chain(session: Session, events: list[CustodyEvent]) -> None:
    """Give ``events`` the next seqs, the database time and their hashes, and insert them,
    holding the right to append (on PostgreSQL, until the transaction ends)."""
    head_seq, prev, now = _locked_head(session)
    seq = head_seq or 0
    prev = prev if head_seq is not None and prev is not None else GENESIS
    for event in events:
        seq += 1
        event.seq, event.at, event.prev_hash = seq, now, prev
        event.hash = prev = compute_hash(event.prev_hash, event_body(event))
    session.add_all(events)
    session.flush()


@sa_event.listens_for(Session, "before_commit")
def _chain_pending(session: Session) -> None:
    pending = session.info.pop(_PENDING, None)
    if pending:
        session.flush()  # the transaction's own changes first, before the lock is taken
        _chain(session, pending)


@sa_event.listens_for(Session, "after_rollback")
def _drop_pending(session: Session) -> None:
    # The change the events recorded did not happen; neither did they.
    session.info.pop(_PENDING, None)


# --- verification ---------------------------------------------------------------------


@dataclass
class VerifyResult:
    ok: bool
    count: int
    head_seq: int
    head_hash: str
    first_bad_seq: int | None = None
    reason: str | None = None
    checkpoint_seq: int | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "count": self.count,
            "head_seq": self.head_seq,
            "head_hash": self.head_hash,
            "first_bad_seq": self.first_bad_seq,
            "reason": self.reason,
            "checkpoint_seq": self.checkpoint_seq,
        }


def iter_events(db: Database, batch: int = 5000, after: int | None = None) -> Iterator[CustodyEvent]:
    """Every row of the ledger in seq order, in batches (constant memory for millions of
    events). Every row: a forged row with seq 0 or below must be seen, not skipped.
    With ``after``, only the rows past that seq."""
    last: int | None = after
    while True:
        query = select(CustodyEvent).order_by(CustodyEvent.seq).limit(batch)  # type: ignore[arg-type]
        if last is not None:
            query = query.where(CustodyEvent.seq > last)  # type: ignore[arg-type]
        with db.read() as session:
            rows = list(session.exec(query).scalars())  # type: ignore[call-overload]
        if not rows:
            return
        yield from rows
        last = rows[-1].seq


def verify_events(events: Iterator[CustodyEvent] | list[CustodyEvent], checkpoint: dict[str, Any] | None = None,
                  *, start: tuple[int, str, int] | None = None) -> VerifyResult:
    """Walk the chain. The first problem found is reported by the seq where it shows:

    * a row outside the sequence (seq 0 or below): that row;
    * a deleted row: the first missing seq;
    * an edited row: that row (its hash no longer matches its content); if the editor
      also rewrote its hash, the next row, which no longer links to it;
    * two rows swapped: the first of them (it does not link to its predecessor);
    * a forged row inserted into the chain: the forged row, when the row after it still
      links to the one before it;
    * with a checkpoint: a cut tail (the first seq the checkpoint vouches for that is
      gone), a rewritten history (the checkpoint's seq), a count that differs.

    A forged row appended at the end with a correct hash is indistinguishable from a
    real one (anyone can compute SHA-256): only a later checkpoint, kept outside the
    database, commits to it."""
    prev = GENESIS
    before_prev: str | None = None  # hash of the event before the previous one
    expected_seq = 1
    count = 0
    if start is not None:
        # Continue a walk already made up to (seq, hash, count): ``events`` are the rows
        # after that seq (``verify_since``).
        expected_seq, prev, count = start[0] + 1, start[1], start[2]
    cp_seq = int(checkpoint["seq"]) if checkpoint else None
    # A checkpoint of the empty ledger (seq 0) vouches for the genesis hash.
    seen_at_checkpoint: str | None = GENESIS if cp_seq == 0 else None
    for event in events:
        if event.seq < expected_seq:
            # Rows come in seq order and seq is the primary key, so this is a row below
            # 1: nothing the ledger ever writes.
            return VerifyResult(False, count, expected_seq - 1, prev, event.seq,
                                f"event {event.seq} is outside the chain (sequence numbers start at 1)", cp_seq)
        if event.seq != expected_seq:
            # A deleted row shows as a gap; the first missing seq is the bad one.
            return VerifyResult(False, count, expected_seq - 1, prev, expected_seq,
                                f"event {expected_seq} is missing (next present is {event.seq})", cp_seq)
        if event.prev_hash != prev:
            if before_prev is not None and event.prev_hash == before_prev:
                return VerifyResult(False, count - 1, event.seq - 2, before_prev, event.seq - 1,
                                    f"event {event.seq - 1} was inserted: event {event.seq} links past it "
                                    f"to event {event.seq - 2}", cp_seq)
            return VerifyResult(False, count, event.seq - 1, prev, event.seq,
                                f"event {event.seq} does not link to event {event.seq - 1}", cp_seq)
        if compute_hash(prev, event_body(event)) != event.hash:
            return VerifyResult(False, count, event.seq - 1, prev, event.seq,
                                f"event {event.seq} was altered (its hash does not match its content)", cp_seq)
        before_prev, prev = prev, event.hash
        count += 1
        if cp_seq is not None and event.seq == cp_seq:
            seen_at_checkpoint = event.hash
        expected_seq += 1
    head_seq = expected_seq - 1
    if checkpoint is not None and cp_seq is not None:
        if head_seq < cp_seq:
            return VerifyResult(False, count, head_seq, prev, head_seq + 1,
                                f"the ledger ends at {head_seq} but the checkpoint vouches for {cp_seq}: "
                                "events were removed from the end", cp_seq)
        if seen_at_checkpoint != checkpoint["hash"]:
            return VerifyResult(False, count, head_seq, prev, cp_seq,
                                f"event {cp_seq} differs from the one the checkpoint signed", cp_seq)
        # The chain up to the checkpoint is exactly events 1..cp_seq, so the checkpoint's
        # count must be cp_seq; a checkpoint signed over a ledger that held rows outside
        # the chain says otherwise.
        if "count" in checkpoint and int(checkpoint["count"]) != cp_seq:
            return VerifyResult(False, count, head_seq, prev, cp_seq,
                                f"the checkpoint counts {checkpoint['count']} events up to seq {cp_seq}", cp_seq)
    return VerifyResult(True, count, head_seq, prev, None, None, cp_seq)


def verify(db: Database, checkpoint: dict[str, Any] | None = None) -> VerifyResult:
    return verify_events(iter_events(db), checkpoint)


def verify_since(db: Database, anchor: dict[str, Any] | None) -> VerifyResult:
    """Verify only what was appended after a trusted checkpoint body ``anchor`` (the
    periodic job's incremental walk): the event at the anchor's seq must still be there,
    with the hash the anchor signed and a hash that matches its content, and every later
    event must extend it. A cut tail, a rollback to an older backup and any change to
    the anchored event or after it are found; a change *before* the anchor that kept
    the anchored hash is not (it needs a forged SHA-256 chain that still ends in the
    signed hash, i.e. a hash collision), and a full ``verify`` walks everything."""
    if anchor is None or int(anchor["seq"]) == 0:
        return verify(db, anchor)
    cp_seq, cp_hash, cp_count = int(anchor["seq"]), str(anchor["hash"]), int(anchor.get("count", anchor["seq"]))
    with db.read() as session:
        row = session.get(CustodyEvent, cp_seq)
        head = session.exec(select(CustodyEvent.seq).order_by(CustodyEvent.seq.desc()).limit(1)).scalars().first()  # type: ignore[call-overload,attr-defined]
    if row is None:
        head_seq = int(head or 0)
        return VerifyResult(False, 0, head_seq, "", min(head_seq + 1, cp_seq),
                            f"event {cp_seq}, which the checkpoint vouches for, is gone: events were removed", cp_seq)
    if row.hash != cp_hash or compute_hash(row.prev_hash, event_body(row)) != row.hash:
        return VerifyResult(False, 0, cp_seq, cp_hash, cp_seq,
                            f"event {cp_seq} differs from the one the checkpoint signed", cp_seq)
    result = verify_events(iter_events(db, after=cp_seq), start=(cp_seq, cp_hash, cp_count))
    result.checkpoint_seq = cp_seq
    return result


# --- signed checkpoints ---------------------------------------------------------------


class SigningKeyForbidden(RuntimeError):
    """This process declared it must never hold the ledger's signing key."""


_signing_key_forbidden = False


def forbid_signing_key() -> None:
    """Declare that this process must never load the checkpoint signing key: from now on
    ``load_or_create_signing_key`` raises. The public door calls it at start: a process
    that faces the internet and is taken over must not be able to sign a forged history
    (SECURITY_CHECKLIST AU-06). It cannot be undone in the process."""
    global _signing_key_forbidden
    _signing_key_forbidden = True


def signing_key_forbidden() -> bool:
    return _signing_key_forbidden


def load_or_create_signing_key(path: Path) -> Ed25519PrivateKey:
    """The Ed25519 key at ``path`` (EXHIBIT_SIGNING_KEY_FILE), created 0600 in a 0700
    directory when missing. Refused in a process that called ``forbid_signing_key``."""
    if _signing_key_forbidden:
        raise SigningKeyForbidden("this process may not load the ledger signing key")
    path = Path(path)
    if path.exists():
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        if not isinstance(key, Ed25519PrivateKey):
            raise ValueError(f"{path} is not an Ed25519 private key")
        return key
    # 0700 directory, 0600 file: no other local account reads the key (AU-06).
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    # The private key is created 0600 and never world-readable, even for an instant.
    # O_EXCL: two processes starting at once agree on one key (the loser reads it).
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return load_or_create_signing_key(path)
    with os.fdopen(fd, "wb") as f:
        f.write(pem)
        f.flush()
        os.fsync(f.fileno())
    return key


def public_key_b64(key: Ed25519PrivateKey) -> str:
    raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return base64.b64encode(raw).decode("ascii")


class LedgerBroken(Exception):
    """The chain does not verify: no checkpoint is signed over it."""

    code = "ERR_LEDGER_BROKEN"

    def __init__(self, result: VerifyResult) -> None:
        super().__init__(f"the ledger does not verify at seq {result.first_bad_seq}: {result.reason}")
        self.result = result


def make_checkpoint(db: Database, key: Ed25519PrivateKey) -> dict[str, Any]:
    """Verify the chain, then sign the head that was verified. The document is
    self-contained: body, public key, signature.

    Signing only a verified head matters twice over: a checkpoint must never vouch for
    a chain that was already tampered with (it would launder the change), and seq,
    hash and count all come from the same walk, so appends racing the checkpoint cannot
    make them disagree (reading the head and ``COUNT(*)`` in two READ COMMITTED
    statements could). Events appended after the walk are covered by the next
    checkpoint. Raises ``LedgerBroken``."""
    result = verify(db)
    if not result.ok:
        raise LedgerBroken(result)
    return sign_checkpoint(db, key, result)


def sign_checkpoint(db: Database, key: Ed25519PrivateKey, result: VerifyResult) -> dict[str, Any]:
    """Sign the head of a verified walk (``result``), store it in the checkpoint table
    and return the document. The caller has verified the chain up to that head."""
    if not result.ok:
        raise LedgerBroken(result)
    with db.write() as session:
        at = db.now(session)
        body = {"seq": result.head_seq, "hash": result.head_hash, "count": result.count, "at": format_time(at)}
        signature = base64.b64encode(key.sign(canonical_json(body))).decode("ascii")
        pub = public_key_b64(key)
        session.add(Checkpoint(seq=result.head_seq, hash=result.head_hash, count=result.count, at=at,
                               public_key=pub, signature=signature))
    return {"checkpoint": body, "algorithm": "Ed25519", "public_key": pub, "signature": signature}


class CheckpointInvalid(Exception):
    pass


def read_checkpoint(document: dict[str, Any], trusted_public_key: str | None = None) -> dict[str, Any]:
    """Check a checkpoint document's signature and return its body. With
    ``trusted_public_key`` the signer must also be that key (a forged checkpoint signed
    by another key is refused)."""
    try:
        body = document["checkpoint"]
        pub = document["public_key"]
        sig = base64.b64decode(document["signature"])
        if trusted_public_key is not None and pub != trusted_public_key:
            raise CheckpointInvalid("checkpoint signed by an unexpected key")
        Ed25519PublicKey.from_public_bytes(base64.b64decode(pub)).verify(sig, canonical_json(body))
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointInvalid(f"malformed checkpoint: {exc}") from None
    except InvalidSignature:
        raise CheckpointInvalid("checkpoint signature does not verify") from None
    return dict(body)


def check_public_key(value: str) -> str:
    """A pinned public key as given (base64 of 32 raw bytes), or ``ValueError``."""
    try:
        Ed25519PublicKey.from_public_bytes(base64.b64decode(value, validate=True))
    except ValueError:
        raise ValueError("the public key must be the base64 of a raw 32-byte Ed25519 key") from None
    return value


def stored_checkpoint_document(row: Checkpoint) -> dict[str, Any]:
    body = {"seq": row.seq, "hash": row.hash, "count": row.count, "at": format_time(row.at)}
    return {"checkpoint": body, "algorithm": "Ed25519", "public_key": row.public_key, "signature": row.signature}


def latest_stored_checkpoint(db: Database, trusted_public_key: str) -> dict[str, Any] | None:
    """The body of the newest checkpoint in the database whose signature verifies with
    ``trusted_public_key`` (None when there is none). Rows signed by another key, or
    whose signature does not verify, are passed over: whoever can write the table
    cannot vouch for anything without the pinned key (AU-06), but an edited or deleted
    stored checkpoint is only caught by the copies kept outside (EXHIBIT_CHECKPOINT_URL)."""
    last_id: int | None = None
    while True:
        query = select(Checkpoint).order_by(Checkpoint.id.desc()).limit(500)  # type: ignore[union-attr]
        if last_id is not None:
            query = query.where(Checkpoint.id < last_id)  # type: ignore[operator,arg-type]
        with db.read() as session:
            rows = list(session.exec(query).scalars())  # type: ignore[call-overload]
        if not rows:
            return None
        # Newest by the sequence it vouches for, then by when it was written.
        for row in sorted(rows, key=lambda r: (r.seq, r.id), reverse=True):
            try:
                return read_checkpoint(stored_checkpoint_document(row), trusted_public_key=trusted_public_key)
            except CheckpointInvalid:
                continue
        last_id = rows[-1].id
