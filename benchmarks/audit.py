"""Audit search at 1,000,000 custody events, SQLite and PostgreSQL, one run.

Needs: PostgreSQL 15 binaries (initdb, pg_ctl; run as root they run as the postgres user),
about 3 GB free in TMPDIR, and a few minutes.

    .venv/bin/python benchmarks/audit.py [--events 1000000] [--requests 200]
                                         [--backends sqlite,postgresql] [--without-indexes]

For each database (SQLite in WAL with synchronous=FULL; PostgreSQL 15 in a throwaway
cluster):

1. Migrate, then bulk-insert ``--events`` events as a year of a force's ledger: 400 staff,
   20 partners, the worker, 3,000 reports, 30,000 items; page views, stream starts,
   downloads, triage, notes, shares, the worker's steps, refusals. The rows are written
   directly, with a valid hash chain computed here (``storage.ledger.compute_hash``); the
   benchmark checks the head links. PostgreSQL then gets VACUUM (ANALYZE), as autovacuum
   would give it; SQLite gets no ANALYZE (nothing in Exhibit runs one), so its planner
   works from the schema alone, as in production.
2. Times ``storage.audit_search.search`` (what the audit desk and ``exhibit audit search``
   run) for representative searches, random targets each time:
   - by user (an officer's e-mail): first page, and a deep page (``before`` a cursor half
     way through that user's history);
   - "what did this person see" (user + the seeing actions);
   - by item ("who saw this item"), by report;
   - by action prefix (``media.*``) over a one-week range, first and deep page;
   - by action over the whole year, deep page; one action over a six-month range;
   - the floor: the newest page with no filter (a primary-key scan), the same-run
     baseline every figure is printed against.
3. With ``--without-indexes``: drops the indexes of migration 0013_auditdesk and times
   the same searches again, to show what each index buys.

Prints p50/p95 (ms) per search, the ratio of p95 to the floor's, and against the target
(DESIGN.md section 6: p95 < 200 ms at 1,000,000 events).
"""

from __future__ import annotations

import argparse
import datetime as dt
import itertools
import json
import random
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from review import PgCluster, pct, settle  # noqa: E402
from sqlalchemy import insert, text  # noqa: E402

from storage import audit_search  # noqa: E402
from storage.db import Database  # noqa: E402
from storage.ledger import GENESIS, compute_hash, format_time  # noqa: E402
from storage.migrate import upgrade  # noqa: E402
from storage.models import CustodyEvent, Report, new_id  # noqa: E402

TARGET_P95_MS = 200.0
KINDS = ("crime", "rtc", "asb", "complaint", "other")
# (action, weight, who): a year of a force's ledger, roughly.
ACTIONS: list[tuple[str, float, str]] = [
    ("item.viewed", 30, "staff"), ("media.stream", 14, "staff"), ("report.viewed", 14, "staff"),
    ("item.received", 6, "worker"), ("item.verified", 6, "worker"), ("item.clean", 6, "worker"),
    ("item.ready", 6, "worker"), ("item.derivative", 6, "worker"), ("item.triage", 3, "staff"),
    ("note.added", 2, "staff"), ("tag.added", 1, "staff"), ("item.original_downloaded", 1, "staff"),
    ("share.created", 0.5, "staff"), ("access.denied", 1, "staff"), ("item.viewed", 2, "partner"),
    ("media.stream", 1, "partner"), ("export.created", 0.2, "staff"), ("link.created", 0.3, "staff"),
]
INDEXES = ("ix_custody_event_actor_seq", "ix_custody_event_item_seq", "ix_custody_event_report_seq",
           "ix_custody_event_action_seq", "ix_custody_event_at")


class Seeded:
    def __init__(self) -> None:
        self.staff: list[str] = []
        self.items: list[str] = []
        self.reports: list[tuple[str, str]] = []  # (id, reference)
        self.start = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
        self.end = self.start


def seed(db: Database, events: int) -> Seeded:
    rnd = random.Random(15)
    s = Seeded()
    s.staff = [f"officer{n:03d}@force.test" for n in range(400)]
    partners = [f"partner{n:02d}@cps.test" for n in range(20)]
    s.reports = [(new_id(), f"AUD/{n:05d}") for n in range(3000)]
    report_of: dict[str, str] = {}
    for _ in range(30_000):
        iid = new_id()
        s.items.append(iid)
        report_of[iid] = rnd.choice(s.reports)[0]
    with db.write() as session:
        session.execute(insert(Report), [
            {"id": rid, "reference": ref, "kind": KINDS[n % 5], "title": "Bench", "created_at": s.start}
            for n, (rid, ref) in enumerate(s.reports)])
    names = [a for a, _w, _who in ACTIONS]
    weights = [w for _a, w, _who in ACTIONS]
    who = [w for _a, _w, w in ACTIONS]
    step = dt.timedelta(days=365) / events
    prev, batch, seq = GENESIS, [], 0
    t0 = time.perf_counter()
    # Staff activity is skewed (a few busy officers), as real ledgers are.
    staff_cum = list(itertools.accumulate(1 / (1 + n / 20) for n in range(len(s.staff))))
    action_cum = list(itertools.accumulate(weights))
    kinds = range(len(names))
    for n in range(events):
        seq = n + 1
        k = rnd.choices(kinds, cum_weights=action_cum)[0]
        item = rnd.choice(s.items)
        actor = ("worker" if who[k] == "worker" else rnd.choice(partners) if who[k] == "partner"
                 else rnd.choices(s.staff, cum_weights=staff_cum)[0])
        action = names[k]
        at = s.start + step * n
        report_id = report_of[item]
        item_id = None if action in ("report.viewed", "link.created") else item
        detail: dict[str, Any] = {"n": n % 97}
        if action == "item.original_downloaded":
            detail = {"reason": "file preparation for CPS"}
        body = {"seq": seq, "at": format_time(at), "actor": actor, "action": action,
                "subject": f"item:{item_id}" if item_id else f"report:{report_id}", "report_id": report_id,
                "item_id": item_id, "detail": detail, "request_id": None}
        h = compute_hash(prev, body)
        batch.append((seq, at, actor, action, body["subject"], report_id, item_id, json.dumps(detail), prev, h))
        prev = h
        if len(batch) == 10_000:
            _flush(db, batch)
            batch = []
    if batch:
        _flush(db, batch)
    s.end = s.start + step * events
    print(f"  seeded {events:,} events in {time.perf_counter() - t0:.0f} s", flush=True)
    settle(db)
    with db.read() as session:
        last = session.get(CustodyEvent, seq)
        assert last is not None and last.hash == prev, "the seeded chain does not end where it was built"
    return s


COLUMNS = "seq, at, actor, action, subject, report_id, item_id, detail, prev_hash, hash"


def _flush(db: Database, rows: list[tuple[Any, ...]]) -> None:
    """Straight to the driver (the ORM's bulk insert goes row by row here): COPY on
    PostgreSQL, executemany on SQLite, with the values as each stores them."""
    with db.engine.begin() as conn:
        raw = conn.connection.driver_connection
        assert raw is not None
        if db.is_postgresql:
            with raw.cursor() as cur, cur.copy(f"COPY custody_event ({COLUMNS}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)
        else:
            # SQLAlchemy keeps SQLite times as naive UTC text (storage.models.UTCDateTime).
            raw.executemany(f"INSERT INTO custody_event ({COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?)",  # noqa: S608
                            [(r[0], r[1].astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S.%f"), *r[2:]) for r in rows])


def measure(db: Database, s: Seeded, n: int) -> dict[str, list[float]]:
    rnd = random.Random(3)
    week = dt.timedelta(days=7)

    def busy_user() -> str:
        return rnd.choice(s.staff[:40])

    def deep_cursor(f: audit_search.AuditFilter) -> int | None:
        # A cursor half way through the matches: the page an auditor reaches by paging.
        first = audit_search.search(db, f, limit=1)
        if not first.events:
            return None
        return max(1, first.events[0].seq // 2)

    def some_week() -> tuple[dt.datetime, dt.datetime]:
        start = s.start + dt.timedelta(days=rnd.randrange(0, 350))
        return start, start + week

    searches: dict[str, Callable[[], Any]] = {}
    searches["floor: newest page, no filter"] = lambda: audit_search.search(db, audit_search.AuditFilter())
    searches["by user, first page"] = lambda: audit_search.search(db, audit_search.AuditFilter(actor=busy_user()))

    def user_deep() -> Any:
        f = audit_search.AuditFilter(actor=rnd.choice(s.staff))
        return audit_search.search(db, f, before=deep_cursor(f))

    searches["by user, deep page"] = user_deep
    searches["what did this person see"] = lambda: audit_search.search(
        db, audit_search.with_seeing(audit_search.AuditFilter(actor=rnd.choice(s.staff))))
    searches["who saw this item"] = lambda: audit_search.search(
        db, audit_search.with_seeing(audit_search.AuditFilter(item_id=rnd.choice(s.items))))
    searches["by item, every event"] = lambda: audit_search.search(
        db, audit_search.AuditFilter(item_id=rnd.choice(s.items)))
    searches["by report"] = lambda: audit_search.search(
        db, audit_search.AuditFilter(report=rnd.choice(s.reports)[1]))

    def action_week() -> Any:
        since, until = some_week()
        return audit_search.search(db, audit_search.AuditFilter(action="media.*", since=since, until=until))

    def action_week_deep() -> Any:
        since, until = some_week()
        f = audit_search.AuditFilter(action="media.*", since=since, until=until)
        first = audit_search.search(db, f, limit=1)
        cursor = first.events[0].seq - 2000 if first.events else None
        return audit_search.search(db, f, before=cursor)

    searches["action prefix + one week"] = action_week
    searches["action prefix + one week, deep page"] = action_week_deep

    def downloads_deep() -> Any:
        f = audit_search.AuditFilter(action="item.original_downloaded")
        return audit_search.search(db, f, before=deep_cursor(f))

    searches["one action, whole year, deep page"] = downloads_deep

    def action_half_year() -> Any:
        start = s.start + dt.timedelta(days=rnd.randrange(0, 180))
        return audit_search.search(db, audit_search.AuditFilter(action="item.original_downloaded", since=start,
                                                                until=start + dt.timedelta(days=180)))

    searches["one action + six-month range"] = action_half_year
    out: dict[str, list[float]] = {}
    for name, fn in searches.items():
        fn()  # warm the cache as a running server's would be
        times = []
        for _ in range(n):
            t = time.perf_counter()
            fn()
            times.append((time.perf_counter() - t) * 1000)
        out[name] = times
    return out


def report(label: str, results: dict[str, list[float]]) -> bool:
    floor = pct(results["floor: newest page, no filter"], 95)
    print(f"\n{label}")
    print(f"  {'search':<40} {'p50 ms':>8} {'p95 ms':>8} {'p95/floor':>10}  target p95 < {TARGET_P95_MS:.0f} ms")
    ok = True
    for name, times in results.items():
        p50, p95 = pct(times, 50), pct(times, 95)
        met = p95 < TARGET_P95_MS
        ok &= met
        print(f"  {name:<40} {p50:8.1f} {p95:8.1f} {p95 / floor:10.1f}  {'ok' if met else 'MISSED'}", flush=True)
    return ok


def run_backend(name: str, url: str, args: argparse.Namespace) -> bool:
    upgrade(url)
    db = Database(url)
    try:
        print(f"\n== {name}: seeding", flush=True)
        s = seed(db, args.events)
        ok = report(f"{name}: {args.events:,} events, {args.requests} searches each", measure(db, s, args.requests))
        if args.without_indexes:
            with db.engine.begin() as conn:
                for ix in INDEXES:
                    conn.execute(text(f"DROP INDEX {ix}"))
            report(f"{name}: the same WITHOUT the 0013_auditdesk indexes (context, not a target)",
                   measure(db, s, max(5, args.requests // 10)))
        return ok
    finally:
        db.dispose()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--without-indexes", action="store_true")
    args = parser.parse_args()
    ok = True
    with tempfile.TemporaryDirectory(prefix="exhibit-bench-audit-") as tmp:
        base = Path(tmp)
        base.chmod(0o755)  # PostgreSQL's own user must reach its cluster below
        for backend in args.backends.split(","):
            if backend == "sqlite":
                ok &= run_backend("SQLite", f"sqlite:///{base / 'audit.db'}", args)
            elif backend == "postgresql":
                cluster = PgCluster(base / "pg")
                try:
                    ok &= run_backend("PostgreSQL", cluster.url, args)
                finally:
                    cluster.stop()
            else:
                raise SystemExit(f"unknown backend {backend}")
    print("\nall searches within target" if ok else "\nSOME SEARCHES MISSED THE TARGET")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
