"""The byte path of an upload: the request body into the blob store, after tusd's
``WriteChunk``. Both doors (tus PATCH and multipart file parts) stream through
``append``.

- ``idle_guarded``, ``guarded_body``: the watchdog that cuts off a body that stops
  arriving (UP-05).
- ``append``: capped at the declared length, SHA-256 on the fly, the type sniffed from
  the first bytes against the allowlist before anything past them is stored.
- Per-upload state of this process (``InFlight``: the hash state, the store's handle,
  when progress was last saved), kept between the PATCHes of one upload in
  ``UploadContext.inflight``.

Hash state. The SHA-256 of an unfinished upload lives in the process receiving it
(``HashState``, with the offset it covers). A process that meets an upload without that
state (another node, a restart after kill -9) rebuilds it from the stored prefix when the
store can read unfinished bytes (``storage.blobs.protocol.PartialReader``); otherwise it
marks the state as not covering the stream and the hash is computed from the sealed
object at completion. Either way the recorded hash is of the exact stored bytes; a
client's checksum is never trusted (UP-08).
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import logging
from collections.abc import AsyncIterator, Awaitable
from typing import Any, TypeVar

import anyio
import anyio.to_thread
from starlette.requests import ClientDisconnect
from starlette.types import Receive

from storage.blobs.protocol import BlobStore, BlobStoreError, PartialReader
from storage.blobs.protocol import Upload as BlobUpload
from storage.errors import DomainError
from storage.models import Upload
from storage.sniff import ALLOWED_TYPES, SNIFF_BYTES, sniff_type
from storage.uploads import Refused
from upload_api.context import UploadContext

log = logging.getLogger("upload_api.streaming")

T = TypeVar("T")
MAX_IN_FLIGHT = 10_000  # uploads whose state one process keeps (oldest dropped first)


class IdleTimeout(DomainError):
    """The client stopped sending in the middle of a body (UP-05: slow-body attacks hold
    a connection and a lock for as long as they like otherwise)."""

    def __init__(self) -> None:
        super().__init__("no bytes received for too long", code="ERR_IDLE_TIMEOUT")


class LengthExceeded(Refused):
    """More bytes than the cap. The bytes inside the cap are kept."""

    def __init__(self) -> None:
        super().__init__("more bytes than declared", code="ERR_LENGTH_EXCEEDED")


class _Watchdog:
    """One timer per stream, re-armed when it fires, instead of a cancel scope around each
    chunk: under 32 paced phone uploads, ``anyio.move_on_after`` per chunk was a quarter
    of the event loop's time, and the loop is shared with the reviewer's requests. The
    timer cancels the task only while it waits for the client (``waiting_since`` set;
    nothing else runs between the flag and the wait), so the cancellation lands on that
    wait and nowhere else; a cancellation that is not ours (client gone, shutdown) passes
    through.

    A timer that finds the wait over-long does not cancel at once: it looks again once the
    callbacks already scheduled have run (``_expire``). After a stall of the whole process
    (a GC pause, a loaded host, a blocking call on the loop) the timer runs late, in the
    same loop iteration that reads the bytes the client sent during the stall, before the
    task that takes them has run; cancelling then cut off a client that was not idle at
    all (UP-05 is about a client that stops sending, not a server that stopped looking)."""

    def __init__(self, idle_seconds: float) -> None:
        task = asyncio.current_task()
        if task is None:  # not inside an asyncio task: no watchdog possible, fail loudly
            raise RuntimeError("idle_guarded needs an asyncio task")
        self.task = task
        self.loop = task.get_loop()
        self.idle_seconds = idle_seconds
        self.waiting_since: float | None = None
        self.waits = 0  # which wait this is: a late look must be about the same one
        self.fired = False
        self.handle: asyncio.Handle = self.loop.call_later(idle_seconds, self._check)

    def _check(self) -> None:
        if self.waiting_since is not None:
            idle = self.loop.time() - self.waiting_since
            if idle >= self.idle_seconds:
                # Behind the wake-up of the task if its bytes came in this iteration.
                self.handle = self.loop.call_soon(self._expire, self.waits)
                return
            self.handle = self.loop.call_later(self.idle_seconds - idle, self._check)
        else:
            self.handle = self.loop.call_later(self.idle_seconds, self._check)

    def _expire(self, wait: int) -> None:
        if self.waiting_since is not None and self.waits == wait:  # still nothing: idle
            self.fired = True
            self.task.cancel()
            return
        self._check()  # the bytes came after all: watch the next wait

    def ours(self) -> bool:
        """On a CancelledError during the wait: True when it was our timer alone (then
        our cancellation is undone); if someone else cancelled too, theirs stands."""
        return self.fired and self.task.uncancel() == 0

    async def wait(self, next_item: Awaitable[T]) -> T:
        """Await what the client sends next, with the timer armed for this wait only."""
        self.waiting_since = self.loop.time()
        self.waits += 1
        try:
            return await next_item
        except asyncio.CancelledError:
            if self.ours():
                raise IdleTimeout() from None
            raise
        finally:
            self.waiting_since = None

    def stop(self) -> None:
        self.handle.cancel()


async def idle_guarded(chunks: AsyncIterator[bytes], idle_seconds: float) -> AsyncIterator[bytes]:
    """``chunks``, cut off with ``IdleTimeout`` when one takes longer than
    ``idle_seconds`` to arrive. Only the wait for the client counts: time the consumer
    spends between chunks (storing a batch) does not. Bytes already passed on are kept
    by the store. (``_Watchdog`` says how.)"""
    iterator = chunks.__aiter__()
    dog = _Watchdog(idle_seconds)
    try:
        while True:
            try:
                chunk = await dog.wait(iterator.__anext__())
            except StopAsyncIteration:
                return
            yield chunk
    finally:
        dog.stop()


async def guarded_body(receive: Receive, idle_seconds: float) -> AsyncIterator[bytes]:
    """The request body straight from the ASGI ``receive``, non-empty chunks only, under
    the same watchdog as ``idle_guarded``: one generator per body chunk instead of three
    (``Request.stream``, a filter, the guard), on the PATCH path where a chunk arrives
    every few hundred microseconds (issue 16 item 4). The client going away is
    ``ClientDisconnect``, as from ``Request.stream``."""
    dog = _Watchdog(idle_seconds)
    try:
        while True:
            message = await dog.wait(receive())
            if message["type"] == "http.request":
                body = message.get("body", b"")
                if body:
                    yield body
                if not message.get("more_body", False):
                    return
            elif message["type"] == "http.disconnect":
                raise ClientDisconnect()
    finally:
        dog.stop()


# -- per-upload state of this process ----------------------------------------------------


@dataclasses.dataclass
class HashState:
    offset: int  # bytes of the stream the hasher has seen (from 0) - or skipped, see below
    sha256: Any = dataclasses.field(default_factory=hashlib.sha256)
    head: bytearray = dataclasses.field(default_factory=bytearray)  # first SNIFF_BYTES
    covers_stream: bool = True  # False: state was lost; hash the sealed object at the end


@dataclasses.dataclass
class InFlight:
    """What this process keeps of one unfinished upload between its requests. Lost on a
    restart or a change of node, and rebuilt from the store: never the truth, a cache."""

    hash: HashState | None = None
    blob: BlobUpload | None = None  # the store's handle: saves its existence check
    progress_saved_at: float = 0.0  # time.monotonic() of the last progress write


def in_flight(ctx: UploadContext, upload_id: str) -> InFlight:
    entry = ctx.inflight.get(upload_id)
    if entry is None:
        if len(ctx.inflight) >= MAX_IN_FLIGHT:
            ctx.inflight.pop(next(iter(ctx.inflight)))
        entry = ctx.inflight[upload_id] = InFlight()
    return entry


def forget(ctx: UploadContext, upload_id: str) -> None:
    """Drop what this process keeps of an upload (it ended, or its state went stale)."""
    ctx.inflight.pop(upload_id, None)


async def hash_state(ctx: UploadContext, upload_id: str, key: str, offset: int) -> HashState:
    """The hash state covering exactly ``offset`` bytes, from the cache or rebuilt."""
    entry = in_flight(ctx, upload_id)
    state = entry.hash
    if state is not None and state.offset == offset:
        return state
    if state is None or not state.covers_stream or state.offset > offset:
        state = HashState(offset=0)
    # else: another node appended since this one last wrote (a balancer alternating the
    # PATCHes): the prefix is append-only, so only the bytes after ours are read.
    if state.offset < offset:
        if isinstance(ctx.store, PartialReader):
            try:
                async for chunk in ctx.store.read_partial(key, state.offset, offset):
                    if len(state.head) < SNIFF_BYTES:
                        state.head += chunk[: SNIFF_BYTES - len(state.head)]
                    await anyio.to_thread.run_sync(state.sha256.update, chunk)
                    state.offset += len(chunk)
            except BlobStoreError:
                # Unreadable prefix (an S3 upload begun before parts were staged): the hash
                # is taken from the sealed object at completion instead.
                log.warning("upload.hash_state_not_rebuilt", extra={"upload_id": upload_id})
                state.offset = -1
            if state.offset != offset:
                state = HashState(offset=offset, covers_stream=False)
        else:
            state = HashState(offset=offset, covers_stream=False)
    in_flight(ctx, upload_id).hash = state
    return state


async def blob_for(ctx: UploadContext, row: Upload) -> BlobUpload:
    """The store's handle for an upload, kept between PATCHes (a handle holds no open
    file or state, only saves the store's existence check on the hot path).
    ``BlobNotFound`` when the bytes are gone."""
    entry = ctx.inflight.get(row.id)
    if entry is not None and entry.blob is not None:
        return entry.blob
    blob = await ctx.store.get(row.blob_key)
    in_flight(ctx, row.id).blob = blob
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


# -- appending bytes ---------------------------------------------------------------------


@dataclasses.dataclass
class Progress:
    """Where an upload stands: the durable offset and the sniffed type. ``append`` keeps
    it true whether it returns or raises, as the store keeps ``info().offset`` true."""

    offset: int
    detected_type: str | None = None


async def append(
    ctx: UploadContext,
    row: Upload,
    blob: BlobUpload,
    progress: Progress,
    body: AsyncIterator[bytes],
    *,
    cap: int,
    final: bool,
) -> None:
    """Stream ``body`` into ``blob`` at ``progress.offset`` (the caller holds the lock
    and checked that offset against the store). At most ``cap`` bytes in total: more is
    refused with ``LengthExceeded`` after the bytes inside the cap are kept. ``final``:
    the end of ``body`` is the end of the file (multipart), so a short file is sniffed
    whole.

    Bytes pass to the store only after the first ``SNIFF_BYTES`` (or the whole file, if
    shorter) matched the allowlist: a refused type never reaches storage beyond what the
    sniff needs (``Refused`` ERR_UNSUPPORTED_TYPE; the caller deletes those bytes).

    Raises what stopped the stream: ``Refused`` (incl. ``LengthExceeded``),
    ``IdleTimeout``, the client going away, a store error. Whatever happens,
    ``progress`` says afterwards what the store holds."""
    offset = progress.offset
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
            forget(ctx, row.id)
    if not state.covers_stream:
        state.offset = new_offset
    progress.offset = new_offset
    progress.detected_type = detected
    if error is not None:
        raise error
