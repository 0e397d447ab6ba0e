"""Owner, assignees and last-seen (storage.assignments) on SQLite and PostgreSQL: every
change is a custody event, only officers and supervisors work reports, and "My reports"
counts evidence received since the user last looked."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlmodel import col, select

from storage import assignments, ledger
from storage.db import Database
from storage.errors import Invalid, NotFound
from storage.models import CustodyEvent, EvidenceItem, Report, User
from storage.reports import create_report
from storage.users import add_user

T0 = dt.datetime(2026, 12, 1, 9, 0, tzinfo=dt.UTC)


def _users(db: Database) -> dict[str, User]:
    out = {}
    with db.write() as s:
        for name, role, unit, org in [("sup", "supervisor", "north", None), ("pc", "officer", "north", None),
                                      ("pc2", "officer", "south", None), ("aud", "auditor", None, None),
                                      ("cps", "partner", None, "CPS"), ("off", "officer", "north", None)]:
            out[name] = add_user(db, s, f"{name}@force.test", role, unit=unit, org_name=org, actor="test")
        out["off"].disabled = True
        s.add(out["off"])
    return out


def _events(db: Database, prefix: str) -> list[CustodyEvent]:
    with db.read() as s:
        return list(s.exec(select(CustodyEvent).where(col(CustodyEvent.action).startswith(prefix))
                           .order_by(col(CustodyEvent.seq))))


def test_assignment_changes_are_custody_events_and_only_caseworkers_are_assigned(db: Database) -> None:
    u = _users(db)
    with db.write() as s:
        report = create_report(db, s, "RTC/1", "rtc", owner_id=u["sup"].id, unit="north", actor="test")
        assert assignments.assign(db, s, report, u["pc"], actor="sup@force.test")
        assert not assignments.assign(db, s, report, u["pc"], actor="sup@force.test")  # already: no event
        assert assignments.assign(db, s, report, u["pc2"], as_owner=True, actor="admin@force.test")
        assert [a.email for a in assignments.assignees(s, report.id)] == ["pc@force.test"]
    events = _events(db, "report.")
    assert [(e.action, (e.detail or {}).get("user") or (e.detail or {}).get("to")) for e in events[1:]] == [
        ("report.assigned", "pc@force.test"), ("report.owner_changed", "pc2@force.test")]
    assert events[2].detail == {"reference": "RTC/1", "from": "sup@force.test", "to": "pc2@force.test",
                                "unit": "north"}
    assert events[1].actor == "sup@force.test"
    # An assignee made owner is one person with one reason for access, not two rows.
    with db.write() as s:
        report = s.exec(select(Report)).one()
        assert assignments.assign(db, s, report, u["pc"], as_owner=True, actor="test")
        assert assignments.assignees(s, report.id) == []
        assert assignments.unassign(db, s, report, u["pc2"].id, actor="test") is False
    # Auditors, partners and disabled accounts never work a report (AC-01).
    with db.read() as s:
        for email in ("aud@force.test", "cps@force.test", "off@force.test", "nobody@force.test"):
            with pytest.raises(NotFound) as err:
                assignments.assignable_user(s, email)
            assert err.value.code == "ERR_ASSIGNEE_UNKNOWN"
        with pytest.raises(NotFound):
            assignments.assignable_user(s, "pc2@force.test", unit="north")  # not of that unit
        assert assignments.assignable_user(s, " PC@force.test ", unit="north").id == u["pc"].id
    with db.write() as s, pytest.raises(Invalid):
        assignments.assign(db, s, s.exec(select(Report)).one(), u["aud"], actor="test")
    assert ledger.verify(db).ok


def test_my_reports_counts_new_evidence_since_the_last_look(db: Database) -> None:
    u = _users(db)
    with db.write() as s:
        mine = create_report(db, s, "RTC/1", "rtc", owner_id=u["pc"].id, unit="north", actor="test")
        assigned = create_report(db, s, "RTC/2", "rtc", owner_id=u["sup"].id, unit="north", actor="test")
        create_report(db, s, "RTC/3", "rtc", owner_id=u["sup"].id, unit="north", actor="test")  # not theirs
        assignments.assign(db, s, assigned, u["pc"], actor="test")
        for i in range(3):
            s.add(EvidenceItem(report_id=mine.id, blob_key=f"k{i}", sha256="0" * 64, state="ready",
                               received_at=T0 + dt.timedelta(minutes=i), triage="accepted" if i == 0 else "pending"))
        s.add(EvidenceItem(report_id=assigned.id, blob_key="k9", sha256="0" * 64, state="ready", received_at=T0))
    with db.read() as s:
        rows, more = assignments.queue(s, u["pc"])
    assert not more
    got = {r.report.reference: (r.role, r.items, r.new, r.waiting, r.seen_at) for r in rows}
    assert got == {"RTC/1": ("owner", 3, 3, 2, None), "RTC/2": ("assigned", 1, 1, 1, None)}
    with db.write() as s:
        assignments.mark_seen(s, u["pc"].id, mine.id, T0 + dt.timedelta(minutes=1))
    with db.write() as s:
        assignments.mark_seen(s, u["pc"].id, mine.id, T0)  # an older look never moves it back
    with db.read() as s:
        rows, _ = assignments.queue(s, u["pc"])
    first = next(r for r in rows if r.report.reference == "RTC/1")
    assert (first.new, first.waiting, first.seen_at) == (1, 2, T0 + dt.timedelta(minutes=1))
    # Keyset pages: one row a page, newest first, no row twice.
    with db.read() as s:
        page1, more1 = assignments.queue(s, u["pc"], limit=1)
        page2, more2 = assignments.queue(s, u["pc"], limit=1,
                                         after=(page1[0].report.created_at, page1[0].report.id))
    assert more1 and not more2
    assert {page1[0].report.reference, page2[0].report.reference} == {"RTC/1", "RTC/2"}
