"""Filesystem-only behaviour of the blob store: what is on disk, and when."""

from __future__ import annotations

import errno
import os
import resource
import signal
import stat
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest

from storage.blobs import BlobNotFound, BlobStoreError, InvalidKey, open_store, read_all
from storage.blobs.filesystem import FilesystemBlobStore
from storage.settings import Settings
from tests.fixtures.blobs import StreamBroke, broken_stream, stream

pytestmark = pytest.mark.anyio

MiB = 1 << 20

# An audit hook cannot be removed; it records only while a test asks it to.
_recording: list[list[str]] = []


def _audit(event: str, args: tuple[Any, ...]) -> None:
    if _recording and event in ("open", "os.listdir", "os.scandir", "os.rename", "os.remove"):
        _recording[-1].append(f"{event} {args[0]!r}")


sys.addaudithook(_audit)


@contextmanager
def file_events() -> Iterator[list[str]]:
    """Every open/listdir/rename/remove this process makes inside the block."""
    events: list[str] = []
    _recording.append(events)
    try:
        yield events
    finally:
        _recording.pop()


def files_under(path: Path) -> list[Path]:
    return sorted(p for p in path.rglob("*") if p.is_file())


async def test_finished_object_is_read_only_on_disk(fs_blob_store: FilesystemBlobStore) -> None:
    upload = await fs_blob_store.create("originals", 5)
    await upload.write(0, stream(b"hello"))
    await upload.finish()
    [obj] = files_under(fs_blob_store.root / "objects")
    assert stat.S_IMODE(obj.stat().st_mode) == 0o444
    assert obj.read_bytes() == b"hello"
    assert files_under(fs_blob_store.root / "incoming") == []


async def test_nothing_appears_under_objects_until_finish(fs_blob_store: FilesystemBlobStore) -> None:
    data = os.urandom(5 * MiB + 3)
    upload = await fs_blob_store.create("originals", len(data))
    await upload.write(0, stream(data[: 2 * MiB]))
    with pytest.raises(StreamBroke):
        await upload.write(2 * MiB, broken_stream(data[2 * MiB :], MiB))
    await upload.write(3 * MiB, stream(data[3 * MiB :]))
    assert files_under(fs_blob_store.root / "objects") == []
    with pytest.raises(BlobNotFound):
        await read_all(fs_blob_store, upload.key)
    await upload.finish()
    [obj] = files_under(fs_blob_store.root / "objects")
    assert obj.read_bytes() == data


async def test_received_bytes_are_on_disk_when_a_stream_breaks(fs_blob_store: FilesystemBlobStore) -> None:
    upload = await fs_blob_store.create("originals", 10 * MiB)
    with pytest.raises(StreamBroke):
        await upload.write(0, broken_stream(os.urandom(10 * MiB), 4 * MiB + 7))
    [incoming] = [p for p in files_under(fs_blob_store.root / "incoming") if p.suffix != ".json"]
    assert incoming.stat().st_size == 4 * MiB + 7 == (await upload.info()).offset


@pytest.fixture
def file_size_limit() -> Iterator[Callable[[int | None], None]]:
    """Fault injection: a real EFBIG from the kernel (RLIMIT_FSIZE) for this process."""
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    previous = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG instead of a kill

    def limit(size: int | None) -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft if size is None else size, hard))

    try:
        yield limit
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, previous)


async def test_a_disk_error_is_a_blob_store_error_and_the_written_bytes_count(
    fs_blob_store: FilesystemBlobStore, file_size_limit: Callable[[int | None], None]
) -> None:
    data = os.urandom(10 * MiB)
    upload = await fs_blob_store.create("originals", len(data))
    thrown_in: list[type[BaseException]] = []

    async def watched() -> AsyncIterator[bytes]:
        try:
            async for chunk in stream(data):
                yield chunk
        except BaseException as exc:
            thrown_in.append(type(exc))
            raise

    file_size_limit(3 * MiB + 5)
    try:
        with pytest.raises(BlobStoreError) as caught:
            await upload.write(0, watched())
    finally:
        file_size_limit(None)
    assert isinstance(caught.value.__cause__, OSError)
    assert caught.value.__cause__.errno == errno.EFBIG
    # The storage failure is reported by write(), never thrown into the caller's stream.
    assert anyio.get_cancelled_exc_class() not in thrown_in
    offset = (await upload.info()).offset
    assert offset == 3 * MiB + 5
    await upload.write(offset, stream(data[offset:]))
    await upload.finish()
    assert await read_all(fs_blob_store, upload.key) == data


async def test_traversal_keys_touch_no_file(fs_blob_store: FilesystemBlobStore, tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_bytes(b"not yours")
    for key in ("../secret", "originals/../../secret", "originals/../../../secret", str(secret), "..\\secret"):
        with file_events() as events:
            with pytest.raises(InvalidKey):
                await fs_blob_store.get(key)
            with pytest.raises(InvalidKey):
                fs_blob_store.read(key)
            with pytest.raises(InvalidKey):
                await fs_blob_store.size(key)
        assert events == []
    # The recorder does see the store's file access, so the empty lists above mean it.
    upload = await fs_blob_store.create("originals")
    with file_events() as events:
        await fs_blob_store.get(upload.key)
    assert events


def test_a_path_outside_the_root_is_refused_even_past_the_key_check(
    fs_blob_store: FilesystemBlobStore,
) -> None:
    # Defence in depth: the containment check on built paths stands on its own.
    root = fs_blob_store.root
    for path in (root / ".." / "x", root / "objects" / ".." / ".." / "x", Path("/etc/passwd")):
        with pytest.raises(InvalidKey):
            fs_blob_store._inside(path)
    assert fs_blob_store._inside(root / "objects" / "originals") == root / "objects" / "originals"


async def test_terminate_removes_the_bytes_and_the_sidecar(fs_blob_store: FilesystemBlobStore) -> None:
    upload = await fs_blob_store.create("originals", 10)
    await upload.write(0, stream(b"12345"))
    assert len(files_under(fs_blob_store.root / "incoming")) == 2
    await upload.terminate()
    assert files_under(fs_blob_store.root) == []


async def test_a_finish_interrupted_after_the_rename_is_completed_by_the_next(
    fs_blob_store: FilesystemBlobStore,
) -> None:
    upload = await fs_blob_store.create("originals", 3)
    await upload.write(0, stream(b"abc"))
    await upload.finish()
    # Stage the crash window: the object is in place, the sidecar was not yet removed.
    sidecar = fs_blob_store._sidecar_path(upload.key)
    sidecar.write_text('{"length": 3}')
    info = await (await fs_blob_store.get(upload.key)).info()
    assert info.finished and info.offset == 3
    assert (await upload.finish()).finished
    assert not sidecar.exists()


def test_store_directories_are_private(tmp_path: Path) -> None:
    store = FilesystemBlobStore(tmp_path / "blobs")
    for directory in (store.root, store.root / "incoming", store.root / "objects"):
        assert stat.S_IMODE(directory.stat().st_mode) == 0o700


def test_open_store_reads_a_file_url(tmp_path: Path) -> None:
    store = open_store(Settings(data_dir=tmp_path, storage_url=f"file://{tmp_path / 'elsewhere'}"))
    assert isinstance(store, FilesystemBlobStore) and store.root == tmp_path / "elsewhere"
    default = open_store(Settings(data_dir=tmp_path))
    assert isinstance(default, FilesystemBlobStore) and default.root == (tmp_path / "blobs").resolve()
    for bad in ("ftp://x/y", "file://remote-host/x", "s3://"):
        with pytest.raises(ValueError):
            open_store(Settings(data_dir=tmp_path, storage_url=bad))
