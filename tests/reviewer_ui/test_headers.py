"""Security headers on every staff response, and the session cookie's attributes
(SECURITY_CHECKLIST VL-01, VL-03, VL-04, VL-05, AC-12)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.testclient import TestClient

from reviewer_ui import sessions
from tests.fixtures.reviewer import ReviewHarness

EXPECTED = {
    "cache-control": "no-store",
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "cross-origin-resource-policy": "same-origin",
    "cross-origin-opener-policy": "same-origin",
    "x-frame-options": "DENY",
}


def assert_staff_headers(r: Any, what: str) -> None:
    for name, value in EXPECTED.items():
        assert r.headers.get(name) == value, (what, name, r.headers.get(name))
    csp = r.headers.get("content-security-policy", "")
    assert "frame-ancestors 'none'" in csp, what
    assert "unsafe-inline" not in csp and "unsafe-eval" not in csp, what
    directives = dict(d.strip().split(" ", 1) for d in csp.split(";") if " " in d.strip())
    assert directives["default-src"] == "'none'" and directives["script-src"] == "'self'", what
    assert directives["style-src"] == "'self'" and directives["object-src"] == "'none'", what
    assert r.headers.get("x-request-id"), what


def get_paths(review: ReviewHarness) -> list[str]:
    out = []
    for route in review.app.routes:
        if isinstance(route, Route) and "GET" in (route.methods or ()):
            out.append(re.sub(r"\{[^}]+\}", "0" * 32, route.path))
    return out


def test_every_page_anonymous_and_signed_in_carries_the_headers(review: ReviewHarness) -> None:
    anonymous = review.client()
    admin_client = review.client(ip="192.0.2.2")
    review.signed_in_session(admin_client, review.make_user("admin"))
    paths = [*get_paths(review), "/static/app.css", "/static/../app.py", "/nope", "/items/x.css"]
    for client in (anonymous, admin_client):
        for path in paths:
            assert_staff_headers(client.get(path), f"GET {path}")
            assert_staff_headers(client.head(path), f"HEAD {path}")
    # Refusals and error answers too.
    assert_staff_headers(anonymous.post("/login", data={}), "CSRF refusal")
    assert_staff_headers(admin_client.post("/admin/users"), "CSRF refusal signed in")


def test_login_and_mfa_pages_carry_the_headers(review: ReviewHarness) -> None:
    officer = review.make_user("officer", enrolled=False)
    client = review.client()
    assert_staff_headers(client.get("/login"), "login")
    assert_staff_headers(review.password_step(client, officer), "login POST")
    page = client.get("/mfa")
    assert_staff_headers(page, "mfa enrol")
    assert "data:image/svg+xml" in page.text
    assert "img-src 'self' data:" in page.headers["content-security-policy"]


def test_a_server_error_carries_the_headers_and_no_details(review: ReviewHarness) -> None:
    async def boom(request: Request) -> Response:
        raise RuntimeError("secret detail /var/lib/exhibit/db password=hunter2")

    review.app.router.routes.append(Route("/boom", boom))
    client = TestClient(review.app, raise_server_exceptions=False)
    r = client.get("/boom")
    assert r.status_code == 500
    assert_staff_headers(r, "500")
    assert "secret" not in r.text and "hunter2" not in r.text and "Traceback" not in r.text
    assert r.headers["x-request-id"] in r.text


def test_inline_scripts_and_styles_are_absent_from_staff_pages(review: ReviewHarness) -> None:
    officer = review.make_user("admin", enrolled=False)
    client = review.client()
    pages = [client.get("/login").text]
    review.sign_in(client, officer)
    pages += [client.get("/admin/users").text, client.get("/admin/links").text, client.get("/no-such").text]
    for html in pages:
        assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", html)
        assert "<style" not in html and " style=" not in html
        assert not re.search(r"\son[a-z]+=", html)  # no inline event handlers


def _set_cookie(r: Any, name: str) -> str:
    for value in r.headers.get_list("set-cookie"):
        if value.startswith(name + "="):
            return str(value)
    raise AssertionError(f"no Set-Cookie for {name}")


def test_session_cookie_attributes_over_https(review_factory: Any) -> None:
    review: ReviewHarness = review_factory(public_url="https://exhibit.force.example")
    officer = review.make_user("officer")
    client = review.client()
    r = review.password_step(client, officer)
    name = sessions.cookie_name(review.settings)
    assert name == "__Host-exhibit_session"
    cookie = _set_cookie(r, name)
    attrs = {a.strip().split("=")[0].lower() for a in cookie.split(";")[1:]}
    assert {"secure", "httponly", "samesite", "path"} <= attrs
    assert "domain" not in attrs and "max-age" not in attrs and "expires" not in attrs
    assert "samesite=strict" in cookie.lower() and "path=/" in cookie.lower()
    value = cookie.split(";")[0].split("=", 1)[1]
    assert len(value) >= 43  # >= 256 bits
    pre = _set_cookie(client.get("/login", headers={"cookie": ""}), "__Host-exhibit_pre")
    assert "secure" in pre.lower() and "httponly" in pre.lower()
    assert "strict-transport-security" in r.headers


def test_session_cookie_attributes_over_plain_http(review: ReviewHarness) -> None:
    officer = review.make_user("officer")
    r = review.password_step(review.client(), officer)
    cookie = _set_cookie(r, "exhibit_session")
    assert "httponly" in cookie.lower() and "samesite=strict" in cookie.lower() and "path=/" in cookie.lower()
    assert "secure" not in cookie.lower()  # a Secure cookie would never come back over http


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_an_unreachable_session_store_fails_closed_with_the_headers(review: ReviewHarness) -> None:
    officer = review.make_user("officer")
    client = review.client()
    review.signed_in_session(client, officer)
    path = Path(review.db.url.removeprefix("sqlite:///"))
    review.db.dispose()
    for suffix in ("", "-wal", "-shm"):
        moved = Path(str(path) + suffix)
        if moved.exists():
            moved.rename(str(moved) + ".away")
    # Pages whose handler checks the session itself (item page, media) fail the same way.
    for path in ("/admin/users", "/items/" + "a" * 32, "/items/" + "a" * 32 + "/media/proxy"):
        r = client.get(path)
        assert r.status_code == 503, path
        assert_staff_headers(r, "503")
        assert "sqlite" not in r.text.lower() and "table" not in r.text.lower()
