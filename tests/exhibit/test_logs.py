"""Log lines (``exhibit.logs``): one JSON object per line, the ``extra`` fields kept, no
secrets (DESIGN §7). The same formatter on a real server's stderr is tested in
``test_serve.py::test_log_lines_are_json_with_request_id_and_fields``."""

from __future__ import annotations

import io
import json
import logging

from exhibit.logs import JsonFormatter, TextFormatter

TOKEN = "lEkeAh_YbYCAHpZyQBnGEtfALSz-fomTaeeVTqebJJ8"


def _log(formatter: logging.Formatter, message: str, *args: object, **extra: object) -> str:
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(formatter)
    logger = logging.getLogger("test.exhibit.logs")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        logger.warning(message, *args, extra=extra)
    finally:
        logger.removeHandler(handler)
    return out.getvalue()


def test_fields_are_kept_and_secrets_are_redacted() -> None:
    line = _log(JsonFormatter(), "link.refused for %s", f"https://x.example/u/{TOKEN}",
                client_address="203.0.113.9", reason="revoked", password="hunter2", link_token=TOKEN,
                headers={"Authorization": "Bearer abc.def", "Cookie": "sid=s3cr3t", "Accept": "text/html"},
                path=f"/u/{TOKEN}", note="Authorization: Basic dXNlcjpwYXNz")
    assert line.count("\n") == 1
    data = json.loads(line)
    assert data["level"] == "WARNING" and data["logger"] == "test.exhibit.logs" and data["time"]
    assert data["client_address"] == "203.0.113.9" and data["reason"] == "revoked"
    assert data["headers"]["Accept"] == "text/html"
    for secret in (TOKEN, "hunter2", "abc.def", "s3cr3t", "dXNlcjpwYXNz"):
        assert secret not in line
    assert data["password"] == data["link_token"] == "[redacted]"
    assert data["path"] == "/u/[redacted]"
    assert data["message"] == "link.refused for https://x.example/u/[redacted]"
    # The fixed paths under /u/ stay readable.
    assert json.loads(_log(JsonFormatter(), "x", path="/u/files/abc123"))["path"] == "/u/files/abc123"


def test_text_format_keeps_the_same_fields() -> None:
    line = _log(TextFormatter(), "connection.refused", client_address="198.51.100.7", token=TOKEN)
    assert "connection.refused" in line and 'client_address="198.51.100.7"' in line
    assert TOKEN not in line
