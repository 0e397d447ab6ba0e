"""TOTP second factor (RFC 6238): the only importer of pyotp and segno.

* Every staff role must pass TOTP; an account without it enrols at its first sign-in
  (QR code as an SVG data URI in an ``<img>``, with the secret as text beside it for
  people who cannot scan).
* A code is accepted for the current 30-second step or one step either side (clock
  drift), and each step at most once per account: ``User.last_totp_step`` only moves
  forward, with a conditional UPDATE, so a code seen over a shoulder or replayed from a
  proxy log is refused even inside its window (SECURITY_CHECKLIST AC-08).
* The TOTP secret is stored sealed (AES-256-GCM under a key derived from the server
  secret): a copy of the database alone does not yield working second factors.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import secrets

import pyotp
import segno
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

ISSUER = "Exhibit"
SECRET_BYTES = 20  # 160 bits, RFC 4226's recommendation
DIGITS = 6
STEP_SECONDS = 30
VALID_WINDOW = 1


def new_secret() -> str:
    """A fresh base32 TOTP secret."""
    return base64.b32encode(secrets.token_bytes(SECRET_BYTES)).decode("ascii")


def _key(server_secret: bytes) -> bytes:
    return hmac.new(server_secret, b"exhibit-totp-seal-v1", hashlib.sha256).digest()


def seal(server_secret: bytes, secret_b32: str, user_id: str) -> str:
    """Seal a base32 secret for ``User.totp_secret`` (64 characters). The user id is the
    associated data: a sealed secret copied onto another account does not open."""
    raw = base64.b32decode(secret_b32)
    nonce = secrets.token_bytes(12)
    sealed = nonce + AESGCM(_key(server_secret)).encrypt(nonce, raw, user_id.encode())
    return base64.urlsafe_b64encode(sealed).decode("ascii")


def unseal(server_secret: bytes, stored: str, user_id: str) -> str | None:
    """The base32 secret, or None when ``stored`` does not open under this server secret."""
    try:
        blob = base64.urlsafe_b64decode(stored.encode("ascii"))
        raw = AESGCM(_key(server_secret)).decrypt(blob[:12], blob[12:], user_id.encode())
    except (ValueError, InvalidTag):
        return None
    return base64.b32encode(raw).decode("ascii")


def provisioning_uri(secret_b32: str, account: str) -> str:
    return pyotp.TOTP(secret_b32, digits=DIGITS, interval=STEP_SECONDS).provisioning_uri(
        name=account, issuer_name=ISSUER)


def qr_data_uri(uri: str) -> str:
    """The QR code of ``uri`` as an SVG data URI (for ``<img src>``; the CSP allows data:
    images, and an SVG in an <img> runs no script)."""
    return str(segno.make(uri, error="m").svg_data_uri(scale=6, border=4, dark="#000", light="#fff"))


def group(secret_b32: str) -> str:
    """The secret in groups of four, for typing into an authenticator by hand."""
    return " ".join(secret_b32[i:i + 4] for i in range(0, len(secret_b32), 4))


def matching_step(secret_b32: str, code: str, now: dt.datetime) -> int | None:
    """The time step whose code equals ``code`` (now, or one step either side), or None.
    Comparisons are constant-time."""
    code = "".join(code.split())
    if len(code) != DIGITS or not code.isdigit():
        return None
    totp = pyotp.TOTP(secret_b32, digits=DIGITS, interval=STEP_SECONDS)
    current = totp.timecode(now)
    found: int | None = None
    for step in range(current - VALID_WINDOW, current + VALID_WINDOW + 1):
        if hmac.compare_digest(totp.generate_otp(step), code):
            found = step
    return found


def code_at(secret_b32: str, when: dt.datetime) -> str:
    """The code for ``when`` (the tests use it to sign in as a user would)."""
    return pyotp.TOTP(secret_b32, digits=DIGITS, interval=STEP_SECONDS).at(when)
