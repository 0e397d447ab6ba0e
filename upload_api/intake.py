"""``/api/v1``: the intake API for the force's online reporting forms.

API-key authenticated JSON (``Authorization: Bearer exk_...``; keys from
``exhibit apikeys create NAME [--unit UNIT]``): create a report, issue an upload link for
it, read its evidence status. A key reaches only the reports it created and those of its
unit (``storage.apikeys.report_for_key``); link quotas and lifetimes are capped by the
``EXHIBIT_API_LINK_MAX_FILES``, ``_BYTES`` and ``_EXPIRY`` settings. Errors have the
public door's one shape (``upload_api.errors``) with stable codes. The schema is served at
``/api/v1/openapi.json``.

The API sees what the citizen sees of each file (received / being checked / with the
officer), not the review.
"""

from __future__ import annotations

from typing import Any

import anyio.to_thread
from sqlmodel import Session
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from storage import apikeys, assignments, items, ledger, links, reports
from storage.errors import DomainError, NotFound
from storage.lifecycle import ItemState
from storage.models import ApiKey, User
from storage.submissions import CITIZEN_STATUS
from upload_api.auth import bearer_token, guessed_wrong, request_id
from upload_api.context import UploadContext
from upload_api.errors import STATUS
from upload_api.json_body import read_json

MAX_BODY = 16 << 10


async def _json_object(request: Request) -> dict[str, Any]:
    value = await read_json(request, limit=MAX_BODY)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise DomainError("body must be a JSON object", code="ERR_BAD_REQUEST")
    return value


def _int_field(body: dict[str, Any], name: str, default: int, maximum: int) -> int:
    """A positive integer no larger than ``maximum`` (a setting). Threat: a leaked or
    careless key issuing links that take 10,000 files or a petabyte, or stay valid for
    months; the cap is the force's, not the caller's. Above it is refused, never
    silently lowered, so the caller knows the link is not what it asked for."""
    value = body.get(name, min(default, maximum))
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise DomainError(f"{name} must be a positive integer", code="ERR_INVALID")
    if value > maximum:
        raise DomainError(f"{name} is above the limit of {maximum} for links issued through the API",
                          code="ERR_ABOVE_LIMIT")
    return value


def _owner_and_unit(session: Session, key: ApiKey, body: dict[str, Any]) -> tuple[User | None, str | None]:
    """The owner and unit the force's form names for a new report (issue 15 item 1).

    ``owner``: the e-mail of an enabled officer or supervisor, else 422
    ``ERR_OWNER_UNKNOWN`` and nothing is created (a report owned by nobody reaches no
    officer's queue, which is the failure this field exists to prevent). ``unit``: a key
    scoped to a unit creates reports in that unit only (403 ``ERR_UNIT_NOT_ALLOWED``):
    a leaked or misconfigured key must not fill another unit's queue (AC-01). Without a
    ``unit`` the report takes the key's unit, else the owner's."""
    raw_owner, raw_unit = body.get("owner"), body.get("unit")
    if raw_owner is not None and not isinstance(raw_owner, str):
        raise DomainError("owner must be an e-mail address", code="ERR_INVALID")
    if raw_unit is not None and not isinstance(raw_unit, str):
        raise DomainError("unit must be a string", code="ERR_INVALID")
    unit = assignments.normalise_unit(raw_unit)
    if key.unit is not None and unit is not None and unit != key.unit:
        raise DomainError(f"this key creates reports in unit {key.unit} only", code="ERR_UNIT_NOT_ALLOWED")
    owner = None
    if raw_owner:
        try:
            owner = assignments.assignable_user(session, raw_owner)
        except NotFound:
            raise DomainError("owner is not an enabled officer or supervisor of this force",
                              code="ERR_OWNER_UNKNOWN") from None
    return owner, unit or key.unit or (owner.unit if owner else None)


def routes(ctx: UploadContext) -> list[BaseRoute]:
    settings = ctx.settings

    async def authenticate(request: Request) -> ApiKey:
        token = bearer_token(request) or ""

        def check() -> ApiKey:
            with ctx.db.read() as session:
                return apikeys.check_api_key(session, token)

        try:
            return await anyio.to_thread.run_sync(check)
        except DomainError:
            # Only failures count, in the database (every process): a valid key is always
            # checked and accepted, whoever shares its address (issue 11 item 4).
            if await guessed_wrong(ctx, request, "api-key"):
                raise DomainError("too many attempts", code="ERR_RATE_LIMITED") from None
            raise

    async def create_report(request: Request) -> Response:
        key = await authenticate(request)
        body = await _json_object(request)

        def work() -> dict[str, Any]:
            with ctx.db.write() as session:
                owner, unit = _owner_and_unit(session, key, body)
                # The report joins the key's scope: its creator, and the key's unit.
                report = reports.create_report(
                    ctx.db, session, str(body.get("reference", "")), str(body.get("kind", "other")),
                    title=str(body.get("title", ""))[:300], owner_id=owner.id if owner else None, unit=unit,
                    actor=f"apikey:{key.id}", request_id=request_id(request),
                )
                report.created_by_api_key_id = key.id
                session.add(report)
                return {"id": report.id, "reference": report.reference, "kind": report.kind, "title": report.title,
                        "owner": owner.email if owner else None, "unit": report.unit}

        return JSONResponse(await anyio.to_thread.run_sync(work), status_code=201)

    async def create_link(request: Request) -> Response:
        key = await authenticate(request)
        body = await _json_object(request)
        reference = str(request.path_params["reference"])
        expires = _int_field(body, "expires_in_seconds", settings.link_default_expiry_seconds,
                             settings.api_link_max_expiry_seconds)
        max_files = _int_field(body, "max_files", settings.link_max_files, settings.api_link_max_files)
        max_bytes = _int_field(body, "max_bytes", settings.link_max_bytes, settings.api_link_max_bytes)

        def work() -> dict[str, Any]:
            with ctx.db.write() as session:
                report = apikeys.report_for_key(session, key, reference)
                issued = links.create_link(
                    ctx.db, session, report, public_url=settings.public_url, expires_in_seconds=expires,
                    max_files=max_files, max_bytes=max_bytes, actor=f"apikey:{key.id}",
                    note=str(body.get("note", ""))[:300], request_id=request_id(request),
                )
                return {"link_id": issued.link.id, "url": issued.url, "report_reference": report.reference,
                        "expires_at": ledger.format_time(issued.link.expires_at),
                        "max_files": max_files, "max_bytes": max_bytes}

        return JSONResponse(await anyio.to_thread.run_sync(work), status_code=201)

    async def evidence_status(request: Request) -> Response:
        key = await authenticate(request)
        reference = str(request.path_params["reference"])

        def work() -> dict[str, Any]:
            with ctx.db.read() as session:
                report = apikeys.report_for_key(session, key, reference)
                rows = items.list_items(session, report.id)
                return {
                    "reference": report.reference,
                    "items": [
                        {"id": item.id, "filename": item.original_filename, "size": item.size,
                         "sha256": item.sha256, "received_at": ledger.format_time(item.received_at),
                         "status": CITIZEN_STATUS.get(ItemState(item.state), "with_officer")}
                        for item in rows
                    ],
                }

        return JSONResponse(await anyio.to_thread.run_sync(work))

    async def openapi(request: Request) -> Response:
        return JSONResponse(openapi_schema(settings.public_url))

    return [
        Route("/api/v1/openapi.json", openapi, methods=["GET"]),
        Route("/api/v1/reports", create_report, methods=["POST"]),
        Route("/api/v1/reports/{reference:path}/links", create_link, methods=["POST"]),
        Route("/api/v1/reports/{reference:path}/evidence", evidence_status, methods=["GET"]),
    ]


# Every code the public door answers with (the one table, ``upload_api.errors``).
ERROR_CODES = sorted(STATUS)


def openapi_schema(public_url: str) -> dict[str, Any]:
    error = {"$ref": "#/components/schemas/Error"}

    def responses(ok: str, schema: dict[str, Any], *codes: int) -> dict[str, Any]:
        out: dict[str, Any] = {ok: {"description": "OK", "content": {"application/json": {"schema": schema}}}}
        for code in codes:
            out[str(code)] = {"description": "Error", "content": {"application/json": {"schema": error}}}
        return out

    ref = {"name": "reference", "in": "path", "required": True, "schema": {"type": "string"}}
    return {
        "openapi": "3.1.0",
        "info": {"title": "Exhibit intake API", "version": "1"},
        "servers": [{"url": public_url}],
        "security": [{"apiKey": []}],
        "components": {
            "securitySchemes": {"apiKey": {"type": "http", "scheme": "bearer",
                                           "description": "Key from `exhibit apikeys create NAME [--unit UNIT]`."}},
            "schemas": {
                "Error": {
                    "description": (
                        "The one error shape of every JSON answer of the public door (this API, "
                        "the tus endpoints under /u/files/, /u/submit, /u/submission, receipts). "
                        "The HTTP status follows from the code alone."
                    ),
                    "type": "object", "required": ["error"], "additionalProperties": False,
                    "properties": {"error": {
                        "type": "object", "required": ["code", "message", "what_to_do"], "additionalProperties": False,
                        "properties": {
                            "code": {"type": "string", "enum": ERROR_CODES,
                                     "description": "Stable; see x-exhibit-status for its HTTP status."},
                            "message": {"type": "string", "description": "A sentence a citizen can read."},
                            "what_to_do": {"type": "string", "description": "What to do about it (may be empty)."},
                            "field": {"type": "string", "description": "The form field the error is about."},
                        }}},
                    "x-exhibit-status": dict(sorted(STATUS.items())),
                },
                "Report": {"type": "object", "properties": {
                    "id": {"type": "string"}, "reference": {"type": "string"}, "kind": {"type": "string"},
                    "title": {"type": "string"}, "owner": {"type": ["string", "null"]},
                    "unit": {"type": ["string", "null"]}}},
                "Link": {"type": "object", "properties": {
                    "link_id": {"type": "string"}, "url": {"type": "string", "format": "uri"},
                    "report_reference": {"type": "string"}, "expires_at": {"type": "string", "format": "date-time"},
                    "max_files": {"type": "integer"}, "max_bytes": {"type": "integer"}}},
                "Evidence": {"type": "object", "properties": {
                    "reference": {"type": "string"},
                    "items": {"type": "array", "items": {"type": "object", "properties": {
                        "id": {"type": "string"}, "filename": {"type": "string"}, "size": {"type": "integer"},
                        "sha256": {"type": "string"}, "received_at": {"type": "string", "format": "date-time"},
                        "status": {"type": "string", "enum": ["received", "being_checked", "with_officer"]}}}}}},
            },
        },
        "paths": {
            "/api/v1/reports": {"post": {
                "summary": "Create a report",
                "requestBody": {"required": True, "content": {"application/json": {"schema": {
                    "type": "object", "required": ["reference"],
                    "properties": {"reference": {"type": "string"}, "kind": {"type": "string"},
                                   "title": {"type": "string"},
                                   "owner": {"type": "string", "format": "email",
                                             "description": "e-mail of the enabled officer or supervisor who "
                                                            "works it (422 ERR_OWNER_UNKNOWN otherwise)"},
                                   "unit": {"type": "string", "description": "default: the key's unit, else "
                                            "the owner's; a key with a unit may name only that one (403)"}}}}}},
                "responses": responses("201", {"$ref": "#/components/schemas/Report"}, 400, 401, 403, 409, 422,
                                       429),
            }},
            "/api/v1/reports/{reference}/links": {"post": {
                "summary": "Issue an upload link for a report (the URL is shown once)",
                "parameters": [ref],
                "requestBody": {"content": {"application/json": {"schema": {
                    "type": "object",
                    "properties": {"expires_in_seconds": {"type": "integer"}, "max_files": {"type": "integer"},
                                   "max_bytes": {"type": "integer"}, "note": {"type": "string"}}}}}},
                "responses": responses("201", {"$ref": "#/components/schemas/Link"}, 400, 401, 404, 429),
            }},
            "/api/v1/reports/{reference}/evidence": {"get": {
                "summary": "Evidence status of a report",
                "parameters": [ref],
                "responses": responses("200", {"$ref": "#/components/schemas/Evidence"}, 401, 404, 429),
            }},
        },
    }
