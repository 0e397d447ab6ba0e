"""Custody events for what staff do in the reviewer UI (SECURITY_CHECKLIST AU-03).

``await record(ctx, request, action, report_id=..., item_id=..., detail=...)`` appends one
event in its own writing transaction, with actor = the signed-in user's email (or
``anonymous``) and this request's id. Use it for reads worth recording (an evidence page
view, a media stream start, a download with its reason) and for refusals.

For a change that must commit together with its event (a triage decision, a note), call
``record_in(ctx, session, request, ...)`` inside your own ``ctx.db.write()`` block instead.

Fail closed (AU-10): if the ledger cannot be written, ``record`` raises
``AuditUnavailable``, which the app answers with a 503 - the action that was to be
recorded does not happen (call ``record`` BEFORE sending the thing it records).
"""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import Session
from starlette.requests import Request

from reviewer_ui.context import ReviewContext
from storage import ledger

log = logging.getLogger("exhibit.reviewer.audit")


class AuditUnavailable(Exception):
    """The custody ledger could not be written: the app answers 503."""


def actor_of(request: Request) -> str:
    """Who to name in a custody event: the signed-in user, the half-signed-in user (password
    passed, MFA pending), or ``anonymous``."""
    state = request.scope.get("state", {})
    user = state.get("user") or state.get("pending_user")
    email = getattr(user, "email", None)
    return str(email) if email else "anonymous"


def request_id_of(request: Request) -> str | None:
    rid = request.scope.get("state", {}).get("request_id")
    return str(rid) if rid else None


def record_in(ctx: ReviewContext, session: Session, request: Request, action: str, *,
              report_id: str | None = None, item_id: str | None = None, subject: str = "",
              detail: dict[str, Any] | None = None, actor: str | None = None) -> None:
    """Append inside the caller's ``ctx.db.write()`` transaction."""
    ledger.append(ctx.db, session, actor=actor or actor_of(request), action=action,
                  subject=subject or (f"item:{item_id}" if item_id else f"report:{report_id}" if report_id else ""),
                  report_id=report_id, item_id=item_id, detail=detail, request_id=request_id_of(request))


def record_sync(ctx: ReviewContext, request: Request, action: str, *, report_id: str | None = None,
                item_id: str | None = None, subject: str = "", detail: dict[str, Any] | None = None,
                actor: str | None = None) -> None:
    """``record`` for code already running in a worker thread."""
    try:
        with ctx.db.write() as session:
            record_in(ctx, session, request, action, report_id=report_id, item_id=item_id,
                      subject=subject, detail=detail, actor=actor)
    except SQLAlchemyError as exc:
        log.error("audit.unavailable", extra={"action": action, "error": type(exc).__name__})
        raise AuditUnavailable(action) from exc


async def record(ctx: ReviewContext, request: Request, action: str, *, report_id: str | None = None,
                 item_id: str | None = None, subject: str = "", detail: dict[str, Any] | None = None,
                 actor: str | None = None) -> None:
    """Append one custody event in its own transaction (off the event loop)."""
    await ctx.run_sync(
        lambda: record_sync(ctx, request, action, report_id=report_id, item_id=item_id,
                            subject=subject, detail=detail, actor=actor)
    )
