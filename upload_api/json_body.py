"""The one size-capped JSON body reader of the public door.

Threat: a huge body held in memory (BF-16). Starlette's per-route ``max_body_size`` would
cap the bytes too, but answers with its own plain-text 413 outside the one error shape
(``upload_api.errors``), so the cap is kept here, as a domain error with a stable code.
"""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import Request

from storage.errors import Invalid


async def read_json(request: Request, *, limit: int, json_content_type: bool = False) -> Any:
    """The request's JSON value (None for an empty body), at most ``limit`` bytes:
    ERR_FIELD_TOO_LARGE past it (a declared length is refused before a byte is read),
    ERR_BAD_REQUEST when it does not parse. ``json_content_type``: refuse anything not
    sent as ``application/json`` (ERR_CONTENT_TYPE), for endpoints a browser session
    reaches. Threat (CSRF, AC-06): a form on another site can POST text/plain or
    multipart, never application/json without a CORS preflight we do not answer; with
    the SameSite=Strict session cookie this closes the door twice."""
    if json_content_type:
        content_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
        if content_type != "application/json":
            raise Invalid("send application/json", code="ERR_CONTENT_TYPE")
    declared = request.headers.get("content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > limit):
        raise Invalid("body too large", code="ERR_FIELD_TOO_LARGE")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise Invalid("body too large", code="ERR_FIELD_TOO_LARGE")
    if not body:
        return None
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise Invalid("body is not JSON", code="ERR_BAD_REQUEST") from None
