"""Log lines an operator can search and a log store can hold without becoming a second
place secrets leak from.

``configure(settings)``: one JSON object per line on stderr with ``time``, ``level``,
``logger``, ``message``, ``request_id`` and ``client_address`` (of the request being served, when there is one)
and every ``extra=`` field the code logged (the default formatter drops them, so a
refusal said nothing of who or why). ``EXHIBIT_LOG_FORMAT=text`` keeps the same fields in
a readable line.

Threat: secrets in logs (DESIGN §7: never a token, password or cookie in a log; logs are
copied to places with far wider access than the evidence). Every field whose name says
secret (token, password, cookie, authorization, secret, api key, ...) is replaced by
``[redacted]``, whatever the caller meant, and upload-link tokens (``/u/<token>``),
bearer credentials and cookie headers are masked inside any string value or message.
"""

from __future__ import annotations

import contextvars
import datetime as dt
import json
import logging
import re
import sys
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from storage.settings import Settings

REDACTED = "[redacted]"

# The attributes every LogRecord has: anything else on a record came from ``extra=``.
_STANDARD = set(vars(logging.LogRecord("x", logging.INFO, "x", 0, "x", None, None))) | {"message", "asctime", "color_message",
                                                                                         "taskName"}
_SECRET_KEY = re.compile(r"token|passw|secret|cookie|authori[sz]ation|api[_-]?key|otp|totp|credential|session_id|"
                         r"private", re.I)
_SECRET_TEXT = [
    # /u/<token> in a path or URL; the fixed paths under /u/ (files, submit, static...) are short words.
    (re.compile(r"(/u/)([A-Za-z0-9_-]{20,})"), r"\1" + REDACTED),
    (re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]+"), r"\1 " + REDACTED),
    (re.compile(r"(?i)\b(authorization|cookie|set-cookie|x-api-key)(\s*[:=]\s*)[^\s,;]+"), r"\1\2" + REDACTED),
    (re.compile(r"(?i)\b(password|passwd|token|secret)(\s*[:=]\s*)[^\s,;&]+"), r"\1\2" + REDACTED),
]

# The request being served: its ASGI scope (the apps put their request id in its state),
# set by ``RequestContext``. A contextvar follows the request into tasks and thread-pool
# calls.
_request_scope: contextvars.ContextVar[MutableMapping[str, Any] | None] = contextvars.ContextVar(
    "exhibit_request_scope", default=None)


def redact_text(text: str) -> str:
    for pattern, replacement in _SECRET_TEXT:
        text = pattern.sub(replacement, text)
    return text


def redact(key: str, value: Any) -> Any:
    if _SECRET_KEY.search(key):
        return REDACTED
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, dict):
        return {str(k): redact(str(k), v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [redact(key, v) for v in value]
    if value is None or isinstance(value, (bool, int, float)):
        return value
    return redact_text(str(value))


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    data: dict[str, Any] = {
        "time": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(timespec="milliseconds"),
        "level": record.levelname,
        "logger": record.name,
        "message": redact_text(record.getMessage()),
    }
    scope = _request_scope.get()
    if scope is not None:
        # Who, on every line written while serving a request (a refusal says who it refused);
        # the peer address as the server saw it, never a client-supplied header (AC-15).
        request_id = scope.get("state", {}).get("request_id")
        if request_id is not None:
            data["request_id"] = str(request_id)
        client = scope.get("client")
        if client:
            data["client_address"] = str(client[0])
    for key, value in vars(record).items():
        if key not in _STANDARD and not key.startswith("_") and key not in data:
            data[key] = redact(key, value)
    if record.exc_info:
        data["exception"] = redact_text(logging.Formatter().formatException(record.exc_info))
    return data


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return json.dumps(_fields(record), default=str, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        data = _fields(record)
        head = f"{data.pop('time')} {data.pop('level')} {data.pop('logger')} {data.pop('message')}"
        exception = data.pop("exception", None)
        rest = " ".join(f"{k}={json.dumps(v, default=str)}" for k, v in data.items())
        return "\n".join(part for part in (f"{head} {rest}".rstrip(), exception) if part)


class _Handler(logging.StreamHandler):  # type: ignore[type-arg]
    """Ours, so that a second ``configure`` replaces it rather than adding another."""


def configure(settings: Settings) -> None:
    """One handler on stderr in the configured format on the root logger. Like
    ``logging.basicConfig``, it leaves alone a root logger that its host has already
    configured (pytest running ``exhibit.cli.main`` in-process, an embedding program)."""
    root = logging.getLogger()
    # Alembic narrates at INFO ("setup plugin ...", "Context impl SQLiteImpl.", one line
    # per revision): noise on the terminal of `exhibit db upgrade` and every command that
    # reads the schema's head (issue 15 item 2). Its warnings and errors still show; at
    # EXHIBIT_LOG_LEVEL=DEBUG so does everything.
    alembic_level = logging.DEBUG if logging.getLevelName(settings.log_level) == logging.DEBUG else logging.WARNING
    logging.getLogger("alembic").setLevel(alembic_level)
    if any(not isinstance(h, _Handler) for h in root.handlers):
        return
    for old in list(root.handlers):
        root.removeHandler(old)
    handler = _Handler(sys.stderr)
    handler.setFormatter(JsonFormatter() if settings.log_format == "json" else TextFormatter())
    root.addHandler(handler)
    root.setLevel(settings.log_level)


Scope = MutableMapping[str, Any]


class RequestContext:
    """Outer ASGI layer: makes the request's scope (its client address, and its request
    id, which the apps' own middleware sets) visible to every log line written while
    serving it."""

    def __init__(self, app: Callable[[Scope, Any, Any], Awaitable[None]]) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        scope.setdefault("state", {})
        token = _request_scope.set(scope)
        try:
            await self.app(scope, receive, send)
        finally:
            _request_scope.reset(token)
