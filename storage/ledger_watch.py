"""The periodic ledger verifier (issue 11 item 3, SECURITY_CHECKLIST AU-05, AU-06, AU-10).

Every ``EXHIBIT_CHECKPOINT_INTERVAL`` it

1. finds the last good checkpoint: the newest one at ``EXHIBIT_CHECKPOINT_URL`` (a
   directory or an S3 prefix with Object Lock, outside the database) whose signature
   verifies with this installation's key; failing that, the newest such one the
   database holds;
2. verifies the chain from there (``ledger.verify_since``: the anchored event still has
   the signed hash, every later event extends it), and the whole chain on the first
   round and every ``full_every`` rounds;
3. when the chain holds and has grown, signs its head and writes the checkpoint to the
   database and to the destination (write-once: a name is never reused, a file never
   rewritten, an S3 object born under COMPLIANCE retention);
4. records the outcome in ``ledger_status`` (the admin page and /readyz read it), in the
   ``health`` mapping it was given, and in the log: a failure is an ERROR line
   ``ledger.verify.failed`` with the seq and reason.

The threat: someone who can write the database (an attacker with the application's
credentials on SQLite, a DBA on PostgreSQL, a restored old backup) rewrites or cuts
the history. The checkpoints outside the database still commit to what was there.

Only processes that may hold the signing key run it (``exhibit worker``, the staff side
of ``exhibit serve``); the public door calls ``ledger.forbid_signing_key()``.
``LedgerWatch`` has ``start()``/``stop()`` for a service and ``run_once()`` for tests and
the command line.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlparse

from sqlmodel import Session, select

from storage import ledger
from storage.audit_health import FULL, record_full_verification
from storage.db import Database
from storage.models import LedgerStatus
from storage.settings import Settings

log = logging.getLogger("exhibit.ledger")

STATUS_NAME = "ledger"


class Destination(Protocol):
    description: str  # for the admin page and the log: no credentials
    separate: bool  # False: beside the data (the default, for development)

    def put(self, name: str, data: bytes) -> None: ...
    def names(self) -> list[str]: ...
    def get(self, name: str) -> bytes: ...
    def close(self) -> None: ...


class DirectoryDestination:
    """Checkpoint files in a directory: created 0400 in a 0700 directory, never replaced
    (a link to a fully written, fsynced temporary file, which fails if the name exists)."""

    def __init__(self, path: Path, *, separate: bool = True) -> None:
        self.path = Path(path)
        self.description = f"file://{self.path}"
        self.separate = separate

    def put(self, name: str, data: bytes) -> None:
        self.path.mkdir(mode=0o700, parents=True, exist_ok=True)
        tmp = self.path / f".{name}.{os.getpid()}.{threading.get_ident()}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o400)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.link(tmp, self.path / name)  # FileExistsError: never overwrite a checkpoint
        finally:
            tmp.unlink(missing_ok=True)
        dir_fd = os.open(self.path, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)

    def names(self) -> list[str]:
        if not self.path.is_dir():
            return []
        return [p.name for p in self.path.iterdir() if p.name.startswith("checkpoint-")]

    def get(self, name: str) -> bytes:
        return (self.path / name).read_bytes()

    def close(self) -> None:
        pass


class S3Destination:
    def __init__(self, settings: Settings, bucket: str, prefix: str) -> None:
        from storage.blobs.s3 import S3WriteOnceFolder

        self._folder = S3WriteOnceFolder(bucket=bucket, prefix=prefix, endpoint_url=settings.s3_endpoint_url,
                                         region=settings.s3_region, retention_days=settings.s3_retention_days)
        self.description = f"s3://{bucket}/{prefix}".rstrip("/") + ("" if self._folder.object_lock else " (no Object Lock)")
        self.separate = True
        if not self._folder.object_lock:
            log.warning("ledger.checkpoints.not_locked", extra={"destination": self.description})

    def put(self, name: str, data: bytes) -> None:
        self._folder.put(name, data)

    def names(self) -> list[str]:
        return [n for n in self._folder.names() if n.startswith("checkpoint-")]

    def get(self, name: str) -> bytes:
        return self._folder.get(name)

    def close(self) -> None:
        self._folder.close()


def open_destination(settings: Settings) -> Destination:
    url = settings.checkpoint_url
    parsed = urlparse(url)
    if parsed.scheme == "s3":
        if not parsed.netloc:
            raise ValueError("EXHIBIT_CHECKPOINT_URL: s3://bucket/prefix needs a bucket")
        return S3Destination(settings, parsed.netloc, parsed.path.strip("/"))
    if parsed.scheme in ("file", ""):
        path = Path(parsed.path if parsed.scheme == "file" else url).resolve()
        data_dir = settings.data_dir.resolve()
        # Beside the data, the checkpoints share the data's fate: whoever can rewrite the
        # database can rewrite them too. Fine for development, said loudly.
        separate = not path.is_relative_to(data_dir)
        if not separate:
            log.warning("ledger.checkpoints.not_separate", extra={"destination": str(path)})
        return DirectoryDestination(path, separate=separate)
    raise ValueError(f"EXHIBIT_CHECKPOINT_URL: unsupported scheme {parsed.scheme!r} (file:// or s3://)")


def checkpoint_name(document: dict[str, Any]) -> str:
    body = document["checkpoint"]
    at = str(body["at"]).replace(":", "").replace("-", "")
    # Zero-padded seq first: names sort in the order of what they vouch for.
    return f"checkpoint-{int(body['seq']):015d}-{at}.json"


def latest_in(destination: Destination, public_key: str) -> dict[str, Any] | None:
    """The body of the newest checkpoint at ``destination`` signed by ``public_key``."""
    for name in sorted(destination.names(), reverse=True):
        try:
            return ledger.read_checkpoint(json.loads(destination.get(name)), trusted_public_key=public_key)
        except (ledger.CheckpointInvalid, ValueError):
            log.warning("ledger.checkpoints.invalid", extra={"checkpoint": name})
    return None


@dataclass
class Round:
    ok: bool
    result: ledger.VerifyResult | None
    written: dict[str, Any] | None
    reason: str | None


def read_status(session: Session, name: str = STATUS_NAME) -> LedgerStatus | None:
    """The last recorded outcome (for the admin page and /readyz)."""
    return session.get(LedgerStatus, name)


def failing(session: Session) -> list[LedgerStatus]:
    """Verifiers whose last round failed: each is an alarm to show. (The record of the
    last full walk is not a verifier: the walk that failed is already here, or was the
    command line's, which said so to whoever ran it; the audit desk shows it.)"""
    return list(session.exec(select(LedgerStatus).where(LedgerStatus.ok == False,  # noqa: E712
                                                        LedgerStatus.name != FULL)))


class LedgerWatch:
    def __init__(self, settings: Settings, db: Database | None = None, *, destination: Destination | None = None,
                 interval: float | None = None, health: dict[str, Any] | None = None, full_every: int = 96,
                 name: str = STATUS_NAME) -> None:
        self.settings = settings
        self._own_db = db is None
        self.db = db or Database(settings.database_url)
        self.destination = destination or open_destination(settings)
        self.interval = float(interval if interval is not None else settings.checkpoint_interval_seconds)
        self.health = health if health is not None else {}
        self.full_every = max(1, full_every)
        self.name = name
        self._rounds = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- one round ---------------------------------------------------------------

    def run_once(self) -> Round:
        try:
            outcome = self._round()
        except Exception as exc:  # the verifier itself failed: as loud as a broken chain
            log.exception("ledger.verify.error")
            outcome = Round(False, None, None, f"the verifier could not run: {type(exc).__name__}: {exc}"[:500])
        self._rounds += 1
        self._record(outcome)
        return outcome

    def _round(self) -> Round:
        key = ledger.load_or_create_signing_key(self.settings.signing_key_file)  # type: ignore[arg-type]
        public_key = ledger.public_key_b64(key)
        pinned = self.settings.ledger_public_key
        if pinned and pinned != public_key:
            return Round(False, None, None, "EXHIBIT_LEDGER_PUBLIC_KEY is not the public half of "
                                            "EXHIBIT_SIGNING_KEY_FILE: checkpoints would not verify")
        anchor = latest_in(self.destination, public_key) or ledger.latest_stored_checkpoint(self.db, public_key)
        full = self._rounds % self.full_every == 0
        if full:
            result = ledger.verify(self.db, anchor)
            # The audit desk shows when the whole chain was last walked (storage.audit_health).
            record_full_verification(self.db, result, by=f"periodic verifier ({self.name})")
        else:
            result = ledger.verify_since(self.db, anchor)
        if not result.ok:
            return Round(False, result, None, result.reason)
        written = None
        if anchor is None or result.head_seq > int(anchor["seq"]):
            written = ledger.sign_checkpoint(self.db, key, result)
            self.destination.put(checkpoint_name(written), (json.dumps(written, indent=2, sort_keys=True) + "\n").encode())
        return Round(True, result, written, None)

    def _record(self, outcome: Round) -> None:
        result = outcome.result
        head_seq = result.head_seq if result else 0
        first_bad_seq = result.first_bad_seq if result else None
        checkpoint_seq: int | None = (int(outcome.written["checkpoint"]["seq"]) if outcome.written
                                      else result.checkpoint_seq if result else None)
        state = {"ok": outcome.ok, "head_seq": head_seq, "first_bad_seq": first_bad_seq, "reason": outcome.reason,
                 "checkpoint_seq": checkpoint_seq, "destination": self.destination.description}
        if outcome.ok:
            log.info("ledger.verify.ok", extra=state)
        else:
            # Loud: an operator's alerting keys on this line (AU-05, AU-10).
            log.error("ledger.verify.failed: %s", outcome.reason, extra=state)
        self.health["ledger"] = dict(state)
        try:
            with self.db.write() as session:
                row = session.get(LedgerStatus, self.name)
                if row is None:
                    row = LedgerStatus(name=self.name, ok=outcome.ok, checked_at=self.db.now(session), head_seq=0)
                row.ok = outcome.ok
                row.checked_at = self.db.now(session)
                row.head_seq = head_seq
                row.first_bad_seq = first_bad_seq
                row.reason = (outcome.reason or None) and str(outcome.reason)[:500]
                row.checkpoint_seq = checkpoint_seq
                row.destination = self.destination.description[:500]
                session.add(row)
        except Exception:
            log.exception("ledger.status.unrecorded")

    # -- as a service ------------------------------------------------------------

    def start(self) -> LedgerWatch:
        self._thread = threading.Thread(target=self._loop, name="exhibit-ledger-watch", daemon=True)
        self._thread.start()
        return self

    def _loop(self) -> None:
        self.run_once()
        while not self._stop.wait(self.interval):
            self.run_once()

    def stop(self, timeout: float = 30) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=timeout)
        self.destination.close()
        if self._own_db:
            self.db.dispose()
