"""The public door's signed tokens: the upload-session cookie and the status token.

Both are HMACs under the app's secret (``UploadContext.secret``), each with its own purpose
string in the MAC, so that neither can be replayed as the other (UP-14), compared in
constant time (UP-13). Link tokens themselves are random and stored hashed
(``storage.links``).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re

COOKIE_PURPOSE = b"exhibit-upload-session-v1"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def sign_session(secret: bytes, link_id: str, expires_at: int) -> str:
    payload = f"{link_id}.{expires_at}"
    mac = hmac.new(secret, COOKIE_PURPOSE + b"\n" + payload.encode(), hashlib.sha256).digest()
    return f"{payload}.{_b64(mac)}"


_SESSION_RE = re.compile(r"([0-9a-f]{32})\.([0-9]{1,12})\.([A-Za-z0-9_-]{43})")


def verify_session(secret: bytes, value: str, now: float) -> str | None:
    """The link id this cookie value names, or None when it is forged, tampered with or
    expired. Constant-time MAC comparison (UP-13); the purpose string in the MAC stops a
    status token or any other HMAC of ours being replayed as a session (UP-14)."""
    match = _SESSION_RE.fullmatch(value or "")
    if match is None:
        return None
    link_id, expires, mac = match.groups()
    expected = sign_session(secret, link_id, int(expires)).rsplit(".", 1)[1]
    if not hmac.compare_digest(expected, mac):
        return None
    if int(expires) <= now:
        return None
    return link_id


# -- status tokens -----------------------------------------------------------------------

_STATUS_PURPOSE = b"exhibit-status-v1"
_STATUS_RE = re.compile(r"([0-9a-f]{32})-([A-Za-z0-9_-]{22})")


def status_token(secret: bytes, submission_id: str) -> str:
    """A capability to read one submission's receipt and status, without the link.
    HMAC with its own purpose string (it cannot be replayed as a session cookie), 128
    bits of MAC so nobody can enumerate submissions."""
    mac = hmac.new(secret, _STATUS_PURPOSE + b"\n" + submission_id.encode(), hashlib.sha256).digest()[:16]
    return f"{submission_id}-{_b64(mac)}"


def verify_status_token(secret: bytes, token: str) -> str | None:
    """The submission id, or None for anything forged (constant-time comparison)."""
    match = _STATUS_RE.fullmatch(token or "")
    if match is None:
        return None
    if not hmac.compare_digest(status_token(secret, match[1]), token):
        return None
    return match[1]
