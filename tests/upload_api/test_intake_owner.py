"""/api/v1/reports takes the owner and unit from the force's form (issue 15 item 1): the
report lands in its officer's queue, an unknown owner is a clear 422 in the API's error
format and creates nothing, and a unit-scoped key cannot fill another unit's queue."""

from __future__ import annotations

import pytest
from sqlmodel import col, select

from storage.models import CustodyEvent, Report
from storage.users import add_user
from tests.fixtures.upload import UploadEnv
from tests.upload_api.test_intake import api, new_key

pytestmark = pytest.mark.anyio


def _staff(env: UploadEnv) -> None:
    with env.db.write() as s:
        add_user(env.db, s, "pc.north@force.test", "officer", unit="North", actor="test")
        add_user(env.db, s, "auditor@force.test", "auditor", actor="test")
        gone = add_user(env.db, s, "gone@force.test", "officer", unit="North", actor="test")
        gone.disabled = True
        s.add(gone)


async def test_the_form_names_the_owner_and_the_report_takes_their_unit(upload_env: UploadEnv) -> None:
    _staff(upload_env)
    async with api(upload_env, new_key(upload_env)) as c:
        r = await c.post("/api/v1/reports", json={"reference": "WEB/1", "kind": "rtc", "owner": "PC.North@force.test"})
    assert r.status_code == 201, r.text
    assert (r.json()["owner"], r.json()["unit"]) == ("pc.north@force.test", "North")
    with upload_env.db.read() as s:
        report = s.exec(select(Report).where(col(Report.reference) == "WEB/1")).one()
        created = s.exec(select(CustodyEvent).where(col(CustodyEvent.action) == "report.created",
                                                    col(CustodyEvent.report_id) == report.id)).one()
    assert report.owner_id is not None and report.unit == "North"
    assert created.detail is not None and created.detail["owner"] == "pc.north@force.test"


@pytest.mark.parametrize("owner", ["nobody@force.test", "auditor@force.test", "gone@force.test"])
async def test_an_owner_who_cannot_work_reports_is_a_422_and_nothing_is_created(upload_env: UploadEnv,
                                                                                owner: str) -> None:
    _staff(upload_env)
    async with api(upload_env, new_key(upload_env)) as c:
        r = await c.post("/api/v1/reports", json={"reference": "WEB/2", "owner": owner})
        assert r.status_code == 422
        assert r.json() == {"error": {"code": "ERR_OWNER_UNKNOWN",
                                      "message": "owner is not an enabled officer or supervisor of this force",
                                      "what_to_do": ""}}
        r = await c.post("/api/v1/reports", json={"reference": "WEB/2", "owner": ["x"]})
        assert (r.status_code, r.json()["error"]["code"]) == (400, "ERR_INVALID")
    with upload_env.db.read() as s:
        assert s.exec(select(Report).where(col(Report.reference) == "WEB/2")).first() is None


async def test_a_unit_key_creates_reports_in_its_unit_only(upload_env: UploadEnv) -> None:
    _staff(upload_env)
    async with api(upload_env, new_key(upload_env, unit="North")) as c:
        r = await c.post("/api/v1/reports", json={"reference": "WEB/3", "unit": "South"})
        assert (r.status_code, r.json()["error"]["code"]) == (403, "ERR_UNIT_NOT_ALLOWED")
        r = await c.post("/api/v1/reports", json={"reference": "WEB/3"})
        assert (r.status_code, r.json()["unit"], r.json()["owner"]) == (201, "North", None)
    async with api(upload_env, new_key(upload_env)) as c:
        r = await c.post("/api/v1/reports", json={"reference": "WEB/4", "unit": "Roads Policing",
                                                  "owner": "pc.north@force.test"})
        assert (r.status_code, r.json()["unit"]) == (201, "Roads Policing")
        schema = (await c.get("/api/v1/openapi.json")).json()
    assert "ERR_OWNER_UNKNOWN" in schema["components"]["schemas"]["Error"]["properties"]["error"]["properties"][
        "code"]["enum"]
