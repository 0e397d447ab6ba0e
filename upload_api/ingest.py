"""The one pipeline both doors (tus and multipart) use.

From bytes on the wire to evidence:

1. ``open_upload``: reserve the declared length against the link's quotas and create the
   blob and the ``Upload`` row (state ``open``). Nothing here is evidence.
2. ``append``: stream request bytes into the blob store, capped at the declared length,
   with SHA-256 computed on the fly and the type sniffed from the first bytes against
   the allowlist (anything else is refused at once: row ``refused``, bytes deleted).
3. ``complete``: re-check the link under row locks (revoked, expired or closed while
   the bytes streamed: refused, bytes deleted; ``_admit``), seal the blob, then in ONE
   ``db.write()`` transaction: the upload row
   becomes ``complete``, the evidence item (state ``received``), its processing job and
   its custody event are created (``storage.items.create_item``), and the link's used
   counters move. A second completion of the same upload finds the row complete and
   returns the same item (and the unique ``evidence_item.upload_id`` is the last line of
   defence: UP-17).

Hash state. The SHA-256 of an unfinished upload lives in the process receiving it
(``HashState``, cached per upload id in ``ctx.state``, with the offset it covers). A
process that meets an upload without that state (another node, a restart after kill -9)
rebuilds it from the stored prefix when the store can read unfinished bytes
(``PartialReader``); otherwise it marks the state as not covering the stream and the hash
is computed from the sealed object at completion. Either way the recorded hash is of the
exact stored bytes; a client's checksum is never trusted (UP-08).

One writer per upload: ``ctx.locker`` (``storage.locks``), held by the caller.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import datetime as dt
import hashlib
import hmac
import logging
import re
import secrets
import time
import unicodedata
from collections.abc import AsyncIterator
from typing import Any

import anyio
import anyio.to_thread
from sqlalchemy import func, update
from sqlmodel import Session, col, select

from storage import items, ledger
from storage.blobs.protocol import BlobNotFound, BlobStore, UploadFinished
from storage.blobs.protocol import PartialReader as PartialReader  # moved; re-exported for now
from storage.blobs.protocol import Upload as BlobUpload
from storage.db import Database
from storage.errors import DomainError, Invalid, NotFound
from storage.lifecycle import ItemState
from storage.links import check_link_id, link_problem
from storage.models import EvidenceItem, Report, Submission, Upload, UploadLink, UploadState
from storage.sniff import ALLOWED_TYPES, SNIFF_BYTES, sniff_type
from upload_api.context import UploadContext

log = logging.getLogger("upload_api.ingest")

MAX_CACHED_STATES = 10_000


class IdleTimeout(DomainError):
    """The client stopped sending in the middle of a body (UP-05: slow-body attacks hold
    a connection and a lock for as long as they like otherwise)."""

    def __init__(self) -> None:
        super().__init__("no bytes received for too long", code="ERR_IDLE_TIMEOUT")


async def idle_guarded(chunks: AsyncIterator[bytes], idle_seconds: float) -> AsyncIterator[bytes]:
    """``chunks``, cut off with ``IdleTimeout`` when one takes longer than
    ``idle_seconds`` to arrive. Only the wait for the client counts: time the consumer
    spends between chunks (storing a batch) does not. Bytes already passed on are kept
    by the store.

    One timer per stream, re-armed when it fires, instead of a cancel scope around each
    chunk: under 32 paced phone uploads, ``anyio.move_on_after`` per chunk was a quarter
    of the event loop's time, and the loop is shared with the reviewer's requests. The
    timer cancels the task only while it waits inside ``__anext__`` below (nothing else
    runs between the flag and the wait), so the cancellation lands on that wait and
    nowhere else; a cancellation that is not ours (client gone, shutdown) passes through.
    """
    iterator = chunks.__aiter__()
    task = asyncio.current_task()
    if task is None:  # not inside an asyncio task: no watchdog possible, fail loudly
        raise RuntimeError("idle_guarded needs an asyncio task")
    loop = task.get_loop()
    waiting_since: float | None = None
    fired = False
    handle: asyncio.TimerHandle

    def check() -> None:
        nonlocal handle, fired
        if waiting_since is not None:
            idle = loop.time() - waiting_since
            if idle >= idle_seconds:
                fired = True
                task.cancel()
                return
            handle = loop.call_later(idle_seconds - idle, check)
        else:
            handle = loop.call_later(idle_seconds, check)

    handle = loop.call_later(idle_seconds, check)
    try:
        while True:
            waiting_since = loop.time()
            try:
                chunk = await iterator.__anext__()
            except StopAsyncIteration:
                return
            except asyncio.CancelledError:
                # Ours alone: undo our cancellation and say what happened. If someone
                # else cancelled too, their cancellation stands.
                if fired and task.uncancel() == 0:
                    raise IdleTimeout() from None
                raise
            finally:
                waiting_since = None
            yield chunk
    finally:
        handle.cancel()


class Refused(DomainError):
    """An upload the pipeline will not take (type, size, quota, state). ``code`` says
    why; ``upload_api.errors`` maps it to a status and a citizen's sentence."""


# -- display data ------------------------------------------------------------------------

# Threat: filenames and form fields are the attacker's words (BF-15): control characters
# (CRLF into headers or logs, ANSI escapes), bidi overrides that make "gpj.exe" read as
# "exe.jpg" (U+202E), and huge values. We keep them only as capped display data; storage
# keys are generated by the store.
_BIDI = dict.fromkeys([*range(0x202A, 0x202F), *range(0x2066, 0x206A), 0x200E, 0x200F, 0x061C])


def clean_text(value: str, limit: int, *, multiline: bool = False) -> str:
    value = unicodedata.normalize("NFC", value).translate(_BIDI)
    kept = []
    for ch in value:
        if ch in "\n\t" and multiline:
            kept.append(ch)
        elif unicodedata.category(ch) in ("Cc", "Cf", "Cs", "Co"):
            continue
        else:
            kept.append(ch)
    return "".join(kept).strip()[:limit]


def clean_filename(value: str) -> str:
    # Keep only the last path component of what the client calls the file: "C:\x\y.jpg"
    # and "../../etc/passwd" display as "y.jpg" and "passwd". Never used as a path.
    value = clean_text(value, 1000)
    value = re.split(r"[\\/]", value)[-1].strip(" .") or "file"
    return value[:255]


# -- submissions -----------------------------------------------------------------------

_REF_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"  # Crockford: no I, L, O, U


def new_reference() -> str:
    raw = "".join(secrets.choice(_REF_ALPHABET) for _ in range(8))
    return f"EXH-{raw[:4]}-{raw[4:]}"


def create_submission(
    db: Database,
    session: Session,
    link: UploadLink,
    *,
    description: str = "",
    occurred_at: str = "",
    location: str = "",
    contact_name: str = "",
    contact_details: str = "",
    declaration_version: str | None = None,
    declaration_accepted: bool,
    actor: str,
    request_id: str | None = None,
) -> Submission:
    """A citizen's statement and declaration, under which their files are grouped.
    Call inside ``db.write()``. ``Invalid`` (ERR_DECLARATION_REQUIRED) without the
    declaration."""
    if not declaration_accepted:
        raise Invalid("the declaration must be accepted", code="ERR_DECLARATION_REQUIRED")
    now = db.now(session)
    for _ in range(5):
        reference = new_reference()
        if session.exec(select(Submission.id).where(Submission.reference == reference)).first() is None:
            break
    submission = Submission(
        reference=reference,
        link_id=link.id,
        report_id=link.report_id,
        description=clean_text(description, 5000, multiline=True),
        occurred_at=clean_text(occurred_at, 200),
        location=clean_text(location, 500, multiline=True),
        contact_name=clean_text(contact_name, 200),
        contact_details=clean_text(contact_details, 300, multiline=True),
        declaration_version=clean_text(declaration_version or "", 32) or None,
        declaration_accepted_at=now,
        created_at=now,
    )
    session.add(submission)
    session.flush()
    ledger.append(
        db, session, actor=actor, action="submission.created", subject=f"submission:{submission.id}",
        report_id=link.report_id,
        detail={"submission_id": submission.id, "reference": reference, "link_id": link.id,
                "declaration_version": submission.declaration_version},
        request_id=request_id,
    )
    return submission


def submission_of_link(session: Session, link: UploadLink, submission_id: str) -> Submission:
    """The submission, only if it belongs to this link (UP-09): any other id is 404."""
    sub = session.get(Submission, submission_id) if re.fullmatch(r"[0-9a-f]{32}", submission_id or "") else None
    if sub is None or sub.link_id != link.id:
        raise NotFound("no such submission", code="ERR_SUBMISSION_NOT_FOUND")
    return sub


# -- status tokens -----------------------------------------------------------------------

_STATUS_PURPOSE = b"exhibit-status-v1"
_STATUS_RE = re.compile(r"([0-9a-f]{32})-([A-Za-z0-9_-]{22})")


def status_token(secret: bytes, submission_id: str) -> str:
    """A capability to read one submission's receipt and status, without the link.
    HMAC with its own purpose string (it cannot be replayed as a session cookie), 128
    bits of MAC so nobody can enumerate submissions."""
    mac = hmac.new(secret, _STATUS_PURPOSE + b"\n" + submission_id.encode(), hashlib.sha256).digest()[:16]
    return f"{submission_id}-{base64.urlsafe_b64encode(mac).rstrip(b'=').decode()}"


def verify_status_token(secret: bytes, token: str) -> str | None:
    """The submission id, or None for anything forged (constant-time comparison)."""
    match = _STATUS_RE.fullmatch(token or "")
    if match is None:
        return None
    if not hmac.compare_digest(status_token(secret, match[1]), token):
        return None
    return match[1]


# -- hash state --------------------------------------------------------------------------


@dataclasses.dataclass
class HashState:
    offset: int  # bytes of the stream the hasher has seen (from 0) - or skipped, see below
    sha256: Any = dataclasses.field(default_factory=hashlib.sha256)
    head: bytearray = dataclasses.field(default_factory=bytearray)  # first SNIFF_BYTES
    covers_stream: bool = True  # False: state was lost; hash the sealed object at the end


def _states(ctx: UploadContext) -> dict[str, HashState]:
    value = ctx.state.setdefault("hash_states", {})
    assert isinstance(value, dict)
    return value


async def hash_state(ctx: UploadContext, upload_id: str, key: str, offset: int) -> HashState:
    """The hash state covering exactly ``offset`` bytes, from the cache or rebuilt."""
    states = _states(ctx)
    state = states.get(upload_id)
    if state is not None and state.offset == offset:
        return state
    states.pop(upload_id, None)
    state = HashState(offset=0)
    if offset:
        if isinstance(ctx.store, PartialReader):
            async for chunk in ctx.store.read_partial(key, 0, offset):
                if len(state.head) < SNIFF_BYTES:
                    state.head += chunk[: SNIFF_BYTES - len(state.head)]
                await anyio.to_thread.run_sync(state.sha256.update, chunk)
                state.offset += len(chunk)
            if state.offset != offset:
                state = HashState(offset=offset, covers_stream=False)
        else:
            state = HashState(offset=offset, covers_stream=False)
    if len(states) >= MAX_CACHED_STATES:
        states.pop(next(iter(states)))
    states[upload_id] = state
    return state


def forget_state(ctx: UploadContext, upload_id: str) -> None:
    _states(ctx).pop(upload_id, None)
    _blobs(ctx).pop(upload_id, None)
    ctx.state.get("progress_saved_at", {}).pop(upload_id, None)


def _blobs(ctx: UploadContext) -> dict[str, BlobUpload]:
    value = ctx.state.setdefault("blob_handles", {})
    assert isinstance(value, dict)
    return value


async def blob_for(ctx: UploadContext, row: Upload) -> BlobUpload:
    """The store's handle for an upload, kept between PATCHes (a handle holds no open
    file or state, only saves the store's existence check on the hot path).
    ``BlobNotFound`` when the bytes are gone."""
    handles = _blobs(ctx)
    blob = handles.get(row.id)
    if blob is None:
        blob = await ctx.store.get(row.blob_key)
        if len(handles) >= MAX_CACHED_STATES:
            handles.pop(next(iter(handles)))
        handles[row.id] = blob
    return blob


async def hash_object(store: BlobStore, key: str) -> tuple[str, bytes]:
    """SHA-256 and first bytes of a sealed object (the fallback when state was lost)."""
    digest = hashlib.sha256()
    head = bytearray()
    async for chunk in store.read(key):
        if len(head) < SNIFF_BYTES:
            head += chunk[: SNIFF_BYTES - len(head)]
        await anyio.to_thread.run_sync(digest.update, chunk)
    return digest.hexdigest(), bytes(head)


# -- opening an upload -------------------------------------------------------------------


def open_files(session: Session, link_id: str) -> int:
    count = session.exec(
        select(func.count()).select_from(Upload).where(Upload.link_id == link_id, Upload.state == UploadState.OPEN)
    ).one()
    return int(count)


def check_quota(session: Session, link: UploadLink, length: int | None, max_file_bytes: int) -> None:
    """Refuse (before any byte is stored) what would exceed the file size limit or the
    link's quotas: files committed + uploads open < max_files; bytes committed + bytes
    reserved by open uploads + this length <= max_bytes (UP-18, BF-16)."""
    if length is not None and length > max_file_bytes:
        raise Refused("file too large", code="ERR_TOO_LARGE")
    if link.used_files + open_files(session, link.id) >= link.max_files:
        raise Refused("file quota reached", code="ERR_QUOTA_FILES")
    if link.used_bytes + link.reserved_bytes + (length or 0) > link.max_bytes:
        raise Refused("byte quota reached", code="ERR_QUOTA_BYTES")


def remaining_bytes(link: UploadLink) -> int:
    return max(0, link.max_bytes - link.used_bytes - link.reserved_bytes)


async def open_upload(
    ctx: UploadContext,
    link_id: str,
    *,
    submission_id: str | None,
    length: int | None,
    filename: str,
    filetype: str,
    actor: str,
    request_id: str | None,
) -> Upload:
    """Reserve and create an upload. ``length`` None (multipart: unknown until the part
    ends) reserves nothing; the stream is then capped by the remaining quota and the
    quota is checked again at completion."""
    if length is not None and length <= 0:
        # BF-16: an empty file is refused deterministically, before anything is stored.
        raise Refused("empty file", code="ERR_EMPTY_FILE")

    def precheck() -> None:
        # No row lock here: a read cannot hold one past its statement (autocommit on
        # PostgreSQL), and insert() repeats every check under the lock.
        with ctx.db.read() as session:
            link, _ = check_link_id(ctx.db, session, link_id)
            check_quota(session, link, length, ctx.settings.max_file_bytes)
            if submission_id is not None:
                submission_of_link(session, link, submission_id)

    # Check before creating the blob (cheap refusal), and again under the lock below.
    await anyio.to_thread.run_sync(precheck)
    blob = await ctx.store.create("originals", length)

    def insert() -> Upload:
        with ctx.db.write() as session:
            link, _ = check_link_id(ctx.db, session, link_id, for_update=True)
            check_quota(session, link, length, ctx.settings.max_file_bytes)
            now = ctx.db.now(session)
            row = Upload(
                link_id=link.id,
                submission_id=submission_id,
                blob_key=blob.key,
                length=length,
                offset=0,
                state=UploadState.OPEN,
                filename=clean_filename(filename) if filename else "",
                filetype=clean_text(filetype, 100),
                expires_at=now + dt.timedelta(seconds=ctx.settings.upload_expiry_seconds),
                created_at=now,
            )
            session.add(row)
            link.reserved_bytes += length or 0
            session.add(link)
            session.flush()
            ledger.append(
                ctx.db, session, actor=actor, action="upload.started", subject=f"upload:{row.id}",
                report_id=link.report_id,
                detail={"upload_id": row.id, "length": length, "submission_id": submission_id,
                        "filename": row.filename},
                request_id=request_id,
            )
            return row

    try:
        return await anyio.to_thread.run_sync(insert)
    except BaseException:
        with anyio.CancelScope(shield=True):
            await _terminate_quietly(blob)
        raise


async def _terminate_quietly(blob: BlobUpload) -> None:
    try:
        await blob.terminate()
    except (BlobNotFound, UploadFinished):
        pass


# -- appending bytes ---------------------------------------------------------------------


class LengthExceeded(Refused):
    def __init__(self) -> None:
        super().__init__("more bytes than declared", code="ERR_LENGTH_EXCEEDED")


@dataclasses.dataclass
class AppendResult:
    written: int
    offset: int
    detected_type: str | None
    error: BaseException | None  # what stopped the stream (client gone, refusal), if anything


async def append(
    ctx: UploadContext,
    row: Upload,
    blob: BlobUpload,
    offset: int,
    body: AsyncIterator[bytes],
    *,
    cap: int,
    final: bool,
) -> AppendResult:
    """Stream ``body`` into ``blob`` at ``offset`` (the caller holds the lock and checked
    ``offset`` against the store). At most ``cap`` bytes in total: more is refused with
    ``LengthExceeded`` after the bytes inside the cap are kept. ``final``: the end of
    ``body`` is the end of the file (multipart), so a short file is sniffed whole.

    Bytes pass to the store only after the first ``SNIFF_BYTES`` (or the whole file, if
    shorter) matched the allowlist: a refused type never reaches storage beyond what the
    sniff needs (and that is deleted by the caller)."""
    state = await hash_state(ctx, row.id, row.blob_key, offset)
    detected: str | None = row.detected_type
    held: list[bytes] = []  # received before the sniff could decide
    stopped: list[BaseException] = []

    hasher = state.sha256

    def update_many(chunks: list[bytes]) -> None:
        # In the store's worker thread, just before the bytes are stored (hashlib
        # releases the GIL): the event loop only receives.
        for c in chunks:
            hasher.update(c)

    def sniff_now(at_end: bool) -> bool:
        nonlocal detected
        if detected is not None:
            return True
        total = offset + passed
        if len(state.head) < SNIFF_BYTES and not at_end and not (row.length is not None and total >= row.length):
            return False
        mime = sniff_type(bytes(state.head))
        if mime is None or mime not in ALLOWED_TYPES:
            raise Refused("file type not accepted", code="ERR_UNSUPPORTED_TYPE")
        detected = mime
        return True

    passed = 0  # bytes accepted from body (inside the cap)

    async def gated() -> AsyncIterator[bytes]:
        nonlocal passed
        try:
            async for chunk in body:
                if not chunk:
                    continue
                room = cap - (offset + passed)
                overflow = len(chunk) > room
                if overflow:
                    chunk = chunk[:room]
                passed += len(chunk)
                if len(state.head) < SNIFF_BYTES and state.covers_stream:
                    state.head += chunk[: SNIFF_BYTES - len(state.head)]
                if detected is None and state.covers_stream:
                    held.append(chunk)
                    if not sniff_now(False):
                        if overflow:
                            raise LengthExceeded()
                        continue
                    out, held[:] = list(held), []
                else:
                    out = [chunk]
                for c in out:
                    if not c:
                        continue
                    state.offset += len(c)
                    yield c
                if overflow:
                    raise LengthExceeded()
            # End of this body: a final body (or the declared end) decides the sniff on
            # what there is; otherwise held bytes are stored and the sniff waits for the
            # next PATCH (state.head remembers them).
            if held:
                if (final or (row.length is not None and offset + passed >= row.length)) and state.covers_stream:
                    sniff_now(True)
                for c in held:
                    state.offset += len(c)
                    yield c
                held.clear()
            elif final and detected is None and state.covers_stream and passed + offset > 0:
                sniff_now(True)
        except BaseException as exc:
            stopped.append(exc)
            raise

    written = 0
    error: BaseException | None = None
    try:
        written = await blob.write(offset, gated(), update_many if state.covers_stream else None)
    except Exception as exc:
        # The store kept and counted what arrived before the error; the caller decides
        # (client gone: keep for resume; refusal: delete).
        error = stopped[0] if stopped else exc
    new_offset = offset + written
    if error is not None or state.offset != new_offset:
        # The store may have kept fewer bytes than we hashed (or more than we know of):
        # only trust a state that covers exactly what is durable.
        info = await blob.info()
        new_offset = info.offset
        if state.offset != new_offset:
            forget_state(ctx, row.id)
    if not state.covers_stream:
        state.offset = new_offset
    return AppendResult(written=new_offset - offset, offset=new_offset, detected_type=detected, error=error)


def save_progress(ctx: UploadContext, upload_id: str, offset: int, detected_type: str | None) -> None:
    """Once per PATCH, after the store reported the bytes durable: the offset, the
    sniffed type, the expiry pushed back. Monotonic (an update that arrives late never
    moves the offset back), so it may run off the request's critical path."""
    with ctx.db.write() as session:
        now = ctx.db.now(session)
        session.exec(
            update(Upload)
            .where(col(Upload.id) == upload_id, col(Upload.state) == UploadState.OPEN, col(Upload.offset) <= offset)
            .values(
                offset=offset,
                detected_type=func.coalesce(Upload.detected_type, detected_type),
                expires_at=now + dt.timedelta(seconds=ctx.settings.upload_expiry_seconds),
            )
        )


def save_progress_soon(ctx: UploadContext, upload_id: str, offset: int, detected_type: str | None) -> None:
    """``save_progress`` in the background: the PATCH answers as soon as its bytes are
    durable, without waiting for a database commit (the store, not this row, is the
    truth about offsets: HEAD asks the store)."""
    tasks: set[asyncio.Task[None]] = ctx.state.setdefault("progress_tasks", set())

    async def run() -> None:
        try:
            await anyio.to_thread.run_sync(save_progress, ctx, upload_id, offset, detected_type)
        except Exception:
            log.exception("upload.progress_not_saved", extra={"upload_id": upload_id})

    task = asyncio.get_running_loop().create_task(run())
    tasks.add(task)
    task.add_done_callback(tasks.discard)


PROGRESS_INTERVAL_SECONDS = 1.0


def note_progress(ctx: UploadContext, row: Upload, offset: int, detected_type: str | None) -> None:
    """After a PATCH: record progress in the database, at most once a second per upload
    unless the sniffed type is new. Fast clients send several PATCHes a second; a write
    for each would queue every upload behind SQLite's one writer for a row that is only
    informational (HEAD asks the store; completion writes the final offset itself)."""
    saved: dict[str, float] = ctx.state.setdefault("progress_saved_at", {})
    now = time.monotonic()
    new_type = detected_type is not None and row.detected_type is None
    if new_type or now - saved.get(row.id, 0.0) >= PROGRESS_INTERVAL_SECONDS:
        if len(saved) >= MAX_CACHED_STATES:
            saved.clear()
        saved[row.id] = now
        save_progress_soon(ctx, row.id, offset, detected_type)


async def settle(ctx: UploadContext) -> None:
    """Wait for background progress updates: the app's lifespan calls it at shutdown
    (upload_api.app), and tests that must see every update written."""
    tasks: set[asyncio.Task[None]] = ctx.state.get("progress_tasks", set())
    if tasks:
        await asyncio.gather(*list(tasks), return_exceptions=True)


def expires_from_now(ctx: UploadContext) -> dt.datetime:
    return ctx.clock() + dt.timedelta(seconds=ctx.settings.upload_expiry_seconds)


# -- completion --------------------------------------------------------------------------


async def complete(ctx: UploadContext, upload_id: str, *, actor: str, request_id: str | None) -> EvidenceItem:
    """Seal the upload and make it evidence, exactly once. The caller holds the lock."""
    row = await anyio.to_thread.run_sync(_get_upload, ctx.db, upload_id)
    if row.state == UploadState.COMPLETE:
        return await anyio.to_thread.run_sync(_item_for_upload, ctx.db, upload_id)
    if row.state != UploadState.OPEN:
        raise Refused("upload is gone", code="ERR_UPLOAD_GONE")
    blob = await blob_for(ctx, row)
    before = await blob.info()
    if row.length is not None and not before.finished and before.offset != row.length:
        raise Refused("upload is not complete", code="ERR_OFFSET_MISMATCH")
    refusal = await anyio.to_thread.run_sync(_admit, ctx, upload_id, before.offset, actor, request_id)
    if refusal is not None:
        # Still unfinished, so still deletable: the refused bytes go now (a sealed object
        # may be under Object Lock retention and could never be removed).
        forget_state(ctx, upload_id)
        with anyio.CancelScope(shield=True):
            await _terminate_quietly(blob)
        raise refusal
    state = _states(ctx).get(upload_id)
    info = await blob.finish()
    detected = row.detected_type
    if state is not None and state.covers_stream and state.offset == info.offset:
        sha256 = state.sha256.hexdigest()
        head = bytes(state.head)
    else:
        # The hash state was lost (restart, another node): hash the sealed bytes.
        sha256, head = await hash_object(ctx.store, row.blob_key)
    if detected is None:
        detected = sniff_type(head)
    forget_state(ctx, upload_id)

    def commit() -> EvidenceItem | Refused:
        # A refusal decided here is *returned*, not raised: raising inside db.write()
        # would roll back the very row update and custody event that record it.
        with ctx.db.write() as session:
            up = session.get(Upload, upload_id, with_for_update=True)
            assert up is not None
            if up.state == UploadState.COMPLETE:
                existing = session.exec(select(EvidenceItem).where(EvidenceItem.upload_id == upload_id)).one()
                return existing
            link = session.get(UploadLink, up.link_id, with_for_update=True)
            assert link is not None
            reserved = up.length or 0
            if up.state != UploadState.OPEN:
                raise Refused("upload is gone", code="ERR_UPLOAD_GONE")
            if detected is None or detected not in ALLOWED_TYPES:
                # Only reachable when the sniff could not run while streaming (state
                # lost before the first bytes were seen): refused, never evidence.
                _close_row(ctx.db, session, up, link, UploadState.REFUSED, actor, request_id,
                           {"reason": "ERR_UNSUPPORTED_TYPE"})
                return Refused("file type not accepted", code="ERR_UNSUPPORTED_TYPE")
            if up.length is not None and info.offset != up.length:
                raise Refused("upload is not complete", code="ERR_OFFSET_MISMATCH")
            item = items.create_item(
                ctx.db, session,
                report_id=link.report_id,
                blob_key=up.blob_key,
                size=info.offset,
                sha256=sha256,
                submission_id=up.submission_id,
                upload_id=up.id,
                original_filename=up.filename,
                claimed_type=up.filetype,
                detected_type=detected,
                client_sha256=up.client_sha256,
                actor=actor,
                request_id=request_id,
                max_attempts=ctx.settings.job_max_attempts,
            )
            now = ctx.db.now(session)
            up.state = UploadState.COMPLETE
            up.offset = info.offset
            up.length = info.offset
            up.sha256 = sha256
            up.detected_type = detected
            up.completed_at = now
            link.used_files += 1
            link.used_bytes += info.offset
            link.reserved_bytes = max(0, link.reserved_bytes - reserved)
            session.add(up)
            session.add(link)
            if up.client_sha256:
                _record_client_hash(ctx.db, session, item, up.client_sha256, actor, request_id)
            return item

    outcome = await anyio.to_thread.run_sync(commit)
    if isinstance(outcome, Refused):
        raise outcome
    return outcome


def _admit(ctx: UploadContext, upload_id: str, size: int, actor: str, request_id: str | None) -> Refused | None:
    """The last word before an upload is sealed: under row locks on the upload and its
    link, is the link still usable, and (multipart) do the quotas take this file?

    Threat (UP-14): a link revoked, expired or whose report was closed while its bytes
    were streaming would otherwise still yield evidence, since authorisation happened
    when the request began. This check and a revocation are serialised by the link row
    lock (PostgreSQL; SQLite has one writer): a revocation that commits first refuses the
    upload, one that commits after finds it already admitted, as if it had come a moment
    later. A multipart file's size is reserved here, so no other upload can take the
    quota between this check and the commit. A refusal is recorded (row ``refused``,
    custody event with the reason) and *returned*: raising would roll that back."""
    with ctx.db.write() as session:
        up = session.get(Upload, upload_id, with_for_update=True)
        if up is None or up.state != UploadState.OPEN:
            return None  # completed or ended meanwhile: the commit step says which
        link = session.get(UploadLink, up.link_id, with_for_update=True)
        assert link is not None
        report = session.get(Report, link.report_id)
        assert report is not None
        code = message = ""
        problem = link_problem(ctx.db, session, link, report)
        if problem is not None and problem.code != "ERR_LINK_EXHAUSTED":
            # (Exhausted is the quotas' business: an open upload's reservation already
            # counts against them, and the multipart check below is exact.)
            code, message = problem.code, problem.message
        elif up.length is None and link.used_files >= link.max_files:
            code, message = "ERR_QUOTA_FILES", "file quota reached"
        elif up.length is None and link.used_bytes + link.reserved_bytes + size > link.max_bytes:
            code, message = "ERR_QUOTA_BYTES", "byte quota reached"
        if code:
            _close_row(ctx.db, session, up, link, UploadState.REFUSED, actor, request_id, {"reason": code})
            return Refused(message, code=code)
        if up.length is None:
            up.length = size
            link.reserved_bytes += size
            session.add(up)
            session.add(link)
        return None


def _get_upload(db: Database, upload_id: str) -> Upload:
    with db.read() as session:
        row = session.get(Upload, upload_id)
        if row is None:
            raise NotFound("no such upload", code="ERR_UPLOAD_NOT_FOUND")
        return row


def _item_for_upload(db: Database, upload_id: str) -> EvidenceItem:
    with db.read() as session:
        return session.exec(select(EvidenceItem).where(EvidenceItem.upload_id == upload_id)).one()


def _close_row(
    db: Database, session: Session, up: Upload, link: UploadLink, state: UploadState,
    actor: str, request_id: str | None, detail: dict[str, Any],
) -> None:
    up.state = state
    up.completed_at = db.now(session)
    link.reserved_bytes = max(0, link.reserved_bytes - (up.length or 0))
    session.add(up)
    session.add(link)
    ledger.append(
        db, session, actor=actor, action=f"upload.{state.value}", subject=f"upload:{up.id}",
        report_id=link.report_id, detail={"upload_id": up.id, "offset": up.offset, **detail},
        request_id=request_id,
    )


async def close_upload(
    ctx: UploadContext, upload_id: str, state: UploadState, *, actor: str, request_id: str | None,
    detail: dict[str, Any] | None = None,
) -> None:
    """End an unfinished upload (terminated by the client, refused, expired): delete its
    bytes, release its reservation, record why. The caller holds the lock."""

    def mark() -> Upload | None:
        with ctx.db.write() as session:
            up = session.get(Upload, upload_id, with_for_update=True)
            if up is None or up.state != UploadState.OPEN:
                return None
            link = session.get(UploadLink, up.link_id, with_for_update=True)
            assert link is not None
            _close_row(ctx.db, session, up, link, state, actor, request_id, detail or {})
            return up

    row = await anyio.to_thread.run_sync(mark)
    forget_state(ctx, upload_id)
    if row is None:
        return
    try:
        blob = await ctx.store.get(row.blob_key)
    except BlobNotFound:
        return
    await _terminate_quietly(blob)


# -- client hash -------------------------------------------------------------------------


def _record_client_hash(
    db: Database, session: Session, item: EvidenceItem, client_sha256: str, actor: str, request_id: str | None
) -> None:
    item.client_sha256 = client_sha256
    item.client_hash_match = hmac.compare_digest(client_sha256, item.sha256)
    session.add(item)
    ledger.append(
        db, session, actor=actor, action="item.client_hash", subject=f"item:{item.id}",
        report_id=item.report_id, item_id=item.id,
        detail={"client_sha256": client_sha256, "sha256": item.sha256,
                "result": "match" if item.client_hash_match else "mismatch"},
        request_id=request_id,
    )


_HEX64 = re.compile(r"[0-9a-f]{64}")


def record_client_sha256(
    db: Database, link: UploadLink, upload_id: str, client_sha256: str, *, actor: str, request_id: str | None
) -> dict[str, Any]:
    """The browser's own SHA-256 of a file it sent. Recorded, never trusted: the custody
    ledger says whether it matches ours. Only for this link's uploads (UP-09)."""
    client_sha256 = (client_sha256 or "").strip().lower()
    if not _HEX64.fullmatch(client_sha256):
        raise Invalid("sha256 must be 64 hex digits", code="ERR_INVALID")
    with db.write() as session:
        up = session.get(Upload, upload_id, with_for_update=True)
        if up is None or up.link_id != link.id:
            raise NotFound("no such upload", code="ERR_UPLOAD_NOT_FOUND")
        if up.client_sha256 and up.client_sha256 != client_sha256:
            raise Invalid("a different hash was already recorded", code="ERR_CONFLICT")
        up.client_sha256 = client_sha256
        session.add(up)
        item = session.exec(select(EvidenceItem).where(EvidenceItem.upload_id == upload_id)).first()
        if item is None:
            # Not complete yet: completion records the comparison.
            return {"match": None, "sha256": None}
        if item.client_sha256 != client_sha256 or item.client_hash_match is None:
            _record_client_hash(db, session, item, client_sha256, actor, request_id)
        return {"match": bool(item.client_hash_match), "sha256": item.sha256}


# -- receipts and status -----------------------------------------------------------------

CITIZEN_STATUS = {
    ItemState.RECEIVING: "received",
    ItemState.RECEIVED: "received",
    ItemState.SCANNING: "being_checked",
    ItemState.CLEAN: "being_checked",
    ItemState.PROCESSING: "being_checked",
    ItemState.FAILED: "being_checked",
}
STATUS_WORDS = {"received": "Received", "being_checked": "Being checked", "with_officer": "With the officer"}


def _submission_items(session: Session, submission_id: str) -> tuple[Submission, Report, list[EvidenceItem]]:
    sub = session.get(Submission, submission_id)
    if sub is None:
        raise NotFound("no such submission", code="ERR_SUBMISSION_NOT_FOUND")
    report = session.get(Report, sub.report_id)
    assert report is not None
    rows = session.exec(
        select(EvidenceItem).where(EvidenceItem.submission_id == submission_id).order_by(col(EvidenceItem.received_at))
    ).all()
    return sub, report, list(rows)


def receipt(db: Database, submission_id: str) -> dict[str, Any]:
    """The citizen's receipt: reference codes and, per file, what we hold of it."""
    with db.read() as session:
        sub, report, rows = _submission_items(session, submission_id)
        return {
            "reference": sub.reference,
            "report_reference": report.reference,
            "submitted_at": ledger.format_time(sub.created_at),
            "declaration_version": sub.declaration_version,
            "files": [
                {
                    "name": item.original_filename,
                    "size": item.size,
                    "sha256": item.sha256,
                    "received_at": ledger.format_time(item.received_at),
                    "type": item.detected_type,
                    "client_hash_match": item.client_hash_match,
                }
                for item in rows
            ],
        }


def status(db: Database, submission_id: str) -> dict[str, Any]:
    """Per file: received / being checked / with the officer. Nothing of the review:
    a verdict, a rejection or a triage decision all read "with the officer"."""
    with db.read() as session:
        sub, _report, rows = _submission_items(session, submission_id)
        files = []
        for item in rows:
            code = CITIZEN_STATUS.get(ItemState(item.state), "with_officer")
            files.append({"name": item.original_filename, "size": item.size, "status": code,
                          "status_text": STATUS_WORDS[code]})
        return {"reference": sub.reference, "files": files}


# -- expiry ------------------------------------------------------------------------------


async def expire_uploads(ctx: UploadContext, *, limit: int = 500) -> int:
    """Remove unfinished uploads past their ``expires_at`` (database clock): bytes
    deleted, reservation released, custody event ``upload.expired``. Uploads someone is
    writing right now are skipped (their lock is held) and caught next time. Returns how
    many were removed. Run periodically (the lead's background services)."""

    def due() -> list[str]:
        with ctx.db.read() as session:
            now = ctx.db.now(session)
            return list(session.exec(
                select(Upload.id).where(Upload.state == UploadState.OPEN, col(Upload.expires_at) < now).limit(limit)
            ).all())

    removed = 0
    for upload_id in await anyio.to_thread.run_sync(due):
        async with ctx.locker.hold(upload_id) as mine:
            if not mine:
                continue
            await close_upload(ctx, upload_id, UploadState.EXPIRED, actor="system:expiry", request_id=None,
                               detail={"reason": "expired"})
            removed += 1
    if removed:
        log.info("uploads.expired", extra={"count": removed})
    return removed

