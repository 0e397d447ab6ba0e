"""Blob store write throughput, against a baseline measured in the same run.

    .venv/bin/python benchmarks/blobstore.py [--size-mib 1024] [--s3-size-mib 256] [--chunk-kib 64]

Filesystem: one stream of ``--size-mib`` through ``Upload.write`` in ``--chunk-kib``
chunks (Starlette hands a request body over in 64 KiB pieces), finished, versus the same
bytes written with plain ``os.write`` + one ``fdatasync`` (the disk's own pace). Prints
MB/s for both and the ratio. The upload path as a whole has to reach ~0.8x of an ASGI app
that discards the body (~370 MB/s here), so the store must stay well above ~300 MB/s.

S3: the same through moto's server on 127.0.0.1 (real HTTP, boto3), with a plain
``put_object`` of the same size for comparison. moto keeps objects in its own process
memory/temp files, so this measures the store's overhead over moto, not S3.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path

import anyio

from storage.blobs.filesystem import FilesystemBlobStore

MB = 1_000_000
MiB = 1 << 20


async def chunks(total: int, chunk: bytes) -> AsyncIterator[bytes]:
    sent = 0
    while sent < total:
        piece = chunk if total - sent >= len(chunk) else chunk[: total - sent]
        sent += len(piece)
        yield piece


def raw_write(path: Path, total: int, chunk: bytes) -> float:
    start = time.perf_counter()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        buffered: list[bytes] = []
        size = 0
        written = 0
        # Same buffering as the store gets to use (4 MiB writes), so the baseline is the
        # disk's pace and not Python's per-call overhead.
        while written < total:
            buffered.append(chunk)
            size += len(chunk)
            written += len(chunk)
            if size >= 4 * MiB:
                os.write(fd, b"".join(buffered))
                buffered.clear()
                size = 0
        if buffered:
            os.write(fd, b"".join(buffered))
        os.fdatasync(fd)
    finally:
        os.close(fd)
    return time.perf_counter() - start


async def store_write(root: Path, total: int, chunk: bytes) -> float:
    store = FilesystemBlobStore(root)
    start = time.perf_counter()
    upload = await store.create("originals", total)
    await upload.write(0, chunks(total, chunk))
    await upload.finish()
    return time.perf_counter() - start


async def store_read(root: Path, key: str) -> float:
    store = FilesystemBlobStore(root)
    start = time.perf_counter()
    async for _ in store.read(key):
        pass
    return time.perf_counter() - start


def bench_filesystem(total: int, chunk: bytes, rounds: int, directory: str | None) -> None:
    workdir = Path(tempfile.mkdtemp(prefix="exhibit-bench-", dir=directory))
    try:
        raw_times, store_times = [], []
        for i in range(rounds):
            # Interleaved, so both see the same page cache and writeback state.
            raw_times.append(raw_write(workdir / f"raw-{i}", total, chunk))
            (workdir / f"raw-{i}").unlink()
            store_times.append(anyio.run(store_write, workdir / f"store-{i}", total, chunk))
            shutil.rmtree(workdir / f"store-{i}")
        raw, store = min(raw_times), min(store_times)
        print(f"filesystem ({workdir.parent}): {total // MiB} MiB in {len(chunk) // 1024} KiB chunks, best of {rounds}")
        print(f"  raw os.write + fdatasync : {total / raw / MB:8.0f} MB/s")
        print(f"  FilesystemBlobStore.write: {total / store / MB:8.0f} MB/s (create + write + finish)")
        print(f"  ratio store / raw        : {raw / store:8.2f}")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def bench_s3(total: int, chunk: bytes) -> None:
    import boto3
    from moto.server import ThreadedMotoServer

    from storage.blobs.s3 import S3BlobStore

    os.environ.setdefault("AWS_ACCESS_KEY_ID", "bench")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "bench")
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    try:
        client = boto3.session.Session().client("s3", endpoint_url=endpoint, region_name="us-east-1")
        client.create_bucket(Bucket="bench")
        body = chunk * (total // len(chunk))
        start = time.perf_counter()
        client.put_object(Bucket="bench", Key="baseline", Body=body)
        baseline = time.perf_counter() - start
        del body
        store = S3BlobStore(bucket="bench", prefix="b", endpoint_url=endpoint)

        async def run() -> tuple[float, float]:
            start = time.perf_counter()
            upload = await store.create("originals", total)
            await upload.write(0, chunks(total, chunk))
            await upload.finish()
            written = time.perf_counter() - start
            start = time.perf_counter()
            async for _ in store.read(upload.key):
                pass
            return written, time.perf_counter() - start

        written, read = anyio.run(run)
        store.close_sync()
        client.close()
        print(f"s3 (moto server, HTTP on loopback): {total // MiB} MiB")
        print(f"  boto3 put_object, one body: {total / baseline / MB:8.0f} MB/s")
        print(f"  S3BlobStore.write (8 MiB parts): {total / written / MB:8.0f} MB/s")
        print(f"  S3BlobStore.read            : {total / read / MB:8.0f} MB/s")
        print(f"  ratio store write / put     : {baseline / written:8.2f}")
    finally:
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--s3-size-mib", type=int, default=256, help="0 to skip S3")
    parser.add_argument("--chunk-kib", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--dir", default=None, help="where to write (default: the temp dir); /dev/shm isolates CPU cost"
    )
    args = parser.parse_args()
    chunk = os.urandom(args.chunk_kib * 1024)
    bench_filesystem(args.size_mib * MiB, chunk, args.rounds, args.dir)
    if args.s3_size_mib:
        bench_s3(args.s3_size_mib * MiB, chunk)


if __name__ == "__main__":
    main()
