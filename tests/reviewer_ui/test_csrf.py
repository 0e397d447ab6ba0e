"""CSRF on every state-changing route (SECURITY_CHECKLIST AC-06). The routes are read
from the app itself, so a route added later is covered without touching this file."""

from __future__ import annotations

import re

import pytest
from starlette.routing import Route
from starlette.testclient import TestClient

from tests.fixtures.reviewer import ReviewHarness, csrf_of

SAFE = {"GET", "HEAD", "OPTIONS"}


def unsafe_routes(review: ReviewHarness) -> list[tuple[str, str]]:
    found: list[tuple[str, str]] = []
    for route in review.app.routes:
        if not isinstance(route, Route):
            continue
        path = re.sub(r"\{[^}]+\}", "0" * 32, route.path)
        for method in sorted((route.methods or set()) - SAFE):
            found.append((method, path))
    return found


def test_the_app_has_state_changing_routes_to_check(review: ReviewHarness) -> None:
    routes = unsafe_routes(review)
    assert ("POST", "/login") in routes and ("POST", "/logout") in routes
    assert ("POST", "/admin/users") in routes


def _signed_in_admin(review: ReviewHarness) -> tuple[TestClient, str]:
    admin = review.make_user("admin")
    client = review.client()
    review.signed_in_session(client, admin)
    return client, csrf_of(client.get("/admin/users").text)


def test_every_state_changing_route_refuses_a_request_without_the_token(review: ReviewHarness) -> None:
    client, _token = _signed_in_admin(review)
    before = len(review.events())
    for method, path in unsafe_routes(review):
        for body in ({"data": {"x": "1"}}, {"content": b"x=1", "headers": {"content-type": "text/plain"}},
                     {"files": {"f": ("a.txt", b"x")}, "data": {"x": "1"}}):
            r = client.request(method, path, **body)
            assert r.status_code == 403, (method, path, body, r.status_code)
    assert len(review.events()) == before  # nothing happened, nothing was recorded
    assert client.get("/login").status_code == 303  # still signed in


def test_every_state_changing_route_refuses_a_wrong_token(review: ReviewHarness) -> None:
    client, token = _signed_in_admin(review)
    other = review.client(ip="192.0.2.99")
    review.signed_in_session(other, review.make_user("admin"))
    someone_elses = csrf_of(other.get("/admin/users").text)
    assert someone_elses != token
    for method, path in unsafe_routes(review):
        for bad in (someone_elses, "", token[:-1], token + "x"):
            r = client.request(method, path, data={"csrf_token": bad})
            assert r.status_code == 403, (method, path, bad)
            r = client.request(method, path, headers={"X-CSRF-Token": bad})
            assert r.status_code == 403, (method, path, bad)


@pytest.mark.parametrize("headers", [
    {"Origin": "https://evil.example"},
    {"Origin": "null"},
    {"Sec-Fetch-Site": "cross-site"},
    {"Sec-Fetch-Site": "same-site"},
])
def test_cross_site_requests_are_refused_even_with_the_token(review: ReviewHarness, headers: dict[str, str]) -> None:
    client, token = _signed_in_admin(review)
    for method, path in unsafe_routes(review):
        r = client.request(method, path, data={"csrf_token": token}, headers=headers)
        assert r.status_code == 403, (method, path, headers)


def test_same_origin_form_with_the_token_passes(review: ReviewHarness) -> None:
    client, token = _signed_in_admin(review)
    r = client.post("/admin/users", data={"csrf_token": token, "email": "new@force.example", "role": "officer"},
                    headers={"Origin": "http://testserver", "Sec-Fetch-Site": "same-origin"})
    assert r.status_code == 200 and "new@force.example" in r.text


def test_sign_in_form_is_protected_before_there_is_a_session(review: ReviewHarness) -> None:
    """Login CSRF: a site cannot sign the victim's browser in to an attacker's account."""
    officer = review.make_user("officer")
    client = review.client()
    r = client.post("/login", data={"email": officer.email, "password": officer.password})
    assert r.status_code == 403
    # A token minted for another browser's pre-session cookie does not work either.
    other = review.client()
    token = csrf_of(other.get("/login").text)
    client.get("/login")
    r = client.post("/login", data={"email": officer.email, "password": officer.password, "csrf_token": token})
    assert r.status_code == 403
    assert review.events("auth.failed") == [] and review.events("auth.signed_in") == []
