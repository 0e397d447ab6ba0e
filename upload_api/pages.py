"""The citizen pages: the upload page, its JSON helpers, the receipt and the status page.

HTTP only: parse, call ``storage``, shape the response. The page
is a plain multipart form (``POST /u/submit``, served by ``upload_api.multipart``) that
``static/upload.js`` enhances into resumable tus uploads; everything here works with
JavaScript off.

Routes:
  GET  /u/                          the upload page (needs the upload session)
  POST /u/submission                JSON: statement + declaration -> a submission
  GET  /u/submission/{id}           JSON: one of this link's submissions (to continue it)
  GET  /u/receipt/{status_token}    the receipt (no session needed: the token is the key)
  GET  /u/status/{status_token}     the status page
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import logging
from typing import Any

import anyio.to_thread
from sqlmodel import col, select
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import BaseRoute, Route

from storage import submissions
from storage.errors import DomainError, Invalid, LinkProblem, NotFound
from storage.models import EvidenceItem, Report, UploadLink
from storage.sniff import IMAGE_TYPES, VIDEO_TYPES
from upload_api import auth
from upload_api.context import UploadContext
from upload_api.errors import html_errors
from upload_api.json_body import read_json
from upload_api.tokens import status_token, verify_status_token

log = logging.getLogger("upload_api.pages")

# The declaration the citizen accepts. Its text is templates/declarations/<version>.html;
# a published version is never edited (the submission records which one was accepted):
# write a new file and change this constant.
DECLARATION_VERSION = "2026-11-1"
KNOWN_DECLARATIONS = frozenset({DECLARATION_VERSION})

# tus PATCH size from the page. Chunks keep each request well under reverse-proxy body
# limits and bound what a dropped connection can cost to re-send.
CHUNK_BYTES = 8 << 20
# A statement is at most ~6 KB of text; refuse bigger bodies before parsing them.
MAX_JSON_BYTES = 64 << 10

# File extensions offered by the picker beside the MIME types: phones and desktops do not
# all know the MIME type of HEIC, MKV or MPEG-TS files. Display only: the server sniffs.
ACCEPT_EXTENSIONS = (
    ".jpg", ".jpeg", ".png", ".heic", ".heif", ".webp", ".gif", ".tif", ".tiff",
    ".mp4", ".m4v", ".mov", ".qt", ".3gp", ".3g2", ".avi", ".mkv", ".webm", ".ts", ".mts", ".m2ts",
)
IMAGE_WORDS = "JPEG, PNG, HEIC, WebP, GIF or TIFF"
VIDEO_WORDS = "MP4, MOV, 3GP, AVI, MKV, WebM or MPEG-TS (for example from a dashcam)"

# Field name -> (model limit, required-ness decided by settings or always).
FIELD_LIMITS = {
    "description": 5000,
    "occurred_at": 200,
    "location": 500,
    "contact_name": 200,
    "contact_details": 300,
}
FIELD_MESSAGES = {
    "description": "Describe what the photos or videos show",
    "contact_name": "Enter your name",
    "contact_details": "Enter a phone number or email address",
    "declaration": "Tick the box to confirm the declaration",
}


def accept_attribute() -> str:
    return ",".join([*sorted(IMAGE_TYPES), *sorted(VIDEO_TYPES), *ACCEPT_EXTENSIONS])


def format_bytes(size: int) -> str:
    """Sizes in words a citizen reads: '10 GB', '512 MB', '1.5 GB' (binary units, as
    phones and Windows count them)."""
    if size < 1024:
        return f"{size} byte" if size == 1 else f"{size} bytes"
    value = float(size)
    for unit in ("KB", "MB", "GB", "TB"):
        value /= 1024
        if value < 1024 or unit == "TB":
            text = f"{value:.0f}" if value >= 100 or value == int(value) else f"{value:.1f}".rstrip("0").rstrip(".")
            return f"{text} {unit}"
    raise AssertionError("unreachable")


def format_time(when: dt.datetime) -> str:
    """'14 November 2026 at 17:30 UTC'."""
    when = when.astimezone(dt.UTC)
    return f"{when.day} {when:%B %Y} at {when:%H:%M} UTC"


def human_time(iso: str) -> str:
    """A ledger timestamp ('2026-11-22T04:55:12.123456Z') as '22 November 2026 at
    04:55:12 UTC'."""
    try:
        when = dt.datetime.fromisoformat(iso.replace("Z", "+00:00"))
    except ValueError:
        return iso
    return f"{format_time(when)[:-4]}:{when.astimezone(dt.UTC):%S} UTC"


def link_key(secret: bytes, link_id: str) -> str:
    """Where the page keeps its submission id in localStorage. Derived, not the link id:
    nothing in the page's storage names our internal ids."""
    return hmac.new(secret, b"exhibit-page-storage-v1\n" + link_id.encode(), hashlib.sha256).hexdigest()[:24]


def upload_page_context(ctx: UploadContext, link: UploadLink, report: Report) -> dict[str, Any]:
    """Everything ``upload.html`` needs. Public so another door (the multipart handler)
    could render the form again."""
    files_left = max(0, link.max_files - link.used_files)
    bytes_left = max(0, link.max_bytes - link.used_bytes)
    max_file = min(ctx.settings.max_file_bytes, bytes_left)
    return {
        "report_reference": report.reference,
        "limits": {
            "files_left": files_left,
            "max_file": format_bytes(max_file),
            "max_file_bytes": max_file,
            "bytes_left": format_bytes(bytes_left),
            "bytes_left_bytes": bytes_left,
            "image_words": IMAGE_WORDS,
            "video_words": VIDEO_WORDS,
            "expires": format_time(link.expires_at),
        },
        "accept": accept_attribute(),
        "require_contact": ctx.settings.require_contact,
        "declaration_version": DECLARATION_VERSION,
        "link_key": link_key(ctx.secret, link.id),
        "link_expires_ms": int(link.expires_at.timestamp() * 1000),
        "chunk_bytes": CHUNK_BYTES,
    }


def render(ctx: UploadContext, template: str, status_code: int = 200, **context: Any) -> HTMLResponse:
    return HTMLResponse(ctx.templates.get_template(template).render(**context), status_code=status_code)


class FieldError(Invalid):
    def __init__(self, field: str, message: str, *, code: str) -> None:
        super().__init__(message, code=code)
        self.field = field


def parse_statement(body: Any, *, require_contact: bool) -> dict[str, str]:
    """Validate the statement the page posts. Raises ``FieldError`` naming the first
    field that is wrong, so that the page can put the message beside it."""
    if not isinstance(body, dict):
        raise Invalid("expected a JSON object", code="ERR_BAD_REQUEST")
    values: dict[str, str] = {}
    for name, limit in FIELD_LIMITS.items():
        value = body.get(name, "")
        if not isinstance(value, str):
            raise FieldError(name, f"{name} must be text", code="ERR_BAD_REQUEST")
        if len(value) > limit:
            raise FieldError(name, f"Use {limit} characters or fewer", code="ERR_FIELD_TOO_LARGE")
        values[name] = value
    required = ["description"]
    if require_contact:
        required += ["contact_name", "contact_details"]
    for name in required:
        if not values[name].strip():
            raise FieldError(name, FIELD_MESSAGES[name], code="ERR_FIELD_REQUIRED")
    version = body.get("declaration_version")
    if body.get("declaration") != "accepted" or version not in KNOWN_DECLARATIONS:
        raise FieldError("declaration", FIELD_MESSAGES["declaration"], code="ERR_DECLARATION_REQUIRED")
    values["declaration_version"] = str(version)
    return values


def _citizen_actor(link: UploadLink) -> str:
    return f"citizen:link:{link.id}"


def _received_files(ctx: UploadContext, link: UploadLink, submission_id: str) -> dict[str, Any]:
    with ctx.db.read() as session:
        sub = submissions.submission_of_link(session, link, submission_id)
        rows = session.exec(
            select(EvidenceItem.original_filename, EvidenceItem.size)
            .where(EvidenceItem.submission_id == sub.id)
            .order_by(col(EvidenceItem.received_at))
        ).all()
        return {
            "id": sub.id,
            "reference": sub.reference,
            "status_token": status_token(ctx.secret, sub.id),
            "files": [{"name": name, "size": size} for name, size in rows],
        }


def _load(ctx: UploadContext, token: str, what: str) -> dict[str, Any] | None:
    submission_id = verify_status_token(ctx.secret, token)
    if submission_id is None:
        return None
    try:
        return submissions.receipt(ctx.db, submission_id) if what == "receipt" else submissions.status(ctx.db, submission_id)
    except NotFound:
        return None


def routes(ctx: UploadContext) -> list[BaseRoute]:
    def link_page(request: Request, error: DomainError) -> Response | None:
        if error.code == "ERR_NO_SESSION":
            return render(ctx, "no_session.html", status_code=403)
        if isinstance(error, LinkProblem):
            return auth.link_problem_page(ctx, error)
        return None

    @html_errors(link_page)
    async def upload_page(request: Request) -> Response:
        link, report = await auth.current_link(request, ctx)
        return render(ctx, "upload.html", **upload_page_context(ctx, link, report))

    async def create_submission(request: Request) -> Response:
        link, _report = await auth.current_link(request, ctx)
        body = await read_json(request, limit=MAX_JSON_BYTES, json_content_type=True)
        values = parse_statement(body, require_contact=ctx.settings.require_contact)
        rid = auth.request_id(request)

        def create() -> dict[str, str]:
            with ctx.db.write() as session:
                sub = submissions.create_submission(
                    ctx.db, session, link,
                    description=values["description"],
                    occurred_at=values["occurred_at"],
                    location=values["location"],
                    contact_name=values["contact_name"],
                    contact_details=values["contact_details"],
                    declaration_version=values["declaration_version"],
                    declaration_accepted=True,
                    actor=_citizen_actor(link),
                    request_id=rid,
                )
                return {"id": sub.id, "reference": sub.reference,
                        "status_token": status_token(ctx.secret, sub.id)}

        return JSONResponse(await anyio.to_thread.run_sync(create), status_code=201)

    async def get_submission(request: Request) -> Response:
        link, _report = await auth.current_link(request, ctx)
        info = await anyio.to_thread.run_sync(_received_files, ctx, link, str(request.path_params["id"]))
        return JSONResponse(info)

    async def receipt_page(request: Request) -> Response:
        token = str(request.path_params["token"])
        data = await anyio.to_thread.run_sync(_load, ctx, token, "receipt")
        if data is None:
            return render(ctx, "receipt_missing.html", status_code=404)
        return render(ctx, "receipt.html", receipt=data, token=token, format_bytes=format_bytes,
                      human_time=human_time)

    async def status_page(request: Request) -> Response:
        token = str(request.path_params["token"])
        data = await anyio.to_thread.run_sync(_load, ctx, token, "status")
        if data is None:
            return render(ctx, "receipt_missing.html", status_code=404)
        return render(ctx, "status.html", status=data, token=token, format_bytes=format_bytes)

    return [
        Route("/u/", upload_page, methods=["GET", "HEAD"]),
        Route("/u/submission", create_submission, methods=["POST"]),
        Route("/u/submission/{id}", get_submission, methods=["GET"]),
        Route("/u/receipt/{token}", receipt_page, methods=["GET", "HEAD"]),
        Route("/u/status/{token}", status_page, methods=["GET", "HEAD"]),
    ]
