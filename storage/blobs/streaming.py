"""The write loop both backends share: gather a stream into batches, store each batch in a
second task while the next one fills, and store the rest whatever ended the stream.

Why two tasks: the request's task spends its time receiving from the network; storing a
batch (a ``writev`` in a worker thread, an S3 ``UploadPart``) runs beside it instead of
after it. The hand-over is a rendezvous, so an upload holds at most one batch being
stored and one being gathered.

Why the shields: a batch handed over is a batch stored, and the remainder of a stream
that broke off or was cancelled (client gone) is stored too, so that ``info().offset``
counts every byte received and the client can resume from there.

Why a budget (``GatherBudget``): a batch is gathered in memory until it is full. For one
fast stream a large batch is what makes writing cheap, but a phone on a slow link takes
seconds to fill one, and a thousand of them at once each held up to a whole batch (1 MiB:
the whole file of a small photo, 650 to 1,090 KiB of server memory per open upload in
``benchmarks/surge.py``). The budget shares a fixed amount of memory between the streams
of the process that are gathering now, so the batch of each shrinks as their number grows.
"""

from __future__ import annotations

import errno
import functools
import threading
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


class GatherBudget:
    """The bytes that the pumps of one process may hold gathered (received, not yet
    handed to their sink), shared between the pumps gathering now.

    Threat (SECURITY_CHECKLIST LD-01, LD-10, UP-05): many slow uploads at once (a surge
    of citizens on mobile links, or an attacker opening as many slow bodies as the
    connection caps allow) each pinning a whole batch of server memory until the process
    runs out. With a budget, a pump's batch is ``total`` divided by the number of pumps
    gathering, between ``floor`` and the store's own batch size: one fast stream still
    writes whole batches, and N slow ones hold about ``max(total, N * floor)`` between
    them. ``floor`` keeps a batch large enough that the hop to a worker thread it costs
    stays rare (at 64 KiB/s, a 64 KiB floor is one hop a second per upload).

    Process-wide: pumps on several event loops (threads) may share it, so the count
    changes under a lock; reading it for a batch size needs none."""

    def __init__(self, total: int, floor: int) -> None:
        if floor <= 0 or total < floor:
            raise ValueError("a budget needs 0 < floor <= total")
        self.total = total
        self.floor = floor
        self.active = 0  # pumps gathering now
        self._lock = threading.Lock()

    def enter(self) -> None:
        with self._lock:
            self.active += 1

    def leave(self) -> None:
        with self._lock:
            self.active -= 1

    def batch(self, ceiling: int) -> int:
        """The batch size a pump uses now: its share of ``total``, within
        [``floor``, ``ceiling``]."""
        return min(ceiling, max(self.floor, self.total // max(1, self.active)))


async def pump(
    chunks: AsyncIterator[bytes],
    sink: Sink,
    batch_bytes: int,
    first: list[bytes] | None = None,
    *,
    observe: Observer | None = None,
    budget: GatherBudget | None = None,
) -> int:
    """Feed ``chunks`` (after the ``first`` buffers, bytes carried from an earlier write)
    to ``sink``; return how many bytes ``chunks`` gave. ``observe`` sees the bytes of
    ``chunks`` (not ``first``) in the storing task, before each batch is stored.

    A batch is handed to the sink once it holds ``batch_bytes``, or, with a ``budget``,
    once it holds this pump's share of the budget if that is smaller (a sink that
    cannot take smaller batches, S3's 5 MiB parts, passes none).

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
                if budget is not None:
                    budget.enter()
                try:
                    async for chunk in chunks:
                        if not chunk:
                            continue
                        batch.append(chunk)
                        gathered += len(chunk)
                        received += len(chunk)
                        if gathered >= (batch_bytes if budget is None else budget.batch(batch_bytes)):
                            await sender.send(batch)  # BrokenResourceError: the sink failed
                            batch = []
                            gathered = 0
                finally:
                    if budget is not None:
                        budget.leave()
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
