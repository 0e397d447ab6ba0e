"""The authorisation matrix over EVERY item endpoint (SECURITY_CHECKLIST AC-01, AC-03):
an officer without the report, a partner without a share, a partner whose share expired
or was revoked, and a partner of another agency all get the same 404 as for an item that
does not exist, and each attempt is an ``access.denied`` custody event.

The endpoints are enumerated from the app's own routes, so a new item endpoint is
covered the day it is added.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

import pytest
from starlette.routing import Route

from storage.models import EvidenceItem, Share, new_id, utcnow
from tests.fixtures.casework import Casework, SignedIn

FORM = {"decision": "accepted", "reason": "A sufficient reason given", "body": "note", "tag": "t",
        "partner": "org:x", "days": "3"}


def item_endpoints(casework: Casework) -> list[tuple[str, str]]:
    """(method, path template) for every route under /items/{item_id}."""
    out = []
    for route in casework.app.routes:
        if isinstance(route, Route) and route.path.startswith("/items/{item_id}"):
            for method in sorted(route.methods or ()):
                out.append((method, route.path))
    return out


def call(client: SignedIn, method: str, template: str, item_id: str, form: dict[str, str] | None = None) -> Any:
    path = template.replace("{item_id}", item_id).replace("{kind}", "preview")
    if method == "GET":
        return client.get(path, headers={"Range": "bytes=0-"})
    if method == "HEAD":
        return client.head(path)
    return client.post(path, dict(form or FORM))


def _share(casework: Casework, item: EvidenceItem, *, org_id: str, expires: dt.datetime,
           revoked: bool = False) -> None:
    with casework.db.write() as session:
        session.add(Share(report_id=item.report_id, item_id=item.id, partner_org_id=org_id, allow_download=True,
                          created_by="test", expires_at=expires, revoked_at=utcnow() if revoked else None))


Scenario = Callable[[Casework, EvidenceItem], SignedIn]


def officer_without_access(casework: Casework, item: EvidenceItem) -> SignedIn:
    return casework.client(casework.user("officer"))


def partner_without_share(casework: Casework, item: EvidenceItem) -> SignedIn:
    return casework.client(casework.user("partner"))


def partner_with_expired_share(casework: Casework, item: EvidenceItem) -> SignedIn:
    partner = casework.user("partner")
    assert partner.org_id is not None
    _share(casework, item, org_id=partner.org_id, expires=utcnow() - dt.timedelta(seconds=1))
    return casework.client(partner)


def partner_with_revoked_share(casework: Casework, item: EvidenceItem) -> SignedIn:
    partner = casework.user("partner")
    assert partner.org_id is not None
    _share(casework, item, org_id=partner.org_id, expires=utcnow() + dt.timedelta(days=3), revoked=True)
    return casework.client(partner)


def partner_of_another_agency(casework: Casework, item: EvidenceItem) -> SignedIn:
    owner_partner = casework.user("partner", org="Agency A")
    assert owner_partner.org_id is not None
    _share(casework, item, org_id=owner_partner.org_id, expires=utcnow() + dt.timedelta(days=3))
    return casework.client(casework.user("partner", org="Agency B"))


SCENARIOS: list[Scenario] = [officer_without_access, partner_without_share, partner_with_expired_share,
                             partner_with_revoked_share, partner_of_another_agency]


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: s.__name__)
def test_every_item_endpoint_refuses_with_the_uniform_404_and_logs_it(casework: Casework, scenario: Scenario) -> None:
    owner = casework.user("officer")
    report = casework.report(owner)
    item = casework.item(report).item
    client = scenario(casework, item)
    endpoints = item_endpoints(casework)
    assert len(endpoints) >= 9  # page, progress, media (GET+HEAD), original, triage, notes x2, tags x2, shares
    missing = new_id()
    for method, template in endpoints:
        before = len(casework.events("access.denied"))
        refused = call(client, method, template, item.id)
        absent = call(client, method, template, missing)
        assert refused.status_code == 404, (method, template)
        assert absent.status_code == 404, (method, template)
        if method != "HEAD":
            assert refused.text == absent.text, (method, template)  # no existence oracle
        denied = casework.events("access.denied")[before:]
        assert any(e.item_id == item.id for e in denied), (method, template)
        assert all(e.actor == client.user.email for e in denied)
    # And nothing was viewed, streamed, changed or downloaded.
    for action in ("item.viewed", "media.stream", "item.triage", "note.added", "tag.added", "share.created",
                   "item.original_downloaded"):
        assert casework.events(action) == [], action


def test_the_same_endpoints_work_for_the_owner(casework: Casework) -> None:
    owner = casework.user("officer")
    partner = casework.user("partner")
    report = casework.report(owner)
    item = casework.item(report).item
    client = casework.client(owner)
    form = dict(FORM, partner=f"user:{partner.id}")
    for method, template in item_endpoints(casework):
        r = call(client, method, template, item.id, form)
        # A photo has no frame to save: the owner is answered with the form's error, not
        # the 404 (tests/reviewer_ui/test_stills.py saves one from a video).
        ok = (400,) if template.endswith("/stills") else (200, 206, 303)
        assert r.status_code in ok, (method, template, r.status_code)
    assert casework.events("access.denied") == []


def test_report_endpoints_refuse_strangers(casework: Casework) -> None:
    owner = casework.user("officer")
    report = casework.report(owner)
    stranger = casework.client(casework.user("officer"))
    partner = casework.client(casework.user("partner"))
    for client in (stranger, partner):
        assert client.get(f"/reports/{report.id}").status_code == 404
        assert client.post(f"/reports/{report.id}/shares", {"partner": "org:x", "days": "3"}).status_code == 404
        assert report.reference not in client.get("/reports").text
    assert len(casework.events("access.denied")) == 4


def test_partner_cannot_revoke_or_reshare(casework: Casework) -> None:
    owner = casework.user("officer")
    partner = casework.user("partner")
    report = casework.report(owner)
    item = casework.item(report).item
    assert partner.org_id is not None
    _share(casework, item, org_id=partner.org_id, expires=utcnow() + dt.timedelta(days=3))
    client = casework.client(partner)
    assert client.get(f"/items/{item.id}").status_code == 200
    with casework.db.read() as session:
        from sqlmodel import select

        share = session.exec(select(Share)).one()
    assert client.post(f"/shares/{share.id}/revoke").status_code == 404
    assert client.post(f"/items/{item.id}/shares", {"partner": f"org:{partner.org_id}", "days": "3"}).status_code == 404
    page = client.get(f"/items/{item.id}").text
    assert "Sharing" not in page and "Notes" not in page and "Triage" not in page
