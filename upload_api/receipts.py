"""Receipts and status as JSON, reached by a status token (``upload_api.tokens``): the
citizen can look later without the link, and nobody can enumerate other submissions.
The HTML pages for the same URLs without ``.json`` belong to ``pages``."""

from __future__ import annotations

import anyio.to_thread
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from storage import submissions
from storage.errors import NotFound
from upload_api.context import UploadContext
from upload_api.errors import json_error
from upload_api.tokens import verify_status_token


def routes(ctx: UploadContext) -> list[BaseRoute]:
    def submission_of(request: Request) -> str | None:
        return verify_status_token(ctx.secret, str(request.path_params["token"]))

    async def receipt_json(request: Request) -> Response:
        submission_id = submission_of(request)
        if submission_id is None:
            return json_error("ERR_NOT_FOUND", "no such receipt", status=404)
        try:
            data = await anyio.to_thread.run_sync(submissions.receipt, ctx.db, submission_id)
        except NotFound:
            return json_error("ERR_NOT_FOUND", "no such receipt", status=404)
        return JSONResponse(data)

    async def status_json(request: Request) -> Response:
        submission_id = submission_of(request)
        if submission_id is None:
            return json_error("ERR_NOT_FOUND", "no such status", status=404)
        try:
            data = await anyio.to_thread.run_sync(submissions.status, ctx.db, submission_id)
        except NotFound:
            return json_error("ERR_NOT_FOUND", "no such status", status=404)
        return JSONResponse(data)

    return [
        Route("/u/receipt/{token}.json", receipt_json, methods=["GET"]),
        Route("/u/status/{token}.json", status_json, methods=["GET"]),
    ]
