"""Custody ledger under contention, PostgreSQL, one run.

    .venv/bin/python benchmarks/ledger.py [--writers 16] [--probes 300]

Every audited request (an item page view, a video stream start) appends one custody
event and commits. Upload completions append theirs inside longer transactions that also
hold a row lock (the link's quota row). This measures what an audited request waits for:

- ``--writers`` threads run completion-like transactions back to back: lock one shared
  row (FOR UPDATE), append an event, do four more statements, append a second event,
  commit;
- meanwhile a probe appends one event per transaction, ``--probes`` times, and its
  latency is recorded.

Two rounds, interleaved: ``at append`` chains each event where it is appended (the
append lock is then held for the rest of the writer's transaction; how Exhibit worked
until the events were chained at commit), and ``at commit`` (``storage.ledger`` as it
is). Prints p50/p95/p99 of the probe per round and the ratio; the ledger must verify
after each round.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from review import PgCluster  # noqa: E402
from sqlalchemy import text  # noqa: E402
from sqlmodel import col, select  # noqa: E402

from storage import ledger  # noqa: E402
from storage.db import Database  # noqa: E402
from storage.migrate import upgrade  # noqa: E402
from storage.models import Report  # noqa: E402
from storage.reports import create_report  # noqa: E402


@contextmanager
def chained_at_append() -> Iterator[None]:
    """``ledger.append`` as it was: each event chained (and the lock taken) at once."""
    original: Callable[..., Any] = ledger.append

    def append(db: Database, session: Any, **kw: Any) -> Any:
        event = original(db, session, **kw)
        pending = session.info.pop(ledger._PENDING, [])
        if pending:
            ledger._chain(session, pending)
        return event

    ledger.append = append
    try:
        yield
    finally:
        ledger.append = original


def one_round(db: Database, report_id: str, writers: int, probes: int) -> list[float]:
    stop = threading.Event()
    errors: list[BaseException] = []

    def completer() -> None:
        try:
            while not stop.is_set():
                with db.write() as s:
                    s.exec(select(Report).where(col(Report.id) == report_id).with_for_update()).one()
                    ledger.append(db, s, actor="bench:upload", action="item.received", subject="bench")
                    for _ in range(4):
                        s.connection().execute(text("SELECT pg_sleep(0.0005)"))
                    ledger.append(db, s, actor="bench:upload", action="upload.completed", subject="bench")
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=completer) for _ in range(writers)]
    for t in threads:
        t.start()
    latencies: list[float] = []
    try:
        for _ in range(10):  # let the writers queue up
            with db.write() as s:
                ledger.append(db, s, actor="bench:probe", action="bench.warmup", subject="bench")
        for _ in range(probes):
            started = time.perf_counter()
            with db.write() as s:
                ledger.append(db, s, actor="bench:probe", action="item.viewed", subject="bench")
            latencies.append((time.perf_counter() - started) * 1000)
            time.sleep(0.005)  # pacing: an officer's requests, not a flood
    finally:
        stop.set()
        for t in threads:
            t.join()
    if errors:
        raise errors[0]
    if not ledger.verify(db).ok:
        raise SystemExit("the ledger does not verify")
    return latencies


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * p / 100))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--writers", type=int, default=16)
    parser.add_argument("--probes", type=int, default=300)
    args = parser.parse_args()
    base = Path(tempfile.mkdtemp(prefix="exhibit-ledger-bench-"))
    os.chmod(base, 0o755)  # noqa: S103 - the postgres user must traverse it
    cluster = PgCluster(base / "pg")
    try:
        upgrade(cluster.url)
        db = Database(cluster.url)
        with db.write() as s:
            report_id = create_report(db, s, "BENCH-LEDGER", "other", actor="bench").id
        results: dict[str, list[float]] = {"at append": [], "at commit": []}
        for _ in range(2):
            with chained_at_append():
                results["at append"] += one_round(db, report_id, args.writers, args.probes)
            results["at commit"] += one_round(db, report_id, args.writers, args.probes)
        db.dispose()
    finally:
        cluster.stop()
    print(f"probe append latency with {args.writers} writers holding a row lock (PostgreSQL, fsync on)")
    for name, values in results.items():
        print(f"  events chained {name:<10} p50 {statistics.median(values):6.1f} ms  p95 {pct(values, 95):6.1f} ms  "
              f"p99 {pct(values, 99):6.1f} ms")
    ratio = pct(results["at commit"], 95) / pct(results["at append"], 95)
    print(f"  p95 at commit / at append = {ratio:.2f}; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")


if __name__ == "__main__":
    main()
