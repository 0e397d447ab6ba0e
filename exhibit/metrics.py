"""Prometheus metrics on the staff door: ``/metrics`` (issue 16 item 2).

Where the numbers come from, and why. Exhibit runs as many processes on many nodes
(public doors, staff doors, workers); a counter kept in one process's memory would show
that process only, and prometheus-client's multiprocess mode only joins the processes of
one machine. Everything that matters is already written to the database that all nodes
share, in the same transaction as the change it describes, so the staff door computes
every metric from it when scraped. Any staff node gives the same answer, which is the
whole system's, and a restart loses nothing:

* gauges, read fresh: uploads in progress (``upload`` rows still open), the queue by
  state and lane (``job``);
* totals from rows: bytes received (the durable offsets of every upload) and uploads
  ended by outcome (complete, refused, terminated, expired);
* counters from the custody ledger, which is append-only, read incrementally (only
  events after the last one seen; at most ``BATCH`` per scrape, so a first scrape of a
  long history catches up over a few scrapes): every event by action, upload refusals
  by reason, scan verdicts, sign-ins and refused sign-ins, and job step durations (the
  time between the custody events that open and close each step of an item).

Threat (SECURITY_CHECKLIST AC-17; the trust boundary of issue 11): counts, queue depths
and sign-in failure rates help an attacker time an attack. ``/metrics`` exists only on
the staff door (the public door's ``OnlyPaths`` answers 404), and even there only for
client addresses in ``EXHIBIT_METRICS_ALLOW`` (default: loopback only; behind the staff
proxy every client, partners of other organisations too, has a private address, so a
default of "private networks" let everyone read them); anyone else gets the same 404 as
for a path that does not exist. The staff door's ``/readyz`` shows its details only to
the same addresses (``allow_check``).
"""

from __future__ import annotations

import asyncio
import bisect
import datetime as dt
import threading
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Iterator, MutableMapping
from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import func, select
from sqlmodel import col

from storage.db import Database
from storage.models import CustodyEvent, Job, Upload
from storage.netaddr import client_address, parse_address, parse_networks
from storage.settings import Settings

Scope = MutableMapping[str, Any]
ASGIApp = Callable[[Scope, Callable[[], Awaitable[Any]], Callable[[Any], Awaitable[None]]], Awaitable[None]]

PATH = "/metrics"
BATCH = 50_000
BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0)
VERDICTS = {"item.clean": "clean", "item.infected": "infected", "item.unscannable": "unscannable"}
SIGN_INS = {"auth.signed_in": "signed_in", "auth.failed": "refused"}
# (step, the custody events that open it, the events that close it) for one item.
STEPS: tuple[tuple[str, frozenset[str], frozenset[str]], ...] = (
    ("wait_and_verify", frozenset({"item.received"}), frozenset({"item.scanning", "item.rejected"})),
    ("scan", frozenset({"item.scanning"}), frozenset(VERDICTS)),
    ("derivatives", frozenset({"item.processing"}), frozenset({"item.ready", "item.failed"})),
    ("total", frozenset({"item.received"}),
     frozenset({"item.ready", "item.infected", "item.unscannable", "item.rejected", "item.failed"})),
)
_CLOSING = frozenset().union(*(closes for _, _, closes in STEPS))
_OPENING = frozenset().union(*(opens for _, opens, _ in STEPS))


class _Histogram:
    def __init__(self) -> None:
        self.counts = [0] * (len(BUCKETS) + 1)
        self.total = 0.0

    def observe(self, seconds: float) -> None:
        self.counts[bisect.bisect_left(BUCKETS, seconds)] += 1
        self.total += seconds

    def buckets(self) -> list[tuple[str, float]]:
        out, running = [], 0
        for bound, n in zip((*[str(b) for b in BUCKETS], "+Inf"), self.counts, strict=True):
            running += n
            out.append((bound, float(running)))
        return out


class LedgerTally:
    """Counters over the custody ledger, advanced by ``advance()`` (one batch)."""

    def __init__(self) -> None:
        self.last_seq = 0
        self.actions: Counter[str] = Counter()
        self.refusals: Counter[str] = Counter()
        self.steps: dict[str, _Histogram] = {name: _Histogram() for name, _, _ in STEPS}

    def advance(self, db: Database) -> None:
        with db.read() as session:
            rows = session.execute(
                select(col(CustodyEvent.seq), col(CustodyEvent.action), col(CustodyEvent.item_id), col(CustodyEvent.at))
                .where(col(CustodyEvent.seq) > self.last_seq).order_by(col(CustodyEvent.seq)).limit(BATCH)).all()
            if not rows:
                return
            last = int(rows[-1][0])
            refused = session.execute(
                select(col(CustodyEvent.detail)).where(col(CustodyEvent.seq) > self.last_seq, col(CustodyEvent.seq) <= last,
                                                  col(CustodyEvent.action) == "upload.refused")).all()
            closing_items = {item for _, action, item, _ in rows if item and action in _CLOSING}
            opened: dict[tuple[str, str], dt.datetime] = {}
            for chunk in _chunks(sorted(closing_items), 500):
                for item, action, at in session.execute(
                        select(col(CustodyEvent.item_id), col(CustodyEvent.action), col(CustodyEvent.at))
                        .where(col(CustodyEvent.item_id).in_(chunk), col(CustodyEvent.action).in_(_OPENING),
                               col(CustodyEvent.seq) <= last).order_by(col(CustodyEvent.seq))).all():
                    opened[(str(item), str(action))] = at  # the latest opening of each kind
        for _, action, item, at in rows:
            self.actions[str(action)] += 1
            if item and action in _CLOSING:
                for step, opens, closes in STEPS:
                    if action in closes:
                        starts = [opened[(str(item), o)] for o in opens if (str(item), o) in opened]
                        if starts:
                            self.steps[step].observe(max(0.0, (at - max(starts)).total_seconds()))
        for (detail,) in refused:
            reason = (detail or {}).get("reason") if isinstance(detail, dict) else None
            self.refusals[str(reason or "unknown")[:64]] += 1
        self.last_seq = last


def _chunks(items: list[str], size: int) -> Iterator[list[str]]:
    for i in range(0, len(items), size):
        yield items[i:i + size]


class ExhibitCollector:
    """A prometheus-client collector that reads the shared database on each scrape."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.tally = LedgerTally()
        self._lock = threading.Lock()

    def collect(self) -> Iterable[Metric]:
        with self._lock:
            self.tally.advance(self.db)
            with self.db.read() as session:
                uploads = session.execute(
                    select(col(Upload.state), func.count(), func.coalesce(func.sum(col(Upload.offset)), 0))
                    .group_by(col(Upload.state))).all()
                jobs = session.execute(select(col(Job.state), col(Job.lane), func.count()).group_by(col(Job.state), col(Job.lane))).all()
            tally = self.tally
            actions = dict(tally.actions)
            refusals = dict(tally.refusals)
            steps = {name: (h.buckets(), h.total) for name, h in tally.steps.items()}

        by_state = {str(state): (int(n), int(received)) for state, n, received in uploads}
        in_progress = GaugeMetricFamily("exhibit_uploads_in_progress", "Uploads open now (bytes still arriving).")
        in_progress.add_metric([], by_state.get("open", (0, 0))[0])
        yield in_progress
        received = CounterMetricFamily("exhibit_upload_received_bytes", "Bytes durably received into uploads.")
        received.add_metric([], sum(b for _, b in by_state.values()))
        yield received
        ended = CounterMetricFamily("exhibit_uploads_ended", "Uploads ended, by outcome.", labels=["outcome"])
        for outcome in ("complete", "refused", "terminated", "expired"):
            ended.add_metric([outcome], by_state.get(outcome, (0, 0))[0])
        yield ended
        refused = CounterMetricFamily("exhibit_upload_refusals", "Uploads refused while streaming, by reason.",
                                      labels=["reason"])
        for reason, n in sorted(refusals.items()):
            refused.add_metric([reason], n)
        yield refused
        queue = GaugeMetricFamily("exhibit_queue_jobs", "Jobs in the queue, by state and lane.", labels=["state", "lane"])
        for state, lane, n in jobs:
            queue.add_metric([str(state), str(lane)], int(n))
        yield queue
        verdicts = CounterMetricFamily("exhibit_scan_verdicts", "Scan verdicts.", labels=["verdict"])
        for action, verdict in VERDICTS.items():
            verdicts.add_metric([verdict], actions.get(action, 0))
        yield verdicts
        sign_ins = CounterMetricFamily("exhibit_sign_ins", "Staff sign-in attempts, by outcome.", labels=["outcome"])
        for action, outcome in SIGN_INS.items():
            sign_ins.add_metric([outcome], actions.get(action, 0))
        yield sign_ins
        durations = HistogramMetricFamily("exhibit_job_step_seconds",
                                          "Processing step durations (between the custody events that open and "
                                          "close the step).", labels=["step"])
        for step, (buckets, total) in steps.items():
            durations.add_metric([step], buckets, total)
        yield durations
        events = CounterMetricFamily("exhibit_custody_events", "Custody events appended, by action.", labels=["action"])
        for action, n in sorted(actions.items()):
            events.add_metric([action], n)
        yield events


def allow_check(settings: Settings) -> Callable[[Scope], bool]:
    """Whether a request's client (the TCP peer, or the address a trusted proxy forwarded)
    is in ``EXHIBIT_METRICS_ALLOW``: who may read operational numbers (AC-17)."""
    allow = parse_networks(settings.metrics_allow)
    trusted = parse_networks(settings.trusted_proxies)

    def allowed(scope: Scope) -> bool:
        peer = scope.get("exhibit.peer") or scope.get("client")
        client = client_address(str(peer[0]) if peer else None, scope.get("headers", []), trusted)
        address = parse_address(client)
        return address is not None and any(address.version == n.version and address in n for n in allow)

    return allowed


class MetricsEndpoint:
    """``GET /metrics`` for allowed addresses; a bare 404 for everyone else (the same
    answer as for a path that does not exist); everything else goes to ``app``."""

    def __init__(self, app: ASGIApp, settings: Settings, db: Database) -> None:
        self.app = app
        self.allowed = allow_check(settings)
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(ExhibitCollector(db))
        self._lock = asyncio.Lock()

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope.get("path") != PATH:
            await self.app(scope, receive, send)
            return
        if not self.allowed(scope) or scope.get("method") not in ("GET", "HEAD"):
            await _plain(send, 404, b"Not found.")
            return
        async with self._lock:  # one scrape at a time reads the database
            body = await asyncio.to_thread(generate_latest, self.registry)
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", CONTENT_TYPE_LATEST.encode()),
                                (b"content-length", str(len(body)).encode()), (b"cache-control", b"no-store")]})
        await send({"type": "http.response.body", "body": body if scope.get("method") != "HEAD" else b""})


async def _plain(send: Any, status: int, body: bytes) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"text/plain; charset=utf-8"), (b"content-length", str(len(body)).encode()),
                            (b"cache-control", b"no-store"), (b"x-content-type-options", b"nosniff")]})
    await send({"type": "http.response.body", "body": body})
