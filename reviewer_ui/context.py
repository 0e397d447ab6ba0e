"""``ReviewContext``: everything a reviewer_ui request handler needs, built once by
``create_app`` and reachable from any request as ``context.get(request)``.

Contract for route modules (casework and access alike):

* ``ctx = context.get(request)`` - the app's ``ReviewContext``.
* ``ctx.clock()`` - the current time, aware UTC. Every session, share and expiry decision
  made in reviewer_ui uses it (tests pass a controllable clock); never call
  ``datetime.now`` in a handler.
* ``ctx.db`` is synchronous: from an ``async def`` handler run it through
  ``await ctx.run_sync(fn, *args)``, THE thread hop of a staff handler. Its first call in
  a request checks the request's session before ``fn`` (``middleware.PendingSession``):
  who is signed in (``permissions.current_user``), the CSRF token of a POST. Aim for one
  hop per handler: the permission check, the page's reads and its custody event in one
  ``fn``. A handler that must know who is asking before its storage work, or that has
  none, starts with ``await ctx.check_session()`` (one hop); until a hop has run, nobody
  is signed in (fail closed).
* ``ctx.render(request, "page.html", **values)`` - an ``HTMLResponse`` from
  ``reviewer_ui/templates``. Every template receives ``request``, ``user`` (the signed-in
  ``User`` or ``None``), ``csrf_token`` and the global ``csrf_field()`` (a hidden input for
  every ``<form method="post">``: the CSRF middleware refuses a POST without it). Scripts
  that POST with ``fetch`` send the token of ``<meta name="csrf-token">`` (base.html) as
  the ``X-CSRF-Token`` header.
* ``request.state.request_id`` - a fresh random id for this request (also sent back as
  ``X-Request-ID``); pass it to ``storage.ledger.append(request_id=...)``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import anyio.to_thread
import jinja2
from markupsafe import Markup
from starlette.requests import Request
from starlette.responses import HTMLResponse

from reviewer_ui import display, form_errors
from storage.blobs.protocol import BlobStore
from storage.db import Database
from storage.models import utcnow
from storage.settings import Settings

TEMPLATES_DIR = Path(__file__).parent / "templates"
STATIC_DIR = Path(__file__).parent / "static"

T = TypeVar("T")

Clock = Callable[[], dt.datetime]

# The session check of the request being served, until its first thread hop runs it
# (set by ``middleware.Sessions``: a ``PendingSession``; ``None`` when there is nothing
# to check, e.g. no session cookie).
PENDING: ContextVar[Any] = ContextVar("exhibit_pending_session", default=None)


@dataclass
class ReviewContext:
    """The reviewer app's dependencies. One per app instance; no module-level state."""

    settings: Settings
    db: Database
    store: BlobStore
    templates: jinja2.Environment
    clock: Clock = utcnow
    # Server secret (storage.secrets): keys the pre-sign-in CSRF token. Never logged.
    secret: bytes = b""
    # Free-form slots other modules may hang per-app state on (e.g. the login throttle).
    extras: dict[str, Any] = field(default_factory=dict)

    async def run_sync(self, fn: Callable[..., T], *args: Any) -> T:
        """Run a blocking (database) function off the event loop, after the request's
        session check if it has not run yet (in the same worker call: one hop)."""
        pending = PENDING.get()
        if pending is None or not pending.needed:
            return await anyio.to_thread.run_sync(fn, *args)
        return await anyio.to_thread.run_sync(_checked, pending, fn, args)

    async def check_session(self) -> None:
        """Check the request's session now (one hop; nothing if done already): for a
        handler that must know who is asking before any storage work, or has none."""
        pending = PENDING.get()
        if pending is not None and pending.needed:
            await anyio.to_thread.run_sync(pending.resolve)

    def render(self, request: Request, name: str, status_code: int = 200, **values: Any) -> HTMLResponse:
        """Render ``templates/<name>`` with the standard values (see the module docstring)."""
        state = request.scope.get("state", {})
        values.setdefault("request", request)
        values.setdefault("user", state.get("user"))
        values.setdefault("csrf_token", state.get("csrf_token", ""))
        values.setdefault("settings", self.settings)
        # Every page gets ``errors`` as FieldErrors (the summary, the fields and the title
        # read it): a view may pass plain strings.
        values["errors"] = form_errors.normalise(values.get("errors"))
        html = self.templates.get_template(name).render(**values)
        return HTMLResponse(html, status_code=status_code)


def _checked(pending: Any, fn: Callable[..., T], args: tuple[Any, ...]) -> T:
    pending.resolve()
    return fn(*args)


def make_templates() -> jinja2.Environment:
    """A Jinja environment over reviewer_ui/templates with autoescaping always on (every
    template, whatever its extension: evidence metadata and citizen statements are
    attacker-controlled text)."""
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATES_DIR)),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )

    @jinja2.pass_context
    def csrf_field(context: jinja2.runtime.Context) -> Markup:
        token = context.get("csrf_token", "")
        return Markup('<input type="hidden" name="csrf_token" value="{}">').format(token)

    env.globals["csrf_field"] = csrf_field
    # Form errors as the citizen pages show them (form_errors.py): {{ field_error(errors, 'id') }}
    # before a control, {{ field_attrs(errors, 'id', 'hint-id') }} on it.
    env.globals["field_error"] = form_errors.field_error
    env.globals["field_attrs"] = form_errors.field_attrs
    env.globals["group_class"] = form_errors.group_class
    env.globals["posted"] = form_errors.posted
    env.filters["bytes"] = format_bytes
    display.install(env)  # times in EXHIBIT_TIME_ZONE with UTC on hover: {{ at|when }}
    return env


def format_bytes(n: int | None) -> str:
    """``{{ size|bytes }}``: 1536 -> "1.5 KiB"."""
    if n is None:
        return ""
    value = float(n)
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{int(value)} bytes" if unit == "bytes" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} bytes"


def get(request: Request) -> ReviewContext:
    """The ``ReviewContext`` of the app serving ``request``."""
    ctx = request.app.state.ctx
    assert isinstance(ctx, ReviewContext)
    return ctx
