"""The filesystem blob store: the default backend, under the data directory.

Layout under ``root``::

    incoming/<namespace>/<hex>        bytes of an unfinished upload (appended, fsynced)
    incoming/<namespace>/<hex>.json   its sidecar: the declared length
    objects/<namespace>/<hex[:2]>/<hex>  finished objects, mode 0444

An upload becomes an object by one atomic ``rename`` after the file and its directory
are fsynced, so a reader never sees half-written data under ``objects/``, and a crash
leaves either the unfinished upload or the finished object, never a mix.

``info().offset`` is the size of the incoming file. ``write`` fsyncs before it returns,
and when the stream breaks off it writes and fsyncs what it had received before passing
the error on, so the size is the number of bytes durably received.

Synchronous underneath: the public ``*_sync`` methods (``SyncBlobStore``) are the
store's blocking API, for the worker and the CLI; the async methods run them in a worker
thread (``anyio.to_thread``), one hop each. ``write`` gathers chunks
into batches of ``WRITE_BUFFER_BYTES`` and writes each (one ``writev``) in a thread while
the next batch fills (``streaming.pump``): the thread hop is paid once per MiB, and
the disk works beside the network instead of after it.

``read_partial`` streams the durable prefix of an unfinished upload (a node that meets
the upload without its hash state rebuilds the state from it). ``read`` streams from an
open file; a caller that stops early should close the iterator
(``contextlib.aclosing``) so the file is closed at once rather than at collection.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import stat
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from pathlib import Path
from typing import TypeVar

import anyio
import anyio.to_thread

from storage.blobs.keys import new_key, split_key
from storage.blobs.protocol import (
    NAMESPACES,
    QUARANTINE,
    BlobNotFound,
    BlobStoreError,
    InvalidKey,
    OffsetMismatch,
    UploadFinished,
    UploadInfo,
    refused,
)
from storage.blobs.streaming import GatherBudget, Observer, pump

log = logging.getLogger(__name__)

WRITE_BUFFER_BYTES = 1 << 20
# The memory every upload of this process may hold gathered before a write, shared between
# the uploads streaming now (``storage.blobs.streaming.GatherBudget``; LD-01, LD-10: a
# thousand slow uploads must not each hold a whole write buffer). 16 MiB: 16 streams (the
# 16 x 64 MiB case of ``benchmarks/upload.py``) still write whole 1 MiB batches; a
# thousand phones at 64 KiB/s write every 64 KiB, once a second each. (A batch being
# written is not counted: at most about twice this is held.)
GATHER_BUDGET = GatherBudget(total=16 << 20, floor=64 << 10)
READ_CHUNK_BYTES = 1 << 20
# A video seek waits for the first chunk of its Range: small, so the first byte goes out
# after a 64 KiB read rather than a 1 MiB one; the rest follows in full chunks.
FIRST_CHUNK_BYTES = 64 << 10
_IOV_MAX = 512  # below Linux's IOV_MAX (1024)

T = TypeVar("T")


def _checked(fn: Callable[..., T], *args: object) -> T:
    """Blocking file I/O; an OSError becomes a ``BlobStoreError`` with the OSError
    chained (the path stays out of the message: VL-09)."""
    try:
        return fn(*args)
    except OSError as exc:
        raise BlobStoreError(f"blob store I/O failed ({errno.errorcode.get(exc.errno or 0, '?')})") from exc


async def _run(fn: Callable[..., T], *args: object) -> T:
    """``_checked`` in a worker thread: the async API's one hop per call."""
    return await anyio.to_thread.run_sync(_checked, fn, *args)



def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_all(fd: int, data: bytes | bytearray | memoryview) -> None:
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


class FilesystemBlobStore:
    """Blobs as files under ``root`` (created if missing, mode 0700)."""

    def __init__(self, root: Path) -> None:
        # Resolved once, here: every path we build is checked to stay under it.
        self.root = Path(os.path.abspath(root))
        self._incoming = self.root / "incoming"
        self._objects = self.root / "objects"
        for directory in (self.root, self._incoming, self._objects):
            directory.mkdir(mode=0o700, parents=True, exist_ok=True)

    # -- paths -----------------------------------------------------------------

    def _inside(self, path: Path) -> Path:
        # Defence in depth behind the key regex: the lexically normalised path must stay
        # under the root (no I/O, so a bad key costs nothing).
        normal = os.path.normpath(path)
        if os.path.commonpath([normal, str(self.root)]) != str(self.root):
            raise InvalidKey("blob key escapes the store root")
        return Path(normal)

    def _incoming_path(self, key: str) -> Path:
        ns, hexpart = split_key(key)
        return self._inside(self._incoming / ns / hexpart)

    def _sidecar_path(self, key: str) -> Path:
        ns, hexpart = split_key(key)
        return self._inside(self._incoming / ns / f"{hexpart}.json")

    def _object_path(self, key: str) -> Path:
        ns, hexpart = split_key(key)
        return self._inside(self._objects / ns / hexpart[:2] / hexpart)

    # -- BlobStore -------------------------------------------------------------

    async def create(self, namespace: str = "originals", length: int | None = None) -> FilesystemUpload:
        if length is not None and length < 0:
            raise ValueError("length must be >= 0")
        key = new_key(namespace)
        await _run(self._create_sync, key, length)
        return FilesystemUpload(self, key)

    def _create_sync(self, key: str, length: int | None) -> None:
        data = self._incoming_path(key)
        sidecar = self._sidecar_path(key)
        directory = data.parent
        try:
            directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            # Sidecar first (written whole, then renamed), so a data file never exists
            # without its declared length.
            tmp = sidecar.with_suffix(".json.tmp")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            try:
                _write_all(fd, json.dumps({"length": length}).encode())
                os.fsync(fd)
            finally:
                os.close(fd)
            os.rename(tmp, sidecar)
            fd = os.open(data, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            os.fsync(fd)
            os.close(fd)
            _fsync_dir(directory)
        except OSError as exc:
            raise BlobStoreError("could not create upload") from exc

    async def get(self, key: str) -> FilesystemUpload:
        split_key(key)
        upload = FilesystemUpload(self, key)
        await upload.info()  # BlobNotFound when neither an upload nor an object exists
        return upload

    def read(self, key: str, start: int = 0, end: int | None = None) -> AsyncIterator[bytes]:
        if split_key(key)[0] == QUARANTINE:
            self._object_path(key)  # InvalidKey now, before any I/O
            return refused()  # infected originals: out of every viewer's and export's reach
        return _drive(self.read_sync(key, start, end))

    def read_quarantined(self, key: str, start: int = 0, end: int | None = None) -> AsyncIterator[bytes]:
        """``read`` for any key, quarantined ones included (fixity, forensic copy-out)."""
        return _drive(self.read_quarantined_sync(key, start, end))

    def read_sync(self, key: str, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        self._object_path(key)  # InvalidKey now, before any I/O
        if split_key(key)[0] == QUARANTINE:
            # Infected originals: out of every viewer's and export's reach (issue 14 item 5).
            raise BlobNotFound("no finished object with this key")
        return self.read_quarantined_sync(key, start, end)

    def read_quarantined_sync(self, key: str, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        path = self._object_path(key)  # InvalidKey now, before any I/O
        if start < 0 or (end is not None and end < start):
            raise ValueError("invalid byte range")
        return self._read_sync(path, start, end)

    def _read_sync(self, path: Path, start: int, end: int | None) -> Iterator[bytes]:
        # Open and the first read in one step (one worker-thread call for the async
        # API): a video seek waits for this first chunk, which is small.
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            raise BlobNotFound("no finished object with this key") from None
        except OSError as exc:
            raise BlobStoreError("could not open object") from exc
        try:
            size = os.fstat(fd).st_size
            position = min(start, size)
            stop = size if end is None else min(end, size)
            want = FIRST_CHUNK_BYTES
            while position < stop:
                chunk = _checked(os.pread, fd, min(want, stop - position), position)
                if not chunk:  # cannot happen to a read-only object; never loop forever
                    raise BlobStoreError("object shorter than its size")
                position += len(chunk)
                want = READ_CHUNK_BYTES
                yield chunk
        finally:
            os.close(fd)

    def read_partial(self, key: str, start: int, end: int) -> AsyncIterator[bytes]:
        """Bytes ``[start, end)`` of an *unfinished* upload (its incoming file), so that a
        process that meets the upload without its hash state rebuilds it from the stored
        prefix (DESIGN §4; ``storage.blobs.protocol.PartialReader``). Only the durable prefix
        is served: ``end`` beyond the incoming file's size is an error, never a short read
        that a caller could mistake for the whole prefix. An upload finished meanwhile is
        read from its object (the same bytes: an upload is append-only, then renamed)."""
        incoming, obj = self._incoming_path(key), self._object_path(key)  # InvalidKey before I/O
        if start < 0 or end < start:
            raise ValueError("invalid byte range")
        return _drive(self._read_partial_sync(incoming, obj, start, end))

    def _read_partial_sync(self, incoming: Path, obj: Path, start: int, end: int) -> Iterator[bytes]:
        for path in (incoming, obj):
            try:
                fd = _checked(os.open, path, os.O_RDONLY)
            except BlobStoreError as exc:
                if isinstance(exc.__cause__, FileNotFoundError):
                    continue
                raise
            break
        else:
            raise BlobNotFound("no upload with this key")
        try:
            if os.fstat(fd).st_size < end:
                raise BlobStoreError("the stored prefix is shorter than the range asked for")
            position = start
            while position < end:
                chunk = _checked(os.pread, fd, min(READ_CHUNK_BYTES, end - position), position)
                if not chunk:
                    raise BlobStoreError("upload shorter than its stored prefix")
                position += len(chunk)
                yield chunk
        finally:
            os.close(fd)

    async def size(self, key: str) -> int:
        return await _run(self.size_sync, key)

    def size_sync(self, key: str) -> int:
        path = self._object_path(key)
        try:
            return _checked(os.stat, path).st_size
        except BlobStoreError as exc:
            if isinstance(exc.__cause__, FileNotFoundError):
                raise BlobNotFound("no finished object with this key") from None
            raise

    @property
    def capabilities(self) -> dict[str, object]:
        return {"backend": "filesystem", "read_only_objects": True, "fsync": True}

    async def describe(self) -> dict[str, object]:
        return self.describe_sync()

    def describe_sync(self) -> dict[str, object]:
        return self.capabilities

    async def close(self) -> None:
        return None

    def close_sync(self) -> None:
        return None

    def put_sync(self, chunks: Iterable[bytes], namespace: str = "derivatives", length: int | None = None) -> str:
        """A new finished object from ``chunks``, in the caller's thread: batched
        ``writev``, one fdatasync, then ``finish`` (the same durable, atomic seal as an
        upload)."""
        if length is not None and length < 0:
            raise ValueError("length must be >= 0")
        key = new_key(namespace)
        self._create_sync(key, length)
        fd = _checked(self._open_for_append, key, 0)
        try:
            batch: list[bytes] = []
            gathered = 0
            for chunk in chunks:
                if not chunk:
                    continue
                batch.append(chunk)
                gathered += len(chunk)
                if gathered >= WRITE_BUFFER_BYTES:
                    _checked(_writev_all, fd, batch)
                    batch, gathered = [], 0
            if batch:
                _checked(_writev_all, fd, batch)
            _checked(os.fdatasync, fd)
        finally:
            os.close(fd)
        _checked(self._finish_sync, key)
        return key

    # -- quarantine (storage.quarantine) ---------------------------------------

    async def quarantine_copy(self, key: str) -> str:
        """Give the finished original ``key`` a second name under ``quarantine/`` (a hard
        link: the same read-only bytes, nothing copied) and return that key. Idempotent."""
        return await _run(self.quarantine_copy_sync, key)

    def quarantine_copy_sync(self, key: str) -> str:
        return _checked(self._quarantine_copy, key)

    def _quarantine_copy(self, key: str) -> str:
        _, hexpart = split_key(key)
        target_key = f"{QUARANTINE}/{hexpart}"
        source, target = self._object_path(key), self._object_path(target_key)
        target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        try:
            os.link(source, target)
        except FileExistsError:
            pass
        except FileNotFoundError:
            if not target.exists():
                raise BlobNotFound("no finished object with this key") from None
        _fsync_dir(target.parent)
        return target_key

    async def quarantine_drop(self, key: str) -> None:
        """Remove the original's old name once its quarantine name exists."""
        await _run(self.quarantine_drop_sync, key)

    def quarantine_drop_sync(self, key: str) -> None:
        _checked(self._quarantine_drop, key)

    def _quarantine_drop(self, key: str) -> None:
        _, hexpart = split_key(key)
        if not self._object_path(f"{QUARANTINE}/{hexpart}").exists():
            raise BlobStoreError("refusing to drop an original that is not in quarantine")
        source = self._object_path(key)
        source.unlink(missing_ok=True)
        _fsync_dir(source.parent)

    # -- the sweep (storage.sweep): listing and removing orphans ------------------

    async def sweep_list(self, namespace: str, *, finished: bool) -> list[tuple[str, float]]:
        """``(key, mtime)`` of every finished object (or unfinished upload) in
        ``namespace``; names that are not keys this store makes are left alone."""
        return await _run(self._sweep_list_sync, namespace, finished)

    def _sweep_list_sync(self, namespace: str, finished: bool) -> list[tuple[str, float]]:
        if namespace not in NAMESPACES:
            raise InvalidKey("unknown blob namespace")
        base = (self._objects if finished else self._incoming) / namespace
        paths = base.glob("*/*") if finished else base.glob("*")
        found = []
        for path in paths:
            key = f"{namespace}/{path.name}"
            try:
                split_key(key)
                found.append((key, path.stat().st_mtime))
            except (InvalidKey, FileNotFoundError):
                continue  # a sidecar, a temp file, or gone meanwhile
        return found

    async def sweep_remove(self, key: str, *, finished: bool) -> None:
        """Remove an orphan: a finished derivative, or an unfinished upload (with its
        sidecar). Threat: the sweep deleting evidence. A finished object outside the
        derivatives namespace is refused here, whatever the caller decided."""
        await _run(self._sweep_remove_sync, key, finished)

    def _sweep_remove_sync(self, key: str, finished: bool) -> None:
        ns, _ = split_key(key)
        if finished:
            if ns != "derivatives":
                raise InvalidKey("only derivatives are swept; an original is never removed")
            path = self._object_path(key)
            path.unlink(missing_ok=True)
            _fsync_dir(path.parent)
            return
        data = self._incoming_path(key)
        data.unlink(missing_ok=True)
        self._sidecar_path(key).unlink(missing_ok=True)
        self._sidecar_path(key).with_suffix(".json.tmp").unlink(missing_ok=True)
        if data.parent.exists():
            _fsync_dir(data.parent)

    # -- lawful disposal (storage.retention) -------------------------------------

    async def destroy(self, key: str) -> bool:
        """Delete the finished object ``key`` and any unfinished upload under that name
        (its sidecar too). Idempotent: True when something was there. Only
        ``storage.retention`` calls this, after recording the disposal and its rule."""
        return await _run(self.destroy_sync, key)

    def destroy_sync(self, key: str) -> bool:
        return _checked(self._destroy, key)

    def _destroy(self, key: str) -> bool:
        paths = [self._object_path(key), self._incoming_path(key), self._sidecar_path(key),
                 self._sidecar_path(key).with_suffix(".json.tmp")]
        found = False
        for path in paths:
            try:
                path.unlink()  # the 0444 mode guards the bytes, not the name: the directory is ours
                found = True
            except FileNotFoundError:
                continue
            _fsync_dir(path.parent)
        return found

    async def lock_state(self, key: str) -> str | None:
        """Nothing below the application locks a file: never refused here."""
        split_key(key)
        return None

    # -- per-upload operations (sync, run in threads) --------------------------

    def _info_sync(self, key: str) -> UploadInfo:
        obj = self._object_path(key)
        try:
            size = obj.stat().st_size
        except FileNotFoundError:
            pass
        else:
            return UploadInfo(key=key, offset=size, length=size, finished=True)
        try:
            size = self._incoming_path(key).stat().st_size
            sidecar = json.loads(self._sidecar_path(key).read_bytes())
        except FileNotFoundError:
            raise BlobNotFound("no upload with this key") from None
        except (OSError, ValueError) as exc:
            raise BlobStoreError("could not read upload state") from exc
        length = sidecar.get("length")
        return UploadInfo(key=key, offset=size, length=length, finished=False)

    def _open_for_append(self, key: str, offset: int) -> int:
        if self._object_path(key).exists():
            raise UploadFinished("upload is finished")
        try:
            fd = os.open(self._incoming_path(key), os.O_WRONLY | os.O_APPEND)
        except FileNotFoundError:
            raise BlobNotFound("no upload with this key") from None
        except OSError as exc:
            raise BlobStoreError("could not open upload") from exc
        size = os.fstat(fd).st_size
        if size != offset:
            os.close(fd)
            raise OffsetMismatch(size, offset)
        return fd

    def _finish_sync(self, key: str) -> UploadInfo:
        obj = self._object_path(key)
        data = self._incoming_path(key)
        sidecar = self._sidecar_path(key)
        if obj.exists():
            sidecar.unlink(missing_ok=True)  # a crash after the rename may have left it
            return self._info_sync(key)
        try:
            fd = os.open(data, os.O_RDONLY)
        except FileNotFoundError:
            raise BlobNotFound("no upload with this key") from None
        try:
            # ACPO principle 1: the original must not change once received. Read-only on
            # disk stops accidental rewrites by our own code and by operators' tools.
            os.fchmod(fd, stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH)
            os.fsync(fd)
        finally:
            os.close(fd)
        obj.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        _fsync_dir(obj.parent.parent)
        # The atomic step: readers see nothing under objects/ until this rename, and
        # then the whole, fsynced file.
        os.rename(data, obj)
        _fsync_dir(obj.parent)
        _fsync_dir(data.parent)
        sidecar.unlink(missing_ok=True)
        return self._info_sync(key)

    def _terminate_sync(self, key: str) -> None:
        if self._object_path(key).exists():
            raise UploadFinished("a finished object cannot be deleted")
        data = self._incoming_path(key)
        try:
            data.unlink()
        except FileNotFoundError:
            raise BlobNotFound("no upload with this key") from None
        self._sidecar_path(key).unlink(missing_ok=True)
        _fsync_dir(data.parent)


class FilesystemUpload:
    """One upload in a :class:`FilesystemBlobStore`. Holds no open file between calls, so
    any number of instances (in any process) agree on the state on disk."""

    def __init__(self, store: FilesystemBlobStore, key: str) -> None:
        self._store = store
        self._key = key

    @property
    def key(self) -> str:
        return self._key

    async def info(self) -> UploadInfo:
        return await _run(self._store._info_sync, self._key)

    async def write(self, offset: int, chunks: AsyncIterator[bytes], observe: Observer | None = None) -> int:
        fd = await _run(self._store._open_for_append, self._key, offset)
        try:
            return await pump(chunks, _FileSink(fd, offset), WRITE_BUFFER_BYTES, observe=observe,
                              budget=GATHER_BUDGET)
        finally:
            os.close(fd)

    async def finish(self) -> UploadInfo:
        return await _run(self._store._finish_sync, self._key)

    async def terminate(self) -> None:
        await _run(self._store._terminate_sync, self._key)


class _FileSink:
    """Appends batches to an open file (``writev`` in a worker thread) and fdatasyncs at
    the end, after a failed write too: the bytes that did reach the file count in
    ``info().offset``, so they must be durable. fdatasync: the size is flushed with the
    data; mtime is not needed."""

    def __init__(self, fd: int, position: int) -> None:
        self._fd = fd
        self._position = position  # the file's size: every write appends

    async def batch(self, buffers: list[bytes], before: Callable[[], None] | None) -> None:
        await anyio.to_thread.run_sync(self._batch_sync, buffers, before)

    def _batch_sync(self, buffers: list[bytes], before: Callable[[], None] | None) -> None:
        if before is not None:
            before()
        start = self._position
        _writev_all(self._fd, buffers)
        self._position += sum(len(b) for b in buffers)
        _start_writeback(self._fd, start, self._position - start)

    async def end(self, tail: list[bytes], failed: bool, before: Callable[[], None] | None) -> None:
        await anyio.to_thread.run_sync(self._end_sync, tail, before)

    def _end_sync(self, tail: list[bytes], before: Callable[[], None] | None) -> None:
        try:
            if before is not None:
                before()
            if tail:
                _writev_all(self._fd, tail)
        finally:
            os.fdatasync(self._fd)


def _start_writeback(fd: int, start: int, length: int) -> None:
    """Start writing a batch to disk now, without waiting for it. The PATCH is answered
    only after ``fdatasync`` (nothing acknowledged may be lost, CF-08); when every batch
    is already on its way, that fdatasync waits for the last batch only instead of the
    whole body, and dirty pages never pile up until the kernel throttles the writer.
    Measured here: 8 MiB appends each followed by fdatasync ran at 280 to 900 MB/s
    plain, 1600 to 1900 MB/s with this (``benchmarks/upload.py``).

    On Linux ``POSIX_FADV_DONTNEED`` on dirty pages starts their writeback (and drops
    the pages once clean, so gigabytes of evidence do not evict the page cache). It is
    advice: where it is missing or refused, fdatasync still does the whole job."""
    if length <= 0 or not hasattr(os, "posix_fadvise"):
        return
    try:
        os.posix_fadvise(fd, start, length, os.POSIX_FADV_DONTNEED)
    except OSError:
        pass


def _writev_all(fd: int, buffers: list[bytes]) -> None:
    # One system call per batch and no copy into a joined buffer.
    for i in range(0, len(buffers), _IOV_MAX):
        group = buffers[i : i + _IOV_MAX]
        done = os.writev(fd, group)
        total = sum(len(b) for b in group)
        if done < total:  # a short write (signal, quota): finish it the slow way
            _write_all(fd, memoryview(b"".join(group))[done:])


async def _drive(chunks: Iterator[bytes]) -> AsyncIterator[bytes]:
    """The async face of a synchronous read: each chunk is read in a worker thread (one
    hop per chunk, as before the sync API existed), and the file is closed when the
    consumer stops, early or not."""
    try:
        while True:
            chunk = await anyio.to_thread.run_sync(next, chunks, None)
            if chunk is None:
                return
            yield chunk
    finally:
        close = getattr(chunks, "close", None)
        if close is not None:
            close()
