"""Export bundle throughput against the standard tools, measured in the same run.

    .venv/bin/python benchmarks/export.py [--size-mib 2048] [--files 4]

One report of ``--files`` originals totalling ``--size-mib`` (filesystem store, SQLite):
``exhibit export`` (a real process) against ``zip -0`` of the same files, and
``exhibit verify-bundle`` against ``sha256sum -c`` of the same files. Prints seconds and
ratios (targets, issue 13: both <= 1.2x). Wall-clock on a shared machine: run it alone.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path

from storage import ledger
from storage.blobs.filesystem import FilesystemBlobStore
from storage.db import Database
from storage.migrate import upgrade
from storage.models import EvidenceItem
from storage.reports import create_report

EXHIBIT = str(Path(sys.executable).parent / "exhibit")
BLOCK = os.urandom(1 << 20)


def _timed(argv: list[str], **kw: object) -> float:
    start = time.perf_counter()
    subprocess.run(argv, check=True, capture_output=True, **kw)  # type: ignore[call-overload]
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size-mib", type=int, default=2048)
    parser.add_argument("--files", type=int, default=4)
    args = parser.parse_args()
    per_file = args.size_mib // args.files
    with tempfile.TemporaryDirectory(dir=os.environ.get("TMPDIR")) as tmp:
        root = Path(tmp)
        data = root / "data"
        url = f"sqlite:///{root / 'exhibit.db'}"
        upgrade(url)
        db = Database(url)
        store = FilesystemBlobStore(data / "blobs")
        with db.write() as session:
            report = create_report(db, session, "BENCH/1", "other", title="bench", actor="bench")
        plain = root / "plain"
        plain.mkdir()
        for n in range(args.files):
            digest = hashlib.sha256()

            async def chunks(digest: hashlib._Hash = digest) -> AsyncIterator[bytes]:
                for _ in range(per_file):
                    digest.update(BLOCK)
                    yield BLOCK

            async def put() -> str:
                upload = await store.create("originals", per_file << 20)
                await upload.write(0, chunks())
                await upload.finish()
                return upload.key

            key = asyncio.run(put())
            with db.write() as session:
                session.add(EvidenceItem(report_id=report.id, blob_key=key, size=per_file << 20,
                                         sha256=digest.hexdigest(), original_filename=f"f{n}.bin", state="clean"))
        db.dispose()
        # The same bytes for the baselines: hard links to the stored originals.
        stored = [p for p in (data / "blobs").rglob("*") if p.is_file() and p.stat().st_size == per_file << 20]
        for n, path in enumerate(sorted(stored)):
            os.link(path, plain / f"f{n}.bin")
        env = {**os.environ, "EXHIBIT_DATA_DIR": str(data), "EXHIBIT_DATABASE_URL": url}
        bundle = root / "bundle.zip"
        t_export = _timed([EXHIBIT, "export", "BENCH/1", "--reason", "benchmark", "--out", str(bundle)], env=env)
        t_zip = _timed(["zip", "-0", "-q", str(root / "plain.zip"), *sorted(p.name for p in plain.iterdir())],
                       cwd=plain)
        key_b64 = ledger.public_key_b64(ledger.load_or_create_signing_key(data / "keys" / "ledger-ed25519.pem"))
        t_verify = _timed([EXHIBIT, "verify-bundle", str(bundle), "--public-key", key_b64], env=env)
        subprocess.run("sha256sum * > ../plain.sums", shell=True, cwd=plain, check=True)  # noqa: S602
        t_sums = _timed(["sha256sum", "-c", "--quiet", "../plain.sums"], cwd=plain)
        print(f"{args.size_mib} MiB in {args.files} files")
        print(f"exhibit export        {t_export:7.2f} s   zip -0        {t_zip:7.2f} s   ratio {t_export / t_zip:.2f}")
        print(f"exhibit verify-bundle {t_verify:7.2f} s   sha256sum -c  {t_sums:7.2f} s   ratio {t_verify / t_sums:.2f}")


if __name__ == "__main__":
    main()
