"""The write loop both backends share: gather a stream into batches, store each batch in a
second task while the next one fills, and store the rest whatever ended the stream.

Why two tasks: the request's task spends its time receiving from the network; storing a
batch (a ``writev`` in a worker thread, an S3 ``UploadPart``) runs beside it instead of
after it. The hand-over is a rendezvous, so an upload holds at most one batch being
stored and one being gathered.

Why the shields: a batch handed over is a batch stored, and the remainder of a stream
that broke off or was cancelled (client gone) is stored too, so that ``info().offset``
counts every byte received and the client can resume from there.
"""

from __future__ import annotations

import errno
import functools
from collections.abc import AsyncIterator, Callable
from typing import NoReturn, Protocol

import anyio
import anyio.abc

from storage.blobs.protocol import BlobStoreError

# Sees each run of stream bytes (never bytes carried from an earlier write) in a worker
# thread, in order, just before the sink stores them.
Observer = Callable[[list[bytes]], None]


class Sink(Protocol):
    async def batch(self, buffers: list[bytes], before: Callable[[], None] | None) -> None:
        """Store one full batch, after every earlier one. ``before``, when given, runs
        first, in the same worker thread as the storing (one thread hop per batch: on a
        virtual machine each hop costs a vCPU wake-up, measured at about 0.6 ms)."""
        ...

    async def end(self, tail: list[bytes], failed: bool, before: Callable[[], None] | None) -> None:
        """Always called, last. ``tail`` is what was received after the last batch
        (empty when ``failed``: a batch could not be stored, so nothing after it may be
        counted). Make the stored state durable and its offset true. ``before`` as for
        ``batch`` (None when there is nothing new to observe)."""
        ...


async def pump(
    chunks: AsyncIterator[bytes],
    sink: Sink,
    batch_bytes: int,
    first: list[bytes] | None = None,
    *,
    observe: Observer | None = None,
) -> int:
    """Feed ``chunks`` (after the ``first`` buffers, bytes carried from an earlier write)
    to ``sink``; return how many bytes ``chunks`` gave. ``observe`` sees the bytes of
    ``chunks`` (not ``first``) in the storing task, before each batch is stored.

    Errors: a storage error wins (as ``BlobStoreError``); else the stream's own error
    propagates unchanged. A storage error never cancels the caller's task or throws into
    ``chunks``: the gathering side sees it at its next hand-over, or at the end, and stops.
    """
    received = 0
    tail: list[list[bytes]] = []
    failures: list[BaseException] = []
    sender, receiver = anyio.create_memory_object_stream[list[bytes]](0)
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(_drain, sink, receiver, tail, failures, observe, len(first or []))
            async with sender:
                batch: list[bytes] = list(first or [])
                gathered = sum(len(b) for b in batch)
                try:
                    async for chunk in chunks:
                        if not chunk:
                            continue
                        batch.append(chunk)
                        gathered += len(chunk)
                        received += len(chunk)
                        if gathered >= batch_bytes:
                            await sender.send(batch)  # BrokenResourceError: the sink failed
                            batch = []
                            gathered = 0
                finally:
                    # Reached on success, a broken stream and cancellation alike. The
                    # drain reads it once this sender is closed (just below).
                    tail.append(batch)
    except BaseExceptionGroup as group:
        if failures:
            _raise_storage_error(failures[0])
        error = _first_of(group)
        raise error from error.__cause__  # the task group's wrapping is ours, not news
    except anyio.BrokenResourceError:
        pass  # the sink failed: reported below
    if failures:
        _raise_storage_error(failures[0])
    return received


async def _drain(
    sink: Sink,
    receiver: anyio.abc.ObjectReceiveStream[list[bytes]],
    tail: list[list[bytes]],
    failures: list[BaseException],
    observe: Observer | None,
    carried: int,
) -> None:
    # Shielded: a batch handed over is a batch stored, whatever happens to the request.
    # Never raises: a storage failure is left in ``failures`` for ``pump`` to report.
    with anyio.CancelScope(shield=True):
        failed = True
        try:
            async with receiver:
                async for batch in receiver:
                    await sink.batch(batch, _bind(observe, batch[carried:]))
                    carried = 0  # only the first batch starts with carried bytes
            failed = False
        except Exception as exc:
            failures.append(exc)
        try:
            rest = [] if failed or not tail else tail[0]
            await sink.end(rest, failed, _bind(observe, rest[carried:]))
        except Exception as exc:
            failures.append(exc)


def _bind(observe: Observer | None, buffers: list[bytes]) -> Callable[[], None] | None:
    if observe is None or not buffers:
        return None
    return functools.partial(observe, buffers)


def _raise_storage_error(exc: BaseException) -> NoReturn:
    if isinstance(exc, BlobStoreError):
        raise exc from exc.__cause__
    if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
        raise BlobStoreError("no space left for upload") from exc
    raise BlobStoreError("could not store upload") from exc


def _first_of(group: BaseExceptionGroup[BaseException]) -> BaseException:
    first: BaseException = group
    while isinstance(first, BaseExceptionGroup):
        first = first.exceptions[0]
    return first
