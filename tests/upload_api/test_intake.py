"""/api/v1: API keys, reports, links, evidence status, OpenAPI."""

from __future__ import annotations

import httpx2
import pytest

from storage import apikeys, reports
from tests.fixtures.upload import UploadEnv, jpeg_bytes, make_env

pytestmark = pytest.mark.anyio


def api(env: UploadEnv, key: str | None) -> httpx2.AsyncClient:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return httpx2.AsyncClient(transport=httpx2.ASGITransport(app=env.app), base_url="http://testserver",
                              headers=headers)


def new_key(env: UploadEnv, unit: str | None = None) -> str:
    with env.db.write() as s:
        _row, plaintext = apikeys.add_api_key(env.db, s, "forms", actor="test", unit=unit)
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
        assert r.json() == {"error": {"code": "ERR_API_KEY", "message": "invalid API key", "what_to_do": ""}}


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


async def test_a_key_reaches_only_the_reports_it_created_or_its_units(upload_env: UploadEnv) -> None:
    forms, other_system = new_key(upload_env), new_key(upload_env)
    north_a, north_b, south = (new_key(upload_env, "North"), new_key(upload_env, "North"),
                               new_key(upload_env, "South"))
    with upload_env.db.write() as s:  # a report staff created for the North unit
        reports.create_report(upload_env.db, s, "STAFF-N-1", "other", unit="North", actor="user:admin")
    async with api(upload_env, forms) as c:
        assert (await c.post("/api/v1/reports", json={"reference": "FORMS-1"})).status_code == 201
    async with api(upload_env, north_a) as c:
        assert (await c.post("/api/v1/reports", json={"reference": "NORTH-1"})).status_code == 201

    async def answers(key: str, reference: str) -> list[tuple[int, dict[str, object]]]:
        async with api(upload_env, key) as c:
            out = []
            for r in (await c.get(f"/api/v1/reports/{reference}/evidence"),
                      await c.post(f"/api/v1/reports/{reference}/links", json={"max_files": 1})):
                body = r.json()
                if r.status_code == 404:  # the reference is echoed back; the rest must be identical
                    body["error"]["message"] = body["error"]["message"].replace(reference, "<ref>")
                out.append((r.status_code, body))
            return out

    missing = await answers(forms, "NO-SUCH-REPORT")
    assert [status for status, _ in missing] == [404, 404]
    allowed = {
        (forms, "FORMS-1"), (north_a, "NORTH-1"), (north_b, "NORTH-1"),  # its own; its unit's
        (north_a, "STAFF-N-1"), (north_b, "STAFF-N-1"),
    }
    for key in (forms, other_system, north_a, north_b, south):
        for reference in ("FORMS-1", "NORTH-1", "STAFF-N-1"):
            got = await answers(key, reference)
            if (key, reference) in allowed:
                assert [status for status, _ in got] == [200, 201], (reference, got)
            else:
                # Out of scope is exactly a missing report: no oracle on what exists.
                assert got == missing, (reference, got)


async def test_link_quotas_asked_through_the_api_are_capped_by_settings(db, tmp_path) -> None:  # type: ignore[no-untyped-def]
    env = make_env(db, tmp_path, api_link_max_files=5, api_link_max_bytes=1 << 30,
                   api_link_max_expiry_seconds=86400, link_max_files=50)
    key = new_key(env)
    async with api(env, key) as c:
        assert (await c.post("/api/v1/reports", json={"reference": "CAP-1"})).status_code == 201
        for field, value in (("max_files", 6), ("max_files", 10_000), ("max_bytes", (1 << 30) + 1),
                             ("max_bytes", 1 << 50), ("expires_in_seconds", 86401),
                             ("expires_in_seconds", 90 * 86400)):
            r = await c.post("/api/v1/reports/CAP-1/links", json={field: value})
            assert r.status_code == 400, (field, value, r.text)
            error = r.json()["error"]
            assert error["code"] == "ERR_ABOVE_LIMIT" and field in error["message"], error
        r = await c.post("/api/v1/reports/CAP-1/links",
                         json={"max_files": 5, "max_bytes": 1 << 30, "expires_in_seconds": 86400})
        assert r.status_code == 201, r.text
        # Unasked, a quota is the default, lowered to the cap where the default is larger.
        r = await c.post("/api/v1/reports/CAP-1/links", json={})
        assert r.status_code == 201, r.text
        assert r.json()["max_files"] == 5 and r.json()["max_bytes"] == 1 << 30
