"""The one error path of the public door: one table from domain error code to HTTP
status, the citizen-readable wording, one JSON error shape, and the Starlette exception
handlers that turn every error raised by a handler into a response
(``EXCEPTION_HANDLERS``, given to the app by ``upload_api.app``).

Domain code raises ``storage.errors.DomainError`` subclasses with stable codes; only this
module knows what HTTP status each one becomes. Handlers raise and never build an error
response themselves.

The JSON shape (documented in ``/api/v1/openapi.json`` as ``Error``)::

    {"error": {"code": "ERR_...", "message": "...", "what_to_do": "...", "field": "..."}}

``code`` is stable; ``message`` and ``what_to_do`` are sentences a citizen can read
(``what_to_do`` may be empty); ``field`` only names the form field a ``FieldError`` is
about. Under ``/u/files/`` every answer also carries ``Tus-Resumable``.

Citizen-facing HTML pages keep plain-words pages: a page endpoint decorated with
``html_errors(render)`` has its errors rendered by ``render`` instead.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from sqlalchemy.exc import OperationalError
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response

from storage.blobs.protocol import BlobStoreError
from storage.db import is_transient
from storage.errors import DomainError

log = logging.getLogger("upload_api.errors")

TUS_VERSION = "1.0.0"
TUS_PREFIX = "/u/files/"

STATUS: dict[str, int] = {
    "ERR_INVALID": 400,
    "ERR_ABOVE_LIMIT": 400,
    "ERR_BAD_REQUEST": 400,
    "ERR_DECLARATION_REQUIRED": 400,
    "ERR_EMPTY_FILE": 400,
    "ERR_CHECKSUM_ALGORITHM": 400,
    "ERR_TOO_MANY_PARTS": 400,
    "ERR_FIELD_REQUIRED": 400,
    "ERR_FIELD_TOO_LARGE": 413,
    "ERR_NO_SESSION": 401,
    # CSRF (AC-06): a form posted from another origin.
    "ERR_CROSS_ORIGIN": 403,
    "ERR_API_KEY": 401,
    "ERR_NOT_FOUND": 404,
    "ERR_UPLOAD_NOT_FOUND": 404,
    "ERR_SUBMISSION_NOT_FOUND": 404,
    "ERR_REPORT_NOT_FOUND": 404,
    "ERR_LINK_NOT_FOUND": 404,
    "ERR_LINK_UNKNOWN": 404,
    # A stall is not the end of an upload (issue 17.3). UP-05 cuts off a body that stops
    # arriving, but the answer must be one that resumable clients retry: tus-js-client and
    # Uppy treat every 4xx except 409/423/429 as final, so 408 killed a phone's upload
    # after a minute in a tunnel. tusd answers its read timeout with 500 for this reason;
    # the bytes that arrived are kept and the retry resumes from them.
    "ERR_IDLE_TIMEOUT": 500,
    "ERR_LINK_EXPIRED": 410,
    "ERR_LINK_REVOKED": 410,
    "ERR_LINK_EXHAUSTED": 410,
    "ERR_UPLOAD_GONE": 410,
    "ERR_UPLOAD_FINISHED": 403,
    "ERR_OFFSET_MISMATCH": 409,
    "ERR_CONFLICT": 409,
    "ERR_REPORT_EXISTS": 409,
    # The intake API's owner and unit fields (issue 15 item 1).
    "ERR_OWNER_UNKNOWN": 422,
    "ERR_UNIT_NOT_ALLOWED": 403,
    "ERR_UNIT_INVALID": 400,
    "ERR_REFERENCE_INVALID": 400,
    "ERR_KIND_INVALID": 400,
    "ERR_TUS_VERSION": 412,
    "ERR_TOO_LARGE": 413,
    "ERR_QUOTA_BYTES": 413,
    "ERR_QUOTA_FILES": 413,
    "ERR_LENGTH_EXCEEDED": 413,
    "ERR_CONTENT_TYPE": 415,
    "ERR_UNSUPPORTED_TYPE": 415,
    "ERR_LOCKED": 423,
    "ERR_RATE_LIMITED": 429,
    "ERR_CHECKSUM_MISMATCH": 460,
    "ERR_STORAGE": 503,
    "ERR_BUSY": 503,
}

# How long a client is asked to wait before retrying after ERR_BUSY.
BUSY_RETRY_AFTER = "5"

# What a citizen reads, and what they can do about it (no jargon, no codes).
CITIZEN: dict[str, tuple[str, str]] = {
    "ERR_UNSUPPORTED_TYPE": (
        "One of your files is not a photo or video we can accept.",
        "We accept photos (JPEG, PNG, HEIC, WebP, GIF, TIFF) and videos (MP4, MOV, 3GP, AVI, MKV, WebM, MPEG-TS). "
        "Please choose the original photo or video file and try again.",
    ),
    "ERR_TOO_LARGE": (
        "One of your files is larger than we can accept.",
        "Please contact the officer who sent you the link; they can arrange another way to send it.",
    ),
    "ERR_QUOTA_BYTES": (
        "Your files are more than this link allows in total.",
        "Please send fewer or smaller files, or contact the officer for another link.",
    ),
    "ERR_QUOTA_FILES": (
        "You have sent as many files as this link allows.",
        "Please contact the officer if you have more to send.",
    ),
    "ERR_EMPTY_FILE": ("One of your files is empty.", "Please choose the file again and retry."),
    "ERR_DECLARATION_REQUIRED": (
        "Please confirm the declaration before sending.",
        "Tick the box to confirm that the information is true, then send again.",
    ),
    # Also the answer when a link ends while a file is still arriving: that file is not
    # kept (completion re-checks the link), and the citizen must know to ask again.
    "ERR_LINK_REVOKED": (
        "This upload link has been withdrawn, so the file you were sending was not kept.",
        "Please contact the officer who sent you the link if you still need to send it.",
    ),
    "ERR_LINK_EXPIRED": (
        "This upload link has expired, so the file you were sending was not kept.",
        "Please contact the officer who sent you the link for a new one.",
    ),
    "ERR_BUSY": (
        "We are receiving a lot of evidence just now and could not take this step.",
        "Nothing you have already sent is lost. Sending carries on by itself in a moment; "
        "if it has stopped, try again in a few minutes.",
    ),
    "ERR_NO_SESSION": (
        "Your upload session has ended.",
        "Please open the link from the message you were sent again.",
    ),
}
DEFAULT_CITIZEN = (
    "Something went wrong while receiving your files.",
    "Please try again. If it keeps happening, contact the officer who sent you the link.",
)


def status_for(error: DomainError) -> int:
    return STATUS.get(error.code, 400)


def citizen_message(code: str) -> tuple[str, str]:
    return CITIZEN.get(code, DEFAULT_CITIZEN)


def error_body(code: str, message: str, *, field: str | None = None) -> dict[str, Any]:
    """The one JSON error shape. A code with citizen wording gets it (a script's author
    and a citizen read the same sentence); ``field`` keeps its own message, the words
    shown beside that field."""
    what_to_do = ""
    if code in CITIZEN and field is None:
        message, what_to_do = CITIZEN[code]
    error: dict[str, Any] = {"code": code, "message": message, "what_to_do": what_to_do}
    if field is not None:
        error["field"] = field
    return {"error": error}


def json_error(code: str, message: str, *, field: str | None = None, headers: dict[str, str] | None = None,
               ) -> JSONResponse:
    return JSONResponse(error_body(code, message, field=field), status_code=STATUS.get(code, 400), headers=headers)


# -- exception handlers ------------------------------------------------------------------

PageRenderer = Callable[[Request, DomainError], Response | None]
E = TypeVar("E", bound=Callable[..., Awaitable[Response]])


def html_errors(render: PageRenderer) -> Callable[[E], E]:
    """Mark a page endpoint: its errors are pages a citizen reads, rendered by
    ``render(request, error)`` (None: fall back to the JSON shape)."""

    def mark(endpoint: E) -> E:
        endpoint.__html_errors__ = render  # type: ignore[attr-defined]
        return endpoint

    return mark


def _headers(request: Request) -> dict[str, str] | None:
    return {"Tus-Resumable": TUS_VERSION} if request.url.path.startswith(TUS_PREFIX) else None


async def on_domain_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, DomainError)
    render: PageRenderer | None = getattr(request.scope.get("endpoint"), "__html_errors__", None)
    if render is not None:
        page = render(request, exc)
        if page is not None:
            return page
    return json_error(exc.code, exc.message, field=getattr(exc, "field", None), headers=_headers(request))


async def on_client_disconnect(request: Request, exc: Exception) -> Response:
    return Response(status_code=400)  # nobody is listening; nothing to say


async def on_storage_error(request: Request, exc: Exception) -> Response:
    # The backend failed: the vendor's words stay in the log (with the traceback), the
    # client learns only that storage is unavailable and may retry.
    log.error("upload.storage_error", exc_info=exc, extra={"path": request.url.path})
    return json_error("ERR_STORAGE", "storage unavailable", headers=_headers(request))


async def on_database_unavailable(request: Request, exc: Exception) -> Response:
    # The database is busy (SQLite's write lock held past its busy timeout in a surge of
    # uploads) or out of reach (PostgreSQL down, a fail-over): a fault that passes, so the
    # answer is 503 with Retry-After, which tus-js-client, Uppy and the page's own
    # upload.js retry, not a 500 that says the request itself is broken. Nothing
    # acknowledged is lost: the transaction rolled back, and an upload's offset is what
    # the store holds. The driver's words stay in the log (VL-09).
    if not is_transient(exc):
        raise exc  # a bug (SQLite names a syntax error or a missing table an OperationalError too): a 500
    log.error("upload.database_unavailable", exc_info=exc, extra={"path": request.url.path})
    headers = {**(_headers(request) or {}), "Retry-After": BUSY_RETRY_AFTER}
    render: PageRenderer | None = getattr(request.scope.get("endpoint"), "__html_errors__", None)
    if render is not None:
        page = render(request, DomainError("the service is busy", code="ERR_BUSY"))
        if page is not None:
            page.headers["Retry-After"] = BUSY_RETRY_AFTER
            return page
    return json_error("ERR_BUSY", "the service is busy", headers=headers)


EXCEPTION_HANDLERS: dict[Any, Callable[[Request, Exception], Awaitable[Response]]] = {
    DomainError: on_domain_error,
    OperationalError: on_database_unavailable,
    ClientDisconnect: on_client_disconnect,
    BlobStoreError: on_storage_error,
}
