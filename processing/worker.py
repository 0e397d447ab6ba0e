"""The worker: claims ``process_item`` jobs, heartbeats their leases, runs the pipeline.

Entry points (wired by ``exhibit/``):

* ``main(settings, concurrency)`` for ``exhibit worker [--concurrency N] [--lane L]``: blocks,
  SIGTERM/SIGINT stop it gracefully.
* ``start_worker_thread(settings, ...)`` for ``exhibit serve``: the same loop in a
  background thread; set the ``stop_event`` and ``join()`` it at shutdown.
* ``run_worker(settings, *, concurrency, stop_event, ...)``: the loop itself.

Failure handling (SECURITY_CHECKLIST CF-04, CF-05, CF-11, BF-04):

* shutdown or a lost lease cancels the running step (ffmpeg is killed) and the job is
  released without counting the attempt; every step is idempotent, so the next worker
  resumes from the item's state;
* an outage (clamd unreachable, blob store down, ffmpeg missing) re-queues the job
  after ``outage_retry_seconds`` without spending an attempt: items wait, never pass,
  and the backlog drains when the dependency is back;
* any other error spends an attempt (queue backoff); on the last attempt the item is
  finalised with the reason in the same transaction that makes the job dead:
  unscannable if it never got a verdict, failed if it was making derivatives.
  A job that kills its worker every time is declared dead by ``queue.claim``; the
  worker's sweep then finalises its item the same way.
"""

from __future__ import annotations

import logging
import os
import secrets
import signal
import socket
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy import select

from processing import stills, video
from processing.blobs import BlobBridge
from processing.pipeline import Cancelled, Hook, JobContext, process_item
from processing.scanning import ClamdScanner, Scanner, ScannerUnavailable
from storage import queue
from storage.blobs import BlobNotFound, BlobStoreError
from storage.db import Database
from storage.lifecycle import TERMINAL, ItemState, transition
from storage.models import EvidenceItem, Job, JobState
from storage.settings import Settings

log = logging.getLogger(__name__)

JOB_KIND = "process_item"
JOB_KINDS = [JOB_KIND, stills.JOB_KIND]


def default_scanner(settings: Settings) -> ClamdScanner:
    """clamd at ``settings.clamd_address``, else the managed clamd's socket."""
    if settings.clamd_address:
        return ClamdScanner(settings.clamd_address)
    from processing.clamd_manager import ClamdManager

    manager = ClamdManager(settings)
    return ClamdScanner(manager.address, database_label=manager.database_label)


def _owner(slot: int) -> str:
    return f"{socket.gethostname()[:40]}:{os.getpid()}:{slot}:{secrets.token_hex(3)}"


def defer(db: Database, claim: queue.Claim, error: str, delay_seconds: float) -> None:
    """Give the job back for later without spending an attempt (an outage is not the
    item's fault). Only the lease holder can."""
    import datetime as dt

    with db.write() as s:
        query = select(Job).where(Job.id == claim.job_id)  # type: ignore[arg-type]
        if db.is_postgresql:
            query = query.with_for_update()
        job = s.exec(query).scalars().first()  # type: ignore[call-overload]
        if job is None or job.state != JobState.RUNNING or job.lease_owner != claim.owner:
            return
        now = db.now(s)
        job.state = JobState.QUEUED
        job.attempts = max(0, job.attempts - 1)
        job.lease_owner = None
        job.lease_expires_at = None
        job.run_after = now + dt.timedelta(seconds=delay_seconds)
        job.last_error = error[:2000]
        job.updated_at = now
        s.add(job)


def finalise(db: Database, session: Any, item: EvidenceItem, reason: str, *, actor: str) -> None:
    """Put an item whose job is dead into its honest final state, with the reason."""
    state = ItemState(item.state)
    if state in TERMINAL:
        return
    if state == ItemState.RECEIVED:
        transition(db, session, item, ItemState.SCANNING, actor=actor, reason="checks started")
        state = ItemState.SCANNING
    if state == ItemState.SCANNING:
        # No verdict was reached: never clean, needs a human decision.
        transition(db, session, item, ItemState.UNSCANNABLE, actor=actor, reason=reason)
        return
    if state == ItemState.CLEAN:
        transition(db, session, item, ItemState.PROCESSING, actor=actor, reason="derivatives started")
        state = ItemState.PROCESSING
    if state == ItemState.PROCESSING:
        transition(db, session, item, ItemState.FAILED, actor=actor, reason=reason)


def sweep_dead(db: Database, *, actor: str) -> int:
    """Finalise items whose job died without the worker getting a word in (the lease
    lapsed on the last attempt: the job killed its worker every time)."""
    live = [state.value for state in ItemState if state not in TERMINAL]
    with db.read() as s:
        query = (
            select(Job.id, Job.item_id)  # type: ignore[call-overload]
            .join(EvidenceItem, EvidenceItem.id == Job.item_id)
            .where(Job.kind == JOB_KIND, Job.state == JobState.DEAD, EvidenceItem.state.in_(live))  # type: ignore[attr-defined]
        )
        rows = s.exec(query).all()
    done = 0
    for job_id, item_id in rows:
        with db.write() as s:
            item_query = select(EvidenceItem).where(EvidenceItem.id == item_id)
            if db.is_postgresql:
                item_query = item_query.with_for_update()
            item = s.exec(item_query).scalars().first()  # type: ignore[call-overload]
            job = s.get(Job, job_id)
            if item is None or job is None or ItemState(item.state) in TERMINAL or job.state != JobState.DEAD:
                continue
            finalise(db, s, item, f"processing gave up: {job.last_error or 'no error recorded'}"[:1000], actor=actor)
            done += 1
    return done


def _spend_attempt(db: Database, claim: queue.Claim, error: str, *, actor: str) -> str:
    with db.write() as s:
        state = queue.fail(db, s, claim, error, retry=True)
        if state == JobState.DEAD and claim.item_id:
            item = s.get(EvidenceItem, claim.item_id)
            if item is not None:
                finalise(db, s, item, f"gave up after {claim.attempt} attempts: {error}"[:1000], actor=actor)
        return state


class _Heartbeat:
    """Extends the lease every third of it; cancels the job when the lease is lost or
    the worker is stopping."""

    def __init__(self, db: Database, ctx: JobContext, lease_seconds: int, stop: threading.Event) -> None:
        self.db, self.ctx, self.lease_seconds, self.stop = db, ctx, lease_seconds, stop
        self.lost = False
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run, name=f"heartbeat-{ctx.claim.job_id}", daemon=True)

    def _run(self) -> None:
        # Timed by the clock, not by counting turns of a 0.1 s wait: on a loaded host each
        # turn takes longer than 0.1 s, so counted turns drift, the beat comes late, the
        # lease lapses and another worker takes the job while this one still works on it
        # (a job processed twice; CF-04 is about leases that must not lapse under load).
        interval = max(0.3, self.lease_seconds / 3)
        next_beat = time.monotonic() + interval
        while not self.done.wait(max(0.0, min(0.1, next_beat - time.monotonic()))):
            if self.stop.is_set():
                self.ctx.cancel.set()
            if time.monotonic() < next_beat:
                continue
            try:
                ok = queue.heartbeat(self.db, self.ctx.claim, lease_seconds=self.lease_seconds,
                                     progress=self.ctx.progress)
            except Exception as exc:  # the database hiccuped: try again soon, well within the lease
                log.warning("worker.heartbeat_failed", extra={"job_id": self.ctx.claim.job_id, "error": str(exc)[:200]})
                next_beat = time.monotonic() + min(interval, 1.0)
                continue
            next_beat = time.monotonic() + interval
            if not ok:
                self.lost = True
                self.ctx.cancel.set()
                log.warning("worker.lease_lost", extra={"job_id": self.ctx.claim.job_id})
                return

    def __enter__(self) -> _Heartbeat:
        self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.done.set()
        self.thread.join()


def run_one(
    db: Database,
    blobs: BlobBridge,
    scanner: Scanner,
    claim: queue.Claim,
    *,
    lease_seconds: int,
    stop: threading.Event,
    hook: Hook | None = None,
    outage_retry_seconds: float = 15.0,
    temp_root: Path | None = None,
    max_seconds: float | None = None,
) -> str | None:
    actor = f"worker:{claim.owner}"
    deadline = time.monotonic() + max_seconds if max_seconds else None
    ctx = JobContext(db=db, blobs=blobs, scanner=scanner, claim=claim, actor=actor, hook=hook, temp_root=temp_root,
                     deadline=deadline)
    log.info("worker.job_started", extra={"job_id": claim.job_id, "item_id": claim.item_id, "attempt": claim.attempt})
    heartbeat = _Heartbeat(db, ctx, lease_seconds, stop)
    try:
        with heartbeat:
            # A still of a video ("save this frame", processing.stills) or an item's checks
            # and derivatives.
            state = stills.run(ctx) if claim.kind == stills.JOB_KIND else process_item(ctx)
        log.info("worker.job_done", extra={"job_id": claim.job_id, "item_id": claim.item_id, "state": state})
        return state
    except (Cancelled, video.Cancelled):
        if not heartbeat.lost:
            queue.release(db, claim)
        log.info("worker.job_released", extra={"job_id": claim.job_id, "lease_lost": heartbeat.lost})
    except queue.LeaseLost:
        log.warning("worker.lease_lost", extra={"job_id": claim.job_id})
    except BlobNotFound as exc:
        _spend_attempt(db, claim, f"blob missing: {exc}", actor=actor)
    except (ScannerUnavailable, FileNotFoundError, BlobStoreError) as exc:
        log.warning("worker.outage", extra={"job_id": claim.job_id, "error": str(exc)[:300]})
        defer(db, claim, f"{type(exc).__name__}: {exc}", outage_retry_seconds)
    except Exception as exc:
        log.exception("worker.job_failed", extra={"job_id": claim.job_id, "item_id": claim.item_id})
        try:
            _spend_attempt(db, claim, f"{type(exc).__name__}: {exc}", actor=actor)
        except queue.LeaseLost:
            pass
    return None


HOUSEKEEPING_SECONDS = 60.0
FIXITY_BATCH = 200


def housekeeping_round(settings: Settings, db: Database, *, actor: str, stop: threading.Event) -> dict[str, Any]:
    """One round of the worker's background duties: re-hash the originals that are due
    (``storage.fixity``, oldest-checked first, within the bandwidth budget), then
    sweep what crashes left behind (``processing.sweep``)."""
    from storage import fixity, sweep
    from storage.blobs import open_store

    summary = fixity.run(
        db, lambda: open_store(settings), actor=actor, mb_per_s=settings.fixity_mb_per_s,
        due_before=fixity.due_before(settings.fixity_interval_seconds), limit=FIXITY_BATCH, stop=stop,
    )
    if summary.checked:
        log.info("worker.fixity", extra={k: v for k, v in summary.as_dict().items() if k != "items"})
    if stop.is_set():
        return {"fixity": summary}
    moved = _quarantine_pending(settings, db, actor)
    disposed = _retention_round(settings, db, actor=actor, stop=stop)
    swept = sweep.run(db, lambda: open_store(settings), grace_seconds=settings.sweep_grace_seconds,
                      temp_root=sweep.default_temp_root())
    report = swept.as_dict()
    if report["removed"] or swept.errors:
        log.info("worker.sweep", extra={k: v for k, v in report.items() if k != "unreferenced_originals"})
    return {"fixity": summary, "sweep": swept, "quarantined": moved, "retention": disposed}


def _retention_round(settings: Settings, db: Database, *, actor: str, stop: threading.Event) -> Any:
    """Dispose of due, unheld evidence and apply Object Locks (``storage.retention``):
    interrupted disposals are completed first. A lock that still forbids a disposal is
    logged loudly every round until someone looks (never skipped silently)."""
    from storage import retention
    from storage.blobs import open_store

    result = retention.run(db, lambda: open_store(settings), retention.Policy.from_settings(settings),
                           actor=actor, stop=stop)
    counts = result.as_dict()["counts"]
    if result.disposed or result.resumed or result.locks_applied:
        log.info("worker.retention", extra={**counts, "locks_applied": result.locks_applied})
    if result.refused or result.errors:
        log.warning("worker.retention_blocked", extra={**counts, "refused": result.refused[:20],
                                                       "errors": result.errors[:20]})
    return result


def _quarantine_pending(settings: Settings, db: Database, actor: str) -> list[str]:
    from storage import quarantine
    from storage.blobs import open_store

    store = open_store(settings)
    try:
        return quarantine.quarantine_pending(db, store, actor=actor)
    finally:
        store.close_sync()


def _housekeeping(settings: Settings, db: Database, stop: threading.Event, interval: float) -> None:
    actor = f"worker:{socket.gethostname()[:40]}:{os.getpid()}:housekeeping"
    while not stop.is_set():
        try:
            housekeeping_round(settings, db, actor=actor, stop=stop)
        except Exception as exc:  # an outage: try again next round
            log.warning("worker.housekeeping_failed", extra={"error": f"{type(exc).__name__}: {exc}"[:300]})
        stop.wait(interval)


def run_worker(
    settings: Settings,
    *,
    concurrency: int | None = None,
    stop_event: threading.Event | None = None,
    scanner: Scanner | None = None,
    hook: Hook | None = None,
    poll_seconds: float = 0.5,
    outage_retry_seconds: float = 15.0,
    db: Database | None = None,
    on_ready: Callable[[], None] | None = None,
    lanes: list[str] | None = None,
    housekeeping_seconds: float | None = HOUSEKEEPING_SECONDS,
) -> None:
    """Run ``concurrency`` job slots until ``stop_event`` is set; returns once every slot
    has finished or released its job.

    ``lanes`` None (the default worker): at least two slots; slot 0 takes jobs of every
    lane, the others only the default lane, so a long video holds one slot at most and
    photos keep flowing (BF-19). ``lanes=["video"]`` (``exhibit worker --lane video``):
    every slot serves only those lanes.

    ``housekeeping_seconds``: the period of the background fixity and sweep round (in
    a thread beside the slots; None: none, e.g. for a dedicated video worker)."""
    stop = stop_event or threading.Event()
    if lanes is None:
        slots = max(2, concurrency or settings.worker_concurrency)
    else:
        unknown = set(lanes) - set(queue.LANES)
        if unknown or not lanes:
            raise ValueError(f"unknown lane(s): {sorted(unknown)}; lanes are {', '.join(queue.LANES)}")
        slots = max(1, concurrency or settings.worker_concurrency)

    def lanes_of(index: int) -> list[str]:
        if lanes is not None:
            return list(lanes)
        return list(queue.LANES) if index == 0 else [queue.DEFAULT_LANE]

    own_db = db is None
    database = db or Database(settings.database_url)
    blobs = BlobBridge.from_settings(settings)
    scan = scanner or default_scanner(settings)
    temp_root = Path(tempfile.gettempdir())
    log.info("worker.started", extra={"concurrency": slots, "lease_seconds": settings.job_lease_seconds,
                                      "lanes": lanes or "all"})

    def slot(index: int) -> None:
        owner = _owner(index)
        idle = 0.0
        while not stop.is_set():
            try:
                claim = queue.claim(database, owner, kinds=JOB_KINDS, lease_seconds=settings.job_lease_seconds,
                                    lanes=lanes_of(index))
            except Exception as exc:  # database down: wait and try again
                log.warning("worker.claim_failed", extra={"error": str(exc)[:200]})
                stop.wait(poll_seconds * 4)
                continue
            if claim is None:
                if index == 0 and idle <= 0:
                    try:
                        sweep_dead(database, actor=f"worker:{owner}")
                    except Exception as exc:
                        log.warning("worker.sweep_failed", extra={"error": str(exc)[:200]})
                    idle = float(settings.job_lease_seconds)
                idle -= poll_seconds
                stop.wait(poll_seconds)
                continue
            run_one(database, blobs, scan, claim, lease_seconds=settings.job_lease_seconds, stop=stop,
                    hook=hook, outage_retry_seconds=outage_retry_seconds, temp_root=temp_root,
                    max_seconds=settings.job_max_seconds)

    threads = [threading.Thread(target=slot, args=(i,), name=f"worker-slot-{i}", daemon=True) for i in range(slots)]
    if housekeeping_seconds is not None:
        threads.append(threading.Thread(target=_housekeeping, args=(settings, database, stop, housekeeping_seconds),
                                        name="worker-housekeeping", daemon=True))
    for t in threads:
        t.start()
    if on_ready is not None:
        on_ready()
    try:
        for t in threads:
            t.join()
    finally:
        blobs.close()
        if own_db:
            database.dispose()
        log.info("worker.stopped")


def start_worker_thread(
    settings: Settings, *, concurrency: int | None = None, stop_event: threading.Event,
    scanner: Scanner | None = None,
) -> threading.Thread:
    """For ``exhibit serve``: the worker in a background thread of the server process."""
    thread = threading.Thread(
        target=run_worker, args=(settings,),
        kwargs={"concurrency": concurrency, "stop_event": stop_event, "scanner": scanner},
        name="exhibit-worker", daemon=True,
    )
    thread.start()
    return thread


def main(
    settings: Settings, concurrency: int | None = None, *, hook: Hook | None = None,
    stop_event: threading.Event | None = None, lanes: list[str] | None = None,
) -> int:
    """``exhibit worker``: run until SIGTERM/SIGINT, then release the running jobs (their
    steps are idempotent; the next worker resumes them) and exit 0. ``hook`` and
    ``stop_event`` are for tests that pause a worker process at a named point."""
    stop = stop_event or threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        log.info("worker.stopping", extra={"signal": signum})
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    run_worker(settings, concurrency=concurrency, stop_event=stop, hook=hook, lanes=lanes)
    return 0


__all__ = ["main", "run_worker", "start_worker_thread", "sweep_dead"]
