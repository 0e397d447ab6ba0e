"""The one pipeline both doors (tus and multipart) use, from bytes on the wire to
evidence. Each step is a file named for its idea; this module strings them together:

1. ``open_upload``: reserve the declared length against the link's quotas, create the
   blob and the ``Upload`` row (``storage.uploads.insert_upload``). Nothing here is
   evidence.
2. ``upload_api.streaming.append``: stream request bytes into the blob store, capped at
   the declared length, SHA-256 on the fly, the type sniffed from the first bytes
   against the allowlist (anything else is refused at once: ``close_upload``).
   ``note_progress`` then records the offset off the request's critical path.
3. ``complete``: re-check the link under row locks (``storage.uploads.admit``: revoked,
   expired or closed while the bytes streamed: refused, bytes deleted), seal the blob,
   and in ONE transaction make it evidence (``storage.uploads.make_evidence``).

The caller holds the upload's lock (``UploadContext.locker``, ``storage.locks``) around
steps 2 and 3, and around ``close_upload``; ``expire_uploads`` takes it itself.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from typing import Any

import anyio
import anyio.to_thread

from storage import retention, uploads
from storage.blobs.protocol import BlobNotFound, UploadFinished
from storage.blobs.protocol import Upload as BlobUpload
from storage.models import EvidenceItem, Upload, UploadState
from storage.sniff import sniff_type
from storage.uploads import Refused
from upload_api.context import UploadContext
from upload_api.streaming import blob_for, forget, hash_object, in_flight

log = logging.getLogger("upload_api.ingest")


# -- opening an upload -------------------------------------------------------------------


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
    max_file_bytes = ctx.settings.max_file_bytes
    # Check before creating the blob (cheap refusal), and again under the lock.
    await anyio.to_thread.run_sync(
        lambda: uploads.precheck_upload(ctx.db, link_id, submission_id=submission_id, length=length,
                                        max_file_bytes=max_file_bytes)
    )
    blob = await ctx.store.create("originals", length)
    try:
        row = await anyio.to_thread.run_sync(
            lambda: uploads.insert_upload(
                ctx.db, link_id, blob_key=blob.key, submission_id=submission_id, length=length,
                filename=filename, filetype=filetype, max_file_bytes=max_file_bytes,
                expiry_seconds=ctx.settings.upload_expiry_seconds, actor=actor, request_id=request_id,
            )
        )
    except BaseException:
        with anyio.CancelScope(shield=True):
            await _terminate_quietly(blob)
        raise
    # The handle just created is the one ``blob_for`` would fetch: keep it, so the first
    # write (creation-with-upload, a multipart file) skips the store's existence check.
    in_flight(ctx, row.id).blob = blob
    return row


async def _terminate_quietly(blob: BlobUpload) -> None:
    try:
        await blob.terminate()
    except (BlobNotFound, UploadFinished):
        pass


# -- progress ----------------------------------------------------------------------------

PROGRESS_INTERVAL_SECONDS = 1.0


async def save_progress(ctx: UploadContext, upload_id: str, offset: int, detected_type: str | None) -> None:
    """``storage.uploads.save_progress`` now (before completion)."""
    await anyio.to_thread.run_sync(
        uploads.save_progress, ctx.db, upload_id, offset, detected_type, ctx.settings.upload_expiry_seconds
    )


def save_progress_soon(ctx: UploadContext, upload_id: str, offset: int, detected_type: str | None) -> None:
    """``save_progress`` in the background: the PATCH answers as soon as its bytes are
    durable, without waiting for a database commit (the store, not this row, is the
    truth about offsets: HEAD asks the store). ``settle`` waits for these."""

    async def run() -> None:
        try:
            await save_progress(ctx, upload_id, offset, detected_type)
        except Exception:
            log.exception("upload.progress_not_saved", extra={"upload_id": upload_id})

    task = asyncio.get_running_loop().create_task(run())
    ctx.progress_tasks.add(task)
    task.add_done_callback(ctx.progress_tasks.discard)


def note_progress(ctx: UploadContext, row: Upload, offset: int, detected_type: str | None) -> None:
    """After a PATCH: record progress in the database, at most once a second per upload
    unless the sniffed type is new. Fast clients send several PATCHes a second; a write
    for each would queue every upload behind SQLite's one writer for a row that is only
    informational (HEAD asks the store; completion writes the final offset itself)."""
    entry = in_flight(ctx, row.id)
    now = time.monotonic()
    new_type = detected_type is not None and row.detected_type is None
    if new_type or now - entry.progress_saved_at >= PROGRESS_INTERVAL_SECONDS:
        entry.progress_saved_at = now
        save_progress_soon(ctx, row.id, offset, detected_type)


async def settle(ctx: UploadContext) -> None:
    """Wait for background progress updates: the app's lifespan calls it at shutdown
    (``upload_api.app``), and tests that must see every update written."""
    if ctx.progress_tasks:
        await asyncio.gather(*list(ctx.progress_tasks), return_exceptions=True)


def expires_from_now(ctx: UploadContext) -> dt.datetime:
    return ctx.clock() + dt.timedelta(seconds=ctx.settings.upload_expiry_seconds)


# -- completion --------------------------------------------------------------------------


async def complete(ctx: UploadContext, upload_id: str, *, actor: str, request_id: str | None) -> EvidenceItem:
    """Seal the upload and make it evidence, exactly once. The caller holds the lock.
    Raises ``Refused`` (link ended meanwhile, quota, type, not complete)."""
    row = await anyio.to_thread.run_sync(uploads.get_upload, ctx.db, upload_id)
    if row.state == UploadState.COMPLETE:
        return await anyio.to_thread.run_sync(uploads.item_for_upload, ctx.db, upload_id)
    if row.state != UploadState.OPEN:
        raise Refused("upload is gone", code="ERR_UPLOAD_GONE")
    blob = await blob_for(ctx, row)
    before = await blob.info()
    if row.length is not None and not before.finished and before.offset != row.length:
        raise Refused("upload is not complete", code="ERR_OFFSET_MISMATCH")
    refusal = await anyio.to_thread.run_sync(uploads.admit, ctx.db, upload_id, before.offset, actor, request_id)
    if refusal is not None:
        # Still unfinished, so still deletable: the refused bytes go now (a sealed object
        # may be under Object Lock retention and could never be removed).
        forget(ctx, upload_id)
        with anyio.CancelScope(shield=True):
            await _terminate_quietly(blob)
        raise refusal
    entry = ctx.inflight.get(upload_id)
    state = entry.hash if entry is not None else None
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
    forget(ctx, upload_id)
    outcome = await anyio.to_thread.run_sync(
        lambda: uploads.make_evidence(
            ctx.db, upload_id, size=info.offset, sha256=sha256, detected_type=detected,
            max_attempts=ctx.settings.job_max_attempts, actor=actor, request_id=request_id,
        )
    )
    if isinstance(outcome, Refused):
        raise outcome
    # Sealed with the short seal lock: now lock the original until its report's retention
    # date (issue 14 item 4). Best effort: the worker's retention round repairs a miss.
    await retention.lock_item(ctx.db, ctx.store, retention.Policy.from_settings(ctx.settings), outcome.id)
    return outcome


# -- ending ------------------------------------------------------------------------------


async def close_upload(
    ctx: UploadContext, upload_id: str, state: UploadState, *, actor: str, request_id: str | None,
    detail: dict[str, Any] | None = None,
) -> None:
    """End an unfinished upload (terminated by the client, refused, expired): delete its
    bytes, release its reservation, record why. The caller holds the lock."""
    row = await anyio.to_thread.run_sync(
        lambda: uploads.end_upload(ctx.db, upload_id, state, actor=actor, request_id=request_id, detail=detail)
    )
    forget(ctx, upload_id)
    if row is None:
        return
    try:
        blob = await ctx.store.get(row.blob_key)
    except BlobNotFound:
        return
    await _terminate_quietly(blob)


async def expire_uploads(ctx: UploadContext, *, limit: int = 500) -> int:
    """Remove unfinished uploads past their ``expires_at`` (database clock): bytes
    deleted, reservation released, custody event ``upload.expired``. Uploads someone is
    writing right now are skipped (their lock is held) and caught next time. Returns how
    many were removed. Run periodically (``exhibit serve``'s housekeeping)."""
    removed = 0
    for upload_id in await anyio.to_thread.run_sync(uploads.due_for_expiry, ctx.db, limit):
        async with ctx.locker.hold(upload_id) as mine:
            if not mine:
                continue
            await close_upload(ctx, upload_id, UploadState.EXPIRED, actor="system:expiry", request_id=None,
                               detail={"reason": "expired"})
            removed += 1
    if removed:
        log.info("uploads.expired", extra={"count": removed})
    return removed
