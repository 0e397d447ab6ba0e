"""Receipts and status as JSON, reached by a status token (``upload_api.tokens``): the
citizen can look later without the link, and nobody can enumerate other submissions.
The HTML pages for the same URLs without ``.json`` belong to ``pages``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import anyio.to_thread
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from storage import submissions
from storage.db import Database
from storage.errors import NotFound
from upload_api.context import UploadContext
from upload_api.tokens import verify_status_token


def routes(ctx: UploadContext) -> list[BaseRoute]:
    def submission_of(request: Request) -> str:
        # A forged token and a real one of a vanished submission read the same.
        submission_id = verify_status_token(ctx.secret, str(request.path_params["token"]))
        if submission_id is None:
            raise NotFound("no such receipt", code="ERR_NOT_FOUND")
        return submission_id

    async def read(what: Callable[[Database, str], dict[str, Any]], submission_id: str) -> dict[str, Any]:
        try:
            return await anyio.to_thread.run_sync(what, ctx.db, submission_id)
        except NotFound:
            raise NotFound("no such receipt", code="ERR_NOT_FOUND") from None

    async def receipt_json(request: Request) -> Response:
        return JSONResponse(await read(submissions.receipt, submission_of(request)))

    async def status_json(request: Request) -> Response:
        return JSONResponse(await read(submissions.status, submission_of(request)))

    return [
        Route("/u/receipt/{token}.json", receipt_json, methods=["GET"]),
        Route("/u/status/{token}.json", status_json, methods=["GET"]),
    ]
