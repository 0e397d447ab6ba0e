"""One error path (issue 17 item 2): every error answer of every route of the public door
has the one JSON shape, with the status its code has in the one table, or, on a page a
citizen reads, an HTML page. The cases are generated from the app's own routes, so a
route added later is covered without a line here."""

from __future__ import annotations

import re
from typing import Any

import httpx2
import pytest
from starlette.routing import Mount, Route

from storage import apikeys
from tests.fixtures.upload import UploadEnv
from upload_api.errors import STATUS

pytestmark = pytest.mark.anyio

PARAMS = {"upload_id": "0" * 32, "token": "not-a-token", "reference": "NO-SUCH-REF", "id": "0" * 32}
# Pages a citizen reads: their errors are pages in plain words.
HTML_PAGES = {("GET", "/u/"), ("GET", "/u/{token}"), ("GET", "/u/receipt/{token}"), ("GET", "/u/status/{token}")}


def _path(template: str) -> str:
    return re.sub(r"\{(\w+)(?::\w+)?\}", lambda m: PARAMS[m[1]], template)


def _cases(app: Any) -> list[tuple[str, str, str]]:
    out = []
    for route in app.routes:
        if isinstance(route, Mount):
            continue  # static files
        assert isinstance(route, Route), route
        for method in sorted(route.methods or []):
            if method in ("HEAD", "OPTIONS"):
                continue  # no body to carry an error; OPTIONS is tus discovery (204)
            out.append((method, route.path, _path(route.path)))
    return out


def _check(method: str, template: str, r: httpx2.Response, schema: dict[str, Any], seen: set[str]) -> None:
    where = f"{method} {template} -> {r.status_code}"
    if r.status_code < 400:
        return
    assert r.status_code < 500 or r.status_code == STATUS.get("ERR_STORAGE"), where
    if (method, template) in HTML_PAGES:
        assert r.headers["content-type"].startswith("text/html"), where
        return
    assert r.headers["content-type"] == "application/json", where
    body = r.json()
    assert list(body) == ["error"], (where, body)
    error = body["error"]
    assert set(error) - {"field"} == {"code", "message", "what_to_do"}, (where, body)
    assert all(isinstance(v, str) for v in error.values()), (where, body)
    assert error["message"], (where, body)
    # The status follows from the code alone, through the one table...
    assert r.status_code == STATUS[error["code"]], (where, body)
    # ...and the served OpenAPI documents this shape and this code.
    documented = schema["properties"]["error"]
    assert set(error) <= set(documented["properties"]), (where, body)
    assert set(documented["required"]) <= set(error), (where, body)
    assert error["code"] in documented["properties"]["code"]["enum"], (where, body)
    assert schema["x-exhibit-status"][error["code"]] == r.status_code, (where, body)
    if template.startswith("/u/files/"):
        assert r.headers.get("tus-resumable") == "1.0.0", where
    seen.add(error["code"])


async def test_every_error_of_every_route_has_the_one_shape(upload_env: UploadEnv) -> None:
    with upload_env.db.write() as s:
        _row, api_key = apikeys.add_api_key(upload_env.db, s, "forms", actor="test")
    cases = _cases(upload_env.app)
    assert len(cases) >= 12  # the tus unit, multipart, pages, receipts, intake, the link exchange
    seen: set[str] = set()
    transport = httpx2.ASGITransport(app=upload_env.app)
    async with httpx2.AsyncClient(transport=transport, base_url="http://testserver") as c:
        schema = (await c.get("/api/v1/openapi.json")).json()["components"]["schemas"]["Error"]
        credentials: list[dict[str, str]] = [
            {},  # nobody
            {"Authorization": "Bearer not-a-link"},  # a wrong credential
            {"Authorization": f"Bearer {upload_env.link.token}"},  # the link, with bad requests
            {"Authorization": f"Bearer {api_key}"},  # an API key, with bad requests
        ]
        for headers in credentials:
            for method, template, path in cases:
                for extra, body in (
                    ({"Tus-Resumable": "1.0.0", "Content-Type": "application/json"}, b"{not json"),
                    ({"Content-Type": "text/plain", "Upload-Offset": "0"}, b"x" * 100),
                    ({"Tus-Resumable": "0.2.2", "Accept": "application/json"}, b""),
                ):
                    r = await c.request(method, path, headers={**headers, **extra}, content=body)
                    _check(method, template, r, schema, seen)
    # The generated requests did reach the errors of each kind of route.
    assert {"ERR_NO_SESSION", "ERR_LINK_UNKNOWN", "ERR_API_KEY", "ERR_TUS_VERSION", "ERR_BAD_REQUEST",
            "ERR_CONTENT_TYPE", "ERR_NOT_FOUND", "ERR_UPLOAD_NOT_FOUND"} <= seen, seen


async def test_a_rate_limited_client_gets_429_from_the_table_on_every_door(upload_env: UploadEnv) -> None:
    """The guessing limit answers 429 through the table alone (no route special-cases
    the code), in the one shape, on the tus door, the form door and the API alike."""
    async with httpx2.AsyncClient(transport=httpx2.ASGITransport(app=upload_env.app),
                                  base_url="http://testserver") as c:
        for method, path in (("POST", "/u/files/"), ("POST", "/u/submission"), ("GET", "/api/v1/reports/X/evidence")):
            for _ in range(25):  # past the limit of failed guesses from this address
                r = await c.request(method, path, headers={"Authorization": "Bearer wrong", "Tus-Resumable": "1.0.0",
                                                           "Content-Type": "application/json"}, content=b"{}")
            assert r.status_code == 429, (path, r.text)
            assert r.json()["error"]["code"] == "ERR_RATE_LIMITED"
            assert set(r.json()["error"]) == {"code", "message", "what_to_do"}
