"""``/readyz``: is this node able to do its work now, and if not, which part is failing.

Each door names the parts it depends on, each ``ok`` or ``failing``, and answers 503
naming the failing ones (``/healthz`` stays a bare liveness check: a load balancer that
restarts on /healthz must not restart a node because the database is down).

* Public door: ``database``, ``blob_store`` (a real write: an upload is created, one
  byte written and synced, and the upload deleted), ``queue`` (the job table, written in
  the same transaction as every received file) and ``ledger`` (the custody chain's head,
  which every upload appends to). Nothing else: no versions, counts, signature state or
  error text. Threat (trust boundary, issue 11 item 5): the internet learns which
  signatures we have, how far behind the worker is or what broke, and times an attack.
* Staff door: the same parts, plus ``clamd`` when this process scans (it runs the
  worker, or ``EXHIBIT_CLAMD_ADDRESS`` names a scanner), and, only for clients in
  ``EXHIBIT_METRICS_ALLOW`` (the /metrics allow-list; everyone else gets the public
  body), ``details``: signature
  version and age, queue backlog by state and the age of the oldest queued job, the last
  checkpoint, the ledger verifiers whose last round failed (``ledger_watch.failing``)
  and the fixity alarm count. An alarm is reported, not a readiness failure: taking the
  staff node out of rotation would hide the alarm from the admins who must act on it.

Cheap and bounded (threat: a flood of /readyz used to load the database). Every probe
has a timeout (``PROBE_TIMEOUT_SECONDS``); all run at once, so an answer takes at most
that long. The result is cached for ``CACHE_SECONDS`` and refreshed by one request at a
time (others wait for it), so any number of requests costs at most one round of probes
per ``CACHE_SECONDS``. A probe still stuck from an earlier round is not started again:
its part stays ``failing`` until the stuck call returns.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import text

from storage.blobs.protocol import BlobStore
from storage.db import Database
from storage.settings import Settings

log = logging.getLogger("exhibit.readiness")

Scope = MutableMapping[str, Any]
ASGIApp = Callable[[Scope, Callable[[], Awaitable[Any]], Callable[[Any], Awaitable[None]]], Awaitable[None]]

PATH = "/readyz"
CACHE_SECONDS = 2.0
PROBE_TIMEOUT_SECONDS = 2.0
OK, FAILING = "ok", "failing"
# "ClamAV 1.4.6/27000/Thu Dec  3 08:21:05 2026": version / signature database / built at.
_CLAMD_VERSION = re.compile(r"^ClamAV [^/]+/(?P<db>\d+)/(?P<built>[^(]+?)\s*(?:\(.*\))?$")


def clamd_address(settings: Settings) -> str:
    """The clamd this process scans with: the configured one, or the managed one."""
    if settings.clamd_address:
        return settings.clamd_address
    from processing.clamd_manager import ClamdManager

    return ClamdManager(settings).address


def signature_age_seconds(version: str, now: dt.datetime | None = None) -> int | None:
    """Age of clamd's signature database from its VERSION reply (None: not stated, as with
    the project's test signatures)."""
    match = _CLAMD_VERSION.match(version.strip())
    if not match:
        return None
    try:
        built = dt.datetime.strptime(" ".join(match.group("built").split()), "%a %b %d %H:%M:%S %Y")
    except ValueError:
        return None
    return max(0, int(((now or dt.datetime.now(dt.UTC)) - built.replace(tzinfo=dt.UTC)).total_seconds()))


@dataclass
class Report:
    parts: dict[str, str]
    details: dict[str, Any] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)  # staff only: the exception's class
    checked_at: str = ""

    @property
    def ready(self) -> bool:
        return all(state == OK for state in self.parts.values())

    @property
    def failing(self) -> list[str]:
        return [name for name, state in self.parts.items() if state != OK]

    def public_body(self) -> dict[str, Any]:
        """What the internet may see: part names and ok/failing, nothing more."""
        body: dict[str, Any] = {"ready": self.ready, "parts": dict(self.parts)}
        if not self.ready:
            body["failing"] = self.failing
        return body

    def staff_body(self) -> dict[str, Any]:
        body = self.public_body()
        body["checked_at"] = self.checked_at
        if self.errors:
            body["errors"] = dict(self.errors)
        body["details"] = self.details
        return body


class Readiness:
    """The probes of one door. ``await check()`` gives a (cached) ``Report``."""

    def __init__(self, settings: Settings, db: Database, store: BlobStore, door: str, *,
                 scans: bool = False, cache_seconds: float = CACHE_SECONDS,
                 probe_timeout: float = PROBE_TIMEOUT_SECONDS) -> None:
        self.settings = settings
        self.db = db
        self.store = store
        self.door = door
        self.staff = door == "staff"
        self.scans = scans and self.staff
        self.cache_seconds = cache_seconds
        self.probe_timeout = probe_timeout
        self._cached: Report | None = None
        self._cached_at = 0.0
        self._lock = asyncio.Lock()
        self._stuck: dict[str, asyncio.Future[Any]] = {}

    @property
    def part_names(self) -> tuple[str, ...]:
        return ("database", "blob_store", *(("clamd",) if self.scans else ()), "queue", "ledger")

    async def check(self) -> Report:
        if self._cached is not None and time.monotonic() - self._cached_at < self.cache_seconds:
            return self._cached
        async with self._lock:  # one refresh at a time; the others get its result
            if self._cached is not None and time.monotonic() - self._cached_at < self.cache_seconds:
                return self._cached
            report = await self._probe_all()
            self._cached, self._cached_at = report, time.monotonic()
            if not report.ready:
                log.warning("readyz.failing", extra={"door": self.door, "failing": report.failing,
                                                     "errors": report.errors})
            return report

    async def _probe_all(self) -> Report:
        probes: dict[str, Callable[[], Awaitable[Any]]] = {
            "database": lambda: asyncio.to_thread(self._database),
            "blob_store": self._blob_store,
            "clamd": lambda: asyncio.to_thread(self._clamd),
            "queue": lambda: asyncio.to_thread(self._queue),
            "ledger": lambda: asyncio.to_thread(self._ledger),
        }
        names = self.part_names
        results = await asyncio.gather(*(self._bounded(name, probes[name]) for name in names))
        report = Report(parts={}, checked_at=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"))
        for name, (state, detail, error) in zip(names, results, strict=True):
            report.parts[name] = state
            if error:
                report.errors[name] = error
            if self.staff and detail is not None:
                report.details[name] = detail
        if self.staff:
            fixity = await self._bounded("fixity", lambda: asyncio.to_thread(self._fixity))
            report.details["fixity"] = fixity[1] if fixity[0] == OK else {"error": fixity[2]}
        return report

    async def _bounded(self, name: str, probe: Callable[[], Awaitable[Any]]) -> tuple[str, Any, str | None]:
        previous = self._stuck.get(name)
        if previous is not None and not previous.done():
            return FAILING, None, "TimeoutError: the previous probe has not returned"
        task: asyncio.Future[Any] = asyncio.ensure_future(probe())
        done, _ = await asyncio.wait({task}, timeout=self.probe_timeout)
        if not done:
            # Left to finish on its own (a thread cannot be cancelled); not started again
            # until it has, so a hung dependency cannot pile up threads.
            self._stuck[name] = task
            task.add_done_callback(_consume)
            return FAILING, None, f"TimeoutError: no answer within {self.probe_timeout:g} s"
        self._stuck.pop(name, None)
        try:
            return OK, task.result(), None
        except Exception as exc:  # a failing part is an answer, not an error of /readyz
            return FAILING, None, type(exc).__name__

    # -- probes (blocking ones run in a thread) ----------------------------------------

    def _database(self) -> Any:
        with self.db.read() as session:
            session.exec(text("SELECT 1")).one()  # type: ignore[call-overload]
        return None

    async def _blob_store(self) -> Any:
        # A real write where uploads write: being able to list or read is not being able
        # to accept evidence (a full or read-only disk, a revoked S3 write permission).
        upload = await self.store.create("originals", length=1)
        try:
            await upload.write(0, _one_byte())
        finally:
            await upload.terminate()
        return None

    def _clamd(self) -> Any:
        from processing.scanning import ClamdScanner

        scanner = ClamdScanner(clamd_address(self.settings), timeout_seconds=self.probe_timeout)
        if not scanner.ping():
            raise ConnectionError("clamd does not answer PING")
        version = scanner.version()
        return {"signatures": version, "signature_age_seconds": signature_age_seconds(version)}

    def _queue(self) -> Any:
        with self.db.read() as session:
            if not self.staff:
                session.exec(text("SELECT id FROM job LIMIT 1")).all()  # type: ignore[call-overload]
                return None
            rows = session.exec(text(  # type: ignore[call-overload]
                "SELECT state, COUNT(*), MIN(run_after) FROM job WHERE state <> 'done' GROUP BY state")).all()
            now = self.db.now(session)
        by_state = {str(state): int(n) for state, n, _ in rows}
        oldest = [_as_utc(first) for state, _, first in rows if state == "queued" and first is not None]
        return {"backlog": by_state.get("queued", 0) + by_state.get("running", 0), "by_state": by_state,
                "oldest_queued_seconds": max(0, int((now - oldest[0]).total_seconds())) if oldest else None}

    def _ledger(self) -> Any:
        with self.db.read() as session:
            head = session.exec(text("SELECT seq FROM custody_event ORDER BY seq DESC LIMIT 1")).first()  # type: ignore[call-overload]
            if not self.staff:
                return None
            from storage.ledger_watch import failing

            checkpoint = session.exec(text(  # type: ignore[call-overload]
                "SELECT seq, at FROM checkpoint ORDER BY id DESC LIMIT 1")).first()
            failing_rows = [{"name": row.name, "reason": row.reason, "checked_at": _iso(row.checked_at)}
                            for row in failing(session)]
        return {"head_seq": int(head[0]) if head else 0,
                "last_checkpoint": ({"seq": int(checkpoint[0]), "at": _iso(_as_utc(checkpoint[1]))}
                                    if checkpoint else None),
                "verifiers_failing": failing_rows}

    def _fixity(self) -> Any:
        from storage.fixity import alarm_count

        with self.db.read() as session:
            return {"alarms": alarm_count(session)}


def _consume(task: asyncio.Future[Any]) -> None:
    if not task.cancelled():
        task.exception()  # retrieved, so asyncio does not log "never retrieved"


async def _one_byte() -> AsyncIterator[bytes]:
    yield b"\0"


def _as_utc(value: Any) -> dt.datetime:
    if isinstance(value, str):  # SQLite through raw SQL: the stored text
        value = dt.datetime.fromisoformat(value)
    assert isinstance(value, dt.datetime)
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


def _iso(value: dt.datetime | None) -> str | None:
    return value.isoformat(timespec="seconds") if value is not None else None


class ReadyEndpoint:
    """Answers ``GET``/``HEAD /readyz`` from ``readiness``; everything else goes to ``app``."""

    def __init__(self, app: ASGIApp, readiness: Readiness,
                 details_allowed: Callable[[Scope], bool] | None = None) -> None:
        self.app = app
        self.readiness = readiness
        # Who may see the staff door's details (failing verifiers with their reason, fixity
        # alarms, checkpoint, signature age, backlog): the /metrics allow-list. Threat
        # (AC-17): anyone who reaches the staff door (partners of other organisations behind
        # the same proxy) would learn what is broken and when to strike. None: nobody.
        self.details_allowed = details_allowed

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope.get("path") != PATH:
            await self.app(scope, receive, send)
            return
        report = await self.readiness.check()
        detailed = self.readiness.staff and self.details_allowed is not None and self.details_allowed(scope)
        body_data = report.staff_body() if detailed else report.public_body()
        body = json.dumps(body_data, default=str).encode()
        await send({"type": "http.response.start", "status": 200 if report.ready else 503,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(body)).encode()),
                                (b"cache-control", b"no-store"), (b"x-content-type-options", b"nosniff")]})
        await send({"type": "http.response.body", "body": body if scope.get("method") != "HEAD" else b""})
