"""``POST /u/submit``: the no-JavaScript form and simple scripts, streamed.

python-multipart's ``MultipartParser`` is driven directly from ``request.stream()``
(never ``request.form()``, which spools file parts with no byte cap: UP-01). Its
callbacks only queue events; this module turns them into: text fields (capped), and
file parts streamed into the same ``ingest`` pipeline as tus (sniff, SHA-256, quotas,
one-transaction completion). Memory stays at one network chunk plus the store's buffer.

Limits (UP-02/UP-03): at most ``MAX_FIELDS`` text fields of ``MAX_FIELD_BYTES`` each,
``MAX_FILES`` file parts, 8 headers of 4 KiB per part, a boundary of at most 70
characters (RFC 2046); each file is capped at the smaller of the file size limit and the
link's remaining byte quota, so a lying or absent Content-Length changes nothing.

Text fields must come before the files (browsers send parts in form order): the
submission, with its declaration, is created when the first file part starts, so no
byte of a file is stored before the declaration was accepted.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import anyio.to_thread
from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from storage import submissions, uploads
from storage.errors import DomainError
from storage.models import Submission, UploadLink, UploadState
from storage.uploads import Refused
from upload_api import ingest, streaming
from upload_api.auth import current_link, request_id
from upload_api.context import UploadContext
from upload_api.errors import citizen_message, html_errors, status_for
from upload_api.tokens import status_token

log = logging.getLogger("upload_api.multipart")

MAX_FIELDS = 20
MAX_FIELD_BYTES = 20_000
MAX_FILES = 100
MAX_BOUNDARY = 70
FIELDS = {"description", "occurred_at", "location", "contact_name", "contact_details", "declaration",
          "declaration_version", "submission"}


@dataclass
class _Part:
    name: str = ""
    filename: str | None = None
    content_type: str = ""
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)


class _Events:
    """Callback sink: the parser is synchronous; its events are queued here and consumed
    by the async driver between ``write`` calls."""

    def __init__(self) -> None:
        self.queue: list[tuple[str, Any]] = []
        self._field = b""
        self._value = b""

    def callbacks(self) -> dict[str, Any]:
        def data(name: str) -> Any:
            def cb(buf: bytes, start: int, end: int) -> None:
                self.queue.append((name, bytes(buf[start:end])))
            return cb

        def header_field(buf: bytes, start: int, end: int) -> None:
            self._field += buf[start:end]

        def header_value(buf: bytes, start: int, end: int) -> None:
            self._value += buf[start:end]

        def header_end() -> None:
            self.queue.append(("header", (self._field.lower(), self._value)))
            self._field, self._value = b"", b""

        return {
            "on_part_begin": lambda: self.queue.append(("begin", None)),
            "on_part_data": data("data"),
            "on_part_end": lambda: self.queue.append(("end", None)),
            "on_header_field": header_field,
            "on_header_value": header_value,
            "on_header_end": header_end,
            "on_headers_finished": lambda: self.queue.append(("headers", None)),
            "on_end": lambda: self.queue.append(("done", None)),
        }


class _Reader:
    def __init__(self, request: Request, parser: MultipartParser, events: _Events, idle_seconds: float) -> None:
        self._stream = streaming.idle_guarded(request.stream(), idle_seconds).__aiter__()
        self.parser = parser
        self.events = events
        self.finished = False

    async def pump(self) -> bool:
        """Feed one network chunk to the parser. False at the end of the body."""
        if self.finished:
            return False
        try:
            chunk = await self._stream.__anext__()
        except StopAsyncIteration:
            self.finished = True
            return False
        if chunk:
            try:
                self.parser.write(chunk)
            except MultipartParseError:
                raise DomainError("malformed multipart body", code="ERR_BAD_REQUEST") from None
        return True

    async def next_event(self) -> tuple[str, Any] | None:
        while not self.events.queue:
            if not await self.pump():
                return None
        return self.events.queue.pop(0)


def _disposition(part: _Part) -> None:
    for name, value in part.headers:
        if name == b"content-disposition":
            _kind, params = parse_options_header(value)
            part.name = params.get(b"name", b"").decode("utf-8", "replace")
            raw = params.get(b"filename")
            part.filename = None if raw is None else raw.decode("utf-8", "replace")
        elif name == b"content-type":
            part.content_type = value.decode("latin-1")[:100]


def _same_origin(request: Request, ctx: UploadContext) -> bool:
    """CSRF (AC-06): the session cookie is SameSite=Strict, and a browser's Origin, when
    sent, must be ours."""
    origin = request.headers.get("origin")
    if origin is None:
        return True
    if origin == "null":
        # Our own Referrer-Policy: no-referrer makes Chromium send "Origin: null" on a
        # same-origin form post. Fetch metadata still tells us where it came from; a
        # cross-site post would also arrive without the SameSite=Strict cookie.
        return request.headers.get("sec-fetch-site") == "same-origin"
    allowed = {_origin(ctx.settings.public_url), _origin(str(request.base_url))}
    return origin.rstrip("/") in allowed


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def _wants_html(request: Request) -> bool:
    return "text/html" in request.headers.get("accept", "")


async def _receive_form(request: Request, ctx: UploadContext, link: UploadLink) -> str:
    """Parse and ingest the whole form; returns the submission id."""
    content_type, params = parse_options_header(request.headers.get("content-type", ""))
    boundary = params.get(b"boundary", b"")
    if content_type != b"multipart/form-data" or not boundary:
        raise DomainError("expected multipart/form-data", code="ERR_CONTENT_TYPE")
    if len(boundary) > MAX_BOUNDARY:
        raise DomainError("boundary too long", code="ERR_BAD_REQUEST")
    events = _Events()
    parser = MultipartParser(boundary, events.callbacks(), max_header_count=8, max_header_size=4096)  # type: ignore[arg-type]
    reader = _Reader(request, parser, events, ctx.settings.upload_idle_timeout_seconds)
    rid = request_id(request)
    actor = f"citizen:link:{link.id}"
    fields: dict[str, str] = {}
    field_count = 0
    file_count = 0
    submission_id: str | None = None
    part = _Part()
    value = bytearray()
    saw_done = False

    async def ensure_submission() -> str:
        nonlocal submission_id
        if submission_id is None:
            submission_id = await anyio.to_thread.run_sync(_submission_for, ctx, link, fields, actor, rid)
        return submission_id

    while True:
        event = await reader.next_event()
        if event is None:
            break
        kind, payload = event
        if kind == "begin":
            part = _Part()
            value = bytearray()
        elif kind == "header":
            part.headers.append(payload)
        elif kind == "headers":
            _disposition(part)
            if part.filename is not None:
                file_count += 1
                if file_count > MAX_FILES:
                    raise DomainError("too many files", code="ERR_TOO_MANY_PARTS")
                sub_id = await ensure_submission()
                await _receive_file(ctx, reader, link, part, sub_id, actor, rid)
            else:
                field_count += 1
                if field_count > MAX_FIELDS:
                    raise DomainError("too many fields", code="ERR_TOO_MANY_PARTS")
        elif kind == "data":
            value += payload
            if len(value) > MAX_FIELD_BYTES:
                raise DomainError("field too large", code="ERR_FIELD_TOO_LARGE")
        elif kind == "end":
            if part.filename is None and part.name in FIELDS:
                fields[part.name] = value.decode("utf-8", "replace")
        elif kind == "done":
            # Whatever follows the closing boundary is not read (UP-03).
            saw_done = True
            break
    if not saw_done:
        raise DomainError("the form was cut off", code="ERR_BAD_REQUEST")
    return await ensure_submission()


def _submission_for(ctx: UploadContext, link: UploadLink, fields: dict[str, str], actor: str, rid: str | None) -> str:
    with ctx.db.write() as session:
        existing = fields.get("submission", "").strip()
        if existing:
            return submissions.submission_of_link(session, link, existing).id
        sub: Submission = submissions.create_submission(
            ctx.db, session, link,
            description=fields.get("description", ""),
            occurred_at=fields.get("occurred_at", ""),
            location=fields.get("location", ""),
            contact_name=fields.get("contact_name", ""),
            contact_details=fields.get("contact_details", ""),
            declaration_version=fields.get("declaration_version") or None,
            declaration_accepted=fields.get("declaration", "").strip() == "accepted",
            actor=actor, request_id=rid,
        )
        return sub.id


async def _receive_file(
    ctx: UploadContext, reader: _Reader, link: UploadLink, part: _Part, submission_id: str,
    actor: str, rid: str | None,
) -> None:
    """Stream one file part through the pipeline, to its end."""
    if not part.filename:
        # A file input left empty: browsers send a part with an empty filename and no
        # bytes. Anything else there is refused.
        while True:
            event = await reader.next_event()
            if event is None or event[0] == "end":
                return
            if event[0] == "data" and event[1]:
                raise DomainError("file part without a name", code="ERR_BAD_REQUEST")
    cap = min(ctx.settings.max_file_bytes, await anyio.to_thread.run_sync(uploads.remaining_bytes_of, ctx.db, link.id))
    row = await ingest.open_upload(
        ctx, link.id, submission_id=submission_id, length=None, filename=part.filename,
        filetype=part.content_type, actor=actor, request_id=rid,
    )
    ended = False

    async def body() -> AsyncIterator[bytes]:
        nonlocal ended
        while True:
            event = await reader.next_event()
            if event is None:
                return  # cut off: ``ended`` stays False
            kind, payload = event
            if kind == "data":
                yield payload
            elif kind == "end":
                ended = True
                return

    blob = await streaming.blob_for(ctx, row)
    progress = streaming.Progress(0)
    try:
        try:
            # One byte past the cap is read so that "too large" is told apart from "exactly
            # the cap"; that byte is never kept (the upload is refused and deleted).
            await streaming.append(ctx, row, blob, progress, body(), cap=cap + 1, final=True)
            too_large = progress.offset > cap
        except streaming.LengthExceeded:
            too_large = True
        if too_large:
            code = "ERR_TOO_LARGE" if cap == ctx.settings.max_file_bytes else "ERR_QUOTA_BYTES"
            raise Refused("file too large", code=code)
        if not ended:
            raise DomainError("the form was cut off", code="ERR_BAD_REQUEST")
        if progress.offset == 0:
            raise Refused("empty file", code="ERR_EMPTY_FILE")
        await ingest.save_progress(ctx, row.id, progress.offset, progress.detected_type)
        await ingest.complete(ctx, row.id, actor=actor, request_id=rid)
    except BaseException as exc:
        # Nothing incomplete becomes evidence: the partial bytes are deleted.
        with anyio.CancelScope(shield=True):
            reason = exc.code if isinstance(exc, DomainError) else "incomplete"
            await ingest.close_upload(ctx, row.id, UploadState.REFUSED, actor=actor, request_id=rid,
                                      detail={"reason": reason})
        raise


def routes(ctx: UploadContext) -> list[BaseRoute]:
    def error_page(request: Request, error: DomainError) -> Response | None:
        # The no-JavaScript form reads errors as a page in plain words; scripts get JSON.
        if not _wants_html(request):
            return None
        words, what_to_do = citizen_message(error.code)
        body = ctx.templates.get_template("upload_error.html").render(message=words, what_to_do=what_to_do)
        return HTMLResponse(body, status_code=status_for(error))

    @html_errors(error_page)
    async def submit(request: Request) -> Response:
        if not _same_origin(request, ctx):
            raise DomainError("cross-origin form post refused", code="ERR_CROSS_ORIGIN")
        link, _report = await current_link(request, ctx)
        submission_id = await _receive_form(request, ctx, link)
        token = status_token(ctx.secret, submission_id)
        if _wants_html(request):
            return RedirectResponse(f"/u/receipt/{token}", status_code=303)
        data = await anyio.to_thread.run_sync(submissions.receipt, ctx.db, submission_id)
        return JSONResponse({**data, "status_token": token}, status_code=201)

    return [Route("/u/submit", submit, methods=["POST"])]
