"""Assignment in the reviewer UI (issue 15 item 1): a supervisor assigns their unit's
reports from the report page, the officer then finds the report in "My reports" with the
counts of new and unreviewed evidence, and everyone else still gets the uniform 404 with
an ``access.denied`` custody event (AC-01)."""

from __future__ import annotations

import datetime as dt

from sqlmodel import col, select

from storage import assignments
from storage.models import Report, ReportAssignment, User
from storage.reports import create_report
from tests.fixtures.casework import Casework


def _staff(cw: Casework, role: str, unit: str | None) -> User:
    user = cw.user(role)
    with cw.db.write() as s:
        row = s.get(User, user.id)
        assert row is not None
        row.unit = unit
        s.add(row)
    user.unit = unit
    return user


def _unit_report(cw: Casework, reference: str, unit: str, owner: User | None = None) -> Report:
    with cw.db.write() as s:
        return create_report(cw.db, s, reference, "rtc", title="Collision", unit=unit,
                             owner_id=owner.id if owner else None, actor="apikey:forms")


def test_a_supervisor_assigns_and_the_officer_finds_it_in_my_reports(casework: Casework) -> None:
    cw = casework
    sergeant = _staff(cw, "supervisor", "North")
    pc = _staff(cw, "officer", "North")
    outsider = _staff(cw, "officer", "South")
    report = _unit_report(cw, "RTC/N/1", "North")
    item = cw.item(report).item
    cw.item(report)

    officer = cw.client(pc)
    assert officer.get(f"/reports/{report.id}").status_code == 404  # not theirs yet
    assert "RTC/N/1" not in officer.get("/my-reports").text

    sup = cw.client(sergeant)
    page = sup.get(f"/reports/{report.id}")
    assert page.status_code == 200
    assert 'action="/reports/' + report.id + '/assign"' in page.text
    assert pc.email in page.text and outsider.email not in page.text  # only the unit is offered
    r = sup.post(f"/reports/{report.id}/assign", {"email": pc.email})
    assert (r.status_code, r.headers["location"]) == (303, f"/reports/{report.id}#assignment")
    (event,) = cw.events("report.assigned")
    assert (event.actor, event.report_id, (event.detail or {}).get("user")) == (sergeant.email, report.id, pc.email)

    queue = officer.get("/my-reports")
    assert queue.status_code == 200
    assert f'href="/reports/{report.id}"' in queue.text
    assert 'data-new-for="RTC/N/1"><span class="tag tag--new">2 new</span>' in queue.text
    assert 'data-waiting-for="RTC/N/1">2<' in queue.text
    # Opening the report is "looking": nothing is new until more evidence arrives.
    assert officer.get(f"/reports/{report.id}").status_code == 200
    assert officer.get(f"/items/{item.id}").status_code == 200
    assert 'data-new-for="RTC/N/1">0<' in officer.get("/my-reports").text
    cw.item(report, received_at=dt.datetime.now(dt.UTC) + dt.timedelta(minutes=5))
    assert 'data-new-for="RTC/N/1"><span class="tag tag--new">1 new</span>' in officer.get("/my-reports").text

    # An officer of another unit: the same 404 as before, and recorded.
    stranger = cw.client(outsider)
    before = len(cw.events("access.denied"))
    assert stranger.get(f"/reports/{report.id}").status_code == 404
    assert stranger.get(f"/items/{item.id}").status_code == 404
    assert len(cw.events("access.denied")) == before + 2


def test_who_may_assign_and_to_whom(casework: Casework) -> None:
    cw = casework
    sergeant = _staff(cw, "supervisor", "North")
    pc = _staff(cw, "officer", "North")
    owner = _staff(cw, "officer", "North")
    south_pc = _staff(cw, "officer", "South")
    auditor = cw.user("auditor")
    admin = cw.user("admin")
    north = _unit_report(cw, "RTC/N/2", "North", owner=owner)
    south = _unit_report(cw, "RTC/S/1", "South")

    sup = cw.client(sergeant)
    # Another unit's officer: refused with a message on the form, nothing changes.
    r = sup.post(f"/reports/{north.id}/assign", {"email": south_pc.email})
    assert r.status_code == 400 and "of this report&#39;s unit" in r.text
    assert 'id="assign-email-error"' in r.text and 'aria-invalid="true"' in r.text
    r = sup.post(f"/reports/{north.id}/assign", {"email": auditor.email})
    assert r.status_code == 400
    assert cw.events("report.assigned") == []
    # Another unit's report: the uniform 404 (the supervisor does not even see it).
    before = len(cw.events("access.denied"))
    assert sup.post(f"/reports/{south.id}/assign", {"email": pc.email}).status_code == 404
    # The owner is an officer: officers do not hand out access, not even to their own report.
    own = cw.client(owner)
    assert 'action="/reports/' + north.id + '/assign"' not in own.get(f"/reports/{north.id}").text
    assert own.post(f"/reports/{north.id}/assign", {"email": pc.email}).status_code == 404
    assert cw.client(auditor).post(f"/reports/{north.id}/assign", {"email": pc.email}).status_code == 404
    denied = cw.events("access.denied")[before:]
    assert [e.actor for e in denied] == [sergeant.email, owner.email, auditor.email]
    assert all((e.detail or {}).get("reason") == "report.assign" for e in denied)

    # An admin reassigns the owner across units; the old owner loses the report.
    boss = cw.client(admin)
    r = boss.post(f"/reports/{north.id}/assign", {"email": south_pc.email, "as_owner": "1"})
    assert r.status_code == 303
    (changed,) = cw.events("report.owner_changed")
    assert (changed.detail or {}).get("from") == owner.email and (changed.detail or {}).get("to") == south_pc.email
    assert own.get(f"/reports/{north.id}").status_code == 404
    assert cw.client(south_pc).get(f"/reports/{north.id}").status_code == 200
    # The supervisor assigns and takes off again: access follows.
    assert sup.post(f"/reports/{north.id}/assign", {"email": pc.email}).status_code == 303
    officer = cw.client(pc)
    assert officer.get(f"/reports/{north.id}").status_code == 200
    assert sup.post(f"/reports/{north.id}/unassign", {"user_id": pc.id}).status_code == 303
    assert officer.get(f"/reports/{north.id}").status_code == 404
    assert [e.action for e in cw.events() if e.action.startswith("report.") and e.action != "report.viewed"][-2:] == [
        "report.assigned", "report.unassigned"]
    with cw.db.read() as s:
        assert s.exec(select(ReportAssignment).where(col(ReportAssignment.report_id) == north.id)).all() == []


def test_partners_and_auditors_have_no_queue_and_see_nobody(casework: Casework) -> None:
    cw = casework
    pc = _staff(cw, "officer", "North")
    report = _unit_report(cw, "RTC/N/3", "North", owner=pc)
    with cw.db.write() as s:
        assert assignments.queue(s, pc)[0][0].report.id == report.id
    for role in ("partner", "auditor"):
        client = cw.client(cw.user(role))
        assert client.get("/my-reports").status_code == 404
    auditor_page = cw.client(cw.user("auditor")).get(f"/reports/{report.id}")
    assert auditor_page.status_code == 200 and "Who works this report" in auditor_page.text
    assert "/assign" not in auditor_page.text
