"""Retention, legal hold and lawful disposal (issue 14 items 1-3; DESIGN.md section 3,
``any → purged``).

**Retention dates.** Every report has one: its creation plus the period of its kind
(``EXHIBIT_RETENTION_BY_KIND``, else ``EXHIBIT_RETENTION_DEFAULT``), unless a person set
another with a reason (``set_retention``: a ``report_retention`` row and a
``report.retention_set`` custody event). An item's date is its report's; an item
declined at triage goes earlier, ``EXHIBIT_RETENTION_DECLINED`` after its receipt,
unless a person set the report's date (then that decision governs every item of it).

**Legal holds** (``place_hold`` / ``release_hold``) cover a report or one item, carry a
reason, who and when, and are custody events. While one is live nothing it covers is
disposed of, whatever its date.

**Disposal** (``run``: ``exhibit retention run`` and the worker) destroys the bytes of
evidence past its date and not held: the original (under ``originals/`` or
``quarantine/``), every derivative, and any unfinished upload under those names (on
S3: every object version and multipart upload). It keeps the record: the item row with
its hashes, size, type, verdict and filename, a metadata summary with no location in
it, its derivative rows (their hashes), and an ``item.purged`` custody event naming the
rule. Crash safety (kill -9 at any point): (1) a ``disposal`` row naming the rule and
every key is committed before the first byte goes; (2) the bytes are deleted, each
delete idempotent; (3) the ``purged`` state, its custody event and the row's
``finished_at`` commit in one transaction. A run first completes every unfinished
``disposal`` row, so an interrupted item ends purged, never half-done and forgotten.

**S3 Object Lock** (``sync_locks``): an original's COMPLIANCE retain-until follows its
retention date (never shortened: S3 cannot), and a legal hold here is an Object Lock
legal hold there. The wanted lock is written with the decision (``object_lock``), then
applied; a run applies whatever differs, so a crash between the two is repaired. A
disposal the lock still forbids is reported in the run's output with the reason, and the
item is left intact (checked before anything is deleted).

Threats answered: evidence destroyed before its time or while a court needs it
(holds win over dates; the record of who set a date and why is in the ledger);
evidence kept longer than the law allows (UK GDPR storage limitation, MoPI review
periods); a disposal that cannot be proved (the custody event names the rule, and the
hash of what was destroyed stays).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol, runtime_checkable

import anyio.to_thread
from sqlalchemy import and_, or_, select
from sqlmodel import Session, col

from storage import ledger
from storage.blobs import BlobStore, BlobStoreError
from storage.blobs.keys import split_key
from storage.blobs.protocol import RetentionLocked
from storage.db import Database
from storage.errors import Conflict, Invalid, NotFound
from storage.lifecycle import TERMINAL, ItemState, transition
from storage.models import (
    Derivative,
    Disposal,
    EvidenceItem,
    LegalHold,
    ObjectLock,
    Report,
    ReportRetention,
    Triage,
    Upload,
    utcnow,
)
from storage.settings import Period, Settings, parse_period, parse_periods

log = logging.getLogger(__name__)

MAX_REASON = 1000
# Metadata a purged item keeps: what it was, never where or who (GPS, serial numbers,
# free text the camera wrote). UK GDPR storage limitation: the rest goes with the bytes.
SUMMARY_KEYS = frozenset({"width", "height", "duration", "format_name", "codec_name", "codec_type", "mime",
                          "Make", "Model", "DateTimeOriginal", "creation_time", "frames", "bit_rate"})


# --- the store's part ------------------------------------------------------------------


@runtime_checkable
class Destroyer(Protocol):
    """A blob store that can destroy bytes for a lawful disposal (both backends)."""

    async def destroy(self, key: str) -> bool:
        """Delete the object ``key`` (every version), any unfinished upload under that
        name and its bookkeeping. Idempotent: True when something was there.
        ``RetentionLocked`` when a lock forbids it."""
        ...

    async def lock_state(self, key: str) -> str | None:
        """Why destroying ``key`` would be refused now (a retention date not reached,
        a legal hold), or None."""
        ...


@runtime_checkable
class Lockable(Protocol):
    """A store with Object Lock (S3 with a lock-enabled bucket)."""

    object_lock: bool

    async def set_lock(self, key: str, *, until: dt.datetime | None, hold: bool | None) -> dt.datetime | None:
        """Extend ``key``'s COMPLIANCE retain-until to ``until`` (never shortened) and/or
        set its legal hold. Returns the retain-until now in force."""
        ...


# --- policy ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Policy:
    default: Period
    by_kind: dict[str, Period]
    declined: Period

    @classmethod
    def from_settings(cls, settings: Settings) -> Policy:
        return cls(default=parse_period(settings.retention_default),
                   by_kind=parse_periods(settings.retention_by_kind),
                   declined=parse_period(settings.retention_declined))

    def period(self, kind: str) -> Period:
        return self.by_kind.get(kind, self.default)

    def rule(self, kind: str) -> str:
        source = "EXHIBIT_RETENTION_BY_KIND" if kind in self.by_kind else "EXHIBIT_RETENTION_DEFAULT"
        return f"{source}: {kind}={self.period(kind)} after the report was created"


@dataclass(frozen=True)
class Dated:
    until: dt.datetime
    rule: str
    set_by: str | None = None
    reason: str | None = None


def report_date(policy: Policy, report: Report, override: ReportRetention | None) -> Dated:
    if override is not None:
        return Dated(override.retain_until, f"set by {override.set_by}: {override.reason}",
                     set_by=override.set_by, reason=override.reason)
    return Dated(policy.period(report.kind).after(report.created_at), policy.rule(report.kind))


def item_date(policy: Policy, item: EvidenceItem, report: Report, override: ReportRetention | None) -> Dated:
    dated = report_date(policy, report, override)
    if override is None and item.triage == Triage.DECLINED:
        declined = policy.declined.after(item.received_at)
        if declined < dated.until:
            return Dated(declined, f"EXHIBIT_RETENTION_DECLINED: declined at triage, {policy.declined} after receipt")
    return dated


def retention_of(session: Session, policy: Policy, report: Report) -> Dated:
    return report_date(policy, report, session.get(ReportRetention, report.id))


# --- holds ------------------------------------------------------------------------------


def _live_holds(session: Session, report_id: str, item_id: str | None = None) -> list[LegalHold]:
    """Live holds covering ``item_id`` (its own and its report's), or on the report."""
    target: Any = col(LegalHold.item_id).is_(None)
    if item_id is not None:
        target = or_(target, col(LegalHold.item_id) == item_id)
    query = select(LegalHold).where(col(LegalHold.report_id) == report_id, col(LegalHold.released_at).is_(None),
                                    target).order_by(col(LegalHold.placed_at))
    return list(session.exec(query).scalars().all())  # type: ignore[call-overload]


def is_held(session: Session, item: EvidenceItem) -> bool:
    return bool(_live_holds(session, item.report_id, item.id))


def held_items(session: Session, items: list[EvidenceItem]) -> set[str]:
    """Which of ``items`` a live hold keeps (its own, or its report's): one query for the
    lot, where ``is_held`` would ask once per item."""
    if not items:
        return set()
    report_ids = sorted({it.report_id for it in items})
    query = select(col(LegalHold.report_id), col(LegalHold.item_id)).where(
        col(LegalHold.report_id).in_(report_ids), col(LegalHold.released_at).is_(None))
    whole_reports: set[str] = set()
    single: set[str] = set()
    for report_id, item_id in session.exec(query).all():  # type: ignore[call-overload]
        if item_id is None:
            whole_reports.add(report_id)
        else:
            single.add(item_id)
    return {it.id for it in items if it.report_id in whole_reports or it.id in single}


def _lock_row(db: Database, session: Session, model: Any, key: str) -> Any:
    query = select(model).where(col(model.id if hasattr(model, "id") else model.item_id) == key)
    if db.is_postgresql:
        query = query.with_for_update()
    return session.exec(query).scalars().first()  # type: ignore[call-overload]


def _reason(reason: str) -> str:
    text = " ".join((reason or "").split())
    if not text:
        raise Invalid("a reason is required", code="ERR_REASON_REQUIRED")
    return text[:MAX_REASON]


def resolve_target(session: Session, ref_or_item: str) -> tuple[Report, EvidenceItem | None]:
    """``REF|ITEM`` of the command line: an item id, else a report reference."""
    item = session.get(EvidenceItem, ref_or_item) if len(ref_or_item) <= 64 else None
    if item is not None:
        report = session.get(Report, item.report_id)
        assert report is not None
        return report, item
    report = session.exec(select(Report).where(col(Report.reference) == ref_or_item)).scalars().first()  # type: ignore[call-overload]
    if report is None:
        raise NotFound(f"no report or item {ref_or_item[:64]}", code="ERR_NOT_FOUND")
    return report, None


def place_hold(db: Database, session: Session, report: Report, item: EvidenceItem | None, *, reason: str,
               actor: str, request_id: str | None = None) -> LegalHold:
    """Put a legal hold on ``report`` (``item`` None) or one item. The report (and the
    item) row is locked first, as a disposal locks it, so a hold and a disposal that
    race are serialised: either the hold is live before the disposal looks, or the
    disposal has begun and the hold is refused (ERR_DISPOSAL_UNDER_WAY)."""
    text = _reason(reason)
    _lock_row(db, session, Report, report.id)
    if item is not None:
        row = _lock_row(db, session, EvidenceItem, item.id)
        if row is None or row.state == ItemState.PURGED:
            raise Conflict("the item's bytes were already disposed of", code="ERR_ITEM_PURGED")
        if session.get(Disposal, item.id) is not None:
            raise Conflict("the item's disposal is already under way", code="ERR_DISPOSAL_UNDER_WAY")
    hold = LegalHold(report_id=report.id, item_id=item.id if item else None, reason=text, placed_by=actor,
                     placed_at=utcnow())
    session.add(hold)
    session.flush()
    ledger.append(db, session, actor=actor, action="hold.placed",
                  subject=f"item:{item.id}" if item else f"report:{report.id}", report_id=report.id,
                  item_id=item.id if item else None, detail={"hold_id": hold.id, "reason": text},
                  request_id=request_id)
    _want_locks(session, report, item, policy=None)
    return hold


def release_hold(db: Database, session: Session, report: Report, item: EvidenceItem | None, *, reason: str,
                 actor: str, request_id: str | None = None) -> list[LegalHold]:
    """Release the live holds placed on exactly this target (the report's own holds, or
    the item's own). ERR_NO_HOLD when there is none. Admins only (the caller checks)."""
    text = _reason(reason)
    _lock_row(db, session, Report, report.id)
    target = col(LegalHold.item_id) == item.id if item else col(LegalHold.item_id).is_(None)
    holds = list(session.exec(select(LegalHold).where(  # type: ignore[call-overload]
        col(LegalHold.report_id) == report.id, col(LegalHold.released_at).is_(None), target)).scalars().all())
    if not holds:
        raise NotFound("no live hold on that", code="ERR_NO_HOLD")
    now = utcnow()
    for hold in holds:
        hold.released_at, hold.released_by, hold.release_reason = now, actor, text
        session.add(hold)
        ledger.append(db, session, actor=actor, action="hold.released",
                      subject=f"item:{item.id}" if item else f"report:{report.id}", report_id=report.id,
                      item_id=item.id if item else None,
                      detail={"hold_id": hold.id, "reason": text, "placed_by": hold.placed_by,
                              "placed_reason": hold.reason}, request_id=request_id)
    session.flush()
    _want_locks(session, report, item, policy=None)
    return holds


def list_holds(session: Session, *, live_only: bool = True, limit: int = 500) -> list[dict[str, Any]]:
    query = (select(LegalHold, Report.reference).join(Report, col(Report.id) == col(LegalHold.report_id))  # type: ignore[call-overload]
             .order_by(col(LegalHold.placed_at).desc()).limit(limit))
    if live_only:
        query = query.where(col(LegalHold.released_at).is_(None))
    return [hold_dict(h, ref) for h, ref in session.exec(query).all()]


def hold_dict(hold: LegalHold, reference: str) -> dict[str, Any]:
    return {"id": hold.id, "report": reference, "report_id": hold.report_id, "item_id": hold.item_id,
            "reason": hold.reason, "placed_by": hold.placed_by, "placed_at": ledger.format_time(hold.placed_at),
            "released_at": ledger.format_time(hold.released_at) if hold.released_at else None,
            "released_by": hold.released_by, "release_reason": hold.release_reason}


# --- setting a date ---------------------------------------------------------------------


def set_retention(db: Database, session: Session, policy: Policy, report: Report, until: dt.datetime, *,
                  reason: str, actor: str, allow_shorten: bool = True,
                  request_id: str | None = None) -> ReportRetention:
    """Set ``report``'s retention date, with a reason. A date already past is allowed
    (the next run disposes). ``allow_shorten=False`` (an officer: see
    reviewer_ui/permissions.py) refuses a date earlier than the one in force."""
    text = _reason(reason)
    if until.tzinfo is None:
        raise Invalid("the date must be in UTC", code="ERR_DATE_INVALID")
    _lock_row(db, session, Report, report.id)
    before = retention_of(session, policy, report)
    if not allow_shorten and until < before.until:
        raise Invalid("only an administrator may bring a retention date forward", code="ERR_RETENTION_SHORTEN")
    row = session.get(ReportRetention, report.id)
    if row is None:
        row = ReportRetention(report_id=report.id, retain_until=until, reason=text, set_by=actor, set_at=utcnow())
    else:
        row.retain_until, row.reason, row.set_by, row.set_at = until, text, actor, utcnow()
    session.add(row)
    session.flush()
    ledger.append(db, session, actor=actor, action="report.retention_set", subject=f"report:{report.id}",
                  report_id=report.id, request_id=request_id,
                  detail={"from": ledger.format_time(before.until), "from_rule": before.rule,
                          "to": ledger.format_time(until), "reason": text})
    _want_locks(session, report, None, policy=policy)
    return row


# --- what falls due ---------------------------------------------------------------------


@dataclass
class DueItem:
    item_id: str
    report: str
    report_id: str
    state: str
    until: str
    rule: str
    held: bool
    sha256: str
    size: int


def _candidates(session: Session, policy: Policy, cutoff: dt.datetime, limit: int | None) -> list[Any]:
    """Items (not purged) whose date may be on or before ``cutoff``: a coarse SQL filter
    (each kind's creation cutoff; a set date; declined items), refined in Python."""
    kinds = set(policy.by_kind)
    by_kind = [and_(col(Report.kind) == k, col(Report.created_at) <= policy.by_kind[k].before(cutoff)) for k in kinds]
    by_kind.append(and_(col(Report.kind).notin_(kinds) if kinds else True,
                        col(Report.created_at) <= policy.default.before(cutoff)))
    declined = and_(col(EvidenceItem.triage) == Triage.DECLINED,
                    col(EvidenceItem.received_at) <= policy.declined.before(cutoff))
    query = (
        select(EvidenceItem, Report, ReportRetention)
        .join(Report, col(Report.id) == col(EvidenceItem.report_id))
        .outerjoin(ReportRetention, col(ReportRetention.report_id) == col(Report.id))
        .where(col(EvidenceItem.state) != ItemState.PURGED,
               or_(and_(col(ReportRetention.report_id).is_not(None), col(ReportRetention.retain_until) <= cutoff),
                   and_(col(ReportRetention.report_id).is_(None), or_(*by_kind, declined))))
        .order_by(col(EvidenceItem.received_at), col(EvidenceItem.id))
    )
    if limit is not None:
        query = query.limit(limit)
    return list(session.exec(query).all())  # type: ignore[call-overload]


def due(session: Session, policy: Policy, *, within_seconds: int = 0, now: dt.datetime | None = None,
        limit: int | None = 1000) -> list[DueItem]:
    """Items whose retention date falls on or before ``now + within_seconds``, oldest
    first, each with its rule and whether a hold keeps it."""
    cutoff = (now or utcnow()) + dt.timedelta(seconds=within_seconds)
    dated_items = []
    for item, report, override in _candidates(session, policy, cutoff, limit):
        dated = item_date(policy, item, report, override)
        if dated.until <= cutoff:
            dated_items.append((item, report, dated))
    held = held_items(session, [item for item, _, _ in dated_items])
    return [DueItem(item_id=item.id, report=report.reference, report_id=report.id, state=item.state,
                    until=ledger.format_time(dated.until), rule=dated.rule,
                    held=item.id in held, sha256=item.sha256, size=item.size)
            for item, report, dated in dated_items]


# --- disposal ---------------------------------------------------------------------------


@dataclass
class RunReport:
    dry_run: bool
    disposed: list[dict[str, Any]] = field(default_factory=list)
    resumed: list[str] = field(default_factory=list)
    held: list[str] = field(default_factory=list)
    deferred: list[dict[str, str]] = field(default_factory=list)  # not finished processing yet
    refused: list[dict[str, str]] = field(default_factory=list)  # a lock forbids it: reported, intact
    errors: list[dict[str, str]] = field(default_factory=list)
    locks_applied: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "counts": {"disposed": len(self.disposed), "held": len(self.held),
                                          "refused": len(self.refused), "deferred": len(self.deferred),
                                          "errors": len(self.errors), "resumed": len(self.resumed)}}


Hook = Callable[[str], None]


def _keys_of(session: Session, item: EvidenceItem) -> list[str]:
    """Every key the item's bytes may live under: the original by both of its names
    (``originals/`` and ``quarantine/``, same hex), its upload's key, every derivative."""
    keys: list[str] = []
    _, hexpart = split_key(item.blob_key)
    for key in (item.blob_key, f"originals/{hexpart}", f"quarantine/{hexpart}"):
        if key not in keys:
            keys.append(key)
    if item.upload_id:
        upload = session.get(Upload, item.upload_id)
        if upload is not None and upload.blob_key not in keys:
            keys.append(upload.blob_key)
    for d in session.exec(select(Derivative).where(col(Derivative.item_id) == item.id)).scalars().all():  # type: ignore[call-overload]
        if d.blob_key not in keys:
            keys.append(d.blob_key)
    return keys


def metadata_summary(meta: dict[str, Any] | None) -> dict[str, Any] | None:
    """What a purged item keeps of its metadata: the allowlisted scalar facts, found at
    the top or one level down; never GPS or anything else that says where or who."""
    if not meta:
        return None
    kept: dict[str, Any] = {}

    def take(mapping: dict[str, Any]) -> None:
        for k, v in mapping.items():
            if k in SUMMARY_KEYS and isinstance(v, (str, int, float, bool)) and k not in kept:
                kept[k] = v if not isinstance(v, str) else v[:100]

    take(meta)
    for value in meta.values():
        if isinstance(value, dict):
            take(value)
            for inner in value.values():
                if isinstance(inner, list):
                    for entry in inner[:4]:
                        if isinstance(entry, dict):
                            take(entry)
    return {"purged_summary": kept}


async def _begin(db: Database, store: Any, policy: Policy, item_id: str, *, actor: str,
                 now: dt.datetime, report: RunReport) -> Disposal | None:
    """Step 1: decide under the row locks, and commit the disposal row (rule and keys)."""
    keys = _stored_keys(db, item_id)
    if keys is None:
        return None
    blocked = await _lock_refusal(store, keys)
    if blocked:
        # Threat: a silent skip would let evidence outlive its lawful date with
        # nobody told. Reported; nothing is touched.
        report.refused.append({"item_id": item_id, "reason": blocked})
        log.warning("retention.refused", extra={"item_id": item_id, "reason": blocked})
        return None
    with db.write() as s:
        _lock_row(db, s, Report, _report_id(s, item_id))
        row = _lock_row(db, s, EvidenceItem, item_id)
        if row is None or row.state == ItemState.PURGED or s.get(Disposal, item_id) is not None:
            return None
        rep = s.get(Report, row.report_id)
        assert rep is not None
        dated = item_date(policy, row, rep, s.get(ReportRetention, rep.id))
        if dated.until > now:
            return None  # its date moved meanwhile
        if is_held(s, row):
            report.held.append(item_id)
            return None
        disposal = Disposal(item_id=item_id, rule=dated.rule[:200], retain_until=dated.until,
                            keys=_keys_of(s, row), actor=actor[:200], started_at=utcnow())
        s.add(disposal)
        s.flush()
        s.expunge(disposal)
        return disposal


def _stored_keys(db: Database, item_id: str) -> list[str] | None:
    """``_keys_of`` the item, read outside any lock; None when there is no such item."""
    with db.read() as s:
        item = s.get(EvidenceItem, item_id)
        return _keys_of(s, item) if item is not None else None


async def _lock_refusal(store: Any, keys: list[str]) -> str | None:
    """Why a lock would refuse destroying the first of ``keys`` it protects, or None."""
    if isinstance(store, Destroyer):
        for key in keys:
            blocked = await store.lock_state(key)
            if blocked:
                return blocked
    return None


def _report_id(session: Session, item_id: str) -> str:
    item = session.get(EvidenceItem, item_id)
    return item.report_id if item is not None else ""


async def _destroy(store: BlobStore, disposal: Disposal, hook: Hook | None) -> list[str]:
    """Step 2: delete every key, each delete idempotent (a resumed run finds some gone)."""
    if not isinstance(store, Destroyer):
        raise BlobStoreError("this blob store cannot destroy bytes")
    destroyed: list[str] = []
    for n, key in enumerate(disposal.keys or []):
        try:
            if await store.destroy(key):
                destroyed.append(key)
        except RetentionLocked as exc:
            exc.destroyed = destroyed  # type: ignore[attr-defined]
            raise
        if hook:
            hook(f"deleted:{n}")
    return destroyed


def _finish(db: Database, disposal: Disposal, destroyed: list[str]) -> dict[str, Any] | None:
    """Step 3: state ``purged``, its custody event naming the rule, the metadata cut to
    its summary, and the disposal row finished, in one transaction."""
    with db.write() as s:
        item = _lock_row(db, s, EvidenceItem, disposal.item_id)
        row = s.get(Disposal, disposal.item_id)
        if item is None or row is None or row.finished_at is not None:
            return None
        before = item.state
        item.media_metadata = metadata_summary(item.media_metadata)
        transition(db, s, item, ItemState.PURGED, actor=disposal.actor,
                   reason=f"retention: {disposal.rule}"[:1000],
                   detail={"rule": disposal.rule, "retain_until": ledger.format_time(disposal.retain_until),
                           "sha256": item.sha256, "size": item.size, "keys": disposal.keys or [],
                           "destroyed_by_this_run": destroyed, "state_before": before,
                           "disposal_started_at": ledger.format_time(disposal.started_at)})
        row.finished_at = utcnow()
        s.add(row)
        return {"item_id": item.id, "rule": disposal.rule, "sha256": item.sha256, "size": item.size,
                "state_before": before}


def _abandon(db: Database, item_id: str) -> None:
    """A fresh disposal refused by a lock before any byte went: drop its row, so the
    item is untouched (held, checked by fixity) and the next run decides again."""
    with db.write() as s:
        row = _lock_row(db, s, Disposal, item_id)
        if row is not None and row.finished_at is None:
            s.delete(row)


async def _dispose(db: Database, store: BlobStore, disposal: Disposal, report: RunReport,
                   hook: Hook | None, *, resumed: bool = False) -> None:
    try:
        destroyed = await _destroy(store, disposal, hook)
    except RetentionLocked as exc:
        # Threat: evidence kept past its lawful date with nobody told. Reported every run.
        report.refused.append({"item_id": disposal.item_id, "reason": str(exc)})
        log.warning("retention.refused", extra={"item_id": disposal.item_id, "reason": str(exc)})
        if not resumed and not getattr(exc, "destroyed", None):
            await anyio.to_thread.run_sync(_abandon, db, disposal.item_id)
        return
    except BlobStoreError as exc:
        report.errors.append({"item_id": disposal.item_id, "error": f"{type(exc).__name__}: {exc}"[:300]})
        return
    if hook:
        hook("bytes-gone")
    done = await anyio.to_thread.run_sync(_finish, db, disposal, destroyed)
    if done is not None:
        report.disposed.append(done)
        log.info("retention.purged", extra={"item_id": disposal.item_id})


def unfinished(db: Database) -> list[Disposal]:
    with db.read() as s:
        rows = list(s.exec(select(Disposal).where(col(Disposal.finished_at).is_(None))).scalars().all())  # type: ignore[call-overload]
        for r in rows:
            s.expunge(r)
        return rows


async def run_async(db: Database, store: BlobStore, policy: Policy, *, actor: str, dry_run: bool = False,
                    now: dt.datetime | None = None, limit: int | None = 1000, stop: threading.Event | None = None,
                    hook: Hook | None = None) -> RunReport:
    """Complete interrupted disposals, then dispose of every due, unheld item that has
    finished processing; then apply the Object Locks that differ from what is wanted.
    ``dry_run``: report what would be done, change nothing. ``hook(step)`` is called
    at named steps (tests kill the process there)."""
    now = now or utcnow()
    report = RunReport(dry_run=dry_run)
    if not dry_run:
        for disposal in unfinished(db):
            report.resumed.append(disposal.item_id)
            await _dispose(db, store, disposal, report, hook, resumed=True)
    with db.read() as s:
        listed = due(s, policy, now=now, limit=limit)
    for entry in listed:
        if stop is not None and stop.is_set():
            break
        if entry.held:
            report.held.append(entry.item_id)
            continue
        if ItemState(entry.state) not in TERMINAL:
            # Still being received or processed: a worker may be writing its derivatives.
            report.deferred.append({"item_id": entry.item_id, "state": entry.state})
            continue
        if dry_run:
            blocked = await _lock_refusal(store, _stored_keys(db, entry.item_id) or [])
            if blocked:
                report.refused.append({"item_id": entry.item_id, "reason": blocked})
            else:
                report.disposed.append({"item_id": entry.item_id, "rule": entry.rule, "sha256": entry.sha256,
                                        "size": entry.size, "state_before": entry.state})
            continue
        if hook:
            hook("begin")
        begun = await _begin(db, store, policy, entry.item_id, actor=actor, now=now, report=report)
        if begun is None:
            continue
        if hook:
            hook("intent-written")
        await _dispose(db, store, begun, report, hook)
    if not dry_run and isinstance(store, Lockable) and store.object_lock:
        report.locks_applied = await sync_locks(db, store, policy, report=report)
    return report


def run(db: Database, store_factory: Callable[[], BlobStore], policy: Policy, *, actor: str, dry_run: bool = False,
        now: dt.datetime | None = None, stop: threading.Event | None = None, hook: Hook | None = None) -> RunReport:
    """Blocking: open the store (S3 discovery blocks too), run, close."""

    async def main() -> RunReport:
        store = await anyio.to_thread.run_sync(store_factory)
        try:
            return await run_async(db, store, policy, actor=actor, dry_run=dry_run, now=now, stop=stop, hook=hook)
        finally:
            await store.close()

    return asyncio.run(main())


# --- Object Lock ------------------------------------------------------------------------


def _want_locks(session: Session, report: Report, item: EvidenceItem | None, *, policy: Policy | None) -> None:
    """Record the lock the originals of ``report`` (or one item) should now have: a hold
    change sets ``want_hold``; a new date (``policy`` given) raises ``want_until``
    (never lowered: COMPLIANCE retention cannot be shortened)."""
    query = select(ObjectLock, EvidenceItem).join(EvidenceItem, col(EvidenceItem.id) == col(ObjectLock.item_id)).where(
        col(EvidenceItem.report_id) == report.id)
    if item is not None:
        query = query.where(col(EvidenceItem.id) == item.id)
    override = session.get(ReportRetention, report.id)
    for lock, it in session.exec(query).all():  # type: ignore[call-overload]
        lock.want_hold = is_held(session, it)
        if policy is not None:
            until = item_date(policy, it, report, override).until
            lock.want_until = max(lock.want_until, until)
        lock.updated_at = utcnow()
        session.add(lock)


def _missing_locks(db: Database, policy: Policy, limit: int) -> int:
    """Give every item with bytes and no ``object_lock`` row one (a new original)."""
    with db.write() as s:
        rows = s.exec(
            select(EvidenceItem, Report, ReportRetention)  # type: ignore[call-overload]
            .join(Report, col(Report.id) == col(EvidenceItem.report_id))
            .outerjoin(ReportRetention, col(ReportRetention.report_id) == col(Report.id))
            .outerjoin(ObjectLock, col(ObjectLock.item_id) == col(EvidenceItem.id))
            .where(col(ObjectLock.item_id).is_(None),
                   col(EvidenceItem.state).notin_([ItemState.PURGED, ItemState.RECEIVING]))
            .limit(limit)
        ).all()
        for item, report, override in rows:
            s.add(ObjectLock(item_id=item.id, want_until=item_date(policy, item, report, override).until,
                             want_hold=is_held(s, item), updated_at=utcnow()))
        return len(rows)


async def sync_locks(db: Database, store: Lockable, policy: Policy, *, report: RunReport | None = None,
                     limit: int = 1000) -> int:
    """Apply every wanted lock that differs from the applied one. Returns how many."""
    await anyio.to_thread.run_sync(_missing_locks, db, policy, limit)
    with db.read() as s:
        pending = s.exec(
            select(ObjectLock, EvidenceItem.blob_key)  # type: ignore[call-overload]
            .join(EvidenceItem, col(EvidenceItem.id) == col(ObjectLock.item_id))
            .where(col(EvidenceItem.state) != ItemState.PURGED,
                   or_(col(ObjectLock.applied_until).is_(None), col(ObjectLock.applied_until) < col(ObjectLock.want_until),
                       col(ObjectLock.applied_hold).is_(None), col(ObjectLock.applied_hold) != col(ObjectLock.want_hold)))
            .limit(limit)
        ).all()
        work = [(lock.item_id, key, lock.want_until, lock.want_hold) for lock, key in pending]
    applied = 0
    for item_id, key, until, hold in work:
        try:
            in_force = await store.set_lock(key, until=until, hold=hold)
        except BlobStoreError as exc:
            if report is not None:
                report.errors.append({"item_id": item_id, "error": f"lock: {type(exc).__name__}: {exc}"[:300]})
            continue

        def record(item_id: str = item_id, until: dt.datetime = until, hold: bool = hold,
                   in_force: dt.datetime | None = in_force) -> None:
            with db.write() as s:
                lock = _lock_row(db, s, ObjectLock, item_id)
                if lock is None:
                    return
                # Only what was applied counts: a want raised meanwhile stays pending.
                lock.applied_until = max(until, in_force) if in_force else until
                lock.applied_hold = hold
                s.add(lock)

        await anyio.to_thread.run_sync(record)
        applied += 1
    return applied


async def lock_item(db: Database, store: BlobStore, policy: Policy, item_id: str) -> bool:
    """At sealing: lock a new original until its report's retention date now, not at the
    worker's next round. Best effort: a failure here leaves the wanted lock recorded
    (or the row missing) and the next run applies it. A no-op without Object Lock."""
    if not (isinstance(store, Lockable) and store.object_lock):
        return False

    def want() -> tuple[str, dt.datetime, bool] | None:
        with db.write() as s:
            item = s.get(EvidenceItem, item_id)
            report = s.get(Report, item.report_id) if item is not None else None
            if item is None or report is None or item.state == ItemState.PURGED:
                return None
            until = item_date(policy, item, report, s.get(ReportRetention, report.id)).until
            held = is_held(s, item)
            if s.get(ObjectLock, item_id) is None:
                s.add(ObjectLock(item_id=item_id, want_until=until, want_hold=held, updated_at=utcnow()))
            return item.blob_key, until, held

    wanted = await anyio.to_thread.run_sync(want)
    if wanted is None:
        return False
    key, until, held = wanted
    try:
        in_force = await store.set_lock(key, until=until, hold=held)
    except BlobStoreError as exc:
        log.warning("retention.lock_deferred", extra={"item_id": item_id, "error": str(exc)[:200]})
        return False

    def record() -> None:
        with db.write() as s:
            lock = _lock_row(db, s, ObjectLock, item_id)
            if lock is not None and lock.want_until <= until and lock.want_hold == held:
                lock.applied_until = max(until, in_force) if in_force else until
                lock.applied_hold = held
                s.add(lock)

    await anyio.to_thread.run_sync(record)
    return True


async def apply_now(db: Database, store: BlobStore, policy: Policy) -> int:
    """After a decision (a date set, a hold placed or released): apply it at once
    rather than at the next run. A no-op without Object Lock."""
    if isinstance(store, Lockable) and store.object_lock:
        return await sync_locks(db, store, policy)
    return 0
