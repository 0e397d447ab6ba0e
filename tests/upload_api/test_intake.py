"""/api/v1: API keys, reports, links, evidence status, OpenAPI."""

from __future__ import annotations

import httpx2
import pytest

from storage import apikeys
from tests.fixtures.upload import UploadEnv, jpeg_bytes

pytestmark = pytest.mark.anyio


def api(env: UploadEnv, key: str | None) -> httpx2.AsyncClient:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return httpx2.AsyncClient(transport=httpx2.ASGITransport(app=env.app), base_url="http://testserver",
                              headers=headers)


def new_key(env: UploadEnv) -> str:
    with env.db.write() as s:
        _row, plaintext = apikeys.add_api_key(env.db, s, "forms", actor="test")
    return plaintext


async def test_a_form_creates_a_report_and_a_link_and_a_citizen_uses_it(upload_env: UploadEnv) -> None:
    key = new_key(upload_env)
    async with api(upload_env, key) as c:
        r = await c.post("/api/v1/reports", json={"reference": "WEB/2026/1", "kind": "rtc", "title": "t"})
        assert r.status_code == 201, r.text
        r = await c.post("/api/v1/reports/WEB%2F2026%2F1/links", json={"max_files": 3})
        assert r.status_code == 201, r.text
        url = r.json()["url"]
        assert r.json()["max_files"] == 3
    token = url.rsplit("/", 1)[1]
    async with httpx2.AsyncClient(transport=httpx2.ASGITransport(app=upload_env.app), base_url="http://testserver",
                                  headers={"Authorization": f"Bearer {token}"}) as citizen:
        r = await citizen.post("/u/submit", data={"declaration": "accepted"},
                               files=[("files", ("a.jpg", jpeg_bytes(3000), "image/jpeg"))])
        assert r.status_code == 201, r.text
    async with api(upload_env, key) as c:
        r = await c.get("/api/v1/reports/WEB%2F2026%2F1/evidence")
    assert r.status_code == 200
    (item,) = r.json()["items"]
    assert item["status"] == "received" and item["size"] == 3000


async def test_missing_wrong_and_revoked_keys_get_the_same_401(upload_env: UploadEnv) -> None:
    key = new_key(upload_env)
    with upload_env.db.write() as s:
        row = apikeys.check_api_key(s, key)
        apikeys.revoke_api_key(upload_env.db, s, row.id, actor="test")
    for value in (None, "exk_wrong", key):
        async with api(upload_env, value) as c:
            r = await c.post("/api/v1/reports", json={"reference": "R1"})
        assert r.status_code == 401
        assert r.json() == {"error": {"code": "ERR_API_KEY", "message": "invalid API key"}}


async def test_errors_carry_stable_codes(upload_env: UploadEnv) -> None:
    key = new_key(upload_env)
    async with api(upload_env, key) as c:
        assert (await c.post("/api/v1/reports", json={"reference": "R1"})).status_code == 201
        r = await c.post("/api/v1/reports", json={"reference": "R1"})
        assert (r.status_code, r.json()["error"]["code"]) == (409, "ERR_REPORT_EXISTS")
        r = await c.get("/api/v1/reports/NOPE/evidence")
        assert (r.status_code, r.json()["error"]["code"]) == (404, "ERR_REPORT_NOT_FOUND")
        r = await c.post("/api/v1/reports", content=b"not json")
        assert (r.status_code, r.json()["error"]["code"]) == (400, "ERR_BAD_REQUEST")
        r = await c.post("/api/v1/reports/R1/links", json={"max_files": -1})
        assert (r.status_code, r.json()["error"]["code"]) == (400, "ERR_INVALID")


async def test_openapi_schema_is_served(upload_env: UploadEnv) -> None:
    async with api(upload_env, None) as c:
        r = await c.get("/api/v1/openapi.json")
    assert r.status_code == 200
    assert set(r.json()["paths"]) == {"/api/v1/reports", "/api/v1/reports/{reference}/links",
                                      "/api/v1/reports/{reference}/evidence"}
