"""tus 1.0.0 at ``/u/files/``: core, creation, creation-with-upload, termination,
checksum (sha1, sha256), expiration. No concatenation (UP-10), no deferred length
(UP-07), no download (UP-20).

Every request but OPTIONS is authorised against the link (cookie or Bearer), and an
upload of another link is a 404 with no offset disclosed (UP-09). The handler checks
offsets, caps the stream at ``Upload-Length`` and holds the upload's lock; the store only
moves bytes (tusd's division of labour). The database offset is written once per PATCH,
after the store reports the bytes durable.

CORS: none. The upload page is same-origin; no ``Access-Control-Allow-Origin`` is ever
sent, so no other origin can drive these endpoints from a browser (UP-19).
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import email.utils
import hashlib
import hmac
import logging
import re
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable

import anyio
import anyio.to_thread
from sqlmodel import Session
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from storage import uploads
from storage.blobs.protocol import BlobNotFound
from storage.errors import DomainError
from storage.models import Upload, UploadLink, UploadState
from storage.uploads import Refused
from upload_api import ingest, streaming
from upload_api.auth import authorise, current_link, request_id
from upload_api.context import UploadContext
from upload_api.errors import TUS_VERSION
from upload_api.json_body import read_json

log = logging.getLogger("upload_api.tus")

TUS_EXTENSIONS = "creation,creation-with-upload,termination,checksum,expiration"
CHECKSUM_ALGORITHMS = {"sha1": hashlib.sha1, "sha256": hashlib.sha256}
# A PATCH carrying Upload-Checksum is spooled to a temporary file and verified before a
# byte of it counts; this caps that spool (advertised in OPTIONS as
# Exhibit-Max-Checksum-Chunk). Clients send checksums per chunk, typically a few MiB.
MAX_CHECKSUM_CHUNK = 64 << 20
OFFSET_TYPE = "application/offset+octet-stream"
_ID = re.compile(r"[0-9a-f]{32}")
_INT = re.compile(r"[0-9]{1,19}")


def _headers(extra: dict[str, str] | None = None) -> dict[str, str]:
    h = {"Tus-Resumable": TUS_VERSION}
    if extra:
        h.update(extra)
    return h


def _expires(row: Upload) -> dict[str, str]:
    if row.expires_at is None or row.state != UploadState.OPEN:
        return {}
    return {"Upload-Expires": email.utils.format_datetime(row.expires_at, usegmt=True)}


def parse_metadata(header: str) -> dict[str, str]:
    """``Upload-Metadata``: comma-separated ``key base64value`` pairs. Undecodable
    values are dropped; everything decoded is untrusted display data."""
    out: dict[str, str] = {}
    if len(header) > 8192:
        raise DomainError("Upload-Metadata too long", code="ERR_BAD_REQUEST")
    for pair in header.split(","):
        parts = pair.strip().split(" ")
        if not parts or not parts[0]:
            continue
        key = parts[0]
        value = ""
        if len(parts) > 1:
            try:
                value = base64.b64decode(parts[1], validate=True).decode("utf-8", errors="replace")
            except (binascii.Error, ValueError):
                raise DomainError("bad Upload-Metadata", code="ERR_BAD_REQUEST") from None
        out[key[:64]] = value
    return out


def _int_header(request: Request, name: str) -> int | None:
    value = request.headers.get(name)
    if value is None:
        return None
    if not _INT.fullmatch(value.strip()):
        raise DomainError(f"bad {name}", code="ERR_BAD_REQUEST")
    return int(value)


class _Spool:
    """One PATCH body on disk, so its checksum can be verified before any of it is
    appended (UP-08: on mismatch the offset does not move and nothing is written)."""

    def __init__(self, directory: str) -> None:
        self.file = tempfile.TemporaryFile(dir=directory)
        self.size = 0

    async def fill(self, body: AsyncIterator[bytes], algorithm: str, cap: int) -> bytes:
        digest = CHECKSUM_ALGORITHMS[algorithm]()
        buffered: list[bytes] = []
        size = 0

        def flush(parts: list[bytes]) -> None:
            for p in parts:
                digest.update(p)
                self.file.write(p)

        async for chunk in body:
            size += len(chunk)
            if size > cap:
                raise DomainError("checksummed chunk too large", code="ERR_TOO_LARGE")
            buffered.append(chunk)
            if sum(map(len, buffered)) >= 1 << 20:
                parts, buffered = buffered, []
                await anyio.to_thread.run_sync(flush, parts)
        await anyio.to_thread.run_sync(flush, buffered)
        self.size = size
        return digest.digest()

    async def replay(self) -> AsyncIterator[bytes]:
        await anyio.to_thread.run_sync(self.file.seek, 0)
        while True:
            chunk = await anyio.to_thread.run_sync(self.file.read, 1 << 20)
            if not chunk:
                return
            yield chunk

    def close(self) -> None:
        self.file.close()


def _parse_checksum(header: str) -> tuple[str, bytes]:
    algorithm, _, value = header.strip().partition(" ")
    if algorithm not in CHECKSUM_ALGORITHMS:
        raise DomainError("unsupported checksum algorithm", code="ERR_CHECKSUM_ALGORITHM")
    try:
        return algorithm, base64.b64decode(value.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise DomainError("bad Upload-Checksum", code="ERR_BAD_REQUEST") from None


def _load(ctx: UploadContext, link: UploadLink, upload_id: str) -> Upload:
    with ctx.db.read() as session:
        return _load_in(session, link, upload_id)


def _load_in(session: Session, link: UploadLink, upload_id: str) -> Upload:
    row = session.get(Upload, upload_id)
    # UP-09: another link's upload is indistinguishable from one that does not exist.
    if row is None or row.link_id != link.id:
        raise DomainError("no such upload", code="ERR_UPLOAD_NOT_FOUND")
    return row


def _actor(link: UploadLink) -> str:
    return f"citizen:link:{link.id}"


def routes(ctx: UploadContext) -> list[BaseRoute]:
    settings = ctx.settings
    spool_dir = settings.data_dir / "tmp"

    def upload_id_of(request: Request) -> str:
        upload_id = str(request.path_params["upload_id"])
        if not _ID.fullmatch(upload_id):  # UP-11: strict id shape, before any lookup
            raise DomainError("no such upload", code="ERR_UPLOAD_NOT_FOUND")
        return upload_id

    async def options(request: Request) -> Response:
        return Response(status_code=204, headers=_headers({
            "Tus-Version": TUS_VERSION,
            "Tus-Extension": TUS_EXTENSIONS,
            "Tus-Max-Size": str(settings.max_file_bytes),
            "Tus-Checksum-Algorithm": ",".join(CHECKSUM_ALGORITHMS),
            "Exhibit-Max-Checksum-Chunk": str(MAX_CHECKSUM_CHUNK),
        }))

    async def receive(request: Request, link: UploadLink, row: Upload, offset: int, rid: str | None) -> Upload:
        """Append the request body at ``offset`` (lock held, offset checked); returns the
        updated row. Raises what stopped the body, after the bytes that arrived were
        kept (client gone, stall, too long) or deleted (a refused type)."""
        assert row.length is not None
        blob = await streaming.blob_for(ctx, row)
        length_header = _int_header(request, "content-length")
        if length_header is not None and offset + length_header > row.length:
            raise streaming.LengthExceeded()  # UP-07: refused before a byte is read
        body: AsyncIterator[bytes] = streaming.guarded_body(request.receive, settings.upload_idle_timeout_seconds)
        progress = streaming.Progress(offset, row.detected_type)
        checksum = request.headers.get("upload-checksum")
        error: Exception | None = None  # what stopped the body, raised once its bytes are recorded
        try:
            with contextlib.ExitStack() as stack:
                if checksum is not None:
                    algorithm, expected = _parse_checksum(checksum)
                    spool_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
                    spool = stack.enter_context(contextlib.closing(_Spool(str(spool_dir))))
                    got = await spool.fill(body, algorithm, min(MAX_CHECKSUM_CHUNK, row.length - offset + 1))
                    if not hmac.compare_digest(got, expected):
                        raise DomainError("checksum mismatch", code="ERR_CHECKSUM_MISMATCH")
                    body = spool.replay()
                await streaming.append(ctx, row, blob, progress, body, cap=row.length, final=False)
        except Refused as refusal:
            if not isinstance(refusal, streaming.LengthExceeded):
                # A refused type: its bytes go, the upload ends (never evidence).
                await ingest.close_upload(ctx, row.id, UploadState.REFUSED, actor=_actor(link), request_id=rid,
                                          detail={"reason": refusal.code})
                raise
            # Too long: the bytes inside Upload-Length are kept (and may complete it).
            error = refusal
        except (ClientDisconnect, OSError):
            pass  # nobody is listening any more: what arrived is kept for the resume
        except Exception as exc:
            error = exc  # a stall, a store error: what arrived is kept for the resume
        await advance(link, row, progress, rid)
        if error is not None:
            raise error
        return row

    async def advance(link: UploadLink, row: Upload, progress: streaming.Progress, rid: str | None) -> None:
        """Record the bytes a PATCH stored; the last byte completes the upload."""
        if progress.offset == row.length:
            # No progress write first: completion records the final offset and type in its
            # own transaction (or, refused, in the refusal's), and the store is the truth
            # about offsets meanwhile (HEAD asks it). One write transaction fewer per
            # upload on SQLite's single writer (issue 16 item 3: a surge of completions).
            await ingest.complete(ctx, row.id, actor=_actor(link), request_id=rid)
            row.state = UploadState.COMPLETE
        else:
            ingest.note_progress(ctx, row, progress.offset, progress.detected_type)
            row.expires_at = ingest.expires_from_now(ctx)
        row.offset = progress.offset

    async def create(request: Request) -> Response:
        link, _report = await current_link(request, ctx)
        rid = request_id(request)
        if request.headers.get("upload-defer-length") is not None:
            raise DomainError("deferred length is not supported", code="ERR_BAD_REQUEST")
        if request.headers.get("upload-concat") is not None:
            raise DomainError("concatenation is not supported", code="ERR_BAD_REQUEST")
        length = _int_header(request, "upload-length")
        if length is None:
            raise DomainError("Upload-Length is required", code="ERR_BAD_REQUEST")
        if length > settings.max_file_bytes:
            raise Refused("file too large", code="ERR_TOO_LARGE")
        meta = parse_metadata(request.headers.get("upload-metadata", ""))
        submission_id = meta.get("submission", "")
        if not submission_id:
            raise DomainError("Upload-Metadata must name the submission", code="ERR_BAD_REQUEST")
        has_body = request.headers.get("content-type", "").split(";")[0].strip() == OFFSET_TYPE
        row = await ingest.open_upload(
            ctx, link.id, submission_id=submission_id, length=length,
            filename=meta.get("filename", ""), filetype=meta.get("filetype", ""),
            actor=_actor(link), request_id=rid,
        )
        location = f"/u/files/{row.id}"
        extra: dict[str, str] = {"Location": location}
        if has_body:
            async with ctx.locker.hold(row.id) as mine:
                assert mine  # nobody else knows this id yet
                try:
                    row = await receive(request, link, row, 0, rid)
                except streaming.LengthExceeded:
                    pass  # the upload exists (201) with the bytes inside its length
            extra["Upload-Offset"] = str(row.offset)
        return Response(status_code=201, headers=_headers({**extra, **_expires(row)}))

    async def head(request: Request) -> Response:
        upload_id = upload_id_of(request)
        link, _report, row = await authorise(request, ctx, lambda s, lk: _load_in(s, lk, upload_id))
        assert row is not None
        if row.state == UploadState.COMPLETE:
            offset = row.offset
        elif row.state != UploadState.OPEN:
            raise DomainError("upload is gone", code="ERR_UPLOAD_NOT_FOUND")
        else:
            try:
                info = await (await streaming.blob_for(ctx, row)).info()
            except BlobNotFound:
                raise DomainError("upload is gone", code="ERR_UPLOAD_NOT_FOUND") from None
            offset = info.offset
            if offset == row.length:
                # All bytes are durable but completion did not commit (a crash between
                # the two): complete now, so a client that sees "done" is right.
                async with ctx.locker.hold(upload_id) as mine:
                    if mine:
                        await ingest.complete(ctx, upload_id, actor=_actor(link), request_id=request_id(request))
        return Response(status_code=200, headers=_headers({
            "Upload-Offset": str(offset),
            "Upload-Length": str(row.length),
            **_expires(row),
        }))

    async def patch(request: Request) -> Response:
        upload_id = upload_id_of(request)
        if request.headers.get("content-type", "").split(";")[0].strip() != OFFSET_TYPE:
            raise DomainError("Content-Type must be application/offset+octet-stream", code="ERR_CONTENT_TYPE")
        offset = _int_header(request, "upload-offset")
        if offset is None:
            raise DomainError("Upload-Offset is required", code="ERR_BAD_REQUEST")
        rid = request_id(request)
        # Authorised before the lock is asked for (AC-01, UP-09): a request that is not
        # the link's own learns nothing, not even that someone is writing this upload
        # (a 423 to a stranger would be an oracle on upload ids and on activity), and it
        # cannot hold or probe another citizen's lock. The row read here may be overtaken
        # by a writer that finishes before we hold the lock; under the lock the store is
        # the truth about the offset, and completion re-checks the row and the link.
        link, _report, loaded = await authorise(request, ctx, lambda s, lk: _load_in(s, lk, upload_id))
        async with ctx.locker.hold(upload_id) as mine:
            if not mine:
                raise DomainError("another request is writing this upload", code="ERR_LOCKED")
            assert loaded is not None
            row = loaded
            if row.state == UploadState.COMPLETE:
                raise DomainError("upload is complete", code="ERR_UPLOAD_FINISHED")
            if row.state != UploadState.OPEN:
                raise DomainError("upload is gone", code="ERR_UPLOAD_NOT_FOUND")
            try:
                info = await (await streaming.blob_for(ctx, row)).info()
            except BlobNotFound:
                raise DomainError("upload is gone", code="ERR_UPLOAD_NOT_FOUND") from None
            if offset != info.offset:
                # UP-06: nothing written; the client asks HEAD and resumes from there.
                raise DomainError("Upload-Offset does not match", code="ERR_OFFSET_MISMATCH")
            if info.offset == row.length:
                await ingest.complete(ctx, upload_id, actor=_actor(link), request_id=rid)
                return Response(status_code=204, headers=_headers({"Upload-Offset": str(info.offset)}))
            row = await receive(request, link, row, offset, rid)
        return Response(status_code=204, headers=_headers({"Upload-Offset": str(row.offset), **_expires(row)}))

    async def delete(request: Request) -> Response:
        upload_id = upload_id_of(request)
        link, _report = await current_link(request, ctx)
        async with ctx.locker.hold(upload_id) as mine:
            if not mine:
                raise DomainError("another request is writing this upload", code="ERR_LOCKED")
            row = await anyio.to_thread.run_sync(_load, ctx, link, upload_id)
            if row.state == UploadState.COMPLETE:
                # UP-12: evidence is never deleted through the upload door.
                raise DomainError("a completed upload cannot be deleted", code="ERR_UPLOAD_FINISHED")
            if row.state != UploadState.OPEN:
                raise DomainError("upload is gone", code="ERR_UPLOAD_NOT_FOUND")
            await ingest.close_upload(ctx, upload_id, UploadState.TERMINATED, actor=_actor(link),
                                      request_id=request_id(request), detail={"reason": "client"})
        return Response(status_code=204, headers=_headers())

    async def client_sha256(request: Request) -> Response:
        upload_id = upload_id_of(request)
        link, _report = await current_link(request, ctx)
        raw = await read_json(request, limit=4096)
        value = raw.get("sha256") if isinstance(raw, dict) else None
        result = await anyio.to_thread.run_sync(
            lambda: uploads.record_client_sha256(
                ctx.db, link, upload_id, str(value or ""), actor=_actor(link), request_id=request_id(request)
            )
        )
        return JSONResponse(result)

    handlers: dict[str, Callable[[Request], Awaitable[Response]]] = {
        "POST": create, "HEAD": head, "PATCH": patch, "DELETE": delete,
    }

    async def tus(request: Request) -> Response:
        """The tus handler as one unit, as tusd's ``unrouted_handler.go``: OPTIONS
        answers the discovery request of any client; every other method must speak
        our version of the protocol (412 otherwise) before anything else is read."""
        if request.method == "OPTIONS":
            return await options(request)
        if request.headers.get("tus-resumable") != TUS_VERSION:
            raise DomainError("unsupported tus version", code="ERR_TUS_VERSION")
        return await handlers[request.method](request)

    return [
        Route("/u/files/", tus, methods=["OPTIONS", "POST"]),
        Route("/u/files/{upload_id}", tus, methods=["HEAD", "PATCH", "DELETE", "OPTIONS"]),
        Route("/u/files/{upload_id}/client-sha256", client_sha256, methods=["POST"]),
    ]
