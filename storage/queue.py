"""The job queue: rows in the database (a transactional outbox).

* ``enqueue`` adds a job inside the caller's transaction, so a job exists exactly when
  the row it concerns does.
* Jobs run in lanes (``enqueue(lane=)``, ``claim(lanes=)``): long video has its own,
  so a slow transcode holds at most the slots that serve that lane and photos keep
  flowing in the others (SECURITY_CHECKLIST BF-19). ``relane`` hands a running job to
  another lane when the worker learns more about it than the enqueuer knew.
* ``claim`` hands the oldest runnable job to one worker with a lease. PostgreSQL:
  ``SELECT … FOR UPDATE SKIP LOCKED``; SQLite: the claim runs inside ``BEGIN IMMEDIATE``
  (one writer), so two claimers never hold the same job.
* ``heartbeat`` extends the lease; a worker that stops heartbeating loses its job when
  the lease lapses, and the job is claimed again (at-least-once delivery: every step a
  worker runs must be idempotent).
* ``fail`` schedules a retry with exponential backoff and jitter; after ``max_attempts`` the job is
  ``dead`` and its last error is kept.
* ``complete`` and ``fail`` only act for the current lease holder: a worker that lost
  its lease cannot finish a job another worker now holds (``LeaseLost``).

Every lease time is computed on the database clock (``Database.now``).
"""

from __future__ import annotations

import datetime as dt
import random
from dataclasses import dataclass
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from storage.db import Database, clock
from storage.models import Job, JobState

DEFAULT_LANE = "default"
VIDEO_LANE = "video"
LANES: tuple[str, ...] = (DEFAULT_LANE, VIDEO_LANE)
BACKOFF_BASE_SECONDS = 5
BACKOFF_MAX_SECONDS = 600


class LeaseLost(Exception):
    code = "ERR_LEASE_LOST"


@dataclass(frozen=True)
class Claim:
    job_id: int
    kind: str
    item_id: str | None
    payload: dict[str, Any]
    attempt: int
    max_attempts: int
    owner: str
    lease_expires_at: dt.datetime
    lane: str = DEFAULT_LANE


def enqueue(
    session: Session,
    kind: str,
    *,
    item_id: str | None = None,
    payload: dict[str, Any] | None = None,
    dedup_key: str | None = None,
    max_attempts: int = 5,
    delay_seconds: float = 0,
    now: dt.datetime | None = None,
    lane: str = DEFAULT_LANE,
) -> Job:
    """Add a job in the caller's transaction. With ``dedup_key``, a second enqueue of
    the same key returns the existing job instead of adding one, also when the two race
    on PostgreSQL. ``now`` defaults to the database clock (never this machine's: a node
    whose clock runs ahead would otherwise delay its jobs by the difference)."""
    if dedup_key is not None:
        existing = _by_dedup_key(session, dedup_key)
        if existing is not None:
            return existing
    if lane not in LANES:
        raise ValueError(f"unknown lane {lane!r}")
    start = (now or clock(session)) + dt.timedelta(seconds=delay_seconds)
    job = Job(
        kind=kind,
        lane=lane,
        item_id=item_id,
        payload=payload or {},
        dedup_key=dedup_key,
        max_attempts=max_attempts,
        run_after=start,
    )
    if dedup_key is None:
        session.add(job)
        session.flush()
        return job
    # Under READ COMMITTED two transactions can both find no job with this key and both
    # insert; the second insert waits for the first to commit and then violates the
    # unique constraint. Inside a savepoint that failure costs only the savepoint, not
    # the caller's whole transaction (which also holds the evidence row it concerns).
    try:
        with session.begin_nested():
            session.add(job)
            session.flush()
    except IntegrityError:
        existing = _by_dedup_key(session, dedup_key)
        if existing is None:
            raise
        return existing
    return job


def _by_dedup_key(session: Session, dedup_key: str) -> Job | None:
    return session.exec(select(Job).where(Job.dedup_key == dedup_key)).scalars().first()  # type: ignore[call-overload, arg-type, no-any-return]


def claim(
    db: Database, owner: str, *, kinds: list[str] | None = None, lease_seconds: int = 60,
    lanes: list[str] | None = None,
) -> Claim | None:
    """Take one runnable job: queued and due, or running with a lapsed lease. A job whose
    lease lapsed on its last attempt is declared dead instead (a job that kills its
    worker every time must not crash-loop the fleet: SECURITY_CHECKLIST CF-05).
    ``kinds=[]`` asks for no kind, so it claims nothing; ``lanes`` likewise (None: any
    lane)."""
    if (kinds is not None and not kinds) or (lanes is not None and not lanes):
        return None
    while True:
        with db.write() as session:
            now = db.now(session)
            query = (
                select(Job)
                .where(
                    or_(
                        (Job.state == JobState.QUEUED) & (Job.run_after <= now),  # type: ignore[arg-type]
                        (Job.state == JobState.RUNNING) & (Job.lease_expires_at < now),  # type: ignore[arg-type, operator]
                    )
                )
                .order_by(Job.run_after, Job.id)  # type: ignore[arg-type]
                .limit(1)
            )
            if kinds is not None:
                query = query.where(Job.kind.in_(kinds))  # type: ignore[attr-defined]
            if lanes is not None:
                query = query.where(Job.lane.in_(lanes))  # type: ignore[attr-defined]
            if db.is_postgresql:
                query = query.with_for_update(skip_locked=True)
            job = session.exec(query).scalars().first()  # type: ignore[call-overload]
            if job is None:
                return None
            if job.state == JobState.RUNNING and job.attempts >= job.max_attempts:
                job.state = JobState.DEAD
                job.last_error = (
                    f"lease lapsed on attempt {job.attempts} of {job.max_attempts} "
                    f"(worker {job.lease_owner} stopped); last error: {job.last_error or 'none'}"
                )[:2000]
                job.lease_owner = None
                job.lease_expires_at = None
                job.updated_at = now
                session.add(job)
                continue  # committed as dead; look for another job
            job.state = JobState.RUNNING
            job.attempts += 1
            job.lease_owner = owner
            job.lease_expires_at = now + dt.timedelta(seconds=lease_seconds)
            job.updated_at = now
            session.add(job)
            session.flush()
            return Claim(
                job_id=int(job.id),
                kind=job.kind,
                item_id=job.item_id,
                payload=dict(job.payload or {}),
                attempt=job.attempts,
                max_attempts=job.max_attempts,
                owner=owner,
                lease_expires_at=job.lease_expires_at,
                lane=job.lane,
            )


def _held(db: Database, session: Session, claim: Claim) -> Job:
    """The job, locked, if ``claim`` is still the current lease on it.

    The attempt number is the fencing token: every claim raises it, so a claim from an
    earlier attempt is refused even when the same owner name claimed the job again
    (a worker that reuses its name after its lease lapsed must not heartbeat or finish
    the old attempt on top of the new one). A lease that lapsed but that nobody has
    taken yet still counts: finishing then is harmless and spares a re-run."""
    query = select(Job).where(Job.id == claim.job_id)  # type: ignore[arg-type]
    if db.is_postgresql:
        query = query.with_for_update()
    job = session.exec(query).scalars().first()  # type: ignore[call-overload]
    if (
        job is None
        or job.state != JobState.RUNNING
        or job.lease_owner != claim.owner
        or job.attempts != claim.attempt
    ):
        raise LeaseLost(f"job {claim.job_id} is no longer held by {claim.owner} (attempt {claim.attempt})")
    return job  # type: ignore[no-any-return]


def heartbeat(db: Database, claim: Claim, *, lease_seconds: int = 60, progress: int | None = None) -> bool:
    """Extend the lease. False when the lease was lost (stop working on the job)."""
    with db.write() as session:
        try:
            job = _held(db, session, claim)
        except LeaseLost:
            return False
        now = db.now(session)
        if job.lease_expires_at is not None and job.lease_expires_at < now:
            # Lapsed but not yet re-claimed: the job is up for grabs, so stop.
            return False
        job.lease_expires_at = now + dt.timedelta(seconds=lease_seconds)
        if progress is not None:
            job.progress = max(0, min(100, progress))
        job.updated_at = now
        session.add(job)
    return True


def complete(db: Database, session: Session, claim: Claim) -> None:
    """Mark the job done inside the caller's transaction (with the results it records),
    so a result is committed by the lease holder or not at all."""
    job = _held(db, session, claim)
    job.state = JobState.DONE
    job.progress = 100
    job.lease_owner = None
    job.lease_expires_at = None
    job.updated_at = db.now(session)
    session.add(job)


def fail(db: Database, session: Session, claim: Claim, error: str, *, retry: bool = True) -> str:
    """Record a failed attempt: retry later with backoff, or ``dead`` when attempts are
    spent or ``retry`` is False. Returns the job's new state."""
    job = _held(db, session, claim)
    now = db.now(session)
    job.last_error = error[:2000]
    job.lease_owner = None
    job.lease_expires_at = None
    job.updated_at = now
    if retry and job.attempts < job.max_attempts:
        delay = backoff_seconds(job.attempts)
        job.state = JobState.QUEUED
        job.run_after = now + dt.timedelta(seconds=delay)
    else:
        job.state = JobState.DEAD
    session.add(job)
    return job.state


def backoff_seconds(attempts: int) -> float:
    """Exponential backoff with jitter: between half and all of BASE * 2^(attempts-1),
    capped. The jitter spreads the retries of jobs that failed together (a clamd
    outage) so that they do not all come back in the same instant."""
    ceiling = float(min(BACKOFF_MAX_SECONDS, BACKOFF_BASE_SECONDS * 2 ** max(0, attempts - 1)))
    return ceiling / 2 + random.uniform(0, ceiling / 2)  # noqa: S311 - spreading load, not a secret


def relane(db: Database, session: Session, claim: Claim, lane: str) -> None:
    """Hand the job, inside the caller's transaction, to ``lane``: queued, due now, the
    attempt not counted (it only found out where the job belongs)."""
    if lane not in LANES:
        raise ValueError(f"unknown lane {lane!r}")
    job = _held(db, session, claim)
    job.lane = lane
    job.state = JobState.QUEUED
    job.attempts = max(0, job.attempts - 1)
    job.lease_owner = None
    job.lease_expires_at = None
    job.run_after = db.now(session)
    job.updated_at = job.run_after
    session.add(job)


def release(db: Database, claim: Claim) -> None:
    """Give the job back without counting the attempt (graceful shutdown)."""
    with db.write() as session:
        try:
            job = _held(db, session, claim)
        except LeaseLost:
            return
        job.state = JobState.QUEUED
        job.attempts = max(0, job.attempts - 1)
        job.lease_owner = None
        job.lease_expires_at = None
        job.run_after = db.now(session)
        session.add(job)
