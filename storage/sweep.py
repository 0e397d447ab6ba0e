"""The sweep: remove what crashes leave behind, and never an original a row points to.

A killed worker or server can leave (issue 14 item 5):

* derivative blobs with no ``derivative`` row (stored, then killed before the row
  committed; or a lost race on ``uq_derivative_item_kind``);
* unfinished uploads with no ``upload`` row (the store's upload was created, then the
  process died before the row committed; an interrupted derivative put);
* ``exhibit-job-*`` work directories, each holding a copy of an original.

The sweep lists the store first and reads the rows second, so a row committed while it
lists is seen; and it only takes what is older than the grace period
(``EXHIBIT_SWEEP_GRACE``), so work in flight (a derivative stored, its row about to
commit; a job still running) is never taken. Finished originals are never removed:
one that no row points to is reported for a person to look at. The store itself
refuses to remove a finished object outside the derivatives namespace
(``sweep_remove``), whatever this module decides.

Entry points: ``run`` (``exhibit sweep [--dry-run] --json``, and the worker's
housekeeping round).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import anyio.to_thread
from sqlalchemy import select

from storage.blobs import BlobStore, BlobStoreError
from storage.db import Database
from storage.models import Derivative, EvidenceItem, Upload, utcnow

log = logging.getLogger(__name__)

# The prefix of a processing job's private work directory (processing.pipeline).
WORKDIR_PREFIX = "exhibit-job-"


class Sweepable(Protocol):
    async def sweep_list(self, namespace: str, *, finished: bool) -> list[tuple[str, float]]: ...

    async def sweep_remove(self, key: str, *, finished: bool) -> None: ...


@dataclass
class SweepReport:
    dry_run: bool
    orphan_derivatives: list[str] = field(default_factory=list)
    orphan_uploads: list[str] = field(default_factory=list)
    work_dirs: list[str] = field(default_factory=list)
    unreferenced_originals: list[str] = field(default_factory=list)  # reported, never removed
    errors: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"dry_run": self.dry_run, "orphan_derivatives": self.orphan_derivatives,
                "orphan_uploads": self.orphan_uploads, "work_dirs": self.work_dirs,
                "unreferenced_originals": self.unreferenced_originals, "errors": self.errors,
                "removed": 0 if self.dry_run else
                len(self.orphan_derivatives) + len(self.orphan_uploads) + len(self.work_dirs)}


def _newest_mtime(path: Path) -> float:
    """The newest mtime in a work directory (a running ffmpeg keeps touching its output)."""
    newest = path.stat().st_mtime
    for entry in path.rglob("*"):
        try:
            newest = max(newest, entry.lstat().st_mtime)
        except FileNotFoundError:
            continue
    return newest


def sweep_work_dirs(temp_root: Path, cutoff: float, *, dry_run: bool) -> list[str]:
    removed = []
    for path in sorted(temp_root.glob(f"{WORKDIR_PREFIX}*")):
        try:
            if not path.is_dir() or path.is_symlink() or _newest_mtime(path) >= cutoff:
                continue
        except FileNotFoundError:
            continue
        removed.append(str(path))
        if not dry_run:
            # The input copy inside is read-only (0400); rmtree unlinks, which needs
            # only the directory to be writable.
            shutil.rmtree(path, ignore_errors=True)
    return removed


async def sweep_async(
    db: Database, store: BlobStore, *, grace_seconds: int, temp_root: Path | None, dry_run: bool,
    now: dt.datetime | None = None,
) -> SweepReport:
    report = SweepReport(dry_run=dry_run)
    cutoff = ((now or utcnow()) - dt.timedelta(seconds=grace_seconds)).timestamp()
    sweepable: Sweepable | None = store if hasattr(store, "sweep_list") else None  # type: ignore[assignment]
    if sweepable is not None:
        # The store first, the rows second (see the module docstring).
        derivatives = await sweepable.sweep_list("derivatives", finished=True)
        incoming = [entry for ns in ("originals", "derivatives")
                    for entry in await sweepable.sweep_list(ns, finished=False)]
        originals = await sweepable.sweep_list("originals", finished=True)
        with db.read() as s:
            derivative_keys = set(s.exec(select(Derivative.blob_key)).scalars().all())  # type: ignore[call-overload, attr-defined]
            upload_keys = set(s.exec(select(Upload.blob_key)).scalars().all())  # type: ignore[call-overload, attr-defined]
            item_keys = set(s.exec(select(EvidenceItem.blob_key)).scalars().all())  # type: ignore[call-overload, attr-defined]
        for key, mtime in derivatives:
            if key not in derivative_keys and mtime < cutoff:
                report.orphan_derivatives.append(key)
        for key, mtime in incoming:
            # An unfinished upload an upload row (or an item) names is the upload
            # expiry's business, never the sweep's.
            if key not in upload_keys and key not in item_keys and mtime < cutoff:
                report.orphan_uploads.append(key)
        report.unreferenced_originals = [k for k, _ in originals if k not in item_keys and k not in upload_keys]
        if not dry_run:
            for key in report.orphan_derivatives:
                await _remove(sweepable, key, True, report)
            for key in report.orphan_uploads:
                await _remove(sweepable, key, False, report)
    if temp_root is not None:
        report.work_dirs = await anyio.to_thread.run_sync(
            lambda: sweep_work_dirs(temp_root, cutoff, dry_run=dry_run))
    if report.unreferenced_originals:
        log.warning("sweep.unreferenced_originals", extra={"count": len(report.unreferenced_originals)})
    return report


async def _remove(store: Sweepable, key: str, finished: bool, report: SweepReport) -> None:
    try:
        await store.sweep_remove(key, finished=finished)
    except BlobStoreError as exc:
        report.errors.append(f"{key}: {type(exc).__name__}: {exc}"[:300])


def run(
    db: Database, store_factory: Callable[[], BlobStore], *, grace_seconds: int, temp_root: Path | None,
    dry_run: bool = False, now: dt.datetime | None = None,
) -> SweepReport:
    """Blocking: open the store, sweep, close it."""

    async def main() -> SweepReport:
        store = await anyio.to_thread.run_sync(store_factory)
        try:
            return await sweep_async(db, store, grace_seconds=grace_seconds, temp_root=temp_root, dry_run=dry_run,
                                     now=now)
        finally:
            await store.close()

    return asyncio.run(main())


def default_temp_root() -> Path:
    """Where the worker makes its work directories (``tempfile``: TMPDIR, else /tmp)."""
    import tempfile

    return Path(os.path.realpath(tempfile.gettempdir()))
