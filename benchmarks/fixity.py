"""Fixity throughput against ``sha256sum`` of the same files, in the same run.

    .venv/bin/python benchmarks/fixity.py [--files 8] [--size-mib 128] [--rounds 2]

Makes ``--files`` originals of ``--size-mib`` random bytes in a filesystem blob store
(SQLite database, items created the way ingest makes them), then, ``--rounds`` times,
alternately: ``sha256sum`` over the stored object files, and ``storage.fixity`` over the
items with no bandwidth budget. Both read warm page cache after the first pass (the same
files), so the ratio is the cost of the code path, not of the disk. Prints MB/s for both
and fixity/sha256sum (best round of each).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path

import anyio

from storage import fixity
from storage.blobs.filesystem import FilesystemBlobStore
from storage.db import Database
from storage.items import create_item
from storage.migrate import upgrade
from storage.reports import create_report

MB = 1_000_000


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--files", type=int, default=8)
    parser.add_argument("--size-mib", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="exhibit-bench-fixity-"))
    try:
        url = f"sqlite:///{root / 'exhibit.db'}"
        upgrade(url)
        db = Database(url)
        store = FilesystemBlobStore(root / "blobs")
        with db.write() as s:
            report_id = create_report(db, s, "BENCH/1", "other", actor="bench").id
        paths: list[Path] = []
        ids: list[str] = []
        chunk = 8 << 20

        async def make(digest: hashlib._Hash) -> str:
            upload = await store.create("originals", args.size_mib << 20)

            async def body() -> AsyncIterator[bytes]:
                for _ in range((args.size_mib << 20) // chunk):
                    data = os.urandom(chunk)
                    digest.update(data)
                    yield data

            await upload.write(0, body())
            await upload.finish()
            return upload.key

        for _ in range(args.files):
            digest = hashlib.sha256()
            key = anyio.run(make, digest)
            with db.write() as s:
                ids.append(create_item(db, s, report_id=report_id, blob_key=key, size=args.size_mib << 20,
                                       sha256=digest.hexdigest(), actor="bench").id)
            paths.append(store._object_path(key))
        total = sum(p.stat().st_size for p in paths)
        best_sum = best_fix = 0.0
        for r in range(args.rounds):
            t = time.perf_counter()
            subprocess.run(["sha256sum", *map(str, paths)], check=True, stdout=subprocess.DEVNULL)
            sum_rate = total / MB / (time.perf_counter() - t)
            t = time.perf_counter()
            summary = anyio.run(lambda: fixity.run_async(db, store, actor="bench", item_ids=ids))
            fix_rate = total / MB / (time.perf_counter() - t)
            assert summary.ok == len(ids), summary.as_dict()
            best_sum, best_fix = max(best_sum, sum_rate), max(best_fix, fix_rate)
            print(f"round {r + 1}: sha256sum {sum_rate:,.0f} MB/s  fixity {fix_rate:,.0f} MB/s")
        print(f"{args.files} x {args.size_mib} MiB = {total / MB:,.0f} MB")
        print(f"sha256sum {best_sum:,.0f} MB/s, fixity {best_fix:,.0f} MB/s, ratio {best_fix / best_sum:.2f}")
        db.dispose()
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
