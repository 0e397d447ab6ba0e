"""Device cookies (OWASP "Slow Down Online Guessing Attacks with Device Cookies").

A browser that completed a sign-in to an account gets a long-lived cookie naming a random
device id, MAC'd together with the account under the server secret. On the next sign-in
to that account the throttle counts that browser's failures on their own
(``reviewer_ui.throttle``): what a botnet or a sprayer behind the same address did cannot
slow it down. Threats the format answers: forging a cookie or moving one to another
account (the MAC covers the account; constant-time comparison), learning the account from
the cookie (it holds only the id and the MAC), guessing with a stolen cookie (its own
counter still throttles it, and it is only as good as the password that goes with it).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets

from starlette.requests import Request
from starlette.responses import Response

from storage.settings import Settings

PURPOSE = b"exhibit-device-cookie-v1"
MAX_AGE_SECONDS = 180 * 86400
_VALUE = re.compile(r"([0-9a-f]{32})\.([A-Za-z0-9_-]{43})")


def cookie_name(settings: Settings) -> str:
    return "__Host-exhibit_device" if settings.secure_cookies else "exhibit_device"


def _mac(secret: bytes, device: str, account: str) -> str:
    mac = hmac.new(secret, PURPOSE + b"\n" + device.encode() + b"\n" + account.encode("utf-8", "replace"),
                   hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac).rstrip(b"=").decode("ascii")


def issue(secret: bytes, account: str) -> str:
    device = secrets.token_hex(16)
    return f"{device}.{_mac(secret, device, account)}"


def device_of(request: Request, settings: Settings, secret: bytes, account: str) -> str | None:
    """The device id of the request's device cookie when it is valid for ``account``."""
    match = _VALUE.fullmatch(request.cookies.get(cookie_name(settings), ""))
    if match is None or not account:
        return None
    device, mac = match.groups()
    return device if hmac.compare_digest(_mac(secret, device, account), mac) else None


def set_cookie(response: Response, settings: Settings, value: str) -> None:
    response.set_cookie(cookie_name(settings), value, max_age=MAX_AGE_SECONDS, path="/",
                        secure=settings.secure_cookies, httponly=True, samesite="strict")
