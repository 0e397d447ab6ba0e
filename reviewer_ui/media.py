"""Media through the app: derivatives with HTTP Range for the viewer, and the original
only as an audited download (DESIGN.md §4 "Review"; SECURITY_CHECKLIST VL-01..VL-08).

* The browser never gets a storage URL: every byte comes from ``store.read`` behind the
  authorisation check of *this* request (``permissions.require_item``), so a revoked
  share or a removed assignment stops the next Range request (AC-03).
* Only our own re-encoded derivatives are served inline, with the Content-Type from
  our Derivative row (never from the client or the original) and only when that type is
  on a short inline allowlist; originals are ``Content-Disposition: attachment`` with
  ``application/octet-stream`` and a sandbox CSP (VL-04, VL-06).
* Every media response: ``Cache-Control: no-store``, ``nosniff``,
  ``Cross-Origin-Resource-Policy: same-origin``; a cross-site load (``Sec-Fetch-Site:
  cross-site``) is refused like any other denial (VL-05).
* Items not in a viewable state (infected, unscannable, rejected, still processing...)
  have no media at all: the request is a denial (404 + ``access.denied``).
* Audit (AU-03, AU-10; ``reviewer_ui.coverage``): every read of evidence bytes is covered
  by a custody event, whatever its Range. A session's first read of an item's preview or
  proxy writes ``media.stream`` (later segments of the same playback do not: a seek would
  otherwise write one event per second of video); a thumbnail or poster is covered by
  the audited page view that showed it, and audited itself when fetched without one.
  The event is written before the first byte is sent; if it cannot be written the
  request fails (AU-10).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import AsyncIterator
from dataclasses import dataclass
from urllib.parse import quote

from sqlalchemy import and_
from sqlmodel import col, select
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from reviewer_ui import audit, context, coverage, permissions, stepup
from reviewer_ui.ranges import ByteRange, Unsatisfiable, parse_range
from storage import stills
from storage.blobs.protocol import BlobNotFound, BlobStore, BlobStoreError
from storage.lifecycle import VIEWABLE
from storage.models import Derivative, EvidenceItem, Report

MEDIA_KINDS = frozenset({"thumbnail", "preview", "full", "poster", "proxy"})
# Types a browser may render inline from us. Anything else a derivative row claims is
# refused: an HTML or SVG "derivative" must never reach the page's origin (VL-04).
INLINE_TYPES = frozenset({"image/jpeg", "image/png", "image/webp", "video/mp4", "video/webm"})
REASON_MIN, REASON_MAX = 10, 500

MEDIA_HEADERS = {
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "Cross-Origin-Resource-Policy": "same-origin",
}


class MediaUnavailable(Exception):
    """The blob behind a derivative or original is missing or the store failed."""


@dataclass(frozen=True)
class MediaTarget:
    item: EvidenceItem
    key: str
    size: int
    mime_type: str
    etag: str


def _refuse_cross_site(request: Request, item_id: str) -> None:
    # A page on another site embedding <video src=...> would ride the officer's cookie
    # (SameSite=Strict already drops it; this is the second lock, VL-05).
    if request.headers.get("sec-fetch-site", "") == "cross-site":
        raise permissions.Denied(f"item:{item_id[:64]}", reason="media.cross_site")


def _derivative_target(request: Request, item_id: str, kind: str) -> MediaTarget | None:
    ctx = context.get(request)
    with ctx.db.read() as session:
        # The item, its report and the derivative in one statement: a video seek pays
        # this on every Range request, and each statement is a round trip on PostgreSQL.
        # Nothing loaded here is used before require_item has said yes.
        found = session.exec(
            select(EvidenceItem, Report, Derivative)
            .join(Report, col(Report.id) == col(EvidenceItem.report_id))
            .outerjoin(Derivative, and_(col(Derivative.item_id) == col(EvidenceItem.id), col(Derivative.kind) == kind))
            .where(col(EvidenceItem.id) == item_id)
        ).first() if len(item_id) <= 64 else None
        item = permissions.require_item(request, session, item_id, "item.media")
        if item.state not in VIEWABLE:
            # Infected, unscannable, rejected, failed, unfinished: no bytes of any kind.
            raise permissions.Denied(f"item:{item.id}", report_id=item.report_id, item_id=item.id,
                                     reason=f"media.state.{item.state}")
        row = found[2] if found is not None else None
    if row is None or row.mime_type not in INLINE_TYPES:
        return None
    return MediaTarget(item=item, key=row.blob_key, size=row.size, mime_type=row.mime_type, etag=f'"{row.sha256}"')


async def _primed(store: BlobStore, key: str, start: int, end_exclusive: int) -> AsyncIterator[bytes]:
    """Open the stream and read its first chunk *before* the status line goes out, so a
    missing blob is a clean error response rather than a truncated 200."""
    iterator = store.read(key, start, end_exclusive)
    try:
        first = await anext(iterator)
    except StopAsyncIteration:
        first = b""
    except BlobNotFound as exc:
        raise MediaUnavailable("blob missing") from exc
    except BlobStoreError as exc:
        raise MediaUnavailable("blob store failed") from exc

    async def rest() -> AsyncIterator[bytes]:
        if first:
            yield first
        async for chunk in iterator:
            yield chunk

    return rest()


def _if_range_allows(request: Request, etag: str) -> bool:
    if_range = request.headers.get("if-range")
    return if_range is None or if_range.strip() == etag


@dataclass(frozen=True)
class Plan:
    """What to answer for one media request, decided before any byte is read."""

    status: int
    headers: dict[str, str]
    start: int
    end_exclusive: int
    audited: bool  # a read this session is not yet covered for: its custody event is written first


def _plan(request: Request, target: MediaTarget, kind: str) -> Plan:
    size = target.size
    header = request.headers.get("range")
    rng = parse_range(header, size) if _if_range_allows(request, target.etag) else None
    headers = dict(MEDIA_HEADERS)
    headers.update({"Accept-Ranges": "bytes", "ETag": target.etag, "Content-Disposition": "inline"})
    if isinstance(rng, Unsatisfiable):
        headers["Content-Range"] = rng.content_range(size)
        return Plan(416, headers, 0, 0, audited=False)
    if isinstance(rng, ByteRange):
        start, end_exclusive, status = rng.start, rng.end + 1, 206
        headers["Content-Range"] = rng.content_range(size)
    else:
        start, end_exclusive, status = 0, size, 200
    headers["Content-Length"] = str(end_exclusive - start)
    # Not "start == 0": "Range: bytes=1-" took all but one byte unaudited. Any read that
    # sends bytes and is not yet covered for this session, item and kind is audited.
    sends_bytes = request.method != "HEAD" and end_exclusive > start
    audited = sends_bytes and not coverage.is_covered(request, target.item.id, kind)
    return Plan(status, headers, start, end_exclusive, audited=audited)


def _prepare(request: Request, item_id: str, kind: str) -> tuple[MediaTarget, Plan] | None:
    """Authorise, plan and (for a stream start) write the custody event, in one worker
    thread call: each hop off the event loop costs a thread wake-up, and a video seek
    pays this on every Range request."""
    target = _derivative_target(request, item_id, kind)
    if target is None:
        return None
    plan = _plan(request, target, kind)
    if plan.audited:
        # Written before the first byte is sent; if it cannot be, nothing is (AU-10).
        audit.record_sync(context.get(request), request, "media.stream", report_id=target.item.report_id,
                          item_id=target.item.id,
                          detail={"kind": kind, "range": (request.headers.get("range") or "")[:60]})
        coverage.mark(request, target.item.id, kind)
    return target, plan


async def stream_media(request: Request, target: MediaTarget, plan: Plan) -> Response:
    """Answer a GET/HEAD for ``target`` as planned: 200, 206 or 416 (one range at most)."""
    ctx = context.get(request)
    if plan.status == 416:
        return Response(b"", status_code=416, headers=plan.headers)
    if request.method == "HEAD" or plan.end_exclusive <= plan.start:
        body = None if request.method == "HEAD" else b""
        return Response(body, status_code=plan.status, headers=plan.headers, media_type=target.mime_type)
    try:
        stream = await _primed(ctx.store, target.key, plan.start, plan.end_exclusive)
    except MediaUnavailable:
        return Response("media unavailable", status_code=503, headers=dict(MEDIA_HEADERS), media_type="text/plain")
    return StreamingResponse(stream, status_code=plan.status, headers=plan.headers, media_type=target.mime_type)


async def derivative(request: Request) -> Response:
    ctx = context.get(request)
    item_id = request.path_params["item_id"]
    kind = request.path_params["kind"]
    _refuse_cross_site(request, item_id)
    if kind not in MEDIA_KINDS and not stills.is_still_kind(kind):
        # Checked before the item: an unknown kind says nothing about it. The 404 page
        # still shows who is signed in (one hop for the session alone).
        await ctx.check_session()
        return permissions.not_found_response(request)
    prepared = await ctx.run_sync(_prepare, request, item_id, kind)
    if prepared is None:
        return permissions.not_found_response(request)
    return await stream_media(request, *prepared)


# --- the original, as a download with a reason -------------------------------------------


# The download's suffix comes from the type we sniffed from the bytes, never from the
# citizen's name (BF-15, i12): "photo.html.jpg" sniffed as JPEG downloads as .jpg, and a
# name cut for length can never end on a suffix the file does not have.
SUFFIX_BY_TYPE = {
    "image/jpeg": ".jpg", "image/png": ".png", "image/heic": ".heic", "image/heif": ".heif",
    "image/webp": ".webp", "image/gif": ".gif", "image/tiff": ".tif",
    "video/mp4": ".mp4", "video/quicktime": ".mov", "video/3gpp": ".3gp", "video/x-msvideo": ".avi",
    "video/x-matroska": ".mkv", "video/webm": ".webm", "video/mp2t": ".ts",
}
UNKNOWN_SUFFIX = ".bin"  # not sniffed as an allowed type: a suffix no program opens as a document
STEM_MAX = 150


def download_name(filename: str, detected_type: str | None) -> str:
    """The citizen's name with its last suffix replaced by the sniffed type's, the stem
    shortened to ``STEM_MAX`` characters (control characters removed)."""
    cleaned = "".join(ch for ch in filename if unicodedata.category(ch)[0] != "C")
    stem, dot, _suffix = cleaned.rpartition(".")
    if not dot:
        stem = cleaned
    return stem[:STEM_MAX] + SUFFIX_BY_TYPE.get(detected_type or "", UNKNOWN_SUFFIX)


def attachment_disposition(filename: str, fallback: str, detected_type: str | None = None) -> str:
    """``attachment`` with an ASCII-only quoted name and the real name in RFC 5987 form
    (SECURITY_CHECKLIST BF-15): quotes, CR/LF, ``;`` and bidi controls from a citizen's
    filename can neither break the header nor disguise the extension; the stem is
    shortened and the suffix is the sniffed type's (``download_name``)."""
    suffix = SUFFIX_BY_TYPE.get(detected_type or "", UNKNOWN_SUFFIX)
    cleaned = download_name(filename, detected_type)
    stem = cleaned[: -len(suffix)]
    ascii_stem = re.sub(r"[^A-Za-z0-9._-]", "_", unicodedata.normalize("NFKD", stem).encode("ascii", "ignore").decode())
    ascii_stem = ascii_stem.strip("._") or fallback
    value = f'attachment; filename="{ascii_stem}{suffix}"'
    value += f"; filename*=UTF-8''{quote(cleaned, safe='')}"
    return value


async def download_original(request: Request) -> Response:
    ctx = context.get(request)
    item_id = request.path_params["item_id"]
    form = await request.form()
    reason = str(form.get("reason") or "").strip()
    with_reason = REASON_MIN <= len(reason) <= REASON_MAX

    def load() -> EvidenceItem:
        with ctx.db.read() as session:
            return permissions.require_item(request, session, item_id, "item.download")

    item = await ctx.run_sync(load)
    if not with_reason:
        from reviewer_ui.items import item_page  # one module renders the item page

        return await item_page(request, download_error=f"Give a reason of {REASON_MIN} to {REASON_MAX} characters.",
                               status_code=400)
    # Step-up (AC-13): a stolen or unattended session alone cannot take an original away;
    # a fresh TOTP code is asked for. The form (the reason) is held in the code page, and
    # the download is carried out in the request that brings the code (i15 item 5: the
    # reason was lost on the way through /reauth and nothing downloaded).
    held = {k: str(v) for k, v in form.items()}
    gate = await stepup.gate(request, held, what=f"download the original of {item.original_filename or item.id}, "
                                                 f"with the reason: {reason}",
                             cancel=f"/items/{item.id}#original", why="Downloading an original")
    if isinstance(gate, Response):
        return gate
    # The event (with the reason) is written before a byte leaves (AU-10, ACPO P2).
    await audit.record(ctx, request, "item.original_downloaded", report_id=item.report_id, item_id=item.id,
                       detail={"reason": reason, "sha256": item.sha256, "size": item.size})
    try:
        body = await _primed(ctx.store, item.blob_key, 0, item.size)
    except MediaUnavailable:
        return Response("original unavailable", status_code=503, headers=dict(MEDIA_HEADERS), media_type="text/plain")
    headers = dict(MEDIA_HEADERS)
    headers.update({
        "Content-Disposition": attachment_disposition(item.original_filename, f"exhibit-{item.id}", item.detected_type),
        "Content-Length": str(item.size),
        # Raw citizen bytes: even opened as a document they can run nothing (VL-04).
        "Content-Security-Policy": "sandbox; default-src 'none'",
    })
    return stepup.finish(StreamingResponse(body, status_code=200, headers=headers, media_type="application/octet-stream"),
                         request, gate)


def routes() -> list[Route]:
    return [
        Route("/items/{item_id}/media/{kind}", derivative, methods=["GET", "HEAD"], name="item_media"),
        Route("/items/{item_id}/original", download_original, methods=["POST"], name="item_original"),
    ]
