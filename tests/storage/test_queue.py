"""The database job queue: claims, leases, heartbeats, retries, dead jobs."""

from __future__ import annotations

import datetime as dt
import threading
import time

import pytest
from sqlalchemy import select, text

from storage import queue
from storage.db import Database
from storage.models import Job, JobState


def _enqueue(db: Database, n: int, **kwargs: object) -> list[int]:
    ids = []
    with db.write() as s:
        for i in range(n):
            job = queue.enqueue(s, "test", payload={"i": i}, now=db.now(s), **kwargs)  # type: ignore[arg-type]
            ids.append(int(job.id))  # type: ignore[arg-type]
    return ids


def _job(db: Database, job_id: int) -> Job:
    with db.read() as s:
        job = s.get(Job, job_id)
        assert job is not None
        return job


def _wait_for_claim(db: Database, owner: str, deadline_s: float = 30, **kwargs: object) -> queue.Claim:
    """Poll until a claim succeeds: a lease lapses on the database's clock, which the
    test cannot signal, so it watches for the moment with a bounded deadline."""
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        c = queue.claim(db, owner, **kwargs)  # type: ignore[arg-type]
        if c is not None:
            return c
        time.sleep(0.05)
    raise AssertionError(f"{owner} claimed nothing within {deadline_s}s")


def test_enqueue_is_part_of_the_callers_transaction(db: Database) -> None:
    class Boom(Exception):
        pass

    try:
        with db.write() as s:
            queue.enqueue(s, "test", now=db.now(s))
            raise Boom
    except Boom:
        pass
    assert queue.claim(db, "w1") is None


def test_dedup_key_gives_one_job(db: Database) -> None:
    with db.write() as s:
        a = queue.enqueue(s, "test", dedup_key="item:1", now=db.now(s))
        b = queue.enqueue(s, "test", dedup_key="item:1", now=db.now(s))
    assert a.id == b.id


def test_two_claimers_never_hold_the_same_job(db: Database) -> None:
    ids = _enqueue(db, 40)
    claimed: list[int] = []
    lock = threading.Lock()
    errors: list[BaseException] = []

    def claimer(name: str) -> None:
        try:
            while True:
                c = queue.claim(db, name, lease_seconds=300)
                if c is None:
                    return
                with lock:
                    claimed.append(c.job_id)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=claimer, args=(f"w{i}",)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert sorted(claimed) == sorted(ids)  # every job claimed exactly once


def test_claimer_that_stops_heartbeating_loses_the_job(db: Database) -> None:
    [job_id] = _enqueue(db, 1)
    first = queue.claim(db, "crashed-worker", lease_seconds=1)
    assert first is not None and first.job_id == job_id
    early = queue.claim(db, "other", lease_seconds=30)
    if early is not None:
        # Still leased, unless this machine took longer than the lease to get here: then
        # the claim must have been made (its lease start, on the database clock) after the
        # first lease ran out. A claim inside the lease fails this, however slow the host.
        assert early.lease_expires_at - dt.timedelta(seconds=30) >= first.lease_expires_at, (early, first)
    second = early or _wait_for_claim(db, "other", lease_seconds=30)
    assert second.job_id == job_id
    assert second.attempt == 2
    # The first worker wakes up: it can no longer heartbeat or finish the job.
    assert queue.heartbeat(db, first) is False
    with db.write() as s:
        try:
            queue.complete(db, s, first)
            raise AssertionError("a worker that lost its lease completed the job")
        except queue.LeaseLost:
            pass
    with db.write() as s:
        queue.complete(db, s, second)
    assert _job(db, job_id).state == JobState.DONE


def test_heartbeat_keeps_the_lease(db: Database) -> None:
    [job_id] = _enqueue(db, 1)
    # A lease long enough not to lapse before the heartbeat on a slow host (a lapsed lease
    # is not renewed: that is another test); the heartbeat moves its end further still.
    c = queue.claim(db, "w1", lease_seconds=60)
    assert c is not None
    before = _job(db, job_id).lease_expires_at
    assert queue.heartbeat(db, c, lease_seconds=120, progress=40)
    job = _job(db, job_id)
    assert job.lease_expires_at is not None and before is not None and job.lease_expires_at > before
    assert job.progress == 40
    assert queue.claim(db, "w2") is None


def test_failed_job_is_retried_later_with_backoff(db: Database) -> None:
    [job_id] = _enqueue(db, 1, max_attempts=3)
    c = queue.claim(db, "w1")
    assert c is not None
    with db.write() as s:
        state = queue.fail(db, s, c, "clamd is down")
    assert state == JobState.QUEUED
    job = _job(db, job_id)
    assert job.last_error == "clamd is down"
    assert job.lease_expires_at is None
    # Not runnable again until its backoff has passed.
    assert queue.claim(db, "w1") is None
    assert job.run_after > job.updated_at


def test_job_is_dead_after_max_attempts_with_its_last_error(db: Database) -> None:
    [job_id] = _enqueue(db, 1, max_attempts=2)
    for attempt in (1, 2):
        with db.write() as s:
            j = s.get(Job, job_id)
            assert j is not None
            j.run_after = db.now(s)  # skip the backoff wait
            s.add(j)
        c = queue.claim(db, "w1")
        assert c is not None and c.attempt == attempt
        with db.write() as s:
            state = queue.fail(db, s, c, f"ffmpeg crashed ({attempt})")
    assert state == JobState.DEAD
    job = _job(db, job_id)
    assert job.state == JobState.DEAD
    assert job.last_error == "ffmpeg crashed (2)"


def test_job_that_kills_its_worker_every_time_goes_dead(db: Database) -> None:
    [job_id] = _enqueue(db, 1, max_attempts=2)
    assert queue.claim(db, "w1", lease_seconds=1) is not None
    _wait_for_claim(db, "w2", lease_seconds=1)
    # The second worker dies too. The job must not be handed out a third time.
    end = time.monotonic() + 30
    while _job(db, job_id).state != JobState.DEAD:
        assert queue.claim(db, "w3", lease_seconds=1) is None
        assert time.monotonic() < end, "job never went dead"
        time.sleep(0.05)
    assert "lease lapsed" in (_job(db, job_id).last_error or "")


def test_release_gives_the_job_back_without_counting_the_attempt(db: Database) -> None:
    [job_id] = _enqueue(db, 1)
    c = queue.claim(db, "w1")
    assert c is not None
    queue.release(db, c)
    again = queue.claim(db, "w2")
    assert again is not None and again.job_id == job_id and again.attempt == 1


def test_claim_only_takes_requested_kinds(db: Database) -> None:
    with db.write() as s:
        queue.enqueue(s, "other", now=db.now(s))
    assert queue.claim(db, "w1", kinds=["test"]) is None
    with db.read() as s:
        assert s.exec(select(Job)).scalars().one().state == JobState.QUEUED  # type: ignore[call-overload]


def test_an_earlier_attempt_is_fenced_off_even_under_the_same_owner_name(db: Database) -> None:
    [job_id] = _enqueue(db, 1)
    first = queue.claim(db, "worker-a", lease_seconds=1)
    assert first is not None
    # The same owner name claims the job again after its lease lapsed (a restarted
    # worker that reuses its name). The old attempt must not act on the new one.
    second = _wait_for_claim(db, "worker-a", lease_seconds=60)
    assert second.job_id == job_id and second.attempt == first.attempt + 1
    assert queue.heartbeat(db, first) is False
    with pytest.raises(queue.LeaseLost), db.write() as s:
        queue.complete(db, s, first)
    with pytest.raises(queue.LeaseLost), db.write() as s:
        queue.fail(db, s, first, "late failure")
    queue.release(db, first)  # a no-op for a lost lease
    job = _job(db, job_id)
    assert job.state == JobState.RUNNING and job.attempts == second.attempt
    with db.write() as s:
        queue.complete(db, s, second)
    assert _job(db, job_id).state == JobState.DONE


def test_a_lapsed_lease_nobody_took_can_still_be_completed(db: Database) -> None:
    [job_id] = _enqueue(db, 1)
    c = queue.claim(db, "slow-worker", lease_seconds=1)
    assert c is not None
    end = time.monotonic() + 30
    while True:  # wait for the lapse on the database's clock
        with db.read() as s:
            if db.now(s) > c.lease_expires_at:
                break
        assert time.monotonic() < end
        time.sleep(0.05)
    # Nobody took it: the result is still the holder's to record, and the job is done,
    # never handed out again.
    with db.write() as s:
        queue.complete(db, s, c)
    assert _job(db, job_id).state == JobState.DONE
    assert queue.claim(db, "other") is None


def test_racing_enqueues_with_one_dedup_key_give_one_job_and_no_error(db: Database) -> None:
    first_in = threading.Event()
    release_first = threading.Event()
    results: dict[str, int] = {}
    errors: list[BaseException] = []

    def first() -> None:
        try:
            with db.write() as s:
                results["first"] = int(queue.enqueue(s, "test", dedup_key="item:race").id)  # type: ignore[arg-type]
                first_in.set()
                release_first.wait(30)
        except BaseException as exc:
            errors.append(exc)
            first_in.set()

    def second() -> None:
        try:
            with db.write() as s:
                results["second"] = int(queue.enqueue(s, "test", dedup_key="item:race").id)  # type: ignore[arg-type]
        except BaseException as exc:
            errors.append(exc)

    t1 = threading.Thread(target=first)
    t1.start()
    assert first_in.wait(30)
    t2 = threading.Thread(target=second)
    t2.start()
    if db.is_postgresql:
        # Let the second insert run into the first one's uncommitted row: it waits on a
        # lock, which pg_locks shows.
        end = time.monotonic() + 30
        while True:
            with db.read() as s:
                if s.exec(text("SELECT count(*) FROM pg_locks WHERE NOT granted")).scalar_one():  # type: ignore[call-overload]
                    break
            assert time.monotonic() < end, "the second enqueue never waited on the first"
            time.sleep(0.02)
    release_first.set()
    t1.join()
    t2.join()
    assert errors == []
    assert results["first"] == results["second"]
    with db.read() as s:
        assert len(s.exec(select(Job)).scalars().all()) == 1  # type: ignore[call-overload]


def test_enqueue_schedules_on_the_database_clock(db: Database) -> None:
    for _ in range(4):
        with db.write() as s:
            job = queue.enqueue(s, "test")
            assert job.run_after <= db.now(s)
            if db.is_sqlite:
                # SQLite's clock has millisecond resolution, this machine's has
                # microseconds: a run_after from the database clock ends in 000.
                assert job.run_after.microsecond % 1000 == 0


def test_backoff_grows_with_jitter_and_is_capped() -> None:
    for attempts, ceiling in ((1, 5), (2, 10), (3, 20), (20, queue.BACKOFF_MAX_SECONDS)):
        delays = [queue.backoff_seconds(attempts) for _ in range(50)]
        assert all(ceiling / 2 <= d <= ceiling for d in delays)
        assert len(set(delays)) > 1


def test_claim_with_no_kinds_claims_nothing(db: Database) -> None:
    _enqueue(db, 1)
    assert queue.claim(db, "w1", kinds=[]) is None
    assert queue.claim(db, "w1", kinds=["test"]) is not None
