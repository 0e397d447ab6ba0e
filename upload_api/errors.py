"""One table from domain error code to HTTP status, and the citizen-readable wording.

Domain code raises ``storage.errors.DomainError`` subclasses with stable codes; only this
module knows what HTTP status each one becomes.
"""

from __future__ import annotations

from starlette.responses import JSONResponse

from storage.errors import DomainError

STATUS: dict[str, int] = {
    "ERR_INVALID": 400,
    "ERR_ABOVE_LIMIT": 400,
    "ERR_BAD_REQUEST": 400,
    "ERR_DECLARATION_REQUIRED": 400,
    "ERR_EMPTY_FILE": 400,
    "ERR_CHECKSUM_ALGORITHM": 400,
    "ERR_TOO_MANY_PARTS": 400,
    "ERR_FIELD_TOO_LARGE": 413,
    "ERR_NO_SESSION": 401,
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
}

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


def json_error(code: str, message: str, *, status: int | None = None, headers: dict[str, str] | None = None) -> JSONResponse:
    """Errors for scripts and the JS page: ``{"error": {"code", "message"}}``; the code
    is stable, the message is a citizen-readable sentence."""
    words, what_to_do = citizen_message(code)
    if code not in CITIZEN:
        words, what_to_do = message, ""
    return JSONResponse(
        {"error": {"code": code, "message": words, "what_to_do": what_to_do}},
        status_code=status or STATUS.get(code, 400),
        headers=headers,
    )
