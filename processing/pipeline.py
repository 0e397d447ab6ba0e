"""The steps of one ``process_item`` job, resumable from whatever state a previous
(crashed) attempt left the item in.

    received  -> scanning           (checks start)
    scanning  -> verify (SHA-256 of the stored original, must equal the ingest hash)
              -> sniff (magic bytes + decode by the allowed parser)
              -> scan (clamd INSTREAM from the blob store)
              -> clean | infected | unscannable | rejected | integrity_alarm
    clean     -> processing
    processing-> metadata, derivatives (each committed once: unique (item_id, kind))
              -> ready | failed

Every step appends a custody event with the tool, its version and the exact arguments.
The job is completed in the same transaction as the item's final state change, so a
worker that lost its lease cannot finish anything (``queue.LeaseLost``). Delivery is
at-least-once: a step that runs twice leaves one result (derivative rows that exist
for the same input hash are not made again; a state already reached is not re-entered).
"""

from __future__ import annotations

import hashlib
import logging
import platform
import shutil
import ssl
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from processing import images, video
from processing.blobs import BlobBridge
from processing.scanning import Scanner, Verdict, VerdictKind
from processing.sniff import Identified, Rejected, identify
from storage import ledger, queue
from storage.blobs import BlobNotFound
from storage.db import Database
from storage.lifecycle import TERMINAL, ItemState, transition
from storage.models import Derivative, EvidenceItem
from storage.sniff import is_image, is_video

log = logging.getLogger(__name__)

Hook = Callable[[str, str], None]  # (point, item_id): test hooks at named points


class Cancelled(Exception):
    """Shutdown or lost lease: stop now, hand the job back."""


class ProcessingFailed(Exception):
    """Deterministic failure making derivatives: the item fails with this reason."""


@dataclass
class JobContext:
    db: Database
    blobs: BlobBridge
    scanner: Scanner
    claim: queue.Claim
    actor: str
    cancel: threading.Event = field(default_factory=threading.Event)
    hook: Hook | None = None
    progress: int = 0
    temp_root: Path | None = None
    # The job's time budget (EXHIBIT_JOB_MAX_SECONDS) as a time.monotonic() deadline:
    # every ffmpeg run is cut to what is left of it (BF-19).
    deadline: float | None = None

    def set_progress(self, value: int) -> None:
        self.progress = max(self.progress, min(100, value))

    def at(self, point: str, item_id: str) -> None:
        if self.hook is not None:
            self.hook(point, item_id)
        if self.cancel.is_set():
            raise Cancelled(point)


def hash_tool() -> dict[str, Any]:
    return {"tool": "hashlib.sha256", "tool_version": f"Python {platform.python_version()}; {ssl.OPENSSL_VERSION}"}


def _load(session: Any, db: Database, item_id: str, *, lock: bool = False) -> EvidenceItem:
    query = select(EvidenceItem).where(EvidenceItem.id == item_id)  # type: ignore[arg-type]
    if lock and db.is_postgresql:
        query = query.with_for_update()
    item = session.exec(query).scalars().first()
    if item is None:
        raise LookupError(f"item {item_id} does not exist")
    return item  # type: ignore[no-any-return]


def _finish(ctx: JobContext, item_id: str, target: ItemState, *, reason: str | None,
            detail: dict[str, Any] | None = None, set_fields: dict[str, Any] | None = None) -> None:
    """Final state change + job completion, one transaction."""
    with ctx.db.write() as s:
        item = _load(s, ctx.db, item_id, lock=True)
        for k, v in (set_fields or {}).items():
            setattr(item, k, v)
        if item.state != target:
            transition(ctx.db, s, item, target, actor=ctx.actor, reason=reason, detail=detail)
        queue.complete(ctx.db, s, ctx.claim)


def _move(ctx: JobContext, item_id: str, target: ItemState, *, reason: str | None = None,
          detail: dict[str, Any] | None = None, set_fields: dict[str, Any] | None = None,
          events: list[tuple[str, dict[str, Any]]] | None = None,
          then: tuple[ItemState, str] | None = None) -> EvidenceItem:
    """One transaction: set fields, append events, transition (and optionally a second
    transition ``then`` = (state, reason)), guarded by the lease."""
    with ctx.db.write() as s:
        # Only the lease holder moves the item (a worker that lost its lease stops here).
        queue_check(ctx, s)
        item = _load(s, ctx.db, item_id, lock=True)
        for k, v in (set_fields or {}).items():
            setattr(item, k, v)
        s.add(item)
        for action, event_detail in events or []:
            ledger.append(ctx.db, s, actor=ctx.actor, action=action, subject=f"item:{item.id}",
                          report_id=item.report_id, item_id=item.id, detail=event_detail)
        if item.state != target:
            transition(ctx.db, s, item, target, actor=ctx.actor, reason=reason, detail=detail)
        if then is not None:
            transition(ctx.db, s, item, then[0], actor=ctx.actor, reason=then[1])
        return item


def queue_check(ctx: JobContext, session: Any) -> None:
    from storage.models import Job

    query = select(Job).where(Job.id == ctx.claim.job_id)  # type: ignore[arg-type]
    if ctx.db.is_postgresql:
        query = query.with_for_update()
    job = session.exec(query).scalars().first()
    if job is None or job.state != "running" or job.lease_owner != ctx.claim.owner:
        raise queue.LeaseLost(f"job {ctx.claim.job_id} is no longer held by {ctx.claim.owner}")


def fetch_and_hash(ctx: JobContext, item: EvidenceItem, workdir: Path) -> tuple[str, int]:
    """Stream the original into the private work directory, hashing as it goes."""
    digest = hashlib.sha256()
    size = 0
    with open(workdir / "input", "wb") as f:
        for chunk in ctx.blobs.iter(item.blob_key):
            if ctx.cancel.is_set():
                raise Cancelled("verify")
            digest.update(chunk)
            f.write(chunk)
            size += len(chunk)
    (workdir / "input").chmod(0o400)
    return digest.hexdigest(), size


def process_item(ctx: JobContext) -> str:
    """Run the job; returns the item's final state. Raises for retryable problems."""
    item_id = ctx.claim.item_id
    if item_id is None:
        raise LookupError("process_item job without an item")
    with ctx.db.read() as s:
        item = _load(s, ctx.db, item_id)
    if ItemState(item.state) in TERMINAL:
        # Already finished by an earlier attempt whose completion was lost: nothing to do.
        _finish(ctx, item_id, ItemState(item.state), reason=item.state_reason)
        return item.state
    workdir = Path(tempfile.mkdtemp(prefix="exhibit-job-", dir=ctx.temp_root))
    try:
        return _run(ctx, item, workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _scan_detail(verdict: Verdict, item: EvidenceItem) -> tuple[dict[str, Any], dict[str, Any]]:
    detail = {"tool": "clamd", "tool_version": verdict.database_version,
              "argv": [verdict.method, item.blob_key], "verdict": str(verdict.kind),
              "signature": verdict.signature, "reply": verdict.raw_reply}
    fields = {"verdict": str(verdict.kind), "verdict_signature": verdict.signature,
              "signature_db_version": verdict.database_version[:200]}
    return detail, fields


def _quarantine(ctx: JobContext, item_id: str) -> None:
    """Move the infected original out of every viewer's and export's reach. Best effort
    here: the worker's housekeeping completes a move this misses (issue 14 item 5)."""
    from storage import quarantine

    try:
        quarantine.quarantine_item(ctx.db, ctx.blobs.store, item_id, actor=ctx.actor)
    except Exception as exc:
        log.warning("processing.quarantine_deferred", extra={"item_id": item_id, "error": str(exc)[:200]})


class _NotClean(Exception):
    def __init__(self, state: ItemState) -> None:
        super().__init__(str(state))
        self.state = state


class _ScanInBackground:
    """Scan the verified copy in a thread and commit its verdict the moment it is known
    (clean -> processing, or the final infected/unscannable state with the job done),
    while the calling thread prepares derivatives privately. ``gate()`` is the publish
    gate: it waits for the verdict and raises unless the item is clean, so nothing is
    stored or shown before a clean verdict (DESIGN.md section 7)."""

    def __init__(self, ctx: JobContext, item: EvidenceItem, workdir: Path) -> None:
        self.ctx, self.item, self.workdir = ctx, item, workdir
        self.done = threading.Event()
        self.final: ItemState | None = None
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name=f"scan-{item.id[:8]}", daemon=True)

    def _run(self) -> None:
        ctx, item = self.ctx, self.item
        try:
            # A local clamd reads the verified copy's descriptor (FILDES); a remote one
            # gets it streamed (INSTREAM). Either way clamd judges exactly the bytes
            # whose SHA-256 was just checked.
            verdict = ctx.scanner.scan_file(self.workdir / "input", item.size)
            detail, fields = _scan_detail(verdict, item)
            if verdict.kind is VerdictKind.INFECTED:
                _finish(ctx, item.id, ItemState.INFECTED, reason=f"signature {verdict.signature}",
                        detail=detail, set_fields=fields)
                self.final = ItemState.INFECTED
                _quarantine(ctx, item.id)
            elif verdict.kind is VerdictKind.UNSCANNABLE:
                _finish(ctx, item.id, ItemState.UNSCANNABLE, reason=verdict.reason, detail=detail,
                        set_fields=fields)
                self.final = ItemState.UNSCANNABLE
            else:
                _move(ctx, item.id, ItemState.CLEAN, reason="no signature matched", detail=detail,
                      set_fields=fields, then=(ItemState.PROCESSING, "derivatives started"))
                ctx.set_progress(20)
        except BaseException as exc:  # handed to the job's thread by gate()
            self.error = exc
        finally:
            self.done.set()

    def start(self) -> _ScanInBackground:
        self.thread.start()
        return self

    def stop_preparing(self) -> bool:
        """True once the verdict is known and is not clean: stop the transcode."""
        return self.done.is_set() and (self.final is not None or self.error is not None)

    def gate(self) -> None:
        self.thread.join()
        if self.error is not None:
            raise self.error
        if self.final is not None:
            raise _NotClean(self.final)


def _run(ctx: JobContext, item: EvidenceItem, workdir: Path) -> str:
    item_id = item.id
    fetched = False
    ident: Identified | None = None
    scan: _ScanInBackground | None = None
    # Verify and sniff run from `received` (or again from `scanning` after a crash); the
    # move to `scanning` commits with their events, one transaction.
    if item.state in (ItemState.RECEIVED, ItemState.SCANNING):
        # 1. verify
        try:
            digest, size = fetch_and_hash(ctx, item, workdir)
        except BlobNotFound:
            _finish(ctx, item_id, ItemState.INTEGRITY_ALARM, reason="the stored original is missing")
            return ItemState.INTEGRITY_ALARM
        fetched = True
        ctx.set_progress(5)
        verify_detail = {**hash_tool(), "argv": ["sha256", item.blob_key], "expected": item.sha256,
                         "computed": digest, "size": size}
        if digest != item.sha256 or size != item.size:
            _finish(ctx, item_id, ItemState.INTEGRITY_ALARM,
                    reason=f"SHA-256 of the stored original ({digest}) differs from the ingest hash",
                    detail=verify_detail, set_fields={"verified_sha256": digest})
            return ItemState.INTEGRITY_ALARM
        # 2. sniff
        try:
            ident = identify(workdir)
        except Rejected as exc:
            with ctx.db.write() as s:
                queue_check(ctx, s)
                it = _load(s, ctx.db, item_id, lock=True)
                it.verified_sha256 = digest
                ledger.append(ctx.db, s, actor=ctx.actor, action="item.verified", subject=f"item:{item_id}",
                              report_id=it.report_id, item_id=item_id, detail=verify_detail)
                transition(ctx.db, s, it, ItemState.REJECTED, actor=ctx.actor, reason=str(exc)[:1000],
                           detail={"step": "sniff"})
                queue.complete(ctx.db, s, ctx.claim)
            return ItemState.REJECTED
        sniff_detail = {"tool": ident.tool, "tool_version": ident.tool_version, "argv": ident.argv,
                        "detected_type": ident.mime, "claimed_type": item.claimed_type}
        item = _move(ctx, item_id, ItemState.SCANNING, reason="verified and sniffed",
                     set_fields={"verified_sha256": digest, "detected_type": ident.mime},
                     events=[("item.verified", verify_detail), ("item.sniffed", sniff_detail)])
        ctx.set_progress(8)
        if is_video(ident.mime) and ctx.claim.lane != queue.VIDEO_LANE:
            # BF-19: a video found in another lane (the enqueuer did not know, or was told
            # otherwise) goes to the video lane before any transcode, so it never holds
            # a slot that photos are processed in. Verify and sniff run again there.
            with ctx.db.write() as s:
                queue.relane(ctx.db, s, ctx.claim, queue.VIDEO_LANE)
            return ItemState.SCANNING
        # 3. scan, overlapped with preparing the derivatives (published only if clean).
        ctx.at("scan", item.id)
        scan = _ScanInBackground(ctx, item, workdir).start()
    else:
        if item.state == ItemState.CLEAN:
            item = _move(ctx, item_id, ItemState.PROCESSING, reason="derivatives started")
        if item.state == ItemState.FAILED:
            item = _move(ctx, item_id, ItemState.PROCESSING, reason="retry")
        if item.state != ItemState.PROCESSING:
            raise RuntimeError(f"item {item_id} in unexpected state {item.state}")
    try:
        return _derive(ctx, item, workdir, ident, fetched, scan)
    except _NotClean as exc:
        return exc.state
    finally:
        if scan is not None:
            scan.thread.join()


def _derive(ctx: JobContext, item: EvidenceItem, workdir: Path, ident: Identified | None, fetched: bool,
            scan: _ScanInBackground | None) -> str:
    item_id = item.id

    def gate() -> None:
        if scan is not None:
            scan.gate()

    if not fetched:
        digest, _ = fetch_and_hash(ctx, item, workdir)
        if digest != item.sha256:
            _finish(ctx, item_id, ItemState.FAILED,
                    reason=f"the stored original no longer matches its SHA-256 ({digest})",
                    detail={**hash_tool(), "argv": ["sha256", item.blob_key], "computed": digest})
            return ItemState.FAILED
    try:
        if ident is None:
            ident = identify(workdir)
        if ident.mime != item.detected_type:
            raise ProcessingFailed(f"type changed between attempts: {item.detected_type} -> {ident.mime}")
        metadata, metadata_event = _metadata(workdir, ident)
        have = _existing(ctx, item)
        stop = scan.stop_preparing if scan is not None else (lambda: False)
        try:
            prepared = _prepare(ctx, item, workdir, ident, have, stop)
        except (Cancelled, video.Cancelled):
            if ctx.cancel.is_set():
                raise
            gate()  # the verdict stopped the transcode: raises _NotClean
            raise
        gate()
        _publish(ctx, item, prepared)
    except (Rejected, images.ImageRejected, video.VideoRejected, video.ToolFailed, ProcessingFailed) as exc:
        gate()  # an infected file's failure is reported as infected
        _finish(ctx, item_id, ItemState.FAILED, reason=str(exc)[:1000], detail={"step": "derivatives"})
        return ItemState.FAILED
    ctx.set_progress(97)
    made = [{"kind": d.kind, "sha256": d.sha256, "size": d.size}
            for d in sorted(_existing(ctx, item).values(), key=lambda d: d.kind)]
    ctx.at("before_ready", item_id)
    with ctx.db.write() as s:
        it = _load(s, ctx.db, item_id, lock=True)
        it.media_metadata = metadata
        it.progress = 100
        ledger.append(ctx.db, s, actor=ctx.actor, action="item.metadata", subject=f"item:{item_id}",
                      report_id=it.report_id, item_id=item_id, detail=metadata_event)
        transition(ctx.db, s, it, ItemState.READY, actor=ctx.actor, reason="derivatives made",
                   detail={"derivatives": made})
        queue.complete(ctx.db, s, ctx.claim)
    return ItemState.READY


def _metadata(workdir: Path, ident: Identified) -> tuple[dict[str, Any], dict[str, Any]]:
    if is_image(ident.mime):
        meta = images.extract_metadata(workdir / "input", ident.mime)
        event = {"tool": "pillow", "tool_version": images.tool_version(),
                 "argv": ["Image.getexif()", "get_ifd(Exif)", "get_ifd(GPSInfo)"]}
    else:
        assert ident.probe is not None
        meta = video.metadata(ident.probe)
        event = {"tool": "ffprobe", "tool_version": video.tool_version("ffprobe"), "argv": ident.argv}
    meta["detected_type"] = ident.mime
    return meta, event


def _existing(ctx: JobContext, item: EvidenceItem) -> dict[str, Derivative]:
    with ctx.db.read() as s:
        rows = s.exec(select(Derivative).where(Derivative.item_id == item.id)).scalars().all()  # type: ignore[call-overload, arg-type]
    # A derivative made from other bytes is not ours to reuse.
    return {d.kind: d for d in rows if d.input_sha256 == item.sha256}


def _record_many(ctx: JobContext, item: EvidenceItem, rows: list[dict[str, Any]]) -> None:
    """Commit derivative rows and their custody events, one transaction. Losing the race
    to another worker (unique (item_id, kind)) is fine: theirs stands, ours are orphan
    blobs."""
    try:
        with ctx.db.write() as s:
            queue_check(ctx, s)
            for r in rows:
                s.add(Derivative(item_id=item.id, kind=r["kind"], blob_key=r["key"], mime_type=r["mime"],
                                 size=r["size"], sha256=r["sha256"], input_sha256=item.sha256, tool=r["tool"],
                                 tool_version=r["tool_version"][:200], argv=r["argv"], width=r["width"],
                                 height=r["height"]))
                s.flush()
                detail = {"kind": r["kind"], "sha256": r["sha256"], "size": r["size"],
                          "input_sha256": item.sha256, "mime_type": r["mime"], "tool": r["tool"],
                          "tool_version": r["tool_version"], "argv": r["argv"], "width": r["width"],
                          "height": r["height"]}
                ledger.append(ctx.db, s, actor=ctx.actor, action="item.derivative", subject=f"item:{item.id}",
                              report_id=item.report_id, item_id=item.id, detail=detail)
    except IntegrityError:
        log.warning("processing.derivative_exists", extra={"item_id": item.id})


@dataclass
class Prepared:
    """A derivative made in the private work directory, not yet published."""

    kind: str
    mime: str
    width: int
    height: int
    tool: str
    tool_version: str
    argv: list[str]
    data: bytes | None = None
    path: Path | None = None


def _prepare(ctx: JobContext, item: EvidenceItem, workdir: Path, ident: Identified,
             have: dict[str, Derivative], stop: Callable[[], bool]) -> list[Prepared]:
    """Make the derivatives this item still lacks, privately (nothing stored)."""
    out: list[Prepared] = []
    if is_image(ident.mime):
        # A "full" copy exists only for pictures larger than the preview: an item that has
        # its preview and thumbnail is done (a retry does not decode again to find out).
        if not {"thumbnail", "preview"} <= have.keys():
            for d in images.make_derivatives(workdir / "input", ident.mime):
                if d.kind not in have:
                    out.append(Prepared(d.kind, d.mime_type, d.width, d.height, "pillow", images.tool_version(),
                                        d.argv, data=d.data))
        ctx.set_progress(90)
        return out
    assert ident.probe is not None
    ffmpeg_version = video.tool_version("ffmpeg")

    def cancelled() -> bool:
        return ctx.cancel.is_set() or stop()

    if not {"poster", "thumbnail"} <= have.keys():
        poster = video.make_poster(workdir, ident.mime, ident.probe, cancelled=cancelled, deadline=ctx.deadline)
        data = poster.path.read_bytes()
        if "poster" not in have:
            out.append(Prepared("poster", poster.mime_type, poster.width, poster.height, "ffmpeg", ffmpeg_version,
                                poster.argv, data=data))
        if "thumbnail" not in have:
            thumb, w, h = images.frame_to_jpeg(data, images.THUMBNAIL_PX)
            out.append(Prepared(
                "thumbnail", "image/jpeg", w, h, "ffmpeg+pillow", f"{ffmpeg_version}; {images.tool_version()}",
                [*poster.argv, "|", f"thumbnail(({images.THUMBNAIL_PX},{images.THUMBNAIL_PX}))",
                 "save(JPEG quality=85)"], data=thumb))
    ctx.set_progress(25)
    if "proxy" not in have:
        first = [True]

        def on_progress(pct: int) -> None:
            ctx.set_progress(25 + pct * 70 // 100)
            if first[0]:
                first[0] = False
                ctx.at("transcode", item.id)

        proxy = video.make_proxy(workdir, ident.mime, ident.probe, on_progress=on_progress, cancelled=cancelled,
                                 deadline=ctx.deadline)
        out.append(Prepared("proxy", proxy.mime_type, proxy.width, proxy.height, "ffmpeg", ffmpeg_version,
                            proxy.argv, path=proxy.path))
    return out


def _publish(ctx: JobContext, item: EvidenceItem, prepared: list[Prepared]) -> None:
    """Store the prepared derivatives and commit their rows and custody events. Only
    called after a clean verdict."""
    rows: list[dict[str, Any]] = []
    small = [p for p in prepared if p.data is not None]
    stored = dict(zip((p.kind for p in small), ctx.blobs.put_many_bytes([p.data or b"" for p in small]), strict=True))
    for p in prepared:
        if p.kind in stored:
            key, sha, size = stored[p.kind]
        else:
            assert p.path is not None
            key, sha, size = ctx.blobs.put_file(p.path)
        rows.append(dict(kind=p.kind, key=key, sha256=sha, size=size, mime=p.mime, width=p.width,
                         height=p.height, tool=p.tool, tool_version=p.tool_version, argv=p.argv))
    # Stored, not yet recorded: a crash here leaves blobs no row names (the sweep's).
    ctx.at("stored", item.id)
    if rows:
        _record_many(ctx, item, rows)
