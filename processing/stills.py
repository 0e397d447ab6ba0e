"""'Save this frame': a still of a video at the exact instant an officer chose, made by the
worker like every other derivative, recorded with its argv (i15 item 5).

The officer's request (``reviewer_ui.stills`` -> ``storage.stills.request_still``)
enqueues a ``save_still`` job with the instant and writes ``item.still_requested``; this module makes the still and writes
``item.still_saved`` with everything a third party needs to make it again (ACPO
principle 3): the copy it was taken from and that copy's SHA-256, the instant, the tool,
its version and the exact argv.

**From the proxy, not the original, and why.** The player shows the proxy, and the
instant the browser reports (the presented frame's media time) is on the proxy's
timeline: taking the still from that same file gives exactly the frame the officer saw.
The original's timeline can differ (edit lists, a start offset, B-frame reordering in a
container we only demux in the sandboxed transcode), so "the same time" there can be a
neighbouring frame. The proxy is also our own clean, metadata-free H.264 file, so no
citizen byte is parsed here. The cost: at most 1080p and one lossy generation; the
original remains downloadable through the audited, reasoned download for full quality.

Hardening (SECURITY_CHECKLIST BF-12..BF-14, BF-18): the same ``video.run`` as every
ffmpeg (argv list, prlimit, timeout, process group, parent-death signal), input forced
to the mov demuxer with ``-protocol_whitelist file,pipe``, no metadata or version tags in
the PNG; the proxy is re-hashed on the way in and must match its row (a changed proxy
is not silently used).
"""

from __future__ import annotations

import hashlib
import shutil
import tempfile
from decimal import Decimal
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from processing import images, video
from processing.pipeline import JobContext, queue_check
from storage import ledger, queue
from storage.models import Derivative, EvidenceItem
from storage.stills import JOB_KIND, SOURCE_KIND, parse_at, still_kind

__all__ = ["JOB_KIND", "run", "still_argv"]

STILL_SECONDS = 120.0


def still_argv(at: Decimal, out_name: str = "still.png") -> list[str]:
    return [
        video._binary("ffmpeg"), "-nostdin", "-hide_banner", "-loglevel", "error",
        *video.input_args("video/mp4"),
        # Input-side seek: with decoding, ffmpeg drops every frame before the instant, so
        # the first frame out is the one whose time is at (or just after) it. The browser
        # sends the presented frame's own time (floored to the microsecond).
        "-ss", str(at), "-i", "file:input",
        "-map", "0:v:0", "-frames:v", "1",
        "-map_metadata", "-1", "-map_chapters", "-1", "-fflags", "+bitexact", "-flags:v", "+bitexact",
        "-f", "image2", "-update", "1", "-c:v", "png",
        "-y", f"file:{out_name}",
    ]


def run(ctx: JobContext) -> str:
    """Make the still the job asks for (idempotent: a still already made stands)."""
    claim = ctx.claim
    assert claim.item_id is not None
    at = parse_at(str((claim.payload or {}).get("at", "")))
    if at is None:
        _done(ctx)
        return "refused"
    kind = still_kind(at)
    with ctx.db.read() as s:
        item = s.get(EvidenceItem, claim.item_id)
        rows = s.exec(select(Derivative).where(Derivative.item_id == claim.item_id)).scalars().all()  # type: ignore[arg-type, call-overload]
    by_kind = {d.kind: d for d in rows}
    proxy = by_kind.get(SOURCE_KIND)
    if item is None or proxy is None or kind in by_kind:
        _done(ctx)
        return "exists" if kind in by_kind else "no proxy"
    workdir = Path(tempfile.mkdtemp(prefix="exhibit-still-", dir=ctx.temp_root))
    try:
        digest = hashlib.sha256()
        with open(workdir / "input", "wb") as f:
            for chunk in ctx.blobs.iter(proxy.blob_key):
                digest.update(chunk)
                f.write(chunk)
        if digest.hexdigest() != proxy.sha256:
            raise video.ToolFailed(f"the stored proxy no longer matches its SHA-256 ({digest.hexdigest()})")
        argv = still_argv(at)
        limit = video.within_budget(STILL_SECONDS, ctx.deadline)
        video.run(argv, cwd=workdir, timeout_seconds=limit, cpu_seconds=max(1, int(limit) * 2),
                  memory_bytes=video.FFMPEG_MEMORY_BYTES, cancelled=ctx.cancel.is_set)
        out = workdir / "still.png"
        if not out.is_file() or out.stat().st_size == 0:
            raise video.ToolFailed(f"no frame at {at} s (past the end of the video?)")
        facts = images.check_decodes(out, "image/png")
        key, sha, size = ctx.blobs.put_file(out)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    detail: dict[str, Any] = {
        "kind": kind, "at_seconds": str(at), "source": SOURCE_KIND, "source_sha256": proxy.sha256,
        "sha256": sha, "size": size, "mime_type": "image/png", "width": facts["width"], "height": facts["height"],
        "tool": "ffmpeg", "tool_version": video.tool_version("ffmpeg"), "argv": argv,
        "requested_by": str((claim.payload or {}).get("requested_by", ""))[:320],
    }
    try:
        with ctx.db.write() as s:
            queue_check(ctx, s)
            s.add(Derivative(item_id=item.id, kind=kind, blob_key=key, mime_type="image/png", size=size, sha256=sha,
                             input_sha256=proxy.sha256, tool="ffmpeg", tool_version=detail["tool_version"][:200],
                             argv=argv, width=facts["width"], height=facts["height"]))
            s.flush()
            ledger.append(ctx.db, s, actor=ctx.actor, action="item.still_saved", subject=f"item:{item.id}",
                          report_id=item.report_id, item_id=item.id, detail=detail)
            queue.complete(ctx.db, s, claim)
    except IntegrityError:  # another worker made it first: theirs stands, ours is an orphan blob
        _done(ctx)
        return "exists"
    return "saved"


def _done(ctx: JobContext) -> None:
    with ctx.db.write() as s:
        queue.complete(ctx.db, s, ctx.claim)
