"""Retention and legal holds on the report page and the admin page (issue 14 items 1, 2,
5): an officer may keep their own report's evidence longer and place a hold, never bring
a date forward or release a hold; an admin may; partners and strangers get the uniform
404; every change is a custody event with the user and their reason."""

from __future__ import annotations

import datetime as dt

from sqlmodel import select

from storage.models import LegalHold, ReportRetention
from tests.fixtures.casework import Casework


def test_officer_keeps_longer_and_holds_but_cannot_shorten_or_release(casework: Casework) -> None:
    officer = casework.user("officer")
    report = casework.report(officer, kind="crime")
    photo = casework.item(report)
    client = casework.client(officer)
    page = client.get(f"/reports/{report.id}")
    assert "Retention and legal hold" in page.text
    assert "crime=6y" in page.text and "Set retention date" in page.text and "Place hold" in page.text
    assert "Release hold" not in page.text

    later = (dt.date.today() + dt.timedelta(days=9 * 365)).isoformat()
    r = client.post(f"/reports/{report.id}/retention", {"until": later, "reason": "appeal lodged"})
    assert r.status_code == 303 and r.headers["location"].endswith("#retention")
    with casework.db.read() as s:
        row = s.get(ReportRetention, report.id)
        assert row is not None and row.retain_until.date().isoformat() == later and row.set_by == officer.email
    refused = client.post(f"/reports/{report.id}/retention", {"until": "2001-01-01", "reason": "tidy up"})
    assert refused.status_code == 400 and "only an administrator" in refused.text
    no_reason = client.post(f"/reports/{report.id}/retention", {"until": later, "reason": ""})
    assert no_reason.status_code == 400

    r = client.post(f"/reports/{report.id}/holds", {"item_id": photo.item.id, "reason": "civil claim"})
    assert r.status_code == 303
    assert "civil claim" in client.get(f"/reports/{report.id}").text
    # Releasing is an admin's decision: the uniform 404, recorded.
    denied = client.post(f"/reports/{report.id}/holds/release", {"item_id": photo.item.id, "reason": "done"})
    assert denied.status_code == 404
    assert casework.events("access.denied")[-1].detail["reason"] == "hold.remove"  # type: ignore[index]
    events = casework.events("report.retention_set") + casework.events("hold.placed")
    assert [e.actor for e in events] == [officer.email, officer.email]

    admin = casework.user("admin")
    admin_client = casework.client(admin)
    assert "Release hold" in admin_client.get(f"/reports/{report.id}").text
    r = admin_client.post(f"/reports/{report.id}/holds/release", {"item_id": photo.item.id, "reason": "settled"})
    assert r.status_code == 303
    with casework.db.read() as s:
        hold = s.exec(select(LegalHold)).one()
        assert hold.released_by == admin.email and hold.release_reason == "settled"
    r = admin_client.post(f"/reports/{report.id}/retention", {"until": "2001-01-01", "reason": "court order"})
    assert r.status_code == 303


def test_strangers_partners_and_auditors_cannot_change_retention(casework: Casework) -> None:
    owner = casework.user("officer")
    report = casework.report(owner, kind="rtc")
    for role in ("officer", "partner", "auditor"):
        client = casework.client(casework.user(role))
        for path in (f"/reports/{report.id}/retention", f"/reports/{report.id}/holds"):
            r = client.post(path, {"until": "2040-01-01", "reason": "x"})
            assert r.status_code == 404, (role, path)
    with casework.db.read() as s:
        assert s.get(ReportRetention, report.id) is None
    auditor_page = casework.client(casework.user("auditor")).get(f"/reports/{report.id}")
    assert "Set retention date" not in auditor_page.text and "Kept until" in auditor_page.text


def test_admin_page_lists_holds_and_what_falls_due(casework: Casework) -> None:
    admin = casework.user("admin")
    officer = casework.user("officer")
    report = casework.report(officer, kind="asb")
    casework.item(report)
    client = casework.client(admin)
    r = client.post(f"/reports/{report.id}/holds", {"reason": "IOPC referral"})
    assert r.status_code == 303, r.text[-2000:]
    page = client.get("/admin/retention?days=1200")
    assert page.status_code == 200
    assert "IOPC referral" in page.text and report.reference in page.text and "asb=3y" in page.text
    assert casework.client(officer).get("/admin/retention").status_code == 404


def test_releasing_a_hold_needs_a_fresh_code(casework: Casework) -> None:
    admin = casework.user("admin")
    report = casework.report(admin, kind="crime")
    fresh = casework.client(admin)
    assert fresh.post(f"/reports/{report.id}/holds", {"reason": "inquest"}).status_code == 303
    stale = casework.client(admin, verified_seconds_ago=3600)
    r = stale.post(f"/reports/{report.id}/holds/release", {"reason": "inquest closed"})
    assert r.status_code == 403 and "step_up_code" in r.text
    with casework.db.read() as s:
        assert s.exec(select(LegalHold)).one().released_at is None
    assert fresh.post(f"/reports/{report.id}/holds/release", {"reason": "inquest closed"}).status_code == 303
    with casework.db.read() as s:
        assert s.exec(select(LegalHold)).one().released_at is not None
